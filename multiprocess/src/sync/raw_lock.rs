//! The raw lock word: a robust, process-shared mutex on one `u32`.
//!
//! # States
//!
//! | word                 | meaning                                               |
//! |----------------------|-------------------------------------------------------|
//! | `0`                  | free                                                  |
//! | `id`                 | held by process `id`; nobody sleeps on the futex      |
//! | `id \| WAITERS`      | held by `id`; some process may sleep on the futex     |
//!
//! `id` is the holder's liveness id ([`park::my_id`], not its pid: see
//! `sys/liveness.rs`) in bits 0..22, and `WAITERS` is bit 31. Ownership is
//! per *process*: threads of one process share its id.
//!
//! # Transitions
//!
//! - acquire, fast path: CAS `0 → me` (one atomic).
//! - acquire, contended: spin with exponential backoff for a few µs while
//!   nobody sleeps (a handoff between running CPUs costs ~0.1 µs, a futex
//!   wake ~30 µs on a VM); then set `WAITERS` and futex-wait in slices of
//!   [`park::SLICE`] (through [`park::park`]). A sleeper that wins the lock
//!   takes it as `me | WAITERS`, since others may still sleep (Drepper's
//!   "mutex3").
//! - release: swap `→ 0` (one atomic) and wake one sleeper only if the old
//!   value had `WAITERS`.
//! - owner death: after each slice during which the word did not change, the
//!   waiter probes the owner with [`owner_alive`]. If it is gone, a CAS from the
//!   exact observed value to `me | WAITERS` takes the lock over, and the caller
//!   is told [`Acquired::OwnerDied`]. Only one waiter's CAS can win.
//!
//! This is the pattern of `parking_lot`'s raw mutex and of Linux robust
//! futexes (`FUTEX_OWNER_DIED`), with the kernel's robust list replaced by a
//! liveness probe so the word needs no kernel cooperation.
//!
//! # Caveats
//! - A process that forks while holding the lock leaves the child believing
//!   it holds it too; the word still names the parent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::park::my_id;
use super::park::{self, Phase, Poll, SleepOn, Spin, Wait, owner_alive};
use crate::sys::atomic::AtomicU32;
use crate::sys::futex;
use crate::sys::liveness::ID_MASK;

/// Set while some process may be asleep on the word.
pub(crate) const WAITERS: u32 = 1 << 31;
/// How long a contended caller spins before sleeping.
pub(crate) const SPIN_BUDGET: Duration = Duration::from_micros(10);

/// How a contended caller waits: [`SPIN_BUDGET`] of backoff while nobody
/// sleeps, then futex slices of [`park::SLICE`], probing the owner after
/// each and once more at the deadline.
const WAIT: park::Policy<'static> = park::Policy {
    spin: Spin::Backoff(SPIN_BUDGET),
    slice: Some(park::SLICE),
    probe_at_deadline: true,
    what: "lock word",
};

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a live owner's release (or free).
    Clean,
    /// Taken over from an owner that died holding it; whatever it protected
    /// may be half-updated.
    OwnerDied,
}

/// A view of a lock word in shared memory (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawLock<'a> {
    word: &'a AtomicU32,
}

impl<'a> RawLock<'a> {
    /// Views `word` as a lock (0 is free).
    pub(crate) fn new(word: &'a AtomicU32) -> Self {
        RawLock { word }
    }

    /// One CAS: takes the lock if free.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.word
            .compare_exchange(0, my_id(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock if it is free or its owner is dead; never sleeps.
    pub(crate) fn try_lock_or_recover(&self) -> Option<Acquired> {
        let me = my_id();
        loop {
            let v = self.word.load(Ordering::Relaxed);
            if v == 0 {
                if self.cas(0, me) {
                    return Some(Acquired::Clean);
                }
                continue;
            }
            return self.take_over_if_dead(v, me);
        }
    }

    /// Acquires the lock, waiting until `deadline` (`None`: forever).
    /// Returns `None` on timeout. A dead owner is detected within about
    /// [`park::SLICE`], and also once more at the deadline.
    ///
    /// # Panics
    /// If the kernel rejects `FUTEX_WAIT` on a mapped, aligned word (never
    /// expected).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Option<Acquired> {
        if self.try_lock() {
            return Some(Acquired::Clean);
        }
        self.lock_slow(deadline)
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let me = my_id();
        park::park(
            &WAIT,
            deadline,
            Wait {
                sleepers: None,
                poll: |phase| loop {
                    let v = self.word.load(Ordering::Relaxed);
                    if v == 0 {
                        // Once past spinning, others may sleep: keep WAITERS.
                        let to = match phase {
                            Phase::Spinning => me,
                            Phase::Sleeping => me | WAITERS,
                        };
                        if self.cas(0, to) {
                            return Poll::Ready(Some(Acquired::Clean));
                        }
                        continue;
                    }
                    // Others asleep: the next release goes to them, stop
                    // spinning.
                    return if v & WAITERS != 0 {
                        Poll::SleepNow
                    } else {
                        Poll::Pending
                    };
                },
                sleep: || {
                    let v = self.word.load(Ordering::Relaxed);
                    if v == 0
                        || (v & WAITERS == 0
                            && self
                                .word
                                .compare_exchange(
                                    v,
                                    v | WAITERS,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                )
                                .is_err())
                    {
                        return None;
                    }
                    Some(SleepOn {
                        word: self.word,
                        expected: v | WAITERS,
                    })
                },
                probe: || match self.word.load(Ordering::Relaxed) {
                    0 => None,
                    v => self.take_over_if_dead(v, me).map(Some),
                },
                timed_out: || Some(None),
            },
        )
    }

    /// If the word still reads `v` and its owner is dead, CAS it to ours.
    fn take_over_if_dead(&self, v: u32, me: u32) -> Option<Acquired> {
        if owner_alive(v & ID_MASK) {
            return None;
        }
        // Keep WAITERS: other processes may be asleep on the word.
        self.cas(v, me | (v & WAITERS))
            .then_some(Acquired::OwnerDied)
    }

    fn cas(&self, from: u32, to: u32) -> bool {
        self.word
            .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases the lock: one swap, plus one futex wake if anyone sleeps.
    #[inline]
    pub(crate) fn unlock(&self) {
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex::wake(self.word, 1);
        }
    }

    /// Whether some process holds the lock (a snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// The liveness id of the holder, if held (a snapshot).
    pub(crate) fn owner(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & ID_MASK {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Test hook: stores `value` in the word as if a process had left it.
    #[cfg(test)]
    pub(crate) fn force_word(&self, value: u32) {
        self.word.store(value, Ordering::SeqCst);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The liveness id of a process that has exited.
    pub(crate) fn dead_id() -> u32 {
        crate::sys::liveness::dead_id()
    }

    #[test]
    fn states() {
        let w = AtomicU32::new(0);
        let l = RawLock::new(&w);
        assert!(l.try_lock());
        assert_eq!(w.load(Ordering::Relaxed), my_id());
        assert_eq!(l.owner(), Some(my_id()));
        assert!(!l.try_lock());
        assert_eq!(
            l.try_lock_or_recover(),
            None,
            "live owner is not taken over"
        );
        l.unlock();
        assert!(!l.is_locked());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_owner_is_recovered_without_sleeping() {
        let w = AtomicU32::new(0);
        let l = RawLock::new(&w);
        l.force_word(dead_id() | WAITERS);
        assert_eq!(l.try_lock_or_recover(), Some(Acquired::OwnerDied));
        assert_eq!(w.load(Ordering::Relaxed), my_id() | WAITERS);
        l.unlock();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn short_deadline_still_recovers_dead_owner() {
        let w = AtomicU32::new(0);
        let l = RawLock::new(&w);
        l.force_word(dead_id());
        let d = Instant::now() + Duration::from_millis(10);
        assert_eq!(l.lock(Some(d)), Some(Acquired::OwnerDied));
    }
}

/// Loom models of the lock word (`scripts/loom.sh`): threads act as
/// processes with fake pids, the futex and liveness are modelled in
/// `sys/model.rs`, and the code under test is [`RawLock`] itself.
#[cfg(all(test, loom))]
pub(crate) mod loom_models {
    use super::*;
    use crate::sys::model;
    use loom::sync::Arc;

    /// A lock word and a counter it protects. The counter is bumped with a
    /// Relaxed load and store, so an update is lost, and the final count
    /// comes out short, if two holders overlap or if a release does not
    /// happen-before the next acquire (loom explores stale loads).
    pub(crate) struct Guarded {
        pub(crate) word: AtomicU32,
        data: loom::sync::atomic::AtomicU32,
    }

    impl Guarded {
        pub(crate) fn new() -> Arc<Self> {
            Arc::new(Guarded {
                word: AtomicU32::new(0),
                data: loom::sync::atomic::AtomicU32::new(0),
            })
        }

        /// The protected update (call with the lock held).
        pub(crate) fn bump(&self) {
            let v = self.data.load(Ordering::Relaxed);
            self.data.store(v + 1, Ordering::Relaxed);
        }

        /// The count (call once every thread is joined).
        pub(crate) fn count(&self) -> u32 {
            self.data.load(Ordering::Relaxed)
        }
    }

    fn increment(g: &Guarded) -> Acquired {
        let lock = RawLock::new(&g.word);
        let how = lock.lock(None).expect("no deadline");
        assert_eq!(lock.owner(), Some(model::current_pid()));
        g.bump();
        lock.unlock();
        how
    }

    /// Mutual exclusion, and every release wakes a sleeper (a lost wake-up
    /// would leave a thread blocked in the futex model: a loom deadlock).
    #[test]
    fn two_processes_exclude_each_other() {
        model::check(3, || {
            let g = Guarded::new();
            let t = {
                let g = g.clone();
                model::spawn(2, move || increment(&g))
            };
            assert_eq!(increment(&g), Acquired::Clean);
            assert_eq!(t.join().unwrap(), Acquired::Clean);
            assert_eq!(g.count(), 2);
            assert_eq!(g.word.load(Ordering::Relaxed), 0);
        });
    }

    /// Three contenders: two may sleep at once, so `WAITERS` must survive a
    /// hand-off to the first sleeper and the second still gets woken.
    #[test]
    fn three_processes_exclude_each_other() {
        model::check(2, || {
            let g = Guarded::new();
            let ts: Vec<_> = [2, 3]
                .into_iter()
                .map(|pid| {
                    let g = g.clone();
                    model::spawn(pid, move || increment(&g))
                })
                .collect();
            increment(&g);
            for t in ts {
                t.join().unwrap();
            }
            assert_eq!(g.count(), 3);
            assert_eq!(g.word.load(Ordering::Relaxed), 0);
        });
    }

    /// A holder that died with the lock: of two waiters probing at their
    /// deadline, exactly one takes it over (reported `OwnerDied`), the other
    /// gets it cleanly afterwards, and they still exclude each other.
    #[test]
    fn dead_holder_is_taken_over_once() {
        model::check(3, || {
            let g = Guarded::new();
            {
                let g = g.clone();
                model::spawn(7, move || {
                    assert!(RawLock::new(&g.word).try_lock());
                    model::kill(7);
                })
            }
            .join()
            .unwrap();
            let recover = |g: Arc<Guarded>| loop {
                let lock = RawLock::new(&g.word);
                // A deadline already passed: one probe of the owner.
                match lock.lock(Some(Instant::now())) {
                    Some(how) => {
                        g.bump();
                        lock.unlock();
                        break how;
                    }
                    None => loom::thread::yield_now(),
                }
            };
            let t = {
                let g = g.clone();
                model::spawn(2, move || recover(g))
            };
            let mine = recover(g.clone());
            let theirs = t.join().unwrap();
            let died = [mine, theirs]
                .iter()
                .filter(|&&h| h == Acquired::OwnerDied)
                .count();
            assert_eq!(died, 1, "{mine:?} {theirs:?}");
            assert_eq!(g.count(), 2);
        });
    }
}
