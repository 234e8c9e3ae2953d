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
//!
//! A message with handles also carries, once, the sender's liveness domains
//! (`sys/liveness.rs`): a handle's index is written with the position of
//! those domains in the table, and the receiver joins them, so each side
//! can tell when the other dies, whatever their pid namespaces.

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
    /// Where the sender's liveness domains sit in the current encode table
    /// (first index, count), once a handle has put them there.
    pub(super) static ENCODE_DOMAINS: std::cell::Cell<Option<(u32, u32)>> =
        const { std::cell::Cell::new(None) };
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
        let too_many = || handle_error("too many handles".into());
        let domains = match ENCODE_DOMAINS.get() {
            Some(domains) => domains,
            None => {
                let fds = crate::sys::liveness::domain_fds().map_err(|e| {
                    handle_error(format!(
                        "cannot send the liveness domain with a {what}: {e}"
                    ))
                })?;
                let first = u32::try_from(table.len()).map_err(|_| too_many())?;
                let count = u32::try_from(fds.len()).map_err(|_| too_many())?;
                table.extend(fds);
                ENCODE_DOMAINS.set(Some((first, count)));
                (first, count)
            }
        };
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| handle_error(format!("cannot duplicate the {what} descriptor: {e}")))?;
        table.push(dup);
        let index = u32::try_from(table.len() - 1).map_err(|_| too_many())?;
        Ok((index, domains.0, domains.1))
    })?;
    serializer.serialize_newtype_struct(HANDLE_TOKEN, &index)
}

/// Deserializes a handle written by [`serialize_fd`]: joins the sender's
/// liveness domains (the first handle of a message takes them out of the
/// table) and takes the descriptor at the written index out of the current
/// side table.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    what: &'static str,
    deserializer: D,
) -> Result<OwnedFd, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename = "$multiprocess::Handle")]
    struct Index(u32, u32, u32);
    let Index(index, first, count) = Index::deserialize(deserializer)?;
    DECODE_TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let Some(table) = t.as_mut() else {
            return Err(handle_de_error(format!(
                "a {what} can only be deserialized by multiprocess itself"
            )));
        };
        let len = table.len();
        let fd = match table.get_mut(index as usize) {
            None => Err(handle_de_error(format!(
                "bad handle index {index} for a {what}: the message carries {len} handle(s)"
            ))),
            Some(slot) => slot.take().ok_or_else(|| {
                handle_de_error(format!(
                    "handle index {index} for a {what} was already used"
                ))
            }),
        }?;
        let domains = (first as usize).checked_add(count as usize);
        let Some(domains) = domains.and_then(|end| table.get_mut(first as usize..end)) else {
            return Err(handle_de_error(format!(
                "bad liveness domains {first}+{count} for a {what}: the message carries {len} handle(s)"
            )));
        };
        for slot in domains {
            // Taken by an earlier handle of the same message: joined then.
            if let Some(fd) = slot.take() {
                crate::sys::liveness::join(fd).map_err(|e| {
                    handle_de_error(format!("cannot take a {what}: {e}"))
                })?;
            }
        }
        Ok(fd)
    })
}
