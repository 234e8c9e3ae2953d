//! The atomic types of shared-memory words, swappable for loom's model.
//!
//! A normal build re-exports `std::sync::atomic` unchanged, so the words are
//! plain atomics in the mapping and nothing costs more. A `--cfg loom` build
//! (`scripts/loom.sh`) re-exports loom's atomics instead, so loom explores
//! every interleaving and weak-memory outcome of the *same* algorithm code
//! with threads standing in for processes; there `AtomicU32` also carries
//! the futex wait queue of its word, and `SeqCst` accesses are fenced
//! (see [`model`](super::model)).
//!
//! Every word that lives in a [`SharedRegion`](super::shm::SharedRegion) is
//! named through this module; process-local atomics (statistics, hints,
//! test hooks) stay `std` ones.

#[cfg(loom)]
pub(crate) use super::model::{AtomicU32, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};
