//! One way to wait: spin, sleep on a futex in slices, probe the owner's
//! liveness, respect the deadline.
//!
//! Every blocking wait on shared memory goes through [`park`]: the lock word
//! (`raw_lock.rs`), the semaphore, the barrier, the condition's slots, the
//! event, the queue ring's eventcounts and `JoinableQueue::join`. The loop,
//! the deadline, the slicing, the liveness probe and the futex-failure
//! handling exist here once; each primitive passes its tuned numbers as a
//! [`Policy`] and its protocol as the closures of a [`Wait`] (the shape of
//! `parking_lot`'s `park(key, validate, before_sleep, timed_out, …)`).
//!
//! # Contract
//!
//! `park(policy, deadline, wait)` runs:
//!
//! 1. **Spin** as [`Policy::spin`] says, calling `wait.poll(Phase::Spinning)`
//!    between steps: [`Poll::Ready`] ends the wait, [`Poll::SleepNow`] skips
//!    the rest of the spin (e.g. others already sleep), [`Poll::Pending`]
//!    spins on.
//! 2. **Sleep loop**, each turn:
//!    - `wait.poll(Phase::Sleeping)`: `Ready(t)` returns `t`.
//!    - If a probe is due (every [`Policy::slice`] of the wait, and at the
//!      deadline too with [`Policy::probe_at_deadline`]): `wait.probe()`,
//!      which checks the owner or peer with [`owner_alive`] and may resolve
//!      the wait (`Some(t)`, e.g. a dead owner's lock taken over) or repair
//!      state so the next poll succeeds (`None`).
//!    - If `deadline` has passed: `wait.timed_out()`; `Some(t)` returns
//!      `t`, `None` means the state changed meanwhile and the loop polls
//!      again.
//!    - Otherwise sleep: `wait.sleepers`, if given, is incremented
//!      (`SeqCst`); `wait.sleep()` re-checks the condition and names the
//!      futex word and the value it must still hold ([`SleepOn`]), or
//!      `None` not to sleep; the futex wait lasts until a wake, a change of
//!      the word, the deadline or the next probe, whichever comes first;
//!      then `sleepers` is decremented.
//!
//! # No lost wake-up
//!
//! The kernel sleeps only while the word still holds `expected`, checked
//! atomically with queueing the sleeper. So a waker must change the word
//! named by `sleep()` (or the condition it re-checks) *before* it wakes,
//! and `expected` must be a value read after the sleeper announced itself:
//! either the announcement is the word itself (the lock's and the event's
//! `WAITERS` bit, set by a CAS whose result is `expected`), or it is
//! `sleepers`, incremented before `sleep()` reads the word (an eventcount:
//! the waker stores its change and then reads `sleepers`, both `SeqCst`, so
//! either the sleeper's re-check sees the change or the waker sees the
//! sleeper and bumps the word before waking).
//!
//! # Liveness
//!
//! [`owner_alive`] is the one function that decides whether a process
//! recorded in shared memory is alive; every probe of every primitive calls
//! it. Shared words record a process by its liveness id ([`my_id`]), never
//! by its pid: `sys/liveness.rs` gives ids that the kernel releases when the
//! process dies, so a probe is fooled neither by pid reuse nor by a holder
//! in another pid namespace. The rule: never take over from an owner that
//! cannot be proven dead, never keep waiting on one that is proven dead.
//!
//! # Panics
//! [`park`] panics if the kernel rejects `FUTEX_WAIT` on a mapped, aligned
//! word (never expected), naming [`Policy::what`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::sys::atomic::AtomicU32;
use crate::sys::futex;
pub(crate) use crate::sys::liveness::my_id;

/// How long a waiter sleeps between probes of the owner's liveness.
#[cfg(not(loom))]
pub(crate) const SLICE: Duration = Duration::from_millis(100);
/// Under loom, time must not decide anything (a model is deterministic), so
/// the periodic probe never comes due; probes happen only at a deadline.
#[cfg(loom)]
pub(crate) const SLICE: Duration = Duration::from_secs(3600);

/// Whether the process recorded as an owner or peer (by its liveness id,
/// [`my_id`]) is alive. The calling process always is; id 0 (no one) never
/// is.
///
/// This is the only place that judges liveness for the waits of `sync/`,
/// `queue/` and `shared/`; see `sys/liveness.rs` for how.
pub(crate) fn owner_alive(id: u32) -> bool {
    crate::sys::liveness::is_alive(id)
}

/// How a waiter spins before it sleeps.
#[derive(Clone, Copy)]
pub(crate) enum Spin<'a> {
    /// Not at all: poll once, then sleep.
    Never,
    /// [`Backoff`] for up to this long.
    Backoff(Duration),
    /// First a pause of `pause` ns, then one poll; the pause adapts per
    /// process: doubled (within `min_ns..=max_ns`) when the poll succeeds,
    /// halved (to 0 below `min_ns`) when it does not. Then [`Backoff`] for
    /// up to `budget`. (The queue ring's consumer and producer waits.)
    Paused {
        /// The adaptive pause, ns (process-local).
        pause: &'a std::sync::atomic::AtomicU32,
        /// Smallest non-zero pause.
        min_ns: u32,
        /// Largest pause.
        max_ns: u32,
        /// The backoff budget after the pause.
        budget: Duration,
    },
}

/// A primitive's waiting parameters (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// The spin before sleeping.
    pub(crate) spin: Spin<'a>,
    /// Sleep in slices of this length and probe after each (`None`: no
    /// probes; one sleep until the deadline).
    pub(crate) slice: Option<Duration>,
    /// Probe once more when the deadline has passed, before timing out
    /// (only with a `slice`).
    pub(crate) probe_at_deadline: bool,
    /// The futex word, for the panic message.
    pub(crate) what: &'static str,
}

/// Which part of the wait a [`Wait::poll`] call comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Still spinning: nobody has been told this waiter may sleep.
    Spinning,
    /// In the sleep loop: this waiter may have slept, and may sleep again.
    Sleeping,
}

/// What a [`Wait::poll`] found.
#[derive(Debug)]
pub(crate) enum Poll<T> {
    /// The wait is over.
    Ready(T),
    /// Not yet.
    Pending,
    /// Not yet, and spinning will not help: go to sleep.
    SleepNow,
}

impl<T> Poll<T> {
    /// `Ready(value)` if `done`, else `Pending`.
    #[inline]
    pub(crate) fn ready_if(done: bool, value: T) -> Self {
        if done {
            Poll::Ready(value)
        } else {
            Poll::Pending
        }
    }
}

/// The futex word to sleep on and the value it must still hold.
pub(crate) struct SleepOn<'a> {
    /// The word.
    pub(crate) word: &'a AtomicU32,
    /// Sleep only while it holds this.
    pub(crate) expected: u32,
}

/// A primitive's side of a wait (see the module docs for when each runs).
pub(crate) struct Wait<'a, P, S, R, D> {
    /// Incremented around each sleep, for wakers to read (an eventcount's
    /// waiter count); `None` if the futex word itself says who sleeps.
    pub(crate) sleepers: Option<&'a AtomicU32>,
    /// Tries to finish: `FnMut(Phase) -> Poll<T>`.
    pub(crate) poll: P,
    /// Re-checks and names the word to sleep on, `None` not to sleep:
    /// `FnMut() -> Option<SleepOn>`.
    pub(crate) sleep: S,
    /// Probes the owner or peer: `FnMut() -> Option<T>`.
    pub(crate) probe: R,
    /// At the deadline: `FnMut() -> Option<T>` (`None`: poll again).
    pub(crate) timed_out: D,
}

/// Waits as `policy` says until `wait` finishes (see the module docs).
///
/// # Panics
/// If `FUTEX_WAIT` fails on a mapped, aligned word (never expected).
#[inline]
pub(crate) fn park<'a, T, P, S, R, D>(
    policy: &Policy<'_>,
    deadline: Option<Instant>,
    mut wait: Wait<'a, P, S, R, D>,
) -> T
where
    P: FnMut(Phase) -> Poll<T>,
    S: FnMut() -> Option<SleepOn<'a>>,
    R: FnMut() -> Option<T>,
    D: FnMut() -> Option<T>,
{
    if let Some(t) = spin(policy.spin, &mut wait.poll) {
        return t;
    }
    let mut next_probe = policy.slice.map(|s| Instant::now() + s);
    loop {
        if let Poll::Ready(t) = (wait.poll)(Phase::Sleeping) {
            return t;
        }
        let now = Instant::now();
        let expired = deadline.is_some_and(|d| now >= d);
        if let Some(due) = next_probe
            && (now >= due || (expired && policy.probe_at_deadline))
        {
            if let Some(t) = (wait.probe)() {
                return t;
            }
            next_probe = policy.slice.map(|s| now + s);
        }
        if expired {
            match (wait.timed_out)() {
                Some(t) => return t,
                None => continue,
            }
        }
        let until = match (deadline, next_probe) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        if let Some(n) = wait.sleepers {
            n.fetch_add(1, Ordering::SeqCst);
        }
        let slept = match (wait.sleep)() {
            Some(on) => futex::wait(on.word, on.expected, until),
            None => Ok(()),
        };
        if let Some(n) = wait.sleepers {
            n.fetch_sub(1, Ordering::SeqCst);
        }
        if let Err(e) = slept {
            panic!("futex wait on a {} failed: {e}", policy.what);
        }
    }
}

/// The spin phase; `Some` if `poll` finished the wait.
#[inline]
fn spin<T>(spin: Spin<'_>, poll: &mut impl FnMut(Phase) -> Poll<T>) -> Option<T> {
    let budget = match spin {
        Spin::Never => return None,
        Spin::Backoff(budget) => match poll(Phase::Spinning) {
            Poll::Ready(t) => return Some(t),
            Poll::SleepNow => return None,
            Poll::Pending => budget,
        },
        Spin::Paused {
            pause,
            min_ns,
            max_ns,
            budget,
        } => {
            let d = pause.load(Ordering::Relaxed);
            if d == 0 {
                std::hint::spin_loop();
            } else {
                let end = Instant::now() + Duration::from_nanos(u64::from(d));
                while Instant::now() < end {
                    for _ in 0..8 {
                        std::hint::spin_loop();
                    }
                }
            }
            match poll(Phase::Spinning) {
                Poll::Ready(t) => {
                    // The other side is streaming: next time, let it run
                    // longer before taking the cache lines back.
                    pause.store((d * 2).clamp(min_ns, max_ns), Ordering::Relaxed);
                    return Some(t);
                }
                found => {
                    // A gap longer than the pause: shorten it, for latency.
                    pause.store(if d / 2 < min_ns { 0 } else { d / 2 }, Ordering::Relaxed);
                    if matches!(found, Poll::SleepNow) {
                        return None;
                    }
                    budget
                }
            }
        }
    };
    let mut backoff = Backoff::new(budget);
    while backoff.spin() {
        match poll(Phase::Spinning) {
            Poll::Ready(t) => return Some(t),
            Poll::SleepNow => return None,
            Poll::Pending => {}
        }
    }
    None
}

/// Bounded busy-waiting: exponential backoff with `spin_loop`, then
/// `yield_now` (useful with few CPUs), until the budget is spent.
struct Backoff {
    step: u32,
    start: Option<Instant>,
    budget: Duration,
}

impl Backoff {
    /// A backoff that spins for up to `budget`.
    fn new(budget: Duration) -> Self {
        Backoff {
            step: 0,
            start: None,
            budget,
        }
    }

    /// Waits a little; returns `false` once the budget is spent (the caller
    /// should then sleep).
    #[inline]
    fn spin(&mut self) -> bool {
        // Spinning is a speed policy; a model checks the sleeping protocol
        // (and would need one loom branch per spin).
        if cfg!(loom) {
            return false;
        }
        if self.step < 6 {
            for _ in 0..(1u32 << self.step) {
                std::hint::spin_loop();
            }
            self.step += 1;
            return true;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        if start.elapsed() >= self.budget {
            return false;
        }
        self.step += 1;
        if self.step.is_multiple_of(4) {
            std::thread::yield_now();
        } else {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const POLICY: Policy<'static> = Policy {
        spin: Spin::Backoff(Duration::from_micros(10)),
        slice: Some(Duration::from_millis(20)),
        probe_at_deadline: false,
        what: "test word",
    };

    /// Waits until `word` is non-zero, as an eventcount with `sleepers`.
    fn wait_nonzero(word: &AtomicU32, sleepers: &AtomicU32, deadline: Option<Instant>) -> bool {
        park(
            &POLICY,
            deadline,
            Wait {
                sleepers: Some(sleepers),
                poll: |_| match word.load(Ordering::SeqCst) {
                    0 => Poll::Pending,
                    _ => Poll::Ready(true),
                },
                sleep: || {
                    (word.load(Ordering::SeqCst) == 0).then_some(SleepOn { word, expected: 0 })
                },
                probe: || None,
                timed_out: || Some(false),
            },
        )
    }

    #[test]
    fn times_out_and_wakes() {
        let w = Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
        let t = Instant::now();
        assert!(!wait_nonzero(
            &w.0,
            &w.1,
            Some(t + Duration::from_millis(50))
        ));
        assert!(t.elapsed() >= Duration::from_millis(45));
        let w2 = w.clone();
        let h = std::thread::spawn(move || {
            wait_nonzero(&w2.0, &w2.1, Some(Instant::now() + Duration::from_secs(10)))
        });
        std::thread::sleep(Duration::from_millis(30));
        w.0.store(1, Ordering::SeqCst);
        if w.1.load(Ordering::SeqCst) != 0 {
            futex::wake(&w.0, u32::MAX);
        }
        assert!(h.join().unwrap());
        assert_eq!(w.1.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn probes_every_slice_and_at_deadline_if_asked() {
        let word = AtomicU32::new(0);
        let probes = std::cell::Cell::new(0u32);
        let run = |policy: &Policy<'_>, ms| {
            probes.set(0);
            park(
                policy,
                Some(Instant::now() + Duration::from_millis(ms)),
                Wait {
                    sleepers: None,
                    poll: |_| Poll::<()>::SleepNow,
                    sleep: || {
                        Some(SleepOn {
                            word: &word,
                            expected: 0,
                        })
                    },
                    probe: || {
                        probes.set(probes.get() + 1);
                        None
                    },
                    timed_out: || Some(()),
                },
            );
            probes.get()
        };
        assert!(run(&POLICY, 70) >= 2);
        let at_deadline = Policy {
            probe_at_deadline: true,
            ..POLICY
        };
        assert_eq!(run(&at_deadline, 0), 1);
        assert_eq!(run(&POLICY, 0), 0);
    }

    #[test]
    fn the_caller_is_alive() {
        assert!(owner_alive(my_id()));
        assert!(!owner_alive(0));
    }
}

/// Loom models of the mechanism itself (`scripts/loom.sh park`); every
/// primitive's models exercise it too.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sys::model;
    use loom::sync::Arc;

    const POLICY: Policy<'static> = Policy {
        spin: Spin::Backoff(Duration::from_micros(10)),
        slice: Some(SLICE),
        probe_at_deadline: true,
        what: "model word",
    };

    /// An eventcount through `park`: a flag, a waiter count and an epoch.
    /// Every set must reach a sleeper (a lost wake-up is a loom deadlock).
    #[test]
    fn eventcount_wakes_its_sleeper() {
        model::check(3, || {
            let s = Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)));
            let t = {
                let s = s.clone();
                model::spawn(2, move || {
                    let (flag, waiters, epoch) = (&s.0, &s.1, &s.2);
                    park(
                        &POLICY,
                        None,
                        Wait {
                            sleepers: Some(waiters),
                            poll: |_| match flag.load(Ordering::Acquire) {
                                0 => Poll::Pending,
                                v => Poll::Ready(v),
                            },
                            sleep: || {
                                let e = epoch.load(Ordering::SeqCst);
                                (flag.load(Ordering::SeqCst) == 0).then_some(SleepOn {
                                    word: epoch,
                                    expected: e,
                                })
                            },
                            probe: || None,
                            timed_out: || None,
                        },
                    )
                })
            };
            s.0.store(7, Ordering::SeqCst);
            if s.1.load(Ordering::SeqCst) != 0 {
                s.2.fetch_add(1, Ordering::SeqCst);
                futex::wake(&s.2, u32::MAX);
            }
            assert_eq!(t.join().unwrap(), 7);
        });
    }

    /// A dead owner is found by the probe at the deadline (time does not
    /// pass in a model, so the slice never comes due), and only then.
    #[test]
    fn probe_at_deadline_sees_a_dead_owner() {
        model::check(2, || {
            let word = Arc::new(AtomicU32::new(0));
            {
                let word = word.clone();
                model::spawn(5, move || {
                    word.store(5, Ordering::Release);
                    model::kill(5);
                })
            }
            .join()
            .unwrap();
            let owner = word.load(Ordering::Acquire);
            let got = park(
                &POLICY,
                Some(Instant::now()),
                Wait {
                    sleepers: None,
                    poll: |_| Poll::<bool>::Pending,
                    sleep: || None,
                    probe: || (!owner_alive(owner)).then_some(true),
                    timed_out: || Some(false),
                },
            );
            assert!(got);
            assert!(owner_alive(model::current_pid()));
        });
    }
}
