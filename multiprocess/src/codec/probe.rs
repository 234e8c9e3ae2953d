//! The sender-side round-trip check: serde attributes that postcard cannot
//! decode are refused where the value is sent, not where it is received.
//!
//! postcard is not self-describing, so a `Deserialize` that asks for
//! `deserialize_any` (`#[serde(untagged)]`, internally tagged enums
//! `#[serde(tag = "...")]`, `#[serde(flatten)]`, `serde_json::Value`-like
//! types) encodes fine and fails only in the other process, with postcard's
//! "This is a feature that PostCard will never implement"; and
//! `#[serde(skip_serializing_if)]` writes fewer fields than the decoder
//! reads. The sender cannot see this from the `Serialize` side, so
//! [`check`] decodes the first encoded value of each type once, in the
//! sender, and keeps the verdict:
//!
//! - a type whose first value decodes is remembered as good, per process
//!   (a global set of `TypeId`s behind a small per-thread cache), so every
//!   later send of it costs a thread-local look-up and nothing else;
//! - a value that does not decode is refused with an error naming the cause
//!   and the fix, and nothing is remembered: the next value is checked
//!   again (a refused send is the cold path).
//!
//! Why not a self-describing encoding chosen per type: the receiver would
//! have to learn the choice from the bytes, which costs every message of
//! every type a format mark for the benefit of a few types; a clear error at
//! the sender with the fix is the cheaper contract.
//!
//! Limits, documented where the error can surface: the verdict is the first
//! value's, so a type whose first value does not reach the failing part (an
//! `Option<Untagged>` sent as `None` first, a skipped field present in the
//! first value) still fails at the receiver, where [`decode`](super::decode)
//! names the same cause; values with handles are not checked (decoding them
//! would take the descriptors); and the first value of each type is decoded
//! once in the sender and dropped, so a `Deserialize` with side effects runs
//! once more there (this crate's own such types, which attach shared memory
//! by name, call [`skip_in_probe`] and are not checked).

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::Mutex;

use serde::de::DeserializeOwned;

use super::EncodeError;

/// How many good types each thread remembers before asking the global set.
const LOCAL: usize = 16;

thread_local! {
    static GOOD_HERE: RefCell<Vec<TypeId>> = const { RefCell::new(Vec::new()) };
    /// Set while [`check`] decodes, for [`skip_in_probe`].
    static PROBING: Cell<bool> = const { Cell::new(false) };
    /// Set by [`skip_in_probe`] when a type declined the check.
    static SKIPPED: Cell<bool> = const { Cell::new(false) };
}

static GOOD: Mutex<Option<HashSet<TypeId>>> = Mutex::new(None);

/// Checks that `bytes`, the plain encoding (no handles) of a `T` just
/// made, decode as a `T`; see the module's doc. Costs a thread-local
/// look-up once `T` has been checked.
#[inline]
pub(crate) fn check<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<(), EncodeError> {
    let id = TypeId::of::<T>();
    if GOOD_HERE.with(|g| g.borrow().contains(&id)) {
        return Ok(());
    }
    check_slow::<T>(id, bytes)
}

/// [`check`] for a value of another type `V` whose encoding is a `T`'s
/// (a process's or a task's arguments, encoded as given and decoded as the
/// target's parameter tuple): encodes `value` only while `T` is unchecked.
/// A value that does not encode plainly (an error, a handle) is left to the
/// encode that follows, which reports it.
#[inline]
pub(crate) fn check_as<T: DeserializeOwned + 'static, V: serde::Serialize + ?Sized>(
    value: &V,
) -> Result<(), EncodeError> {
    let id = TypeId::of::<T>();
    if GOOD_HERE.with(|g| g.borrow().contains(&id)) {
        return Ok(());
    }
    let mut bytes = Vec::new();
    if !super::encode_plain_into(value, &mut bytes) {
        return Ok(());
    }
    check_slow::<T>(id, &bytes)
}

#[cold]
fn check_slow<T: DeserializeOwned + 'static>(id: TypeId, bytes: &[u8]) -> Result<(), EncodeError> {
    let known = GOOD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|set| set.contains(&id));
    if !known {
        PROBING.set(true);
        SKIPPED.set(false);
        let result = postcard::take_from_bytes::<T>(bytes);
        PROBING.set(false);
        let skipped = SKIPPED.replace(false);
        super::table::HANDLE_ERROR.with(|h| h.borrow_mut().take());
        match result {
            Ok((_, [])) => {}
            _ if skipped => {}
            Ok((_, rest)) => {
                return Err(refusal::<T>(&format!("{} bytes left over", rest.len())));
            }
            Err(e) => return Err(refusal::<T>(&e.to_string())),
        }
        GOOD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(id);
    }
    GOOD_HERE.with(|g| {
        let mut g = g.borrow_mut();
        if g.len() == LOCAL {
            g.remove(0);
        }
        g.push(id);
    });
    Ok(())
}

/// The error of a value that does not decode as its own type.
fn refusal<T>(postcard_says: &str) -> EncodeError {
    EncodeError::Serialize(format!(
        "a {} would not decode in the receiving process ({}): {}",
        std::any::type_name::<T>(),
        postcard_says,
        cause(postcard_says)
    ))
}

/// postcard's text for `deserialize_any`.
pub(super) const WONT_IMPLEMENT: &str = "This is a feature that PostCard will never implement";

/// What makes a value not decode as its own type, and the fix.
pub(super) fn cause(postcard_says: &str) -> &'static str {
    if postcard_says.contains(WONT_IMPLEMENT) {
        "its Deserialize needs a self-describing format (serde's deserialize_any), which \
         #[serde(untagged)], internally tagged enums (#[serde(tag = \"...\")]), \
         #[serde(flatten)] and serde_json::Value-like fields ask for, and multiprocess's \
         encoding (postcard) is not self-describing; use serde's default (externally \
         tagged) enums and plain fields, or send the value as bytes of a self-describing \
         format (e.g. serde_json::to_vec) in a Vec<u8>"
    } else {
        "its Serialize and Deserialize disagree; #[serde(skip_serializing_if)] does that \
         (the encoding has no field names, so a skipped field shifts the others): remove it \
         (#[serde(default)] alone is fine)"
    }
}

/// For a `Deserialize` with side effects (attaching shared memory by
/// name): an error while [`check`] decodes, which then counts the type as
/// good without running those effects in the sender.
pub(crate) fn skip_in_probe<E: serde::de::Error>() -> Result<(), E> {
    if PROBING.get() {
        SKIPPED.set(true);
        return Err(E::custom("not checked in the sender"));
    }
    Ok(())
}
