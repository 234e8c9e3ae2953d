//! [`Event`]: Python's `multiprocessing.Event`, with a spin-then-sleep wait.
//!
//! # Shared memory
//!
//! | offset | field    | meaning                                                 |
//! |--------|----------|---------------------------------------------------------|
//! | 0      | magic    | `mpEvent1`                                              |
//! | 8      | `state`  | bit 0 `SET`; bit 1 `SLEEPERS`: someone may be in a futex wait |
//! | 12     | `spin`   | adaptive spin budget in ns, shared by every waiter       |
//! | 16     | `cpu`    | 1 + the CPU the last `set` ran on (0: none yet)          |
//!
//! # Transitions
//! - `set`: if the word is already exactly `SET`, nothing (no cache-line
//!   write); else swap `→ SET` and wake every futex sleeper if the old word had
//!   `SLEEPERS`.
//! - `clear`: `fetch_and(!SET)` (keeps `SLEEPERS`); nothing if already clear.
//! - `wait`: return at once if `SET`; else spin up to `spin` ns re-reading the
//!   word (a handoff between running CPUs costs ~0.1 µs, a cross-CPU futex wake
//!   ~30 µs on a VM); then CAS `SLEEPERS` in and futex-wait on the word.
//!   A wait satisfied while spinning doubles the budget (up to 50 µs), one that
//!   had to sleep halves it (down to 1 µs), so ping-pong traffic spins and an
//!   idle waiter spins ~1 µs once, then sleeps without using the CPU.
//!   A waiter on the CPU where the last `set` ran does not spin: the likely
//!   setter is then queued behind it on that CPU, and spinning would only
//!   delay it. It yields the CPU a few times instead, then sleeps (the
//!   connection's spin policy does the same).
//!
//! # Crash behaviour
//! Every operation is a single atomic on the word, so a process that dies
//! anywhere leaves a valid state. A dead sleeper may leave `SLEEPERS` set,
//! which only costs the next `set` one needless `FUTEX_WAKE`.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::park::{self, Poll, SleepOn, Spin, Wait};
use super::shared::{self, shared_handle};
use crate::deadline;
use crate::sys::atomic::AtomicU32;
use crate::sys::futex;
use crate::sys::sched;
use crate::sys::shm::SharedRegion;

const MAGIC: u64 = u64::from_le_bytes(*b"mpEvent1");
const STATE: usize = 8;
const SPIN: usize = 12;
const CPU: usize = 16;
const LEN: usize = 64;

const SET: u32 = 1;
const SLEEPERS: u32 = 2;
/// Spin budget bounds, in ns.
const SPIN_MIN: u32 = 1_000;
const SPIN_MAX: u32 = 50_000;
/// How many times a waiter on the last setter's CPU yields before sleeping.
const SAME_CPU_YIELDS: u32 = 4;
/// After its own adaptive spin, a waiter sleeps until set or its deadline
/// (nothing to probe: the event has no owner).
const SLEEP: park::Policy<'static> = park::Policy {
    spin: Spin::Never,
    slice: None,
    probe_at_deadline: false,
    what: "event word",
};

/// A flag that processes wait for, like Python's `multiprocessing.Event`.
///
/// One word in a small shared-memory region; clones and copies sent to
/// children (it implements `Serialize`/`Deserialize`) are the same event.
/// [`wait`](Event::wait) spins briefly before sleeping, so a set in another
/// running process is seen in well under a microsecond, while a waiter left
/// idle sleeps in the kernel and uses no CPU.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::Event;
///
/// let event = Event::new()?;
/// assert!(!event.wait_timeout(Duration::ZERO));
/// event.set();
/// assert!(event.is_set());
/// event.wait(); // returns at once
/// event.clear();
/// assert!(!event.is_set());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
/// A process that dies never leaves the event in a bad state: each operation
/// is one atomic instruction on the shared word.
#[derive(Clone)]
pub struct Event {
    region: Arc<SharedRegion>,
}

impl Event {
    /// Creates a new event, initially not set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = multiprocess::Event::new()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new() -> io::Result<Event> {
        let region = shared::create("multiprocess-event", LEN, MAGIC)?;
        region.atomic_u32(SPIN).store(SPIN_MAX, Ordering::Relaxed);
        Ok(Event { region })
    }

    fn from_fd(fd: OwnedFd) -> io::Result<Event> {
        Ok(Event {
            region: shared::open(fd, LEN, MAGIC, "Event")?,
        })
    }

    fn state(&self) -> &AtomicU32 {
        self.region.atomic_u32(STATE)
    }

    /// Whether the event is set (Python's `is_set()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = multiprocess::Event::new()?;
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.state().load(Ordering::Acquire) & SET != 0
    }

    /// Sets the event and wakes every waiter (Python's `set()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = multiprocess::Event::new()?;
    /// event.set();
    /// event.set(); // idempotent
    /// assert!(event.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set(&self) {
        let state = self.state();
        if state.load(Ordering::Relaxed) == SET {
            // Already set and nobody asleep: leave the cache line shared.
            return;
        }
        let cpu = self.region.atomic_u32(CPU);
        let here = sched::current_cpu() as u32 + 1;
        if cpu.load(Ordering::Relaxed) != here {
            cpu.store(here, Ordering::Relaxed);
        }
        if state.swap(SET, Ordering::AcqRel) & SLEEPERS != 0 {
            futex::wake(state, u32::MAX);
        }
    }

    /// Clears the event (Python's `clear()`); later waits block until the
    /// next [`set`](Event::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = multiprocess::Event::new()?;
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear(&self) {
        let state = self.state();
        if state.load(Ordering::Relaxed) & SET != 0 {
            state.fetch_and(!SET, Ordering::AcqRel);
        }
    }

    /// Blocks until the event is set (Python's `wait()`, which then returns
    /// `True`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiprocess::{Event, Process};
    ///
    /// fn starter(event: Event) {
    ///     event.set();
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     multiprocess::init();
    ///     let event = Event::new()?;
    ///     let p = Process::new(starter, (event.clone(),));
    ///     p.start()?;
    ///     event.wait(); // the child's set wakes us
    ///     p.join()?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Caveats
    /// Waits forever if nobody sets the event; use
    /// [`wait_timeout`](Event::wait_timeout) to bound the wait.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the event; returns whether it is set
    /// (Python's `wait(timeout)`). `Duration::ZERO` only looks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = multiprocess::Event::new()?;
    /// assert!(!event.wait_timeout(Duration::from_millis(10)));
    /// event.set();
    /// assert!(event.wait_timeout(Duration::from_secs(1)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if timeout.is_zero() {
            return self.is_set();
        }
        self.wait_until(deadline::after(timeout))
    }

    #[inline]
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        self.wait_slow(deadline)
    }

    #[cold]
    fn wait_slow(&self, deadline: Option<Instant>) -> bool {
        let state = self.state();
        let budget_word = self.region.atomic_u32(SPIN);
        let same_cpu =
            self.region.atomic_u32(CPU).load(Ordering::Relaxed) == sched::current_cpu() as u32 + 1;
        let budget = if same_cpu {
            0
        } else {
            budget_word
                .load(Ordering::Relaxed)
                .clamp(SPIN_MIN, SPIN_MAX)
        };
        let budget_end = deadline::after(Duration::from_nanos(u64::from(budget)));
        let spin_end = match (budget_end, deadline) {
            (Some(b), Some(d)) => Some(b.min(d)),
            (b, _) => b,
        };
        if same_cpu {
            // Give the CPU to the likely setter a few times instead.
            for _ in 0..SAME_CPU_YIELDS {
                sched::yield_now();
                if state.load(Ordering::Acquire) & SET != 0 {
                    return true;
                }
            }
        } else {
            if spin_until_set(state, spin_end) {
                budget_word.store(budget.saturating_mul(2).min(SPIN_MAX), Ordering::Relaxed);
                return true;
            }
            budget_word.store((budget / 2).max(SPIN_MIN), Ordering::Relaxed);
        }
        park::park(
            &SLEEP,
            deadline,
            Wait {
                sleepers: None,
                poll: |_| Poll::ready_if(state.load(Ordering::Acquire) & SET != 0, true),
                sleep: || {
                    let v = state.load(Ordering::Acquire);
                    if v & SET != 0
                        || (v & SLEEPERS == 0
                            && state
                                .compare_exchange(
                                    v,
                                    v | SLEEPERS,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                )
                                .is_err())
                    {
                        return None;
                    }
                    Some(SleepOn {
                        word: state,
                        expected: v | SLEEPERS,
                    })
                },
                probe: || None,
                timed_out: || Some(false),
            },
        )
    }
}

/// Spins until `state` has `SET` (true) or `spin_end` passes (false),
/// yielding now and then so a setter queued on this CPU can run.
fn spin_until_set(state: &AtomicU32, spin_end: Option<Instant>) -> bool {
    // Spinning is a speed policy; a model checks one look and the sleep.
    if cfg!(loom) {
        return state.load(Ordering::Acquire) & SET != 0;
    }
    let mut i: u32 = 0;
    loop {
        if state.load(Ordering::Acquire) & SET != 0 {
            return true;
        }
        i = i.wrapping_add(1);
        if i.is_multiple_of(32) {
            if spin_end.is_some_and(|e| Instant::now() >= e) {
                return false;
            }
            if i.is_multiple_of(256) {
                sched::yield_now();
            }
        }
        std::hint::spin_loop();
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}

shared_handle!(Event, "Event");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn set_clear_wait() {
        let e = Event::new().unwrap();
        let t = Instant::now();
        assert!(!e.wait_timeout(Duration::ZERO));
        assert!(t.elapsed() < Duration::from_millis(50));
        let t = Instant::now();
        assert!(!e.wait_timeout(Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(95));
        e.set();
        assert!(e.wait_timeout(Duration::ZERO));
        e.clear();
        assert!(!e.is_set());
    }

    #[test]
    fn a_thread_set_wakes_a_sleeper() {
        let e = Event::new().unwrap();
        let e2 = e.clone();
        let h = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        e.set();
        assert!(h.join().unwrap());
    }

    #[test]
    fn ping_pong_loses_no_wakeup() {
        // Fast handoffs, and a sleep now and then so both the spin and the
        // futex path run.
        let (ping, pong) = (Event::new().unwrap(), Event::new().unwrap());
        let (p2, q2) = (ping.clone(), pong.clone());
        let h = std::thread::spawn(move || {
            for i in 0..20_000u32 {
                assert!(p2.wait_timeout(Duration::from_secs(10)), "round {i}");
                p2.clear();
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                q2.set();
            }
        });
        for i in 0..20_000u32 {
            ping.set();
            assert!(pong.wait_timeout(Duration::from_secs(10)), "round {i}");
            pong.clear();
        }
        h.join().unwrap();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn travels_as_a_handle() {
        let e = Event::new().unwrap();
        let (bytes, fds) = codec::encode(&e).unwrap();
        let back: Event = codec::decode(&bytes, fds).unwrap();
        e.set();
        assert!(back.is_set());
        let (bytes, fds) = codec::encode(&crate::Lock::new().unwrap()).unwrap();
        let err = codec::decode::<Event>(&bytes, fds).unwrap_err();
        assert!(
            err.to_string().contains("not a multiprocess Event"),
            "{err}"
        );
    }
}

/// Loom models of the event word (`scripts/loom.sh`): the real [`Event`]
/// with threads as processes (see `sys/model.rs`). A waiter left asleep
/// after the final `set` is a loom deadlock.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sys::model;

    /// Two waiters, one set: both wake, whether they sleep before the set,
    /// after it, or while it runs.
    #[test]
    fn set_wakes_every_waiter() {
        model::check(3, || {
            let event = Event::new().unwrap();
            let ts: Vec<_> = [2, 3]
                .into_iter()
                .map(|pid| {
                    let event = event.clone();
                    model::spawn(pid, move || event.wait())
                })
                .collect();
            event.set();
            for t in ts {
                t.join().unwrap();
            }
            assert!(event.is_set());
        });
    }

    /// set, clear, set against a waiter: the clear may make it sleep again,
    /// but the second set must wake it; the flag ends set.
    #[test]
    fn set_clear_set_leaves_no_sleeper() {
        model::check(3, || {
            let event = Event::new().unwrap();
            let t = {
                let event = event.clone();
                model::spawn(2, move || event.wait())
            };
            event.set();
            event.clear();
            event.set();
            t.join().unwrap();
            assert!(event.is_set());
        });
    }

    /// A clear racing with a set and a sleeper must not drop the sleeper's
    /// `SLEEPERS` bit: a set after the clear then still wakes it (else the
    /// set's "already set, nobody asleep" early return would skip the wake).
    #[test]
    fn clear_keeps_the_sleepers_bit() {
        model::check(2, || {
            let event = Event::new().unwrap();
            let waiter = {
                let event = event.clone();
                model::spawn(2, move || event.wait())
            };
            let clearer = {
                let event = event.clone();
                model::spawn(3, move || event.clear())
            };
            event.set();
            clearer.join().unwrap();
            event.set();
            waiter.join().unwrap();
            assert!(event.is_set());
        });
    }
}
