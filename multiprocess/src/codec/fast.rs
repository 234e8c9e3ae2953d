//! Fast paths that skip the side table or serde for common cases: plain
//! values (no handles) encoded straight into a buffer or decoded without
//! installing a table, and `Vec<u8>`/`String`, copied in one piece with
//! postcard's own length prefix. Every fast path writes or accepts exactly
//! the bytes of the general codec, and falls back to it for the exact error.

use std::any::{Any, TypeId};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::table::{DECODE_TABLE, encoding_with_table};
use super::{DecodeError, decode, malformed};

/// A postcard output that appends to a borrowed `Vec`.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Serializes `value` into `buf` (appending) with no side table, for a
/// transport that cannot carry handles (the queue's shared memory). The bytes
/// are the ones [`encode_into`](super::encode_into) writes.
///
/// Returns `false` if the value did not encode this way: it holds a handle
/// (whose `Serialize` refuses when no table is installed), its serializer
/// failed, or an [`encode`](super::encode) is in progress further up this thread's stack (so
/// a handle would land in that outer table). `buf` then holds garbage past
/// its old length; the caller re-encodes with [`encode_into`](super::encode_into) for the exact
/// outcome and error message.
#[inline]
pub(crate) fn encode_plain_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> bool {
    !encoding_with_table() && postcard::serialize_with_flavor(value, Append(buf)).is_ok()
}

/// Same as [`encode_plain_into`] into a fixed buffer: the length written, or
/// `None` if the value does not fit or did not encode this way.
#[inline]
pub(crate) fn encode_plain_to_slice<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Option<usize> {
    if encoding_with_table() {
        return None;
    }
    postcard::to_slice(value, buf).ok().map(|out| out.len())
}

/// Deserializes a `T` that carries no handles from `bytes`, as [`decode`]
/// with an empty table would, without installing the table on the success
/// path. On any error it decodes again through [`decode`], which gives the
/// exact message.
#[inline]
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if DECODE_TABLE.with(|t| t.borrow().is_none())
        && let Ok((value, [])) = postcard::take_from_bytes::<T>(bytes)
    {
        return Ok(value);
    }
    decode(bytes, Vec::new())
}

/// Whether `T` is `Vec<u8>` or `String`: types whose postcard encoding is a
/// varint length then the raw bytes, which the Queue and Connection copy in
/// one piece instead of going through serde one byte at a time (serde sees a
/// `Vec<u8>` as a sequence of `u8`s). The bytes produced are exactly
/// postcard's, so both paths interoperate.
pub(crate) fn is_bytes<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>() || TypeId::of::<T>() == TypeId::of::<String>()
}

/// The bytes of a `Vec<u8>` or `String` item (see [`is_bytes`]).
pub(crate) fn as_bytes<T: 'static>(value: &T) -> Option<&[u8]> {
    let any = value as &dyn Any;
    if let Some(v) = any.downcast_ref::<Vec<u8>>() {
        return Some(v);
    }
    any.downcast_ref::<String>().map(String::as_bytes)
}

/// Turns the bytes taken for a `Vec<u8>` or `String` item back into a `T`.
pub(crate) fn from_bytes<T: 'static>(bytes: Vec<u8>) -> Result<T, DecodeError> {
    let mut slot: Option<T> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(s) = any.downcast_mut::<Option<Vec<u8>>>() {
        *s = Some(bytes);
    } else if let Some(s) = any.downcast_mut::<Option<String>>() {
        let text = String::from_utf8(bytes)
            .map_err(|_| malformed::<T>(postcard::Error::DeserializeBadUtf8.to_string()))?;
        *s = Some(text);
    }
    slot.ok_or_else(|| malformed::<T>("not a byte type".into()))
}

/// postcard's length prefix: `len` as a LEB128 varint (bytes, count).
pub(crate) fn varint(mut len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out[n] = byte;
            return (out, n + 1);
        }
        out[n] = byte | 0x80;
        n += 1;
    }
}

/// Decodes a `Vec<u8>` or `String` from its postcard encoding in one copy;
/// `None` when `T` is another type (use [`decode`]).
pub(crate) fn decode_bytes<T: 'static>(encoded: &[u8]) -> Option<Result<T, DecodeError>> {
    if !is_bytes::<T>() {
        return None;
    }
    let mut len: u64 = 0;
    for (i, &b) in encoded.iter().take(10).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let body = &encoded[i + 1..];
            return Some(if body.len() as u64 == len {
                from_bytes(body.to_vec())
            } else {
                Err(malformed::<T>(format!(
                    "length prefix says {len} bytes, the message holds {}",
                    body.len()
                )))
            });
        }
    }
    Some(Err(malformed::<T>("no valid length prefix".into())))
}
