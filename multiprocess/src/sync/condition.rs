//! [`Condition`]: Python's `multiprocessing.Condition`, with one futex word
//! per waiter so a notify wakes exactly the waiters it counts.
//!
//! # Shared memory
//!
//! The condition's own region (the lock is a separate [`Lock`] or [`RLock`]):
//!
//! | offset          | field         | meaning                                       |
//! |-----------------|---------------|-----------------------------------------------|
//! | 0               | magic         | `mpCond01`                                    |
//! | 8               | `next_ticket` | arrival counter, for FIFO notification        |
//! | 64 + 16·i       | slot `i`: `id`  | the waiting process's liveness id (0: free) |
//! | 68 + 16·i       | slot `i`: `state` | `FREE`, `WAITING`, `NOTIFIED`, `ABANDONED` (futex word) |
//! | 72 + 16·i       | slot `i`: `ticket` | its arrival number                       |
//!
//! [`SLOTS`] slots fill the rest of one 4 KiB page.
//!
//! # Protocol
//! Slot tables and `next_ticket` change only under the condition's lock,
//! except a slot's `state`, which two parties race for with CAS:
//! - wait: (lock held) claim a `FREE` slot, `state = WAITING`, take a ticket;
//!   release the lock; futex-wait while `state == WAITING`. On timeout, CAS
//!   `WAITING → ABANDONED`; if the CAS loses, a notifier got there first and
//!   the wait counts as notified. Re-acquire the lock, free the slot.
//! - notify(n): (lock held) walk `WAITING` slots oldest first; a slot whose
//!   process is dead is freed and skipped; otherwise CAS `WAITING → NOTIFIED` and
//!   `FUTEX_WAKE` that slot's word, until `n` succeeded.
//!
//! So a waiter that timed out is never counted (its CAS to `ABANDONED` beat
//! the notifier's), and a waiter process that died is skipped.
//!
//! # Crash behaviour
//! - A waiter killed while waiting: its slot stays `WAITING` with a dead pid;
//!   the next notify probes the pid, frees the slot and notifies the next
//!   live waiter instead. A waiter that dies in the instant between the
//!   notifier's liveness probe and its CAS takes that notification with it
//!   (the window is a few µs; no futex-based design can close it without the
//!   kernel's help).
//! - A waiter killed after being notified, before it re-acquired the lock:
//!   the notification was delivered and is spent, as if the waiter had
//!   returned and then died.
//! - A process that dies holding the lock: the lock's own recovery applies;
//!   the next acquirer (a waiter returning from `wait`, or anyone) is told
//!   via [`ConditionGuard::previous_owner_died`].
//! - Slots left by dead processes in other states are reclaimed when a wait
//!   finds no free slot.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sys::atomic::AtomicU32;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::park::my_id;
use super::park::{self, Poll, SleepOn, Spin, Wait, owner_alive};
use super::raw_lock::Acquired;
use super::shared;
use super::{Lock, RLock};
use crate::deadline;
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

const MAGIC: u64 = u64::from_le_bytes(*b"mpCond01");
const NEXT_TICKET: usize = 8;
const SLOTS_AT: usize = 64;
const SLOT_LEN: usize = 16;
const LEN: usize = 4096;
/// How many processes (or threads) can wait on one condition at once.
///
/// # Examples
///
/// ```
/// assert_eq!(multiprocess::CONDITION_SLOTS, 252);
/// ```
pub const SLOTS: usize = (LEN - SLOTS_AT) / SLOT_LEN;

/// A waiter sleeps on its own slot until notified or its deadline: no spin
/// (a notify comes with the lock held, after the waiter released it) and
/// nothing to probe (the notifier probes the waiters).
const WAIT: park::Policy<'static> = park::Policy {
    spin: Spin::Never,
    slice: None,
    probe_at_deadline: false,
    what: "condition slot",
};

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
const ABANDONED: u32 = 3;

/// The lock a condition uses.
#[derive(Clone, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// The condition's own region, as a handle.
#[derive(Clone)]
struct Slots {
    region: Arc<SharedRegion>,
}

impl Slots {
    fn from_fd(fd: OwnedFd) -> io::Result<Slots> {
        Ok(Slots {
            region: shared::open(fd, LEN, MAGIC, "Condition")?,
        })
    }
    fn pid(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(SLOTS_AT + i * SLOT_LEN)
    }
    fn state(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(SLOTS_AT + i * SLOT_LEN + 4)
    }
    fn ticket(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(SLOTS_AT + i * SLOT_LEN + 8)
    }

    /// Claims a slot for the caller (lock held); `None` if all are in use by
    /// live processes.
    fn claim(&self) -> Option<usize> {
        let me = my_id();
        let free = (0..SLOTS)
            .find(|&i| self.pid(i).load(Ordering::Relaxed) == 0)
            .or_else(|| {
                (0..SLOTS).find(|&i| {
                    let pid = self.pid(i).load(Ordering::Relaxed);
                    pid != me && !owner_alive(pid)
                })
            })?;
        let t = self.region.atomic_u32(NEXT_TICKET);
        let ticket = t.load(Ordering::Relaxed);
        t.store(ticket.wrapping_add(1), Ordering::Relaxed);
        self.pid(free).store(me, Ordering::Relaxed);
        self.ticket(free).store(ticket, Ordering::Relaxed);
        self.state(free).store(WAITING, Ordering::Release);
        Some(free)
    }

    fn free(&self, i: usize) {
        self.state(i).store(FREE, Ordering::Relaxed);
        self.pid(i).store(0, Ordering::Relaxed);
    }

    /// Notifies up to `n` live waiters, oldest first (lock held).
    fn notify(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let next = self.region.atomic_u32(NEXT_TICKET).load(Ordering::Relaxed);
        let mut waiting: Vec<(u32, usize)> = (0..SLOTS)
            .filter(|&i| {
                self.pid(i).load(Ordering::Relaxed) != 0
                    && self.state(i).load(Ordering::Acquire) == WAITING
            })
            .map(|i| (next.wrapping_sub(self.ticket(i).load(Ordering::Relaxed)), i))
            .collect();
        // Oldest (largest age) first.
        waiting.sort_unstable_by_key(|w| std::cmp::Reverse(w.0));
        let me = my_id();
        let mut woken = 0;
        for (_, i) in waiting {
            if woken == n {
                break;
            }
            let pid = self.pid(i).load(Ordering::Relaxed);
            let state = self.state(i);
            if pid != me && !owner_alive(pid) {
                if state
                    .compare_exchange(WAITING, FREE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.pid(i).store(0, Ordering::Relaxed);
                }
                continue;
            }
            if state
                .compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                futex::wake(state, 1);
                woken += 1;
            }
        }
        woken
    }

    fn waiting(&self) -> usize {
        (0..SLOTS)
            .filter(|&i| self.state(i).load(Ordering::Relaxed) == WAITING)
            .count()
    }
}

impl Serialize for Slots {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::codec::serialize_fd(self.region.fd(), "Condition", serializer)
    }
}

impl<'de> Deserialize<'de> for Slots {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fd = crate::codec::deserialize_fd("Condition", deserializer)?;
        Slots::from_fd(fd).map_err(|e| crate::codec::handle_de_error(e.to_string()))
    }
}

/// A condition variable shared by processes, like Python's
/// `multiprocessing.Condition`: a lock plus a way to sleep until another
/// process says something changed.
///
/// [`acquire`](Condition::acquire) takes the lock and returns a
/// [`ConditionGuard`]; waiting and notifying are methods of the guard, so
/// they can only be called with the lock held (Python raises `RuntimeError`
/// otherwise). Clones, and copies sent to children, are the same condition
/// (and the same lock).
///
/// [`notify(n)`](ConditionGuard::notify) wakes exactly `n` current waiters,
/// oldest first (or all if fewer wait): waiters that already timed out are
/// not counted, and a waiter process that was killed is skipped, so it never
/// swallows a notification meant for a live one.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Condition, Process};
///
/// fn waiter(cond: Condition) {
///     let mut guard = cond.acquire();
///     guard.wait();
///     println!("notified");
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let cond = Condition::new()?;
///     let p = Process::new(waiter, (cond.clone(),));
///     p.start()?;
///     loop {
///         let guard = cond.acquire();
///         if guard.notify(1) == 1 {
///             break;
///         }
///         drop(guard);
///         std::thread::sleep(std::time::Duration::from_millis(10));
///     }
///     p.join()?;
///     Ok(())
/// }
/// ```
///
/// # Caveats
/// At most [`SLOTS`] threads (in all processes) can wait at once; one more
/// panics. See `sync/condition.rs` for the exact crash behaviour.
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    slots: Slots,
    lock: CondLock,
}

impl Condition {
    /// Creates a condition with its own new [`RLock`] (Python's
    /// `Condition()`, whose default lock is an `RLock`): the thread holding
    /// it may acquire it again, and [`wait`](ConditionGuard::wait) releases
    /// every level and restores them. [`with_lock`](Condition::with_lock)
    /// builds one on a plain [`Lock`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// let guard = cond.acquire();
    /// let nested = cond.acquire(); // reentrant: no deadlock
    /// assert_eq!(nested.notify_all(), 0);
    /// drop(nested);
    /// drop(guard);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If a memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new() -> io::Result<Condition> {
        Self::with_rlock(RLock::new()?)
    }

    /// Creates a condition that uses an existing [`Lock`] (Python's
    /// `Condition(lock)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// let cond = multiprocess::Condition::with_lock(lock.clone())?;
    /// let _g = cond.acquire();
    /// assert!(lock.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn with_lock(lock: Lock) -> io::Result<Condition> {
        Self::build(CondLock::Lock(lock))
    }

    /// Creates a condition that uses an existing [`RLock`]; `wait` releases
    /// every level the thread holds and restores them (Python's
    /// `Condition(RLock())`, its default).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::RLock::new()?;
    /// let cond = multiprocess::Condition::with_rlock(lock.clone())?;
    /// let _outer = lock.acquire();
    /// let _g = cond.acquire(); // reentrant
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn with_rlock(lock: RLock) -> io::Result<Condition> {
        Self::build(CondLock::RLock(lock))
    }

    fn build(lock: CondLock) -> io::Result<Condition> {
        Ok(Condition {
            slots: Slots {
                region: shared::create("multiprocess-condition", LEN, MAGIC)?,
            },
            lock,
        })
    }

    fn lock_raw(&self, deadline: Option<Instant>, try_only: bool) -> Option<Acquired> {
        match &self.lock {
            CondLock::Lock(l) => {
                if try_only {
                    l.raw().try_lock_or_recover()
                } else {
                    l.raw().lock(deadline)
                }
            }
            CondLock::RLock(l) => l.enter_one(deadline, try_only),
        }
    }

    fn guard(&self, how: Acquired) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        }
    }

    /// Takes the condition's lock (Python's `with cond:`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// let guard = cond.acquire();
    /// drop(guard); // releases the lock
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn acquire(&self) -> ConditionGuard<'_> {
        let how = self.lock_raw(None, false).unwrap_or(Acquired::Clean);
        self.guard(how)
    }

    /// Takes the lock if it is free (or its holder died), else `None` at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// assert!(cond.try_acquire().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Option<ConditionGuard<'_>> {
        self.lock_raw(None, true).map(|how| self.guard(how))
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiprocess::Condition::new()?;
    /// assert!(cond.acquire_timeout(Duration::from_millis(10)).is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<ConditionGuard<'_>> {
        self.lock_raw(deadline::after(timeout), false)
            .map(|how| self.guard(how))
    }

    /// How many threads are waiting now (a snapshot; may include waiters of
    /// processes that died and were not yet noticed).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// assert_eq!(cond.waiting(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waiting(&self) -> usize {
        self.slots.waiting()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// The condition's lock, held; waits and notifies happen through it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let cond = multiprocess::Condition::new()?;
/// let mut guard = cond.acquire();
/// assert!(!guard.wait_timeout(Duration::from_millis(10))); // nobody notifies
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    owner_died: bool,
    /// Released by the thread that acquired it.
    _not_send: PhantomData<*const ()>,
}

impl ConditionGuard<'_> {
    /// Whether the lock was (at the last acquisition or re-acquisition after
    /// a wait) taken over from a process that died holding it.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// assert!(!cond.acquire().previous_owner_died());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases the lock, sleeps until notified, and re-acquires the lock
    /// (Python's `wait()`, which then returns `True`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// let other = cond.clone();
    /// let t = std::thread::spawn(move || {
    ///     let mut guard = other.acquire();
    ///     guard.wait();
    /// });
    /// while cond.waiting() == 0 {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(cond.acquire().notify(1), 1);
    /// t.join().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If [`SLOTS`] threads are already waiting on this condition.
    ///
    /// # Caveats
    /// As in Python, a wait may end because of a notify meant for a state
    /// that has changed again since: check your predicate, or use
    /// [`wait_for`](ConditionGuard::wait_for).
    pub fn wait(&mut self) {
        self.wait_until(None);
    }

    /// As [`wait`](ConditionGuard::wait), giving up after `timeout`; returns
    /// whether it was notified (Python's `wait(timeout)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiprocess::Condition::new()?;
    /// let mut guard = cond.acquire();
    /// assert!(!guard.wait_timeout(Duration::from_millis(20)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If [`SLOTS`] threads are already waiting on this condition.
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.wait_until(deadline::after(timeout))
    }

    /// Waits until `pred()` holds, checking it first and after each wake-up
    /// (Python's `wait_for(predicate)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// let mut guard = cond.acquire();
    /// guard.wait_for(|| true); // already true: returns at once
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If [`SLOTS`] threads are already waiting on this condition.
    pub fn wait_for(&mut self, mut pred: impl FnMut() -> bool) {
        while !pred() {
            self.wait();
        }
    }

    /// As [`wait_for`](ConditionGuard::wait_for) for at most `timeout`;
    /// returns the predicate's last value (Python's
    /// `wait_for(predicate, timeout)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiprocess::Condition::new()?;
    /// let mut guard = cond.acquire();
    /// assert!(!guard.wait_for_timeout(Duration::from_millis(20), || false));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If [`SLOTS`] threads are already waiting on this condition.
    pub fn wait_for_timeout(&mut self, timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
        let deadline = deadline::after(timeout);
        loop {
            if pred() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.wait_until(deadline);
        }
    }

    /// Wakes up to `n` of the threads waiting now, oldest first; returns how
    /// many it woke (Python's `notify(n)`, which returns nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// assert_eq!(cond.acquire().notify(1), 0); // nobody waits
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> usize {
        self.cond.slots.notify(n)
    }

    /// Wakes every thread waiting now (Python's `notify_all()`); returns how
    /// many.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = multiprocess::Condition::new()?;
    /// assert_eq!(cond.acquire().notify_all(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn notify_all(&self) -> usize {
        self.cond.slots.notify(usize::MAX)
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> bool {
        let slots = &self.cond.slots;
        let Some(i) = slots.claim() else {
            panic!("more than {SLOTS} threads wait on one Condition");
        };
        // Release the lock completely.
        let saved = match &self.cond.lock {
            CondLock::Lock(l) => {
                l.raw().unlock();
                0
            }
            CondLock::RLock(l) => l.release_save(),
        };
        let state = slots.state(i);
        let notified = park::park(
            &WAIT,
            deadline,
            Wait {
                sleepers: None,
                poll: |_| match state.load(Ordering::Acquire) {
                    WAITING => Poll::Pending,
                    s => Poll::Ready(s == NOTIFIED),
                },
                sleep: || {
                    Some(SleepOn {
                        word: state,
                        expected: WAITING,
                    })
                },
                probe: || None,
                timed_out: || {
                    Some(
                        match state.compare_exchange(
                            WAITING,
                            ABANDONED,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => false,
                            Err(now) => now == NOTIFIED,
                        },
                    )
                },
            },
        );
        let how = match &self.cond.lock {
            CondLock::Lock(l) => l.raw().lock(None).unwrap_or(Acquired::Clean),
            CondLock::RLock(l) => l.acquire_restore(saved),
        };
        self.owner_died = how == Acquired::OwnerDied;
        slots.free(i);
        notified
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("previous_owner_died", &self.owner_died)
            .finish()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        match &self.cond.lock {
            CondLock::Lock(l) => l.raw().unlock(),
            CondLock::RLock(l) => l.release_one(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn spawn_waiter(cond: &Condition, timeout: Duration) -> std::thread::JoinHandle<bool> {
        let c = cond.clone();
        std::thread::spawn(move || c.acquire().wait_timeout(timeout))
    }

    fn wait_for_waiters(cond: &Condition, n: usize) {
        let end = Instant::now() + Duration::from_secs(10);
        while cond.waiting() < n {
            assert!(Instant::now() < end, "waiters never arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn notify_counts_exactly() {
        let cond = Condition::new().unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| spawn_waiter(&cond, Duration::from_secs(10)))
            .collect();
        wait_for_waiters(&cond, 4);
        assert_eq!(cond.acquire().notify(1), 1);
        assert_eq!(cond.acquire().notify(2), 2);
        assert_eq!(cond.acquire().notify_all(), 1);
        for h in hs {
            assert!(h.join().unwrap());
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "under Miri the 50 ms waiter can time out before the second one arrives"
    )]
    fn timed_out_waiters_are_not_counted() {
        let cond = Condition::new().unwrap();
        let short = spawn_waiter(&cond, Duration::from_millis(50));
        let long = spawn_waiter(&cond, Duration::from_secs(10));
        wait_for_waiters(&cond, 2);
        assert!(!short.join().unwrap());
        assert_eq!(cond.acquire().notify(1), 1);
        assert!(long.join().unwrap());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_waiter_is_skipped() {
        let cond = Condition::new().unwrap();
        {
            // Plant a waiting slot owned by a dead process, older than ours.
            let _g = cond.acquire();
            let i = cond.slots.claim().unwrap();
            cond.slots
                .pid(i)
                .store(crate::sync::raw_lock::tests::dead_id(), Ordering::Relaxed);
        }
        let live = spawn_waiter(&cond, Duration::from_secs(10));
        wait_for_waiters(&cond, 2);
        assert_eq!(cond.acquire().notify(1), 1);
        assert!(live.join().unwrap());
        assert_eq!(cond.waiting(), 0, "the dead slot was reclaimed");
    }

    #[test]
    fn default_lock_is_reentrant_and_wait_releases_every_level() {
        let cond = Condition::new().unwrap();
        let mut outer = cond.acquire();
        let inner = cond
            .acquire_timeout(Duration::from_millis(200))
            .expect("Condition::new() must be reentrant, as Python's default RLock");
        drop(inner);
        let _inner2 = cond.try_acquire().expect("reentrant try_acquire");
        let c2 = cond.clone();
        let h = std::thread::spawn(move || {
            // Possible only if wait released both levels.
            let g = c2
                .acquire_timeout(Duration::from_secs(10))
                .expect("wait released every level");
            g.notify(1)
        });
        assert!(outer.wait_timeout(Duration::from_secs(10)));
        assert_eq!(h.join().unwrap(), 1);
        // Both levels are back: the other thread cannot take the lock.
        let c3 = cond.clone();
        let other = std::thread::spawn(move || c3.try_acquire().is_some());
        assert!(!other.join().unwrap(), "levels restored after wait");
    }

    #[test]
    fn with_lock_is_not_reentrant() {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let _g = cond.acquire();
        assert!(cond.try_acquire().is_none());
    }

    #[test]
    fn rlock_levels_are_restored() {
        let lock = RLock::new().unwrap();
        let cond = Condition::with_rlock(lock.clone()).unwrap();
        let _outer = lock.acquire();
        let mut g = cond.acquire();
        assert_eq!(lock.depth(), 2);
        let c2 = cond.clone();
        let h = std::thread::spawn(move || {
            // Possible only if wait released both levels.
            let g = c2
                .acquire_timeout(Duration::from_secs(10))
                .expect("released");
            g.notify(1)
        });
        assert!(g.wait_timeout(Duration::from_secs(10)));
        assert_eq!(h.join().unwrap(), 1);
        assert_eq!(lock.depth(), 2);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "needs sub-millisecond timeouts to race with notifies; under Miri's slow interpretation they always expire first"
    )]
    fn notify_counts_match_wakeups_under_racing_timeouts() {
        // Waiters time out while notifiers run: every notify a notifier
        // counted must be a wait that returned true, and vice versa.
        use std::sync::atomic::AtomicUsize;
        let cond = Condition::new().unwrap();
        let notified = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..6u64)
            .map(|k| {
                let (c, notified) = (cond.clone(), notified.clone());
                std::thread::spawn(move || {
                    for i in 0..300u64 {
                        let mut g = c.acquire();
                        let t = Duration::from_micros((i * 37 + k * 101) % 700);
                        if g.wait_timeout(t) {
                            notified.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        let mut counted = 0;
        while !waiters.iter().all(|w| w.is_finished()) {
            counted += cond.acquire().notify(2);
            std::thread::yield_now();
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert!(counted > 0, "the race was never exercised");
        assert_eq!(notified.load(Ordering::SeqCst), counted);
        assert_eq!(cond.waiting(), 0);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn travels_as_a_handle() {
        let cond = Condition::new().unwrap();
        let (bytes, fds) = codec::encode(&cond).unwrap();
        assert_eq!(
            fds.len(),
            3,
            "lock, condition words and the liveness domain"
        );
        let back: Condition = codec::decode(&bytes, fds).unwrap();
        let _g = cond.acquire();
        // Another thread (the lock is reentrant for this one).
        let other = std::thread::spawn(move || back.try_acquire().is_none());
        assert!(other.join().unwrap());
    }
}
