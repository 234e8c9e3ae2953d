//! [`Barrier`]: Python's `multiprocessing.Barrier`, broken for everyone when
//! a waiting participant dies.
//!
//! # Shared memory
//!
//! | offset     | field         | meaning                                              |
//! |------------|---------------|------------------------------------------------------|
//! | 0          | magic         | `mpBarr01`                                           |
//! | 8          | `lock`        | a raw lock word (`raw_lock.rs`) guarding the fields below |
//! | 12         | `gen`         | futex word: generation (bits 0..31) + `BROKEN` (bit 31) |
//! | 16         | `count`       | participants arrived in this generation              |
//! | 20         | `parties`     | fixed at creation                                    |
//! | 24         | `timeout_ms`  | default timeout, `u32::MAX` for none                 |
//! | 32         | `broken_bits` | bit `g % 64` set iff generation `g` ended broken     |
//! | 40         | `action`      | offset of the action's entry point (`sys/code.rs`)   |
//! | 48, 56     | exe dev, ino  | identity of the executable that named the action     |
//! | 64         | `has_action`  | 1 if there is an action                              |
//! | 72..104    | `action_mac`  | HMAC-SHA256 of (action, dev, ino, this barrier's memfd dev and inode) under the tree's authkey |
//! | 128 + 4·i  | `pids[i]`     | liveness id of the `i`-th arrival of this generation |
//!
//! # Protocol
//! - wait: under `lock`, fail if `BROKEN`; else record the liveness id at index
//!   `count` and increment it. The last arrival runs the action, clears
//!   `count` and bit `g+1` of `broken_bits`, stores `gen = g+1` and wakes
//!   every sleeper. The others release `lock`, spin a few µs and then
//!   futex-wait while `gen == g`. When `gen` changes they return their index,
//!   unless `gen` is `g | BROKEN` or bit `g` of `broken_bits` is set (the
//!   generation ended by `reset` or breakage rather than by a pass).
//! - abort, timeout, death: under `lock`, set bit `g` and store
//!   `gen = g | BROKEN`; wake all.
//! - reset: under `lock`, mark generation `g` broken if anyone waits in it,
//!   then start generation `g+1` unbroken; wake all.
//!
//! # The action
//! The action is named by code offset (`sys/code.rs`), and any holder of the
//! handle can write this page, so the offset and the executable identity are
//! stored with an HMAC-SHA256 under the process tree's authkey
//! (`process/authkey.rs`), which also covers the barrier's own identity (its
//! memfd's device and inode, the same in every process that maps it), so an
//! authenticated action copied from another barrier fails too. The last
//! arrival checks it before resolving the offset: a forged, copied or
//! corrupted action is not run, and breaks the barrier as an action that
//! fails does.
//!
//! # Crash behaviour
//! A waiter probes the liveness ids of the generation's arrivals every 100 ms; if one
//! is dead it breaks the barrier, so the others get [`BrokenBarrierError`]
//! within about 100 ms of a death. A process that dies holding `lock` (a few
//! instructions, or while running the action) is taken over by the raw lock,
//! and the taker breaks the barrier, since the fields may be half-updated. A
//! participant that dies *before* arriving is not noticed: the others wait
//! for it until their timeout, as in Python.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::park::my_id;
use super::park::{self, Poll, SleepOn, Spin, Wait, owner_alive};
use super::raw_lock::{Acquired, RawLock, SPIN_BUDGET};
use super::shared::{self, shared_handle};
use crate::deadline;
use crate::process::authkey;
use crate::sys::atomic::{AtomicU32, AtomicU64};
use crate::sys::code::{self, Body, Signature};
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

const MAGIC: u64 = u64::from_le_bytes(*b"mpBarr01");
const LOCK: usize = 8;
const GEN: usize = 12;
const COUNT: usize = 16;
const PARTIES: usize = 20;
const TIMEOUT_MS: usize = 24;
const BROKEN_BITS: usize = 32;
const ACTION: usize = 40;
const EXE_DEV: usize = 48;
const EXE_INO: usize = 56;
const HAS_ACTION: usize = 64;
const ACTION_MAC: usize = 72;
const PIDS: usize = 128;

/// What the action's MAC covers the words of: the action's code offset, the
/// executable's identity, and this barrier's own (its memfd's device and
/// inode), so an authenticated action cannot be copied to another barrier.
const ACTION_LABEL: &[u8] =
    b"multiprocess Barrier action: offset, exe dev, exe ino, barrier dev, barrier ino";

/// The signature of a barrier action: takes nothing, returns nothing.
pub(super) struct BarrierAction;

impl Signature for BarrierAction {
    type In<'a> = ();
    type Out = ();
}

/// The trampoline of action `F`: calls it (recreated by `sys::code`).
struct RunAction<F>(PhantomData<F>);

impl<F: Fn() + Copy + 'static> Body for RunAction<F> {
    type Sig = BarrierAction;
    type Target = F;
    fn run(action: F, (): ()) {
        action()
    }
}

const BROKEN: u32 = 1 << 31;
const GEN_MASK: u32 = BROKEN - 1;
const NO_TIMEOUT: u32 = u32::MAX;
/// A waiter spins like the lock, then sleeps in [`park::SLICE`]s, probing
/// the arrivals after each.
const WAIT: park::Policy<'static> = park::Policy {
    spin: Spin::Backoff(SPIN_BUDGET),
    slice: Some(park::SLICE),
    probe_at_deadline: false,
    what: "barrier word",
};
/// The most parties a barrier may have.
///
/// # Examples
///
/// ```
/// use multiprocess::{BARRIER_MAX_PARTIES, Barrier};
/// assert!(Barrier::new(BARRIER_MAX_PARTIES + 1).is_err());
/// ```
pub const MAX_PARTIES: u32 = 1 << 16;

/// The barrier was broken (by [`Barrier::abort`], a timeout, a
/// [`Barrier::reset`] while waiting, a failed action, or the death of a
/// waiting participant) — Python's `BrokenBarrierError`.
///
/// The participant that found the barrier's action unable to run (a forged
/// or corrupted action, or a barrier from another process tree) gets the
/// reason in [`reason`](BrokenBarrierError::reason) and its message, as in
/// Python the thread that ran a failing action gets that exception; the
/// others get the plain error.
///
/// # Examples
///
/// ```
/// use multiprocess::{Barrier, BrokenBarrierError};
/// let barrier = Barrier::new(2)?;
/// barrier.abort();
/// let err = barrier.wait().unwrap_err();
/// assert!(matches!(err, BrokenBarrierError { .. }));
/// assert_eq!(err.to_string(), "barrier is broken");
/// assert_eq!(err.reason(), None);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BrokenBarrierError {
    reason: Option<String>,
}

impl BrokenBarrierError {
    /// Why this caller broke the barrier, when it was this caller that found
    /// the action unable to run; `None` otherwise.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl std::fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            None => f.write_str("barrier is broken"),
            Some(why) => write!(f, "barrier is broken: {why}"),
        }
    }
}

impl std::error::Error for BrokenBarrierError {}

/// Error from [`Barrier::wait_timeout`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::{Barrier, BarrierTimeoutError};
/// let barrier = Barrier::new(2)?;
/// let r = barrier.wait_timeout(Duration::from_millis(5));
/// assert_eq!(r, Err(BarrierTimeoutError::Timeout));
/// let r = barrier.wait_timeout(Duration::from_millis(5));
/// assert_eq!(r, Err(BarrierTimeoutError::BrokenBarrier));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierTimeoutError {
    /// The barrier was broken by something else while (or before) waiting.
    #[error("barrier is broken")]
    BrokenBarrier,
    /// This caller's timeout expired, which broke the barrier for all.
    #[error("timed out waiting at the barrier (it is now broken)")]
    Timeout,
    /// This caller arrived last and found that the barrier's action cannot
    /// run here: it fails authentication under this process tree's key
    /// (forged or corrupted, or a barrier of another tree). Nothing ran and
    /// the barrier is now broken for all.
    #[error("barrier is broken: {0}")]
    ActionRefused(String),
}

impl From<BarrierTimeoutError> for BrokenBarrierError {
    fn from(e: BarrierTimeoutError) -> Self {
        match e {
            BarrierTimeoutError::ActionRefused(reason) => BrokenBarrierError {
                reason: Some(reason),
            },
            BarrierTimeoutError::BrokenBarrier | BarrierTimeoutError::Timeout => {
                BrokenBarrierError::default()
            }
        }
    }
}

/// A synchronisation point for a fixed number of processes, like Python's
/// `multiprocessing.Barrier`: each participant calls [`wait`](Barrier::wait)
/// and all are released together once `parties` of them have arrived; the
/// barrier then resets itself for the next pass.
///
/// Clones, and copies sent to children, are the same barrier. If a waiting
/// participant dies, the others get [`BrokenBarrierError`] within about
/// 100 ms instead of waiting forever.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Barrier, Process};
///
/// fn step(barrier: Barrier, n: u32) {
///     for phase in 0..3 {
///         println!("worker {n} in phase {phase}");
///         barrier.wait().expect("barrier broken");
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let barrier = Barrier::new(3)?;
///     let ps: Vec<Process> = (0..3)
///         .map(|n| Process::new(step, (barrier.clone(), n)))
///         .collect();
///     for p in &ps {
///         p.start()?;
///     }
///     for p in &ps {
///         p.join()?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Barrier {
    region: Arc<SharedRegion>,
}

/// Configures a [`Barrier`]: parties, an action, a default timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::Barrier;
///
/// fn announce() {
///     println!("everyone arrived");
/// }
///
/// let barrier = Barrier::builder(1)
///     .action(announce)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(barrier.wait(), Ok(0)); // runs `announce`
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BarrierBuilder {
    parties: u32,
    action: Option<code::Entry<BarrierAction>>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// Runs `action` once per pass, in the last participant to arrive, before
    /// anyone is released (Python's `action=`). It must be a plain `fn()` or
    /// a closure that captures nothing, because other processes of this
    /// executable recreate it from its type. If it panics, the barrier breaks
    /// and the panic continues in that participant.
    ///
    /// The action is stored in the barrier's shared memory with an HMAC
    /// under the process tree's key ([`ProcessInfo::authkey`](crate::ProcessInfo::authkey)),
    /// so a holder of the handle outside the tree cannot make the others
    /// run code of its choosing, nor copy another barrier's action: a
    /// forged, copied or corrupted action is not run, the barrier breaks,
    /// and the participant that found it gets the reason
    /// ([`BrokenBarrierError::reason`], [`BarrierTimeoutError::ActionRefused`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::builder(1)
    ///     .action(|| println!("pass"))
    ///     .build()?;
    /// barrier.wait().unwrap(); // prints "pass"
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn action<F: Fn() + Copy + 'static>(mut self, action: F) -> Self {
        self.action = Some(code::entry::<RunAction<F>>(action));
        self
    }

    /// The timeout [`Barrier::wait`] uses (Python's `timeout=`); whole
    /// milliseconds, capped near 49 days.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = multiprocess::Barrier::builder(2)
    ///     .timeout(Duration::from_millis(10))
    ///     .build()?;
    /// assert!(barrier.wait().is_err()); // the second party never came
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the barrier.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::builder(4).build()?;
    /// assert_eq!(barrier.parties(), 4);
    /// assert!(multiprocess::Barrier::builder(0).build().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` if `parties` is 0 or above [`MAX_PARTIES`]; otherwise
    /// if the memfd cannot be created or mapped, or (with an action) the
    /// executable cannot be identified.
    pub fn build(self) -> io::Result<Barrier> {
        if self.parties == 0 || self.parties > MAX_PARTIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a barrier needs 1 to {MAX_PARTIES} parties, not {}",
                    self.parties
                ),
            ));
        }
        let len = PIDS + 4 * self.parties as usize;
        let region = shared::create("multiprocess-barrier", len, MAGIC)?;
        region
            .atomic_u32(PARTIES)
            .store(self.parties, Ordering::Relaxed);
        let ms = self.timeout.map_or(NO_TIMEOUT, |t| {
            u32::try_from(t.as_millis()).unwrap_or(NO_TIMEOUT - 1)
        });
        region.atomic_u32(TIMEOUT_MS).store(ms, Ordering::Relaxed);
        if let Some(action) = self.action {
            let (dev, ino) = code::exe_identity()?;
            let (region_dev, region_ino) = region.identity()?;
            let words = [action.offset() as u64, dev, ino];
            let mac = authkey::sign(ACTION_LABEL, &[words[0], dev, ino, region_dev, region_ino])?;
            for (at, word) in [ACTION, EXE_DEV, EXE_INO].into_iter().zip(words) {
                region.atomic_u64(at).store(word, Ordering::Relaxed);
            }
            for (i, chunk) in mac.chunks_exact(8).enumerate() {
                let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                region
                    .atomic_u64(ACTION_MAC + 8 * i)
                    .store(word, Ordering::Relaxed);
            }
            region.atomic_u32(HAS_ACTION).store(1, Ordering::Release);
        }
        Ok(Barrier { region })
    }
}

enum Outcome {
    Passed(usize),
    Broken,
    TimedOut,
    /// This caller could not run the action (the reason); it broke the
    /// barrier.
    ActionRefused(String),
}

impl Barrier {
    /// A barrier for `parties` participants (Python's `Barrier(parties)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::new(1)?;
    /// assert_eq!(barrier.wait(), Ok(0)); // a barrier of one never blocks
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`BarrierBuilder::build`].
    pub fn new(parties: u32) -> io::Result<Barrier> {
        Self::builder(parties).build()
    }

    /// A barrier whose [`wait`](Barrier::wait) gives up (and breaks it) after
    /// `timeout` (Python's `Barrier(parties, timeout=t)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = multiprocess::Barrier::with_timeout(2, Duration::from_millis(20))?;
    /// assert!(barrier.wait().is_err()); // nobody else came
    /// assert!(barrier.is_broken());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`BarrierBuilder::build`].
    pub fn with_timeout(parties: u32, timeout: Duration) -> io::Result<Barrier> {
        Self::builder(parties).timeout(timeout).build()
    }

    /// A builder, to add an action or a default timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::builder(2).build()?;
    /// assert_eq!(barrier.n_waiting(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(parties: u32) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            action: None,
            timeout: None,
        }
    }

    fn from_fd(fd: OwnedFd) -> io::Result<Barrier> {
        let region = shared::open(fd, PIDS, MAGIC, "Barrier")?;
        let parties = region.atomic_u32(PARTIES).load(Ordering::Relaxed);
        if parties == 0 || parties > MAX_PARTIES || region.len() < PIDS + 4 * parties as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "barrier region does not match its party count",
            ));
        }
        Ok(Barrier { region })
    }

    fn lock(&self) -> RawLock<'_> {
        RawLock::new(self.region.atomic_u32(LOCK))
    }
    fn generation(&self) -> &AtomicU32 {
        self.region.atomic_u32(GEN)
    }
    fn count(&self) -> &AtomicU32 {
        self.region.atomic_u32(COUNT)
    }
    fn broken_bits(&self) -> &AtomicU64 {
        self.region.atomic_u64(BROKEN_BITS)
    }
    fn pid(&self, i: usize) -> &AtomicU32 {
        self.region.atomic_u32(PIDS + 4 * i)
    }

    /// Takes the internal lock; a dead holder's half-done update breaks the
    /// barrier.
    fn enter(&self) {
        if self.lock().lock(None) == Some(Acquired::OwnerDied) {
            self.break_locked();
        }
    }

    /// Breaks the current generation (internal lock held).
    fn break_locked(&self) {
        let g = self.generation().load(Ordering::Relaxed) & GEN_MASK;
        self.broken_bits()
            .fetch_or(1 << (g % 64), Ordering::Relaxed);
        self.count().store(0, Ordering::Relaxed);
        self.generation().store(g | BROKEN, Ordering::Release);
        futex::wake(self.generation(), u32::MAX);
    }

    /// Starts generation `g + 1` (internal lock held).
    fn advance_locked(&self, g: u32) {
        let next = (g + 1) & GEN_MASK;
        self.broken_bits()
            .fetch_and(!(1 << (next % 64)), Ordering::Relaxed);
        self.count().store(0, Ordering::Relaxed);
        self.generation().store(next, Ordering::Release);
        futex::wake(self.generation(), u32::MAX);
    }

    fn run_action(&self) -> io::Result<()> {
        if self.region.atomic_u32(HAS_ACTION).load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let [offset, dev, ino] =
            [ACTION, EXE_DEV, EXE_INO].map(|at| self.region.atomic_u64(at).load(Ordering::Relaxed));
        let mut mac = [0u8; 32];
        for (i, chunk) in mac.chunks_exact_mut(8).enumerate() {
            let word = self.region.atomic_u64(ACTION_MAC + 8 * i);
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let (region_dev, region_ino) = self.region.identity()?;
        if !authkey::verify(
            ACTION_LABEL,
            &[offset, dev, ino, region_dev, region_ino],
            &mac,
        )? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the stored action fails authentication under this process tree's key \
                 (forged or corrupted); it was not run",
            ));
        }
        let action = code::resolve::<BarrierAction>(offset as i64, (dev, ino))?;
        action.call(());
        Ok(())
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Outcome {
        self.enter();
        let w = self.generation().load(Ordering::Relaxed);
        if w & BROKEN != 0 {
            self.lock().unlock();
            return Outcome::Broken;
        }
        let g = w;
        let parties = self.parties() as usize;
        let index = self.count().load(Ordering::Relaxed) as usize;
        if index >= parties {
            // Only a corrupted region gets here.
            self.break_locked();
            self.lock().unlock();
            return Outcome::Broken;
        }
        self.pid(index).store(my_id(), Ordering::Relaxed);
        self.count().store(index as u32 + 1, Ordering::Relaxed);
        if index + 1 == parties {
            match std::panic::catch_unwind(|| self.run_action()) {
                Ok(Ok(())) => {
                    self.advance_locked(g);
                    self.lock().unlock();
                    return Outcome::Passed(index);
                }
                Ok(Err(e)) => {
                    self.break_locked();
                    self.lock().unlock();
                    return Outcome::ActionRefused(format!("its action cannot run here: {e}"));
                }
                Err(panic) => {
                    self.break_locked();
                    self.lock().unlock();
                    std::panic::resume_unwind(panic);
                }
            }
        }
        self.lock().unlock();

        let word = self.generation();
        park::park(
            &WAIT,
            deadline,
            Wait {
                sleepers: None,
                poll: |_| {
                    let w = word.load(Ordering::Acquire);
                    if w == g {
                        return Poll::Pending;
                    }
                    let broken = w & BROKEN != 0
                        || self.broken_bits().load(Ordering::Relaxed) & (1 << (g % 64)) != 0;
                    Poll::Ready(if broken {
                        Outcome::Broken
                    } else {
                        Outcome::Passed(index)
                    })
                },
                sleep: || Some(SleepOn { word, expected: g }),
                probe: || {
                    self.probe_arrivals(g);
                    None
                },
                timed_out: || {
                    self.enter();
                    let timed_out = word.load(Ordering::Relaxed) == g;
                    if timed_out {
                        self.break_locked();
                    }
                    self.lock().unlock();
                    timed_out.then_some(Outcome::TimedOut)
                },
            },
        )
    }

    /// Breaks generation `g` if one of its arrivals has died.
    fn probe_arrivals(&self, g: u32) {
        self.enter();
        if self.generation().load(Ordering::Relaxed) == g {
            let me = my_id();
            let arrived = self.count().load(Ordering::Relaxed) as usize;
            let dead = (0..arrived.min(self.parties() as usize)).any(|i| {
                let pid = self.pid(i).load(Ordering::Relaxed);
                pid != me && !owner_alive(pid)
            });
            if dead {
                self.break_locked();
            }
        }
        self.lock().unlock();
    }

    /// Waits until `parties` participants have called `wait`; returns this
    /// caller's arrival index, `0..parties`, different for each (Python's
    /// `wait()`). Uses the barrier's default timeout, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::new(2)?;
    /// let other = barrier.clone();
    /// let t = std::thread::spawn(move || other.wait());
    /// let mine = barrier.wait().unwrap();
    /// let theirs = t.join().unwrap().unwrap();
    /// assert_eq!(mine + theirs, 1); // indices 0 and 1
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`BrokenBarrierError`] if the barrier is or becomes broken: aborted,
    /// reset while waiting, a timeout (the default one, or another caller's),
    /// a failed action, or the death of a waiting participant.
    ///
    /// # Panics
    /// If this caller runs the action and it panics (the barrier is broken
    /// first).
    pub fn wait(&self) -> Result<usize, BrokenBarrierError> {
        let deadline = match self.region.atomic_u32(TIMEOUT_MS).load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            ms => deadline::after(Duration::from_millis(u64::from(ms))),
        };
        match self.wait_until(deadline) {
            Outcome::Passed(i) => Ok(i),
            Outcome::Broken | Outcome::TimedOut => Err(BrokenBarrierError::default()),
            Outcome::ActionRefused(reason) => Err(BrokenBarrierError {
                reason: Some(reason),
            }),
        }
    }

    /// As [`wait`](Barrier::wait) with its own timeout (Python's
    /// `wait(timeout)`); a timeout breaks the barrier for everyone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{Barrier, BarrierTimeoutError};
    ///
    /// let barrier = Barrier::new(2)?;
    /// let r = barrier.wait_timeout(Duration::from_millis(20));
    /// assert_eq!(r, Err(BarrierTimeoutError::Timeout));
    /// assert!(barrier.is_broken());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`BarrierTimeoutError::Timeout`] if this caller's timeout expired
    /// first; [`BarrierTimeoutError::ActionRefused`] if this caller arrived
    /// last and the action cannot run here (nothing ran, the barrier is now
    /// broken); [`BarrierTimeoutError::BrokenBarrier`] if it was broken
    /// otherwise.
    ///
    /// # Panics
    /// If this caller runs the action and it panics.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierTimeoutError> {
        match self.wait_until(deadline::after(timeout)) {
            Outcome::Passed(i) => Ok(i),
            Outcome::Broken => Err(BarrierTimeoutError::BrokenBarrier),
            Outcome::TimedOut => Err(BarrierTimeoutError::Timeout),
            Outcome::ActionRefused(reason) => Err(BarrierTimeoutError::ActionRefused(reason)),
        }
    }

    /// Breaks the barrier: current and future waiters get
    /// [`BrokenBarrierError`] until [`reset`](Barrier::reset) (Python's
    /// `abort()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::new(2)?;
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// assert!(barrier.wait().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn abort(&self) {
        self.enter();
        if self.generation().load(Ordering::Relaxed) & BROKEN == 0 {
            self.break_locked();
        }
        self.lock().unlock();
    }

    /// Returns the barrier to its initial, unbroken state; participants
    /// waiting now get [`BrokenBarrierError`] (Python's `reset()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::new(1)?;
    /// barrier.abort();
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// assert_eq!(barrier.wait(), Ok(0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn reset(&self) {
        self.enter();
        let w = self.generation().load(Ordering::Relaxed);
        let g = w & GEN_MASK;
        if w & BROKEN == 0 && self.count().load(Ordering::Relaxed) > 0 {
            self.broken_bits()
                .fetch_or(1 << (g % 64), Ordering::Relaxed);
        }
        self.advance_locked(g);
        self.lock().unlock();
    }

    /// Whether the barrier is broken (Python's `broken`).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = multiprocess::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.generation().load(Ordering::Acquire) & BROKEN != 0
    }

    /// The number of participants needed to pass (Python's `parties`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.region.atomic_u32(PARTIES).load(Ordering::Relaxed)
    }

    /// How many participants wait in the current pass (Python's
    /// `n_waiting`); a snapshot, 0 while broken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Barrier::new(3)?.n_waiting(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        if self.is_broken() {
            0
        } else {
            self.count().load(Ordering::Relaxed)
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

shared_handle!(Barrier, "Barrier");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use std::sync::atomic::AtomicUsize;

    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    fn count_action() {
        ACTIONS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a barrier action needs the executable's identity (stat); Miri has no stat64"
    )]
    fn threads_pass_in_lock_step_with_one_action_per_pass() {
        let b = Barrier::builder(4).action(count_action).build().unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| b.wait_timeout(Duration::from_secs(10)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let idx: Vec<Vec<usize>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        for pass in 0..50 {
            let mut got: Vec<usize> = idx.iter().map(|v| v[pass]).collect();
            got.sort();
            assert_eq!(got, [0, 1, 2, 3]);
        }
        assert_eq!(ACTIONS.load(Ordering::SeqCst), 50);
    }

    #[test]
    fn abort_reset_and_timeout() {
        let b = Barrier::new(3).unwrap();
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(10)));
        while b.n_waiting() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        b.reset();
        assert_eq!(h.join().unwrap(), Err(BarrierTimeoutError::BrokenBarrier));
        assert!(!b.is_broken());
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(10)));
        let t = Instant::now();
        assert_eq!(
            b.wait_timeout(Duration::from_millis(50)),
            Err(BarrierTimeoutError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(45));
        assert_eq!(h.join().unwrap(), Err(BarrierTimeoutError::BrokenBarrier));
        assert!(b.is_broken());
        assert_eq!(b.wait(), Err(BrokenBarrierError::default()));
        b.reset();
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(10)));
        let b3 = b.clone();
        let h3 = std::thread::spawn(move || b3.wait_timeout(Duration::from_secs(10)));
        let mine = b.wait_timeout(Duration::from_secs(10)).unwrap();
        let mut all = vec![
            mine,
            h.join().unwrap().unwrap(),
            h3.join().unwrap().unwrap(),
        ];
        all.sort();
        assert_eq!(all, [0, 1, 2]);
    }

    fn failing_action() {
        panic!("action failed");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a barrier action needs the executable's identity (stat); Miri has no stat64"
    )]
    fn a_panicking_action_breaks_it_and_the_panic_continues() {
        let b = Barrier::builder(2).action(failing_action).build().unwrap();
        let b2 = b.clone();
        let h = std::thread::spawn(move || b2.wait_timeout(Duration::from_secs(10)));
        while b.n_waiting() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = std::panic::catch_unwind(|| b.wait());
        assert!(r.is_err(), "the last arrival ran the action and panicked");
        assert_eq!(h.join().unwrap(), Err(BarrierTimeoutError::BrokenBarrier));
        assert!(b.is_broken());
        assert!(!b.lock().is_locked(), "the internal lock was released");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_arrival_breaks_it() {
        let b = Barrier::new(3).unwrap();
        // Plant an arrival by a dead process.
        b.enter();
        b.pid(0)
            .store(crate::sync::raw_lock::tests::dead_id(), Ordering::Relaxed);
        b.count().store(1, Ordering::Relaxed);
        b.lock().unlock();
        let t = Instant::now();
        assert_eq!(
            b.wait_timeout(Duration::from_secs(10)),
            Err(BarrierTimeoutError::BrokenBarrier)
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn travels_as_a_handle() {
        let b = Barrier::new(2).unwrap();
        let (bytes, fds) = codec::encode(&b).unwrap();
        let back: Barrier = codec::decode(&bytes, fds).unwrap();
        back.abort();
        assert!(b.is_broken());
        assert!(Barrier::new(0).is_err());
    }
}

/// Loom models of the barrier (`scripts/loom.sh`): the real [`Barrier`]
/// with threads as processes (see `sys/model.rs`). A participant left
/// asleep after the last arrival is a loom deadlock.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sys::model;

    /// Two parties, two passes: every pass hands out indices 0 and 1 once
    /// each, and the second pass reuses the barrier.
    #[test]
    fn two_parties_pass_twice() {
        model::check(2, || {
            let barrier = Barrier::new(2).unwrap();
            let t = {
                let barrier = barrier.clone();
                model::spawn(2, move || {
                    [barrier.wait().unwrap(), barrier.wait().unwrap()]
                })
            };
            let mine = [barrier.wait().unwrap(), barrier.wait().unwrap()];
            let theirs = t.join().unwrap();
            for pass in 0..2 {
                let mut got = [mine[pass], theirs[pass]];
                got.sort_unstable();
                assert_eq!(got, [0, 1], "pass {pass}");
            }
            assert!(!barrier.is_broken());
            assert_eq!(barrier.n_waiting(), 0);
        });
    }

    /// Three parties, one pass: all return together with distinct
    /// indices, exactly one of them 0.
    #[test]
    fn three_parties_pass_together() {
        model::check(2, || {
            let barrier = Barrier::new(3).unwrap();
            let ts: Vec<_> = [2, 3]
                .into_iter()
                .map(|pid| {
                    let barrier = barrier.clone();
                    model::spawn(pid, move || barrier.wait().unwrap())
                })
                .collect();
            let mut got = vec![barrier.wait().unwrap()];
            for t in ts {
                got.push(t.join().unwrap());
            }
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2]);
        });
    }
}
