//! The operating system as loom sees it (`--cfg loom` builds only).
//!
//! Threads stand in for processes, so the OS services the algorithms use are
//! replaced by models that loom can explore:
//!
//! - **futex**: every [`AtomicU32`] carries the wait queue of its region.
//!   [`Futex::wait`] checks the word and enqueues under one loom mutex, as
//!   the kernel does under its hash-bucket lock, and then blocks until a
//!   [`Futex::wake`] on the same word dequeues it. A timed wait blocks too:
//!   time does not pass in a model, so a wake-up that only a timeout would
//!   deliver shows up as a loom deadlock, which is how a lost wake-up is
//!   caught.
//! - **pids**: each model thread calls [`set_pid`] to act as a process with
//!   that id; [`kill`] marks a fake pid dead, as a process that exited.
//! - **time**: the liveness probe interval (`park::SLICE`) is one hour,
//!   so probes happen only at an explicit deadline, never by the wall clock
//!   (a model must be deterministic).

// The pid and liveness hooks are for the models in `#[cfg(test)]` modules.
#![cfg_attr(not(test), allow(dead_code))]

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use loom::sync::{Condvar, Mutex};

/// The futex waiters of one region: who sleeps on which word.
#[derive(Debug)]
pub(crate) struct Futex {
    queue: Mutex<Queue>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    next_ticket: u64,
    /// (word address, ticket), oldest first.
    sleeping: Vec<(usize, u64)>,
    /// Tickets dequeued by a wake and not yet seen by their sleeper.
    woken: HashSet<u64>,
}

impl Futex {
    pub(crate) fn new() -> Self {
        Futex {
            queue: Mutex::new(Queue::default()),
            woken: Condvar::new(),
        }
    }

    /// `FUTEX_WAIT`: returns at once if `word` no longer holds `expected`,
    /// else sleeps until a [`wake`](Futex::wake) picks this sleeper.
    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32) {
        let mut q = self.queue.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.sleeping.push((addr(word), ticket));
        while !q.woken.remove(&ticket) {
            q = self.woken.wait(q).unwrap();
        }
    }

    /// `FUTEX_WAKE`: wakes up to `n` sleepers on `word`, oldest first.
    pub(crate) fn wake(&self, word: &AtomicU32, n: u32) -> usize {
        let mut q = self.queue.lock().unwrap();
        let at = addr(word);
        let mut picked = Vec::new();
        q.sleeping.retain(|&(a, t)| {
            if a == at && picked.len() < n as usize {
                picked.push(t);
                false
            } else {
                true
            }
        });
        let count = picked.len();
        q.woken.extend(picked);
        if count > 0 {
            self.woken.notify_all();
        }
        count
    }
}

fn addr(word: &AtomicU32) -> usize {
    std::ptr::from_ref(word) as usize
}

/// Wraps loom's atomics for the algorithms: same methods as `std`'s.
///
/// loom treats a `SeqCst` access as `AcqRel` (its documented limitation),
/// which forbids nothing of the store-buffering pattern that the eventcounts
/// rely on ("my store, then your count" against "your store, then my
/// count"), so every eventcount model would report a false lost wake-up.
/// loom does model `SeqCst` *fences* exactly, so here a `SeqCst` store or
/// read-modify-write is followed by a `SeqCst` fence: a `SeqCst` store, then
/// a `SeqCst` load, on both sides, can then no longer both miss, as the
/// language guarantees. Loads get no fence, so a *`Release`* store followed
/// by a `SeqCst` load still may miss, as it may on real hardware (a mutation
/// of the ring's `tail` store to `Release` is caught this way).
macro_rules! model_atomic {
    ($name:ident, $int:ty) => {
        #[allow(dead_code)] // the set `std` offers; not every one is used
        impl $name {
            fn sc<R>(order: Ordering, op: impl FnOnce() -> R) -> R {
                let r = op();
                if order == Ordering::SeqCst {
                    loom::sync::atomic::fence(Ordering::SeqCst);
                }
                r
            }

            fn sc2<R>(a: Ordering, b: Ordering, op: impl FnOnce() -> R) -> R {
                let order = if b == Ordering::SeqCst { b } else { a };
                Self::sc(order, op)
            }

            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.atomic.load(order)
            }

            pub(crate) fn store(&self, v: $int, order: Ordering) {
                Self::sc(order, || self.atomic.store(v, order))
            }

            pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                Self::sc(order, || self.atomic.swap(v, order))
            }

            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                Self::sc2(success, failure, || {
                    self.atomic.compare_exchange(current, new, success, failure)
                })
            }

            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                Self::sc2(success, failure, || {
                    self.atomic
                        .compare_exchange_weak(current, new, success, failure)
                })
            }

            pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                Self::sc(order, || self.atomic.fetch_add(v, order))
            }

            pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                Self::sc(order, || self.atomic.fetch_sub(v, order))
            }

            pub(crate) fn fetch_or(&self, v: $int, order: Ordering) -> $int {
                Self::sc(order, || self.atomic.fetch_or(v, order))
            }

            pub(crate) fn fetch_and(&self, v: $int, order: Ordering) -> $int {
                Self::sc(order, || self.atomic.fetch_and(v, order))
            }

            pub(crate) fn fetch_update(
                &self,
                set: Ordering,
                fetch: Ordering,
                f: impl FnMut($int) -> Option<$int>,
            ) -> Result<$int, $int> {
                Self::sc2(set, fetch, || self.atomic.fetch_update(set, fetch, f))
            }
        }
    };
}

/// A loom `AtomicU32` with the futex queue of its region.
#[derive(Debug)]
pub(crate) struct AtomicU32 {
    atomic: loom::sync::atomic::AtomicU32,
    futex: Arc<Futex>,
}

model_atomic!(AtomicU32, u32);

impl AtomicU32 {
    /// A word with a wait queue of its own.
    pub(crate) fn new(value: u32) -> Self {
        Self::in_region(value, Arc::new(Futex::new()))
    }

    /// A word whose sleepers queue in `futex` (its region's).
    pub(crate) fn in_region(value: u32, futex: Arc<Futex>) -> Self {
        AtomicU32 {
            atomic: loom::sync::atomic::AtomicU32::new(value),
            futex,
        }
    }

    /// The wait queue of this word's region.
    pub(crate) fn futex(&self) -> &Futex {
        &self.futex
    }
}

/// A loom `AtomicU64` (no futex: the kernel's are 32-bit).
#[derive(Debug)]
pub(crate) struct AtomicU64 {
    atomic: loom::sync::atomic::AtomicU64,
}

model_atomic!(AtomicU64, u64);

impl AtomicU64 {
    pub(crate) fn new(value: u64) -> Self {
        AtomicU64 {
            atomic: loom::sync::atomic::AtomicU64::new(value),
        }
    }
}

loom::thread_local! {
    /// The fake pid of the current model thread.
    static PID: Cell<u32> = Cell::new(0);
}

std::thread_local! {
    /// Fake pids that have "exited". Every thread of a loom execution runs
    /// on the OS thread that called `loom::model`, so this is shared by the
    /// model's threads and private to the model.
    static DEAD: RefCell<HashSet<u32>> = RefCell::new(HashSet::new());
}

/// Makes the calling model thread act as process `pid` (and alive); call
/// first thing in every model thread, the main one included.
pub(crate) fn set_pid(pid: u32) {
    // Small numbers, so they fit every pid field of the shared words (the
    // lock word's holds 22 bits); `sys/pid.rs` builds on this file, not the
    // other way round.
    assert!(
        pid != 0 && pid < 1 << 16,
        "fake pids are small non-zero numbers"
    );
    PID.with(|p| p.set(pid));
    DEAD.with(|d| d.borrow_mut().remove(&pid));
}

/// The calling model thread's fake pid.
pub(crate) fn current_pid() -> u32 {
    let pid = PID.with(Cell::get);
    assert!(pid != 0, "a model thread must call model::set_pid first");
    pid
}

/// Marks `pid` as exited (the caller stops touching shared state after).
pub(crate) fn kill(pid: u32) {
    DEAD.with(|d| d.borrow_mut().insert(pid));
}

/// Whether the fake process `pid` is alive.
pub(crate) fn is_alive(pid: u32) -> bool {
    pid != 0 && !DEAD.with(|d| d.borrow().contains(&pid))
}

/// Runs `f` under loom, exploring interleavings with at most `preemptions`
/// forced context switches per execution (`LOOM_MAX_PREEMPTIONS` overrides).
/// The model's main thread acts as process 1.
#[cfg(test)]
pub(crate) fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.max_branches = 100_000;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        set_pid(1);
        f();
    });
    eprintln!(
        "loom: {} executions in {:.2?}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// Spawns a model thread that acts as process `pid`.
#[cfg(test)]
pub(crate) fn spawn<T: Send + 'static>(
    pid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> loom::thread::JoinHandle<T> {
    loom::thread::spawn(move || {
        set_pid(pid);
        f()
    })
}
