//! The operating-system boundary: the only module where `unsafe` is allowed.
//!
//! Everything above `sys` speaks in `OwnedFd`/`BorrowedFd`, `Duration` and safe
//! types; every syscall is wrapped here once, on top of `rustix` where it has
//! the call and `libc` where it does not (fork, sigaction, `_exit`).
//! Linux is the first target; a macOS port provides the same names.
#![allow(unsafe_code)]

pub(crate) mod abstract_socket;
pub(crate) mod alloc;
pub(crate) mod atomic;
pub(crate) mod code;
#[cfg(test)]
pub(crate) mod count_alloc;
pub(crate) mod fd;
pub(crate) mod futex;
pub(crate) mod liveness;
#[cfg(loom)]
pub(crate) mod model;
pub(crate) mod pid;
pub(crate) mod process;
pub(crate) mod random;
pub(crate) mod sched;
pub(crate) mod shm;
pub(crate) mod shm_named;
pub(crate) mod signal;
pub(crate) mod socket;
