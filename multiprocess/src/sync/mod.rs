//! Synchronisation primitives shared between processes.
//!
//! Every primitive is a word (or a few) in a small shared-memory region,
//! driven by the raw lock in [`raw_lock`]: one CAS to take it uncontended, one
//! swap to release it, a brief spin and then a shared futex when contended,
//! and a liveness probe of the owner's pid so a holder that dies never wedges
//! the others (see the state table in `raw_lock.rs`). [`Lock`] is the public
//! guard-returning API on top; [`RLock`], [`Semaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] follow the same pattern, each file opening
//! with its shared-memory layout and crash behaviour.

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod raw_lock;
mod rlock;
mod semaphore;
mod shared;

pub use barrier::{
    Barrier, BarrierBuilder, BarrierTimeoutError, BrokenBarrierError,
    MAX_PARTIES as BARRIER_MAX_PARTIES,
};
pub use condition::{Condition, ConditionGuard, SLOTS as CONDITION_SLOTS};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, OverReleaseError, Semaphore, SemaphoreGuard};
