//! The codec: how values become bytes (and descriptors) and back.
//!
//! Every value that crosses a process boundary — a process's arguments, a
//! [`Queue`](crate::Queue) item, a [`Connection`](crate::Connection)
//! message, a pool chunk — is encoded with postcard by [`encode_into`] and
//! decoded by [`decode`]. This module is the crate-internal API for that;
//! the parts live in files of their own:
//!
//! - `table.rs`: the *descriptor side table*. Queues, Connections and Locks
//!   own file descriptors. When one of them is serialized by `multiprocess`,
//!   its descriptor is duplicated into a side table and only the table index
//!   is written into the bytes ([`serialize_fd`]). The transport then carries
//!   the table out of band: `SCM_RIGHTS` over a Unix socket, or plain
//!   inheritance for forked children. On the receiving side the index is
//!   looked up in the received table ([`deserialize_fd`]); an index that is
//!   out of range or already taken is a decode error, never a panic. The
//!   tables live in thread-locals that are only set while
//!   [`encode_into`]/[`decode`] run, so serializing a handle with any other
//!   serde serializer (JSON, say) gives a clear error instead of a
//!   meaningless number.
//! - `fast.rs`: the fast paths — plain values (no handles) without the side
//!   table ([`encode_plain_into`], [`decode_plain`]), and `Vec<u8>`/`String`
//!   copied in one piece ([`as_bytes`], [`decode_bytes`]). They produce and
//!   accept exactly the bytes of the general path.
//! - `probe.rs`: [`check_round_trip`], the sender-side check that a type's
//!   encoding decodes as that type (serde attributes postcard cannot round
//!   trip, such as `#[serde(untagged)]`, are refused where they are sent),
//!   once per type.
//! - `reason.rs`: on the cold path of a failed encode, the reason in
//!   words: the text of a custom `Serialize` error (postcard keeps only
//!   "Serde Serialization Error"), or the serde feature postcard refused.
//! - `tag.rs`: [`type_tag`], a type's 64-bit name, so a value is never
//!   decoded as another type than the one it was encoded from.
//!
//! The pool's list codec (fixed-width words for plain numbers) is the pool's
//! own, in `pool/wire.rs`.

mod fast;
mod probe;
mod reason;
mod table;
mod tag;
#[cfg(test)]
mod tests;

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use fast::{
    as_bytes, decode_bytes, decode_plain, encode_plain_into, encode_plain_to_slice, from_bytes,
    is_bytes, varint,
};
pub(crate) use probe::{check as check_round_trip, check_as, skip_in_probe};
pub(crate) use table::take_handle_error;
use table::{DECODE_TABLE, ENCODE_DOMAINS, ENCODE_TABLE, HANDLE_ERROR};
pub(crate) use table::{deserialize_fd, handle_de_error, handle_error, serialize_fd};
pub(crate) use tag::type_tag;

/// Error while turning a value into bytes plus handles.
///
/// Its text says why: the message of a custom `Serialize` error
/// (`serde::ser::Error::custom("...")`), a handle that cannot travel, or a
/// serde feature the encoding cannot round trip. The encoding (postcard) is
/// compact and not self-describing, so `#[serde(untagged)]`, internally
/// tagged enums (`#[serde(tag = "...")]`), `#[serde(flatten)]` and
/// `#[serde(skip_serializing_if)]` would encode and then fail to decode in
/// the other process: a [`Queue`](crate::Queue) or
/// [`Connection`](crate::Connection) refuses such a value when it is sent
/// instead, handing it back with this error, and
/// [`Process::start`](crate::Process::start) refuses such arguments (Spawn
/// and ForkServer; under Fork they are not encoded). It decodes the first value of
/// each type once in the sending process to find out, and remembers a type
/// that passes, so later sends cost nothing; a type whose first value does
/// not reach the failing part (an `Option<Untagged>` sent as `None` first)
/// still fails at the receiver, whose [`DecodeError`] names the same cause.
/// Pool and Executor task arguments (and a pool initializer's) are refused
/// by the caller the same way ([`PoolError::Encode`](crate::PoolError::Encode));
/// a task's result is checked where it is decoded, in the caller (a
/// [`TaskError::Decode`](crate::TaskError::Decode) naming the cause).
///
/// ```
/// use multiprocess::Queue;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// #[serde(untagged)]
/// enum Loose { Number(u32), Text(String) }
///
/// let q = Queue::new()?;
/// let err = q.put(Loose::Number(1)).unwrap_err();
/// assert!(err.to_string().contains("untagged"));
/// assert_eq!(err.into_inner(), Loose::Number(1)); // handed back
/// # Ok::<(), std::io::Error>(())
/// ```
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
    let previous_domains = ENCODE_DOMAINS.replace(None);
    let result = postcard::to_extend(value, std::mem::take(buf));
    ENCODE_DOMAINS.set(previous_domains);
    let table = ENCODE_TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), previous));
    *fds = table.unwrap_or_default();
    match result {
        Ok(out) => {
            *buf = out;
            Ok(())
        }
        Err(e) => Err(EncodeError::Serialize(encode_failure(value, e))),
    }
}

/// The text of a failed encode (the cold path): a handle's own message, or
/// the reason the value's `Serialize` gave, which postcard drops (see
/// `reason.rs`). The value is serialized once more for that, into a side
/// table of its own that is dropped at once.
#[cold]
fn encode_failure<T: Serialize + ?Sized>(value: &T, e: postcard::Error) -> String {
    if let Some(text) = HANDLE_ERROR.with(|h| h.borrow_mut().take()) {
        return text;
    }
    let previous = ENCODE_TABLE.with(|t| t.borrow_mut().replace(Vec::new()));
    let previous_domains = ENCODE_DOMAINS.replace(None);
    let text = reason::reason(value, &e.to_string());
    ENCODE_DOMAINS.set(previous_domains);
    ENCODE_TABLE.with(|t| *t.borrow_mut() = previous);
    take_handle_error(text)
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
        Err(e) => Err(malformed(explain(take_handle_error(e.to_string())))),
    }
}

/// A decode error's text, with the cause and the fix when postcard says
/// the type needs a feature it will never implement (`deserialize_any`).
pub(crate) fn explain(text: String) -> String {
    if text.contains(probe::WONT_IMPLEMENT) {
        format!("{text}: {}", probe::cause(&text))
    } else {
        text
    }
}

/// The error [`decode`] reports for bytes that are not a `T`, for a codec
/// that bypasses postcard for some types.
pub(crate) fn malformed<T: ?Sized>(reason: String) -> DecodeError {
    DecodeError::Malformed {
        expected: std::any::type_name::<T>(),
        reason,
    }
}
