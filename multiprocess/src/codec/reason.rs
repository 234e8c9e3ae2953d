//! Why a value did not encode, in words.
//!
//! postcard turns every `serde::ser::Error::custom(msg)` into its unit
//! error `SerdeSerCustom` ("Serde Serialization Error"), so the reason a
//! custom `Serialize` gave is lost, and its `SerializeSeqLengthUnknown`
//! does not say which serde feature asked for it. When an encode fails
//! (the cold path only), [`reason`] serializes the value once more into
//! this module's [`Reason`] serializer, which writes nothing, accepts
//! everything postcard refuses, and keeps the text of the first custom
//! error: the message Python's `MaybeEncodingError` would carry. The hot
//! path is unchanged.

use std::fmt::{self, Display};

use serde::Serialize;
use serde::ser;

/// The error of [`Reason`]: the text a `Serialize` impl gave.
#[derive(Debug)]
pub(super) struct Text(pub(super) String);

impl Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Text {}

impl ser::Error for Text {
    fn custom<T: Display>(msg: T) -> Self {
        Text(msg.to_string())
    }
}

/// What [`Reason`] saw besides an error.
#[derive(Default)]
struct Seen {
    /// A sequence or map whose length was not known up front (postcard
    /// refuses those: `#[serde(flatten)]`, `collect_seq` of an iterator
    /// without an exact size).
    unknown_length: bool,
}

/// A serializer that writes nothing and keeps custom error texts.
struct Reason<'a>(&'a mut Seen);

/// The serde error text of serializing `value`, if its `Serialize` reports
/// one, else a description of what postcard refused (`postcard_says` is
/// postcard's own text, used when nothing better is known).
pub(super) fn reason<T: Serialize + ?Sized>(value: &T, postcard_says: &str) -> String {
    let mut seen = Seen::default();
    match value.serialize(Reason(&mut seen)) {
        Err(Text(text)) => text,
        Ok(()) if seen.unknown_length => format!(
            "{postcard_says}: a sequence or map of unknown length, which the encoding \
             (postcard) cannot write; #[serde(flatten)] makes one (remove it, or nest the \
             field), as does Serializer::collect_seq/collect_map over an iterator without \
             an exact size (collect into a Vec first)"
        ),
        Ok(()) => postcard_says.to_string(),
    }
}

macro_rules! ok {
    ($($name:ident($($t:ty),*);)*) => {$(
        fn $name(self, $(_: $t),*) -> Result<(), Text> {
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for Reason<'a> {
    type Ok = ();
    type Error = Text;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ok! {
        serialize_bool(bool);
        serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Text> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Text> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), Text> {
        v.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Text> {
        self.0.unknown_length |= len.is_none();
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Text> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Text> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Text> {
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Text> {
        self.0.unknown_length |= len.is_none();
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Text> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Text> {
        Ok(self)
    }
}

impl Reason<'_> {
    fn inner<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Text> {
        v.serialize(Reason(self.0))
    }
}

macro_rules! compound {
    ($($tr:ident :: $f:ident;)*) => {$(
        impl ser::$tr for Reason<'_> {
            type Ok = ();
            type Error = Text;
            fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Text> {
                self.inner(v)
            }
            fn end(self) -> Result<(), Text> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

impl ser::SerializeMap for Reason<'_> {
    type Ok = ();
    type Error = Text;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Text> {
        self.inner(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Text> {
        self.inner(v)
    }
    fn end(self) -> Result<(), Text> {
        Ok(())
    }
}

impl ser::SerializeStruct for Reason<'_> {
    type Ok = ();
    type Error = Text;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Text> {
        self.inner(v)
    }
    fn end(self) -> Result<(), Text> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Reason<'_> {
    type Ok = ();
    type Error = Text;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Text> {
        self.inner(v)
    }
    fn end(self) -> Result<(), Text> {
        Ok(())
    }
}
