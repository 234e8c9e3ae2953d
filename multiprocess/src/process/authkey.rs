//! The process tree's authentication key: Python's
//! `current_process().authkey`.
//!
//! 32 random bytes, made by the first process of the tree on first use
//! (Python makes them at import, from `os.urandom`), and inherited by every
//! child it starts: a `Fork` child shares the memory, a `Spawn` or
//! `ForkServer` child gets the key in its `ChildSpec`, which travels over a
//! private socket. It authenticates data that any holder of a handle can
//! write but only the tree may choose, such as a barrier's action
//! (`sync/barrier.rs`).

use std::io;
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::sys;

/// Bytes in the key (as Python's `os.urandom(32)`).
pub(crate) const KEY_LEN: usize = 32;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The key, once made or inherited.
static KEY: Mutex<Option<[u8; KEY_LEN]>> = Mutex::new(None);

/// This process tree's key, made now if this process is the tree's first
/// and has not needed it yet.
///
/// # Errors
/// If the kernel's random source fails.
pub(crate) fn get() -> io::Result<[u8; KEY_LEN]> {
    let mut key = KEY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(key) = *key {
        return Ok(key);
    }
    let mut fresh = [0u8; KEY_LEN];
    sys::random::fill(&mut fresh)?;
    *key = Some(fresh);
    Ok(fresh)
}

/// Adopts the parent's key (a spawned or fork-server child, before it runs
/// its target).
pub(crate) fn inherit(parent: [u8; KEY_LEN]) {
    *KEY.lock().unwrap_or_else(|e| e.into_inner()) = Some(parent);
}

fn mac_of(key: &[u8; KEY_LEN], label: &[u8], words: &[u64]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&(label.len() as u64).to_le_bytes());
    mac.update(label);
    for w in words {
        mac.update(&w.to_le_bytes());
    }
    mac
}

/// HMAC-SHA256 under the tree's key of `label` (what the words mean) and
/// `words`.
///
/// # Errors
/// As [`get`].
pub(crate) fn sign(label: &[u8], words: &[u64]) -> io::Result<[u8; 32]> {
    Ok(mac_of(&get()?, label, words).finalize().into_bytes().into())
}

/// Whether `tag` is [`sign`]`(label, words)`, compared in constant time.
///
/// # Errors
/// As [`get`].
pub(crate) fn verify(label: &[u8], words: &[u64], tag: &[u8; 32]) -> io::Result<bool> {
    Ok(mac_of(&get()?, label, words).verify_slice(tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_for_its_label_and_words() {
        let tag = sign(b"test", &[1, 2, 3]).unwrap();
        assert!(verify(b"test", &[1, 2, 3], &tag).unwrap());
        assert!(!verify(b"test", &[1, 2, 4], &tag).unwrap());
        assert!(!verify(b"tesu", &[1, 2, 3], &tag).unwrap());
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!verify(b"test", &[1, 2, 3], &bad).unwrap());
        assert_eq!(get().unwrap(), get().unwrap());
    }
}
