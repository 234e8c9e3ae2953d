//! Synchronisation primitives shared between processes.
//!
//! Every primitive is a word (or a few) in a small shared-memory region,
//! driven by the raw lock in [`raw_lock`]: one CAS to take it uncontended, one
//! swap to release it, a brief spin and then a shared futex when contended,
//! and a liveness probe of the owner so a holder that dies never wedges
//! the others (see the state table in `raw_lock.rs`). Every blocking wait,
//! here and in the queue, goes through [`park`]: one loop for the spin, the
//! futex sleep in slices, the liveness probe ([`park::owner_alive`]) and the
//! deadline, with each primitive's tuned numbers as parameters. [`Lock`] is the public
//! guard-returning API on top; [`RLock`], [`Semaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] follow the same pattern, each file opening
//! with its shared-memory layout and crash behaviour.
//!
//! # Liveness
//!
//! Owners, holders, waiters and writers are recorded by their *liveness
//! id*, never by pid: an id is a byte of a shared file that its process
//! holds an open-file-description lock on, which the kernel drops when the
//! process dies (`sys/liveness.rs`). So the rule holds whatever the pids
//! say: **never take over from an owner that cannot be proven dead, never
//! keep waiting on one that is proven dead.** A holder in another pid
//! namespace (another container of a pod, `unshare -p`) is alive as long as
//! it runs; a dead holder whose pid a new process got is still dead. Each
//! process tree shares one domain of ids, and a handle sent to another tree
//! takes the domain with it, so both sides can judge each other. A process
//! that knows no domain at all cannot judge and waits (with the timeout
//! forms, it times out).
//!
//! # Where these differ from Python's (CPython's `_Test*` checks, LESSONS §10.4)
//!
//! | Python | here | why |
//! |---|---|---|
//! | releasing an unheld `Lock`/`RLock` raises | cannot be written: release is a guard's drop | the type system checks it |
//! | a holder that dies wedges `Lock`/`RLock` | taken over within ~100 ms, `previous_owner_died()` | liveness probe of the owner (an id the kernel frees at death) |
//! | `sem.acquire(False, t)` ignores `t` | `try_acquire()` has no timeout to ignore | one method per form |
//! | permits of a process that dies are lost | guarded permits come back within ~100 ms to a blocked acquirer; `forget`-ed ones are lost | per-process holder slots |
//! | `Semaphore.release()` has no ceiling | panics at `u32::MAX` permits | the count is a `u32` |
//! | `cond.notify()` without the lock raises | `notify` is a method of the lock's guard | the type system checks it |
//! | `notify(n)` returns `None` | returns how many it woke; FIFO order | callers can tell nobody waited |
//! | a killed `Condition` waiter can swallow a notify | skipped (liveness probed), slot reclaimed | one futex slot per waiter |
//! | `Condition` waiters unlimited | at most `CONDITION_SLOTS` (252) at once | one page of slots |
//! | `Event.wait()` returns `True` | returns `()`; `wait_timeout` returns the flag | `wait()` only returns when set |
//! | `Barrier(action=callable)` | a `fn()` item or non-capturing closure | other processes recreate it from its type |
//! | `wait(t)` timeout → `BrokenBarrierError` | `BarrierTimeoutError::Timeout` for the caller whose timeout broke it, `BrokenBarrier` for the others | the cause is kept |
//! | a killed `Barrier` participant hangs the rest | they get `BrokenBarrierError` within ~100 ms | arrivals' liveness probed |

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod park;
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
