//! The descriptor side table: how OS handles travel inside serialized values.
//!
//! A handle type's `Serialize` calls [`serialize_fd`], which duplicates the
//! descriptor into the thread's encode table and writes only its index; its
//! `Deserialize` calls [`deserialize_fd`], which takes the descriptor at that
//! index out of the decode table. The tables are thread-locals that only
//! [`encode_into`](super::encode_into) and [`decode`](super::decode) install,
//! so any other serde serializer gets a clear error instead of a number. The
//! handle error channel ([`handle_error`]) carries the text of those errors
//! past postcard, which drops it.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::{Deserialize, Deserializer, Serializer};

/// The name under which handle indices are serialized (a newtype struct).
const HANDLE_TOKEN: &str = "$multiprocess::Handle";

thread_local! {
    pub(super) static ENCODE_TABLE: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    pub(super) static DECODE_TABLE: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// postcard drops the text of custom serde errors, so the handle code
    /// leaves its message here for `encode`/`decode` to report.
    pub(super) static HANDLE_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
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
pub(crate) fn take_handle_error(fallback: String) -> String {
    HANDLE_ERROR
        .with(|h| h.borrow_mut().take())
        .unwrap_or(fallback)
}

/// Whether a side table is being filled on this thread (an
/// [`encode`](super::encode) is running further up the stack).
#[inline]
pub(super) fn encoding_with_table() -> bool {
    ENCODE_TABLE.with(|t| t.borrow().is_some())
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
