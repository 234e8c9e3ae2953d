//! [`Semaphore`] and [`BoundedSemaphore`]: Python's counting semaphores.
//!
//! # Shared memory
//!
//! | offset | field      | meaning                                                |
//! |--------|------------|--------------------------------------------------------|
//! | 0      | magic      | `mpSema01`                                             |
//! | 8      | `count`    | permits available (the futex word)                     |
//! | 12     | `sleepers` | how many callers may be in a futex wait (a hint)        |
//! | 16     | `bound`    | the initial value for a bounded semaphore, else `u32::MAX` |
//! | 64 + 8·i | holder `i`: `id` | the liveness id of a process holding guarded permits (0: free, `u32::MAX`: being reclaimed) |
//! | 68 + 8·i | holder `i`: `held` | how many guarded permits it holds          |
//!
//! # Transitions
//! - acquire: CAS `count → count - 1` while `count > 0` (one atomic
//!   uncontended); else spin a few µs, then `sleepers += 1`, re-check, and
//!   futex-wait while `count == 0`, then `sleepers -= 1`.
//! - release: CAS `count → count + 1` (refused at `bound`); if `sleepers > 0`,
//!   wake one sleeper. `count` and `sleepers` use `SeqCst`, so either the
//!   releaser sees the sleeper or the sleeper sees the new permit.
//!
//! - guards: a permit taken through a guard is also counted in the
//!   process's holder slot (`held += 1` after the decrement; `held -= 1`
//!   before the guard's release). [`SemaphoreGuard::forget`] un-counts it:
//!   the permit then belongs to nobody, as in Python, and a plain `release`
//!   from any process returns one. The slot index is cached per handle, so
//!   this is one more atomic on each side.
//! - recovery: a blocking acquire that has slept [`park::SLICE`] without a permit
//!   probes the liveness ids of the holder slots; for a dead one it CASes `id` to
//!   `u32::MAX` (one winner), swaps `held` to 0, frees the slot and adds the
//!   permits back to `count` (never above `bound`), waking sleepers.
//!
//! # Crash behaviour
//! Each operation is an atomic on `count`, so a process that dies leaves a
//! valid state. A sleeper that dies leaves `sleepers` one too high, which
//! only costs later releases a needless `FUTEX_WAKE`.
//!
//! Permits a dead process held **through guards** are returned to the
//! semaphore within about [`park::SLICE`] (100 ms) once someone waits for one —
//! Python loses them. Permits taken with `forget` (or the plain Python
//! pattern of acquire here, release elsewhere) are not tracked and are lost
//! with their holder, as in Python. A process that dies in the instant
//! between the decrement and its slot update (or the reverse on release)
//! loses that one permit; the count is never raised above what was taken.
//! Only [`HOLDERS`] processes are tracked at once; permits of further
//! processes are untracked.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::park::my_id;
use super::park::{self, Poll, SleepOn, Spin, Wait, owner_alive};
use super::raw_lock::SPIN_BUDGET;
use super::shared::{self, shared_handle};
use crate::deadline;
use crate::sys::atomic::AtomicU32;
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

const MAGIC: u64 = u64::from_le_bytes(*b"mpSema01");
const COUNT: usize = 8;
const SLEEPERS: usize = 12;
const BOUND: usize = 16;
const HOLDERS_AT: usize = 64;
const HOLDER_LEN: usize = 8;
const LEN: usize = 512;
/// How many processes' guarded permits are tracked at once.
const HOLDERS: usize = (LEN - HOLDERS_AT) / HOLDER_LEN;
const RECLAIMING: u32 = u32::MAX;
/// `slot_hint` of a handle whose process found the holder table full.
const NO_SLOT: usize = usize::MAX;
/// A blocked acquire spins like the lock, then sleeps in [`park::SLICE`]s,
/// returning dead holders' permits after each.
const WAIT: park::Policy<'static> = park::Policy {
    spin: Spin::Backoff(SPIN_BUDGET),
    slice: Some(park::SLICE),
    probe_at_deadline: false,
    what: "semaphore word",
};

/// A semaphore released above its initial value (Python's `ValueError:
/// Semaphore released too many times`).
///
/// # Examples
///
/// ```
/// use multiprocess::{BoundedSemaphore, OverReleaseError};
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(matches!(sem.release(), Err(OverReleaseError { .. })));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times")]
#[non_exhaustive]
pub struct OverReleaseError;

/// The shared counter behind both semaphore types.
#[derive(Clone)]
struct RawSemaphore {
    region: Arc<SharedRegion>,
    /// 1 + the index of this process's holder slot, as last found; 0 if
    /// not looked up yet; [`NO_SLOT`] if the table was full.
    slot_hint: Arc<AtomicUsize>,
}

impl RawSemaphore {
    fn new(value: u32, bound: u32) -> io::Result<Self> {
        let region = shared::create("multiprocess-semaphore", LEN, MAGIC)?;
        region.atomic_u32(BOUND).store(bound, Ordering::Relaxed);
        region.atomic_u32(COUNT).store(value, Ordering::Release);
        Ok(RawSemaphore {
            region,
            slot_hint: Arc::default(),
        })
    }

    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Ok(RawSemaphore {
            region: shared::open(fd, LEN, MAGIC, "Semaphore")?,
            slot_hint: Arc::default(),
        })
    }

    fn holder_pid(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(HOLDERS_AT + i * HOLDER_LEN)
    }

    fn holder_held(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(HOLDERS_AT + i * HOLDER_LEN + 4)
    }

    /// This process's holder slot, claimed if need be; `None` if all are
    /// taken by other processes.
    fn my_slot(&self) -> Option<usize> {
        let me = my_id();
        let hint = self.slot_hint.load(Ordering::Relaxed);
        if hint == NO_SLOT {
            return None;
        }
        if hint > 0 && self.holder_pid(hint - 1).load(Ordering::Relaxed) == me {
            return Some(hint - 1);
        }
        let claim = || {
            (0..HOLDERS).find(|&i| {
                self.holder_pid(i)
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
        };
        let found = (0..HOLDERS)
            .find(|&i| self.holder_pid(i).load(Ordering::Relaxed) == me)
            .or_else(claim)
            .or_else(|| {
                // Full: slots of dead processes may be free to take.
                self.recover();
                claim()
            });
        let Some(found) = found else {
            // Untracked from now on, so a full table costs one scan per
            // handle rather than one per acquire.
            self.slot_hint.store(NO_SLOT, Ordering::Relaxed);
            return None;
        };
        self.slot_hint.store(found + 1, Ordering::Relaxed);
        Some(found)
    }

    /// Counts a guarded permit as held by this process.
    fn track(&self) {
        if let Some(i) = self.my_slot() {
            self.holder_held(i).fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Stops counting a guarded permit (never below zero: a permit taken
    /// while the table was full was never counted).
    fn untrack(&self) {
        if let Some(i) = self.my_slot() {
            let _ = self
                .holder_held(i)
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |h| h.checked_sub(1));
        }
    }

    /// Returns the guarded permits of dead holders to the count.
    fn recover(&self) {
        let me = my_id();
        for i in 0..HOLDERS {
            let pid = self.holder_pid(i);
            let p = pid.load(Ordering::Relaxed);
            if p == 0 || p == RECLAIMING || p == me || owner_alive(p) {
                continue;
            }
            if pid
                .compare_exchange(p, RECLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let held = self.holder_held(i).swap(0, Ordering::AcqRel);
            pid.store(0, Ordering::Release);
            for _ in 0..held {
                if self.release().is_err() {
                    break;
                }
            }
        }
    }

    fn count(&self) -> &AtomicU32 {
        self.region.atomic_u32(COUNT)
    }

    fn bound(&self) -> u32 {
        self.region.atomic_u32(BOUND).load(Ordering::Relaxed)
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        let count = self.count();
        let mut v = count.load(Ordering::Relaxed);
        while v > 0 {
            match count.compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        let count = self.count();
        park::park(
            &WAIT,
            deadline,
            Wait {
                sleepers: Some(self.region.atomic_u32(SLEEPERS)),
                poll: |_| Poll::ready_if(self.try_acquire(), true),
                sleep: || {
                    (count.load(Ordering::SeqCst) == 0).then_some(SleepOn {
                        word: count,
                        expected: 0,
                    })
                },
                probe: || {
                    self.recover();
                    self.try_acquire().then_some(true)
                },
                timed_out: || Some(false),
            },
        )
    }

    fn release(&self) -> Result<(), OverReleaseError> {
        let count = self.count();
        let bound = self.bound();
        let mut v = count.load(Ordering::Relaxed);
        loop {
            if v >= bound {
                return Err(OverReleaseError);
            }
            match count.compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.region.atomic_u32(SLEEPERS).load(Ordering::SeqCst) > 0 {
            futex::wake(count, 1);
        }
        Ok(())
    }

    fn value(&self) -> u32 {
        self.count().load(Ordering::Relaxed)
    }
}

/// A counting semaphore shared by processes, like Python's
/// `multiprocessing.Semaphore`.
///
/// It holds a count of permits in shared memory; [`acquire`](Semaphore::acquire)
/// takes one (waiting while there are none) and returns a guard that gives it
/// back when dropped. [`release`](Semaphore::release) adds a permit without a
/// guard, and may raise the count above its initial value, as in Python.
/// Clones, and copies sent to children, are the same semaphore.
///
/// # Examples
///
/// ```
/// use multiprocess::Semaphore;
///
/// let sem = Semaphore::new(2)?;
/// let a = sem.acquire();
/// let b = sem.acquire();
/// assert!(sem.try_acquire().is_none());
/// drop(a);
/// assert_eq!(sem.value(), 1);
/// # drop(b);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
/// Permits that a process holds through guards when it dies are returned
/// within about 100 ms to a blocked [`acquire`](Semaphore::acquire) or
/// [`acquire_timeout`](Semaphore::acquire_timeout) (Python loses them);
/// permits taken with [`SemaphoreGuard::forget`] belong to nobody and are
/// lost with their holder, as in Python. Up to 56 processes are tracked at
/// once. [`try_acquire`](Semaphore::try_acquire) never probes, so it stays
/// one atomic.
#[derive(Clone)]
pub struct Semaphore {
    raw: RawSemaphore,
    region: Arc<SharedRegion>,
}

/// A semaphore that refuses to be released above its initial value, like
/// Python's `multiprocessing.BoundedSemaphore`.
///
/// # Examples
///
/// ```
/// use multiprocess::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire().forget(); // take a permit without a guard
/// sem.release()?;
/// assert!(sem.release().is_err()); // above the initial value
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Caveats
/// As for [`Semaphore`]: guarded permits of a process that dies come back
/// within about 100 ms to a blocked acquirer; forgotten ones are lost.
#[derive(Clone)]
pub struct BoundedSemaphore {
    raw: RawSemaphore,
    region: Arc<SharedRegion>,
}

/// Proof that a semaphore permit is held; gives it back when dropped.
///
/// # Examples
///
/// ```
/// let sem = multiprocess::Semaphore::new(1)?;
/// {
///     let _permit = sem.acquire();
///     assert_eq!(sem.value(), 0);
/// }
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    raw: &'a RawSemaphore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken: nothing is released when the guard goes away
    /// (Python's `acquire()` without a matching `release()`; a later
    /// `release()` gives the permit back).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = multiprocess::Semaphore::new(1)?;
    /// sem.acquire().forget();
    /// assert_eq!(sem.value(), 0);
    /// sem.release();
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn forget(self) {
        self.raw.untrack();
        std::mem::forget(self);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.raw.untrack();
        // Only fails if someone over-released a bounded semaphore meanwhile;
        // the count is then at its bound already.
        let _ = self.raw.release();
    }
}

/// The methods both semaphore types share.
macro_rules! semaphore_common {
    ($ty:ident) => {
        impl $ty {
            fn from_fd(fd: OwnedFd) -> io::Result<Self> {
                let raw = RawSemaphore::from_fd(fd)?;
                Ok($ty {
                    region: raw.region.clone(),
                    raw,
                })
            }

            /// Takes a permit, waiting while there is none (Python's
            /// `acquire()`); the guard gives it back when dropped.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = multiprocess::", stringify!($ty), "::new(1)?;")]
            /// let permit = sem.acquire();
            /// drop(permit);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            ///
            /// # Caveats
            /// Waits forever if no permit is ever released; use
            /// `acquire_timeout` to bound the wait.
            pub fn acquire(&self) -> SemaphoreGuard<'_> {
                self.raw.acquire(None);
                self.guard()
            }

            fn guard(&self) -> SemaphoreGuard<'_> {
                self.raw.track();
                SemaphoreGuard { raw: &self.raw }
            }

            /// Takes a permit if one is available, else returns `None` at once
            /// (Python's `acquire(False)`).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = multiprocess::", stringify!($ty), "::new(1)?;")]
            /// let _p = sem.try_acquire().expect("one permit");
            /// assert!(sem.try_acquire().is_none());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
                self.raw.try_acquire().then(|| self.guard())
            }

            /// Waits at most `timeout` for a permit (Python's
            /// `acquire(timeout=t)`); `None` if none came.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let sem = multiprocess::", stringify!($ty), "::new(0)?;")]
            /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_none());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
                self.raw
                    .acquire(deadline::after(timeout))
                    .then(|| self.guard())
            }

            /// The number of permits available now (Python's `get_value()`);
            /// a snapshot.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = multiprocess::", stringify!($ty), "::new(3)?;")]
            /// assert_eq!(sem.value(), 3);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn value(&self) -> u32 {
                self.raw.value()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("value", &self.value())
                    .finish()
            }
        }

        shared_handle!($ty, "Semaphore");
    };
}

semaphore_common!(Semaphore);
semaphore_common!(BoundedSemaphore);

impl Semaphore {
    /// Creates a semaphore with `value` permits (Python's `Semaphore(value)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = multiprocess::Semaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new(value: u32) -> io::Result<Semaphore> {
        let raw = RawSemaphore::new(value, u32::MAX)?;
        Ok(Semaphore {
            region: raw.region.clone(),
            raw,
        })
    }

    /// Adds a permit without a guard (Python's `release()`); the count may
    /// rise above its initial value.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = multiprocess::Semaphore::new(0)?;
    /// sem.release();
    /// sem.release();
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If the count would exceed `u32::MAX - 1`.
    pub fn release(&self) {
        self.raw
            .release()
            .expect("semaphore count overflow (u32::MAX permits)");
    }
}

impl BoundedSemaphore {
    /// Creates a bounded semaphore with `value` permits, which is also its
    /// ceiling (Python's `BoundedSemaphore(value)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = multiprocess::BoundedSemaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new(value: u32) -> io::Result<BoundedSemaphore> {
        let raw = RawSemaphore::new(value, value)?;
        Ok(BoundedSemaphore {
            region: raw.region.clone(),
            raw,
        })
    }

    /// Adds a permit without a guard (Python's `release()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = multiprocess::BoundedSemaphore::new(1)?;
    /// sem.acquire().forget();
    /// assert_eq!(sem.release(), Ok(()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`OverReleaseError`] if the count is already at its initial value.
    pub fn release(&self) -> Result<(), OverReleaseError> {
        self.raw.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounds() {
        let s = Semaphore::new(2).unwrap();
        let a = s.acquire();
        let b = s.acquire();
        assert!(s.try_acquire().is_none());
        drop((a, b));
        s.release();
        s.release();
        assert_eq!(s.value(), 4);
        let b = BoundedSemaphore::new(2).unwrap();
        assert_eq!(b.release(), Err(OverReleaseError));
        b.acquire().forget();
        assert_eq!(b.release(), Ok(()));
        assert_eq!(b.value(), 2);
    }

    #[test]
    fn timeout_and_wake() {
        let s = Semaphore::new(0).unwrap();
        let t = Instant::now();
        assert!(s.acquire_timeout(Duration::from_millis(100)).is_none());
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(95) && e < Duration::from_secs(2),
            "{e:?}"
        );
        let s2 = s.clone();
        let h = std::thread::spawn(move || {
            s2.acquire_timeout(Duration::from_secs(10))
                .map(SemaphoreGuard::forget)
                .is_some()
        });
        std::thread::sleep(Duration::from_millis(50));
        s.release();
        assert!(h.join().unwrap());
        assert_eq!(s.value(), 0);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn guarded_permits_of_a_dead_holder_come_back() {
        let s = Semaphore::new(3).unwrap();
        let kept = s.acquire();
        s.acquire().forget(); // untracked: stays lost
        assert_eq!(s.raw.holder_held(0).load(Ordering::Relaxed), 1);
        // Plant a dead holder of the last permit.
        assert!(s.raw.try_acquire());
        s.raw
            .holder_pid(1)
            .store(crate::sync::raw_lock::tests::dead_id(), Ordering::Relaxed);
        s.raw.holder_held(1).store(1, Ordering::Relaxed);
        let t = Instant::now();
        let g = s
            .acquire_timeout(Duration::from_secs(5))
            .expect("recovered");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(s.raw.holder_pid(1).load(Ordering::Relaxed), 0);
        drop((g, kept));
        assert_eq!(s.value(), 2, "the forgotten permit stays taken");
        assert_eq!(s.raw.holder_held(0).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_holder_table_leaves_permits_untracked() {
        let s = Semaphore::new(2).unwrap();
        for i in 0..HOLDERS {
            s.raw
                .holder_pid(i)
                .store(crate::sys::liveness::live_id(), Ordering::Relaxed);
        }
        let g = s.acquire();
        assert_eq!(s.raw.slot_hint.load(Ordering::Relaxed), NO_SLOT);
        assert_eq!(s.value(), 1);
        drop(g);
        assert_eq!(s.value(), 2);
        assert!((0..HOLDERS).all(|i| s.raw.holder_held(i).load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn many_threads_never_exceed_the_count() {
        let s = Semaphore::new(3).unwrap();
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let (s, inside) = (s.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _g = s.acquire_timeout(Duration::from_secs(20)).expect("wedged");
                        assert!(inside.fetch_add(1, Ordering::SeqCst) < 3);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.value(), 3);
    }
}

/// Loom models of the semaphore count (`scripts/loom.sh`): the real
/// [`RawSemaphore`] with threads as processes (see `sys/model.rs`).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sync::raw_lock::loom_models::Guarded;
    use crate::sys::model;

    /// A binary semaphore excludes: the protected count is never lost, the
    /// value never exceeds its bound (a decrement below zero would wrap to
    /// `u32::MAX`) and is 0 while a permit is out; every release wakes a
    /// sleeper (else loom reports a deadlock).
    #[test]
    fn permits_exclude_and_never_go_negative() {
        model::check(2, || {
            let sem = RawSemaphore::new(1, u32::MAX).unwrap();
            let g = Guarded::new();
            let enter = |sem: &RawSemaphore, g: &Guarded| {
                assert!(sem.acquire(None));
                assert_eq!(sem.value(), 0);
                g.bump();
                sem.release().unwrap();
                assert!(sem.value() <= 1);
            };
            let ts: Vec<_> = [2, 3]
                .into_iter()
                .map(|pid| {
                    let (sem, g) = (sem.clone(), g.clone());
                    model::spawn(pid, move || enter(&sem, &g))
                })
                .collect();
            enter(&sem, &g);
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(g.count(), 3);
            assert_eq!(sem.value(), 1);
        });
    }

    /// Two sleepers and two releases of one permit each: each release's
    /// single wake must reach a sleeper, so both return.
    #[test]
    fn each_release_wakes_a_sleeper() {
        model::check(3, || {
            let sem = RawSemaphore::new(0, u32::MAX).unwrap();
            let ts: Vec<_> = [2, 3]
                .into_iter()
                .map(|pid| {
                    let sem = sem.clone();
                    model::spawn(pid, move || assert!(sem.acquire(None)))
                })
                .collect();
            sem.release().unwrap();
            sem.release().unwrap();
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(sem.value(), 0);
        });
    }

    /// A bounded semaphore refuses the release past its bound, racing or
    /// not.
    #[test]
    fn bound_holds_under_racing_releases() {
        model::check(3, || {
            let sem = RawSemaphore::new(1, 2).unwrap();
            let t = {
                let sem = sem.clone();
                model::spawn(2, move || sem.release().is_ok())
            };
            let mine = sem.release().is_ok();
            let theirs = t.join().unwrap();
            assert!(mine != theirs, "exactly one release fits");
            assert_eq!(sem.value(), 2);
        });
    }
}
