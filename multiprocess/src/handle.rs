//! How OS handles travel inside serialized values.
//!
//! Queues, Connections and Locks own file descriptors. When one of them is
//! serialized by `multiprocess` (as a process argument, or inside a message on
//! a [`Connection`](crate::Connection)), its descriptor is duplicated into a
//! *side table* and only the table index is written into the bytes. The
//! transport then carries the table out of band: `SCM_RIGHTS` over a Unix
//! socket, or plain inheritance for forked children. On the receiving side the
//! index is looked up in the received table; an index that is out of range or
//! already taken is a decode error, never a panic.
//!
//! The tables live in thread-locals that are only set while
//! [`encode`]/[`decode`] run, so serializing a handle with any other serde
//! serializer (JSON, say) gives a clear error instead of a meaningless number.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name under which handle indices are serialized (a newtype struct).
const HANDLE_TOKEN: &str = "$multiprocess::Handle";

thread_local! {
    static ENCODE_TABLE: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static DECODE_TABLE: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// postcard drops the text of custom serde errors, so the handle code
    /// leaves its message here for `encode`/`decode` to report.
    static HANDLE_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `msg` for [`take_handle_error`] and returns it as a serde error:
/// use it for every error a handle type raises while serializing, so the
/// message reaches the user (postcard drops the text of custom errors).
pub(crate) fn handle_error<E: serde::ser::Error>(msg: String) -> E {
    let e = E::custom(&msg);
    HANDLE_ERROR.with(|h| *h.borrow_mut() = Some(msg));
    e
}

/// Same as [`handle_error`] for deserialization.
pub(crate) fn handle_de_error<E: serde::de::Error>(msg: String) -> E {
    let e = E::custom(&msg);
    HANDLE_ERROR.with(|h| *h.borrow_mut() = Some(msg));
    e
}

/// The message of the last handle error on this thread, if any, else `fallback`.
fn take_handle_error(fallback: String) -> String {
    HANDLE_ERROR
        .with(|h| h.borrow_mut().take())
        .unwrap_or(fallback)
}

/// Error while turning a value into bytes plus handles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The serializer rejected the value (for example a map with non-string
    /// keys in a format that needs them), or a handle could not be duplicated.
    #[error("cannot serialize value: {0}")]
    Serialize(String),
}

/// Error while turning bytes plus handles back into a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid encoding of the expected type.
    #[error("message does not decode as {expected}: {reason}")]
    Malformed {
        /// The Rust type the receiver asked for.
        expected: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

/// Serializes `value` into `buf` (appending), duplicating every handle inside
/// it into `fds`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> Result<(), EncodeError> {
    HANDLE_ERROR.with(|h| h.borrow_mut().take());
    let previous = ENCODE_TABLE.with(|t| t.borrow_mut().replace(std::mem::take(fds)));
    let result = postcard::to_extend(value, std::mem::take(buf));
    let table = ENCODE_TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
    *fds = table.unwrap_or_default();
    match result {
        Ok(out) => {
            *buf = out;
            Ok(())
        }
        Err(e) => Err(EncodeError::Serialize(take_handle_error(e.to_string()))),
    }
}

/// Whether a side table is being filled on this thread (an [`encode`] is
/// running further up the stack).
fn encoding_with_table() -> bool {
    ENCODE_TABLE.with(|t| t.borrow().is_some())
}

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
/// are the ones [`encode_into`] writes.
///
/// Returns `false` if the value did not encode this way: it holds a handle
/// (whose `Serialize` refuses when no table is installed), its serializer
/// failed, or an [`encode`] is in progress further up this thread's stack (so
/// a handle would land in that outer table). `buf` then holds garbage past
/// its old length; the caller re-encodes with [`encode_into`] for the exact
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
    if DECODE_TABLE.with(|t| t.borrow().is_none()) {
        if let Ok((value, [])) = postcard::take_from_bytes::<T>(bytes) {
            return Ok(value);
        }
    }
    decode(bytes, Vec::new())
}

/// The error [`decode`] reports for bytes that are not a `T`, for a codec
/// that bypasses postcard for some types.
pub(crate) fn malformed<T: ?Sized>(reason: String) -> DecodeError {
    DecodeError::Malformed {
        expected: std::any::type_name::<T>(),
        reason,
    }
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

/// Runs `$m!(T, width)` for each primitive number type that the list codec
/// ([`encode_list`]/[`decode_list_into`]) writes at a fixed width.
macro_rules! fixed_width_types {
    ($m:ident) => {
        $m!(
            u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
        );
    };
}

/// Encodes a list for a pool chunk, appending to `out`: when `T` is a
/// primitive number or a 1-tuple of one (a `map` argument), as fixed-width
/// little-endian words, with no length prefix (the chunk knows its count);
/// otherwise as postcard's `Vec<T>`. A `map` of a million `u64`s then costs
/// a copy instead of a varint per item each way. Both ends run the same
/// executable, so they agree on the form from `T` alone.
pub(crate) fn encode_list<T: Serialize + 'static>(
    items: &[T],
    out: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> Result<(), EncodeError> {
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() || TypeId::of::<T>() == TypeId::of::<($t,)>() {
                const W: usize = std::mem::size_of::<$t>();
                let start = out.len();
                out.resize(start + items.len() * W, 0);
                for (dst, item) in out[start..].chunks_exact_mut(W).zip(items) {
                    let item = item as &dyn Any;
                    let v: $t = match item.downcast_ref::<$t>() {
                        Some(v) => *v,
                        None => item.downcast_ref::<($t,)>().map_or(0 as $t, |v| v.0),
                    };
                    dst.copy_from_slice(&v.to_le_bytes());
                }
                return Ok(());
            }
        )*};
    }
    fixed_width_types!(fixed);
    encode_into(items, out, fds)
}

/// Decodes a list made by [`encode_list`] onto the end of `out`; returns
/// how many items it appended.
pub(crate) fn decode_list_into<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    out: &mut Vec<T>,
) -> Result<usize, DecodeError> {
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() || TypeId::of::<T>() == TypeId::of::<($t,)>() {
                const W: usize = std::mem::size_of::<$t>();
                if bytes.len() / W * W != bytes.len() {
                    return Err(malformed::<Vec<T>>(format!(
                        "{} bytes is not a whole number of {W}-byte items",
                        bytes.len()
                    )));
                }
                let words = bytes
                    .chunks_exact(W)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("W bytes")));
                let any = out as &mut dyn Any;
                if let Some(out) = any.downcast_mut::<Vec<$t>>() {
                    out.extend(words);
                } else if let Some(out) = any.downcast_mut::<Vec<($t,)>>() {
                    out.extend(words.map(|v| (v,)));
                }
                return Ok(bytes.len() / W);
            }
        )*};
    }
    fixed_width_types!(fixed);
    // postcard's `Vec<T>`, decoded straight onto the end of `out`.
    struct Extend<'a, T>(&'a mut Vec<T>);
    impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for Extend<'_, T> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, T: DeserializeOwned> serde::de::Visitor<'de> for Extend<'_, T> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let start = self.0.len();
            // A hostile length must not reserve gigabytes: cap the hint.
            self.0.reserve(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(v) = seq.next_element()? {
                self.0.push(v);
            }
            Ok(self.0.len() - start)
        }
    }
    let start = out.len();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let result = serde::de::DeserializeSeed::deserialize(Extend(out), &mut de)
        .map_err(|e| malformed::<Vec<T>>(take_handle_error(e.to_string())))
        .and_then(|n| match de.finalize() {
            Ok([]) => Ok(n),
            Ok(rest) => Err(malformed::<Vec<T>>(format!(
                "{} trailing bytes",
                rest.len()
            ))),
            Err(e) => Err(malformed::<Vec<T>>(e.to_string())),
        });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Serializes `value` into fresh bytes plus a handle table.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError> {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    encode_into(value, &mut buf, &mut fds)?;
    Ok((buf, fds))
}

/// Deserializes a `T` from `bytes`, taking handles out of `fds`.
///
/// Handles that the value does not claim are closed. Trailing bytes are an
/// error: a message is exactly one value.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, DecodeError> {
    HANDLE_ERROR.with(|h| h.borrow_mut().take());
    let table: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let previous = DECODE_TABLE.with(|t| t.borrow_mut().replace(table));
    let result = postcard::take_from_bytes::<T>(bytes);
    DECODE_TABLE.with(|t| *t.borrow_mut() = previous);
    let malformed = |reason: String| DecodeError::Malformed {
        expected: std::any::type_name::<T>(),
        reason,
    };
    match result {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(malformed(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(malformed(take_handle_error(e.to_string()))),
    }
}

/// Serializes a handle: duplicates `fd` into the current side table and writes
/// its index. `what` names the handle type for the error message.
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    what: &'static str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let index = ENCODE_TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let Some(table) = t.as_mut() else {
            return Err(handle_error(format!(
                "a {what} can only be serialized by multiprocess itself \
                 (as a process argument or in a Connection message)"
            )));
        };
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| handle_error(format!("cannot duplicate the {what} descriptor: {e}")))?;
        table.push(dup);
        u32::try_from(table.len() - 1).map_err(|_| handle_error("too many handles".into()))
    })?;
    serializer.serialize_newtype_struct(HANDLE_TOKEN, &index)
}

/// Deserializes a handle written by [`serialize_fd`]: takes the descriptor at
/// the written index out of the current side table.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    what: &'static str,
    deserializer: D,
) -> Result<OwnedFd, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename = "$multiprocess::Handle")]
    struct Index(u32);
    let Index(index) = Index::deserialize(deserializer)?;
    DECODE_TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let Some(table) = t.as_mut() else {
            return Err(handle_de_error(format!(
                "a {what} can only be deserialized by multiprocess itself"
            )));
        };
        let len = table.len();
        match table.get_mut(index as usize) {
            None => Err(handle_de_error(format!(
                "bad handle index {index} for a {what}: the message carries {len} handle(s)"
            ))),
            Some(slot) => slot.take().ok_or_else(|| {
                handle_de_error(format!(
                    "handle index {index} for a {what} was already used"
                ))
            }),
        }
    })
}

/// A 64-bit tag for the type `T`, equal in every process running the same
/// binary (it hashes `TypeId`). Connections send it with each message and
/// shared-memory handles store it, so a value is never decoded as a type other
/// than the one it was encoded from.
pub(crate) fn type_tag<T: ?Sized + 'static>() -> u64 {
    use std::hash::{Hash, Hasher};
    /// FNV-1a over whatever `TypeId::hash` writes: a few bytes, a few ns.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    std::any::TypeId::of::<T>().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    struct Fd(OwnedFd);
    impl Serialize for Fd {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_fd(self.0.as_fd(), "test handle", s)
        }
    }
    impl<'de> Deserialize<'de> for Fd {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_fd("test handle", d).map(Fd)
        }
    }

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn handles_round_trip_nested() {
        let value = (7u32, vec![Some(Fd(devnull())), None, Some(Fd(devnull()))]);
        let (bytes, fds) = encode(&value).unwrap();
        assert_eq!(fds.len(), 2);
        let back: (u32, Vec<Option<Fd>>) = decode(&bytes, fds).unwrap();
        assert_eq!(back.0, 7);
        assert!(back.1[0].is_some() && back.1[1].is_none() && back.1[2].is_some());
    }

    #[test]
    fn missing_handle_is_an_error() {
        let (bytes, _fds) = encode(&Fd(devnull())).unwrap();
        let err = decode::<Fd>(&bytes, Vec::new()).err().unwrap();
        assert!(err.to_string().contains("bad handle index 0"), "{err}");
    }

    #[test]
    fn reused_index_is_an_error() {
        // Two values that both claim index 0.
        let (bytes, fds) = encode(&Fd(devnull())).unwrap();
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes);
        let err = decode::<(Fd, Fd)>(&twice, fds).err().unwrap();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn foreign_serializer_is_refused() {
        assert!(postcard::to_stdvec(&Fd(devnull())).is_err());
        assert!(encode(&Fd(devnull())).is_ok());
    }

    #[test]
    fn byte_fast_path_matches_postcard() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (prefix, n) = varint(v.len());
            let mut ours = prefix[..n].to_vec();
            ours.extend_from_slice(&v);
            assert_eq!(ours, postcard::to_stdvec(&v).unwrap(), "len {len}");
            let back: Vec<u8> = decode_bytes(&ours).unwrap().unwrap();
            assert_eq!(back, v);
            let text = "é".repeat(len / 2);
            let encoded = postcard::to_stdvec(&text).unwrap();
            let back: String = decode_bytes(&encoded).unwrap().unwrap();
            assert_eq!(back, text);
        }
        assert!(
            decode_bytes::<u64>(&[1, 2]).is_none(),
            "other types take the codec"
        );
        // A length prefix that disagrees with the body, bad UTF-8, no prefix.
        assert!(decode_bytes::<Vec<u8>>(&[5, 1, 2]).unwrap().is_err());
        assert!(decode_bytes::<String>(&[2, 0xff, 0xfe]).unwrap().is_err());
        assert!(decode_bytes::<Vec<u8>>(&[0x80; 12]).unwrap().is_err());
        assert!(decode_bytes::<Vec<u8>>(&[]).unwrap().is_err());
    }

    #[test]
    fn type_tags_differ() {
        assert_eq!(type_tag::<u64>(), type_tag::<u64>());
        assert_ne!(type_tag::<u64>(), type_tag::<i64>());
        assert_ne!(type_tag::<String>(), type_tag::<Vec<u8>>());
    }

    #[test]
    fn wrong_type_names_expected() {
        let (bytes, fds) = encode(&"hello".to_string()).unwrap();
        let err = decode::<u64>(&bytes, fds).err().unwrap();
        assert!(err.to_string().contains("u64"), "{err}");
    }

    fn list_round_trip<T>(items: Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static,
    {
        let mut buf = vec![];
        let mut fds = vec![];
        encode_list(&items, &mut buf, &mut fds).unwrap();
        // Onto the end of existing items, as the pool's results are.
        let mut out = items.clone();
        assert_eq!(decode_list_into(&buf, &mut out).unwrap(), items.len());
        assert_eq!(out.len(), 2 * items.len());
        assert_eq!(out[items.len()..], items[..]);
    }

    #[test]
    fn lists_round_trip_in_both_forms() {
        list_round_trip(vec![0u64, 1, u64::MAX, 1 << 40]);
        list_round_trip(vec![(7u64,), (u64::MAX,)]);
        list_round_trip(vec![-1i32, i32::MIN, 5]);
        list_round_trip(vec![(1.5f64,), (f64::NEG_INFINITY,)]);
        list_round_trip(vec![u8::MAX, 0]);
        list_round_trip(Vec::<u16>::new());
        list_round_trip(vec!["a".to_string(), String::new()]);
        list_round_trip(vec![(1u64, 2u64), (3, 4)]);
        list_round_trip(vec![Some(vec![1u8, 2]), None]);
    }

    #[test]
    fn fixed_width_lists_are_a_copy_of_the_words() {
        let mut buf = vec![];
        encode_list(&[(1u32,), (0x0102_0304,)], &mut buf, &mut vec![]).unwrap();
        assert_eq!(buf, [1, 0, 0, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn malformed_lists_are_errors_and_leave_the_output_alone() {
        let mut out = vec![9u64];
        let e = decode_list_into::<u64>(&[0; 7], &mut out).unwrap_err();
        assert!(
            e.to_string().contains("whole number of 8-byte items"),
            "{e}"
        );
        assert_eq!(out, [9]);
        let mut out = vec!["kept".to_string()];
        // Two strings announced, one given.
        let e = decode_list_into::<String>(&[2, 1, b'x'], &mut out).unwrap_err();
        assert!(e.to_string().contains("String"), "{e}");
        assert_eq!(out, ["kept"]);
        // One string, then a stray byte.
        let e = decode_list_into::<String>(&[1, 1, b'x', 0], &mut out).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
        // A hostile length does not reserve memory for it.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_list_into::<String>(&huge, &mut out).is_err());
        assert_eq!(out, ["kept"]);
    }
}
