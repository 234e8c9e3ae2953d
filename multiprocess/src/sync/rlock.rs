//! [`RLock`]: Python's `multiprocessing.RLock`, reentrant per thread and
//! robust against owner death.
//!
//! # Shared memory
//!
//! | offset | field   | meaning                                                    |
//! |--------|---------|------------------------------------------------------------|
//! | 0      | magic   | `mpRLock1`                                                 |
//! | 8      | `word`  | a raw lock word (`raw_lock.rs`): owner pid + waiters bit    |
//! | 12     | `tid`   | the owning thread's kernel id; 0 while free                |
//! | 16     | `count` | recursion depth of the owner                               |
//!
//! `tid` and `count` are written only by the owner while it holds `word`.
//! A thread owns the lock iff `word`'s pid is its process's and `tid` is its
//! own: a sibling thread reads another tid, and a free lock has tid 0.
//!
//! # Crash behaviour
//! The word is the raw lock's, so a process that dies holding the lock (at
//! any depth) is detected within about 100 ms by the next acquirer, which
//! takes the lock over at depth 1 and is told
//! ([`RLockGuard::previous_owner_died`]). A *thread* that exits while holding
//! the lock without dropping its guards (e.g. leaked with `mem::forget`)
//! leaves it held: its process is alive.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sys::atomic::AtomicU32;
use std::time::{Duration, Instant};

use super::park::my_id;
use super::raw_lock::{Acquired, RawLock};
use super::shared::{self, shared_handle};
use crate::deadline;
use crate::sys::pid::current_tid;
use crate::sys::shm::SharedRegion;

const MAGIC: u64 = u64::from_le_bytes(*b"mpRLock1");
const WORD: usize = 8;
const TID: usize = 12;
const COUNT: usize = 16;
const LEN: usize = 64;

/// A reentrant lock shared by processes, like Python's
/// `multiprocessing.RLock`.
///
/// The thread that holds it may acquire it again; it is released when every
/// guard has been dropped. Ownership is per *thread of a process*: another
/// thread of the same process waits like another process does. Clones, and
/// copies sent to children, are the same lock.
///
/// If the process holding the lock dies, the next acquirer gets it within
/// about 100 ms and [`RLockGuard::previous_owner_died`] tells it so, as for
/// [`Lock`](crate::Lock).
///
/// # Examples
///
/// ```
/// use multiprocess::RLock;
///
/// let lock = RLock::new()?;
/// let a = lock.acquire();
/// let b = lock.acquire(); // same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(b);
/// assert!(lock.is_locked());
/// drop(a);
/// assert!(!lock.is_locked());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
/// Python raises on releasing an RLock more times than it was acquired;
/// here a release is the drop of a guard, so that cannot be written. Guards
/// are not `Send`: a guard must be dropped by the thread that owns the lock.
#[derive(Clone)]
pub struct RLock {
    region: Arc<SharedRegion>,
}

impl RLock {
    /// Creates a new, unlocked reentrant lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new() -> io::Result<RLock> {
        Ok(RLock {
            region: shared::create("multiprocess-rlock", LEN, MAGIC)?,
        })
    }

    fn from_fd(fd: OwnedFd) -> io::Result<RLock> {
        Ok(RLock {
            region: shared::open(fd, LEN, MAGIC, "RLock")?,
        })
    }

    fn raw(&self) -> RawLock<'_> {
        RawLock::new(self.region.atomic_u32(WORD))
    }

    fn tid(&self) -> &AtomicU32 {
        self.region.atomic_u32(TID)
    }

    fn count(&self) -> &AtomicU32 {
        self.region.atomic_u32(COUNT)
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.raw().owner() == Some(my_id()) && self.tid().load(Ordering::Relaxed) == current_tid()
    }

    /// Takes one more level if this thread holds the lock, else acquires it
    /// at `depth` levels; `None` on timeout.
    fn enter(&self, depth: u32, deadline: Option<Instant>, try_only: bool) -> Option<Acquired> {
        // A free lock is taken with one CAS, before the ownership check: a
        // read of the word first would cost a second cache-line transfer
        // when two processes take turns (5x on `lock/counter_2proc`). If
        // this thread holds it, the CAS fails and the check below finds it.
        if self.raw().try_lock() {
            self.tid().store(current_tid(), Ordering::Relaxed);
            self.count().store(depth, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        if self.held_by_me() {
            let c = self.count();
            c.store(c.load(Ordering::Relaxed) + depth, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let how = if try_only {
            self.raw().try_lock_or_recover()?
        } else {
            self.raw().lock(deadline)?
        };
        self.tid().store(current_tid(), Ordering::Relaxed);
        self.count().store(depth, Ordering::Relaxed);
        Some(how)
    }

    /// Drops one level; releases the lock at depth 0.
    fn exit(&self) {
        let c = self.count();
        let n = c.load(Ordering::Relaxed).saturating_sub(1);
        c.store(n, Ordering::Relaxed);
        if n == 0 {
            self.tid().store(0, Ordering::Relaxed);
            self.raw().unlock();
        }
    }

    /// Releases every level this thread holds, returning the depth (for
    /// `Condition::wait`).
    pub(crate) fn release_save(&self) -> u32 {
        let depth = self.count().swap(0, Ordering::Relaxed);
        self.tid().store(0, Ordering::Relaxed);
        self.raw().unlock();
        depth
    }

    /// Re-acquires the lock at `depth` levels after [`release_save`](Self::release_save).
    pub(crate) fn acquire_restore(&self, depth: u32) -> Acquired {
        self.enter(depth.max(1), None, false)
            .unwrap_or(Acquired::Clean)
    }

    /// Releases one level (a guard's drop, for `Condition`).
    pub(crate) fn release_one(&self) {
        self.exit();
    }

    /// Acquires one level for a `Condition` guard.
    pub(crate) fn enter_one(&self, deadline: Option<Instant>, try_only: bool) -> Option<Acquired> {
        self.enter(1, deadline, try_only)
    }

    fn guard(&self, how: Acquired) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock, or one more level of it if this thread holds it
    /// (Python's `acquire()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// let _outer = lock.acquire();
    /// let _inner = lock.acquire();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Caveats
    /// Waits forever if another live thread or process holds the lock
    /// forever; use [`acquire_timeout`](RLock::acquire_timeout) to bound the wait.
    pub fn acquire(&self) -> RLockGuard<'_> {
        let how = self.enter(1, None, false).unwrap_or(Acquired::Clean);
        self.guard(how)
    }

    /// Acquires the lock if this thread holds it, it is free, or its holder
    /// died; otherwise `None` at once (Python's `acquire(False)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// let a = lock.try_acquire().expect("free");
    /// let b = lock.try_acquire().expect("reentrant");
    /// # drop((b, a));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Option<RLockGuard<'_>> {
        self.enter(1, None, true).map(|how| self.guard(how))
    }

    /// Waits at most `timeout` for the lock (Python's `acquire(timeout=t)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiprocess::RLock::new()?;
    /// let g = lock.acquire_timeout(Duration::from_millis(10));
    /// assert!(g.is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_>> {
        self.enter(1, deadline::after(timeout), false)
            .map(|how| self.guard(how))
    }

    /// Whether some thread of some process holds the lock (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// let _g = lock.acquire();
    /// assert!(lock.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// How many guards the calling thread holds (0 if it does not hold the
    /// lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// assert_eq!(lock.depth(), 0);
    /// let _g = lock.acquire();
    /// assert_eq!(lock.depth(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn depth(&self) -> u32 {
        if self.held_by_me() {
            self.count().load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RLock");
        match self.raw().owner() {
            Some(pid) => d
                .field("owner_id", &pid)
                .field("owner_tid", &self.tid().load(Ordering::Relaxed))
                .field("count", &self.count().load(Ordering::Relaxed)),
            None => d.field("owner_id", &format_args!("none")),
        };
        d.finish()
    }
}

shared_handle!(RLock, "RLock");

/// Proof that the calling thread holds one level of an [`RLock`]; releases
/// that level when dropped.
///
/// # Examples
///
/// ```
/// let lock = multiprocess::RLock::new()?;
/// let guard = lock.acquire();
/// assert!(!guard.previous_owner_died());
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    owner_died: bool,
    /// Released by the owning thread only.
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Whether this acquisition took the lock over from a process that died
    /// while holding it, so the protected state may be inconsistent.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// assert!(!lock.acquire().previous_owner_died());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("previous_owner_died", &self.owner_died)
            .finish()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.exit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::raw_lock::tests::dead_id;

    #[test]
    fn reentrant_three_times() {
        let l = RLock::new().unwrap();
        let a = l.acquire();
        let b = l.acquire();
        let c = l.try_acquire().unwrap();
        assert_eq!(l.depth(), 3);
        drop(c);
        drop(b);
        assert!(l.is_locked());
        drop(a);
        assert!(!l.is_locked());
    }

    #[test]
    fn another_thread_waits() {
        let l = RLock::new().unwrap();
        let g = l.acquire();
        let l2 = l.clone();
        let h = std::thread::spawn(move || {
            assert!(l2.try_acquire().is_none());
            assert!(l2.acquire_timeout(Duration::from_millis(50)).is_none());
            l2.acquire_timeout(Duration::from_secs(10)).is_some()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(g);
        assert!(h.join().unwrap());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_owner_is_taken_over_at_depth_one() {
        let l = RLock::new().unwrap();
        l.raw().force_word(dead_id());
        l.tid().store(12345, Ordering::Relaxed);
        l.count().store(7, Ordering::Relaxed);
        let g = l.acquire_timeout(Duration::from_secs(5)).unwrap();
        assert!(g.previous_owner_died());
        assert_eq!(l.depth(), 1);
        drop(g);
        assert!(!l.is_locked());
    }
}
