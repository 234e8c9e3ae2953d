//! [`JoinableQueue`]: a [`Queue`] whose consumers mark items done, so a
//! producer can wait until every item has been processed.
//!
//! # Counting unfinished tasks
//!
//! Python keeps one shared counter, incremented by `put` and decremented by
//! `task_done`, next to the queue. Here nothing is counted separately from
//! the ring, and every update is a single atomic operation:
//!
//! ```text
//! unfinished = items in the ring + Σ over processes (taken, not yet done)
//! ```
//!
//! - *Items in the ring* is the ring's own item count, which the producer's
//!   one publishing store to `tail` increments: a put is counted exactly when
//!   it becomes visible, so a producer dying mid-put cannot skew it.
//! - *Taken, not yet done* lives in per-process slots in the ring's header
//!   page (one `u64` each: pid in the high half, count in the low half). A
//!   consumer increments its slot under the get lock *before* the `head`
//!   store that takes the item, so at every instant the item is counted by
//!   the ring, its slot, or both (never neither: `join` cannot return early).
//!   A half-read item that the ring drops (its producer died or gave up) is
//!   decremented again. `task_done` decrements the caller's slot, or, if
//!   the caller took nothing (an item handed to another process), any slot
//!   with a count; if every slot is zero it is [`TaskDoneError::TooManyCalls`].
//!
//! `join` reads the ring count first and the slots second, so an item moving
//! from the ring to a slot is never missed; it sleeps on a futex epoch that
//! `task_done` bumps while someone is joining.
//!
//! # Crash behaviour
//!
//! A consumer that dies between `get` and `task_done` would make Python's
//! `join()` wait forever. Here a joiner probes, every 100 ms while it waits,
//! the pids of slots that hold a count; a dead process's slot is cleared with
//! one compare-and-swap (only one prober wins) and its count is added to
//! [`JoinableQueue::abandoned_tasks`], so `join` returns once the live
//! consumers are done. The items themselves are lost with the process, as in
//! Python.
//!
//! Slot 0 is shared and never released: processes beyond the slot table
//! (more than ~440 taking items at once) count there, and their death is not
//! detected. Consumers are recorded by liveness id, not pid
//! (`sys/liveness.rs`), so a new process that got a dead consumer's pid does
//! not inherit its count.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sys::atomic::AtomicU64;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{JoinTimeoutError, TaskDoneError};
use super::ring::{
    ABANDONED_AT, HEADER_LEN, JOIN_EPOCH_AT, JOIN_WAITERS_AT, KIND_JOINABLE, Ring, SLOTS_AT,
};
use super::{
    GetError, GetFail, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueBuilder,
    TRY_LOCK_WAIT, TryGetError, TryPutError,
};
use crate::codec;
use crate::deadline;
use crate::sync::park::my_id;
use crate::sync::park::{self, Poll, SleepOn, Spin, Wait, owner_alive};
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

/// Number of slots in the header page; slot 0 is the shared overflow slot.
const SLOT_COUNT: usize = (HEADER_LEN - SLOTS_AT) / 8;
const COUNT_MASK: u64 = 0xffff_ffff;
/// A joiner sleeps at once (a join is long) in [`park::SLICE`]s, releasing
/// the tasks of dead consumers after each.
const JOIN_WAIT: park::Policy<'static> = park::Policy {
    spin: Spin::Never,
    slice: Some(park::SLICE),
    probe_at_deadline: false,
    what: "join epoch",
};

fn slot_at(index: usize) -> usize {
    SLOTS_AT + 8 * index
}
fn pid_of(word: u64) -> u32 {
    (word >> 32) as u32
}
fn count_of(word: u64) -> u64 {
    word & COUNT_MASK
}

/// A [`Queue`] with task accounting, like Python's
/// `multiprocessing.JoinableQueue`: consumers call
/// [`task_done`](JoinableQueue::task_done) for each item they have
/// processed, and [`join`](JoinableQueue::join) waits until every item put
/// has been taken and marked done.
///
/// Cloning gives another handle to the same queue; so does passing it to a
/// child process. It has every method of [`Queue`].
///
/// # Examples
///
/// ```
/// use multiprocess::JoinableQueue;
///
/// let q = JoinableQueue::new()?;
/// q.put(21u32).unwrap();
/// let item = q.get().unwrap();
/// assert_eq!(item * 2, 42);
/// q.task_done().unwrap();
/// q.join(); // every item is done: returns at once
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Workers in child processes:
///
/// ```no_run
/// use multiprocess::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u64>) {
///     loop {
///         let n = q.get().unwrap();
///         println!("{n} squared is {}", n * n);
///         q.task_done().unwrap();
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let q = JoinableQueue::new()?;
///     let w = Process::builder().daemon(true).target(worker, (q.clone(),));
///     w.start()?;
///     for n in 0..10 {
///         q.put(n).unwrap();
///     }
///     q.join(); // all ten printed
///     Ok(())
/// }
/// ```
///
/// # Caveats
/// - A consumer that dies between `get` and `task_done` does not make
///   `join` wait forever (as it does in Python): a joiner notices the dead
///   process within about 100 ms, releases its tasks and counts them in
///   [`abandoned_tasks`](JoinableQueue::abandoned_tasks). The items are lost.
/// - `task_done` for an item that is still in the queue is an error here,
///   where Python accepts it as long as fewer calls than puts were made.
/// - Tasks are counted per process: call `task_done` in the process that
///   took the item (another process's call is accepted, and taken from any
///   process that has unfinished items).
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    /// This process's slot: `pid << 32 | (index + 1)`, 0 if none yet.
    slot_cache: Arc<AtomicU64>,
}

impl QueueBuilder {
    /// Creates a [`JoinableQueue`] with these options.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::QueueBuilder::new().maxsize(4).build_joinable::<u8>()?;
    /// assert_eq!(q.maxsize(), Some(4));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`build`](QueueBuilder::build).
    pub fn build_joinable<T: Serialize + DeserializeOwned + 'static>(
        self,
    ) -> io::Result<JoinableQueue<T>> {
        let ring = Ring::create(
            self.capacity,
            self.maxsize,
            codec::type_tag::<T>(),
            KIND_JOINABLE,
        )?;
        Ok(JoinableQueue::from_queue(Queue::from_ring(ring)))
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// Creates an empty, unbounded joinable queue (Python's
    /// `JoinableQueue()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::JoinableQueue<String> = multiprocess::JoinableQueue::new()?;
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn new() -> io::Result<JoinableQueue<T>> {
        QueueBuilder::new().build_joinable()
    }

    /// Creates an empty joinable queue holding at most `maxsize` items; 0
    /// means unbounded.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::bounded(1)?;
    /// q.put('x').unwrap();
    /// assert!(q.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn bounded(maxsize: usize) -> io::Result<JoinableQueue<T>> {
        QueueBuilder::new().maxsize(maxsize).build_joinable()
    }

    fn from_fd(fd: OwnedFd) -> io::Result<JoinableQueue<T>> {
        let ring = Ring::open(
            fd,
            codec::type_tag::<T>(),
            std::any::type_name::<T>(),
            KIND_JOINABLE,
        )?;
        Ok(JoinableQueue::from_queue(Queue::from_ring(ring)))
    }

    /// Puts an item, waiting while the queue is full; it counts as an
    /// unfinished task from the moment it is visible.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put(1u8).unwrap();
    /// assert_eq!(q.unfinished_tasks(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.queue.put(value)
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::JoinableQueue::bounded(1)?;
    /// q.put_timeout(1u8, Duration::from_millis(10)).unwrap();
    /// assert!(q.put_timeout(2u8, Duration::from_millis(10)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::put_timeout`].
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.queue.put_timeout(value, timeout)
    }

    /// Puts an item only if it fits now.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::bounded(1)?;
    /// q.try_put(1u8).unwrap();
    /// assert!(q.try_put(2u8).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::try_put`].
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        self.queue.try_put(value)
    }

    /// A taken item whose bytes did not decode is dropped: no task to mark.
    fn counted_get(
        &self,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<T, GetFail> {
        let slot = self.my_slot();
        let result = self.queue.get_impl(lock_deadline, deadline, Some(slot));
        if let Err(GetFail::Decode(_)) = result {
            self.decrement(slot);
        }
        result
    }

    /// Takes the oldest item, waiting as long as the queue is empty; the
    /// caller then owes a [`task_done`](JoinableQueue::task_done).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put(7i64).unwrap();
    /// assert_eq!(q.get().unwrap(), 7);
    /// q.task_done().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::get`] (an item that does not decode needs no
    /// `task_done`).
    pub fn get(&self) -> Result<T, GetError> {
        match self.counted_get(None, None) {
            Ok(v) => Ok(v),
            Err(GetFail::Decode(e)) => Err(GetError::Decode(e)),
            Err(GetFail::ShutDown) => Err(GetError::ShutDown),
            Err(GetFail::Deadline) => unreachable!("get without a deadline timed out"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let d = deadline::after(timeout);
        match self.counted_get(d, d) {
            Ok(v) => Ok(v),
            Err(GetFail::Deadline) => Err(GetTimeoutError::Timeout),
            Err(GetFail::Decode(e)) => Err(GetTimeoutError::Decode(e)),
            Err(GetFail::ShutDown) => Err(GetTimeoutError::ShutDown),
        }
    }

    /// Takes the oldest item if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// assert!(q.try_get().is_err());
    /// q.put(3u8).unwrap();
    /// assert_eq!(q.try_get().unwrap(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        let now = Instant::now();
        match self.counted_get(Some(now + TRY_LOCK_WAIT), Some(now)) {
            Ok(v) => Ok(v),
            Err(GetFail::Deadline) => Err(TryGetError::Empty),
            Err(GetFail::Decode(e)) => Err(TryGetError::Decode(e)),
            Err(GetFail::ShutDown) => Err(TryGetError::ShutDown),
        }
    }
}

impl<T> JoinableQueue<T> {
    fn from_queue(queue: Queue<T>) -> Self {
        JoinableQueue {
            queue,
            slot_cache: Arc::new(AtomicU64::new(0)),
        }
    }

    fn region(&self) -> &SharedRegion {
        self.queue.ring.region()
    }

    fn slot(&self, index: usize) -> &AtomicU64 {
        self.region().atomic_u64(slot_at(index))
    }

    /// This process's slot offset, claiming one if needed (the shared
    /// overflow slot 0 if the table is full).
    fn my_slot(&self) -> usize {
        let me = my_id();
        let cached = self.slot_cache.load(Ordering::Relaxed);
        if pid_of(cached) == me {
            let index = (cached & COUNT_MASK) as usize - 1;
            if pid_of(self.slot(index).load(Ordering::Relaxed)) == me {
                return slot_at(index);
            }
        }
        let index = self.claim(me);
        if index != 0 {
            self.slot_cache
                .store(u64::from(me) << 32 | (index as u64 + 1), Ordering::Relaxed);
        }
        slot_at(index)
    }

    fn claim(&self, me: u32) -> usize {
        for pass in 0..2 {
            if let Some(i) =
                (1..SLOT_COUNT).find(|&i| pid_of(self.slot(i).load(Ordering::Relaxed)) == me)
            {
                return i;
            }
            for i in 1..SLOT_COUNT {
                let s = self.slot(i);
                if s.load(Ordering::Relaxed) == 0
                    && s.compare_exchange(
                        0,
                        u64::from(me) << 32,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return i;
                }
            }
            if pass == 0 {
                // Full: free the slots of dead processes and try again.
                self.reap(true);
            }
        }
        0
    }

    /// Decrements the count at `offset` if it is non-zero.
    fn decrement(&self, offset: usize) -> bool {
        self.region()
            .atomic_u64(offset)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (count_of(w) > 0).then(|| w - 1)
            })
            .is_ok()
    }

    /// Clears the slots of dead processes (with a count, or all if `all`),
    /// adding their counts to the abandoned total. Returns whether any task
    /// was released.
    fn reap(&self, all: bool) -> bool {
        let mut released = false;
        for i in 1..SLOT_COUNT {
            let s = self.slot(i);
            let w = s.load(Ordering::SeqCst);
            if w == 0 || (!all && count_of(w) == 0) || owner_alive(pid_of(w)) {
                continue;
            }
            if s.compare_exchange(w, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
                && count_of(w) > 0
            {
                self.region()
                    .atomic_u64(ABANDONED_AT)
                    .fetch_add(count_of(w), Ordering::SeqCst);
                released = true;
            }
        }
        released
    }

    /// Marks one taken item as processed (Python's `q.task_done()`); wakes
    /// [`join`](JoinableQueue::join) when it was the last.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put("job".to_string()).unwrap();
    /// let _job = q.get().unwrap();
    /// q.task_done().unwrap();
    /// assert!(q.task_done().is_err()); // one item, one task_done
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TaskDoneError::TooManyCalls`] if no taken item is waiting to be
    /// marked done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let me = my_id();
        let mine = self.my_slot();
        let done = self.decrement(mine)
            || (1..SLOT_COUNT)
                .filter(|&i| pid_of(self.slot(i).load(Ordering::Relaxed)) == me)
                .chain(0..SLOT_COUNT)
                .any(|i| self.decrement(slot_at(i)));
        if !done {
            return Err(TaskDoneError::TooManyCalls);
        }
        self.wake_joiners();
        Ok(())
    }

    fn wake_joiners(&self) {
        let r = self.region();
        if r.atomic_u32(JOIN_WAITERS_AT).load(Ordering::SeqCst) != 0 {
            let epoch = r.atomic_u32(JOIN_EPOCH_AT);
            epoch.fetch_add(1, Ordering::SeqCst);
            futex::wake(epoch, u32::MAX);
        }
    }

    /// The number of items put and not yet marked done (Python's internal
    /// `_unfinished_tasks`); a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put(()).unwrap();
    /// q.get().unwrap();
    /// assert_eq!(q.unfinished_tasks(), 1);
    /// q.task_done().unwrap();
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unfinished_tasks(&self) -> u64 {
        // The ring first: a taken item is in its slot before it leaves it.
        let queued = self.queue.ring.len();
        let taken: u64 = (0..SLOT_COUNT)
            .map(|i| count_of(self.slot(i).load(Ordering::SeqCst)))
            .sum();
        queued + taken
    }

    /// Tasks released because the process that took them died before
    /// calling `task_done`, since the queue was created.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// assert_eq!(q.abandoned_tasks(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn abandoned_tasks(&self) -> u64 {
        self.region()
            .atomic_u64(ABANDONED_AT)
            .load(Ordering::SeqCst)
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), JoinTimeoutError> {
        let r = self.region();
        let epoch = r.atomic_u32(JOIN_EPOCH_AT);
        park::park(
            &JOIN_WAIT,
            deadline,
            Wait {
                // Eventcount: announce, read the epoch, re-check, sleep.
                sleepers: Some(r.atomic_u32(JOIN_WAITERS_AT)),
                poll: |_| Poll::ready_if(self.unfinished_tasks() == 0, Ok(())),
                sleep: || {
                    let seen = epoch.load(Ordering::SeqCst);
                    (self.unfinished_tasks() != 0).then_some(SleepOn {
                        word: epoch,
                        expected: seen,
                    })
                },
                probe: || {
                    self.reap(false);
                    (self.unfinished_tasks() == 0).then_some(Ok(()))
                },
                timed_out: || {
                    Some(Err(JoinTimeoutError::Timeout {
                        unfinished: self.unfinished_tasks(),
                    }))
                },
            },
        )
    }

    /// Blocks until every item put has been taken and marked done (Python's
    /// `q.join()`). Tasks of consumers that died are released (see the
    /// type's caveats).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.join(); // nothing pending
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn join(&self) {
        let _ = self.join_until(None);
    }

    /// Like [`join`](JoinableQueue::join), waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put(1u8).unwrap();
    /// assert!(q.join_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if tasks were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_until(deadline::after(timeout))
    }

    /// The number of items in the queue; a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::new()?;
    /// q.put(0u8).unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// Whether the queue holds no items (taken but unfinished items do not
    /// count); a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiprocess::JoinableQueue::<u8>::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a bounded queue holds `maxsize` items; a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiprocess::JoinableQueue::<u8>::bounded(1)?.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// The item limit given at creation, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::JoinableQueue::<u8>::new()?.maxsize(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// Closes this handle (Python's `q.close()`); other handles keep the
    /// queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.clone().close();
    /// q.put(1).unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) {}

    /// Shuts the queue down for every process, as
    /// [`Queue::shutdown`](crate::Queue::shutdown); with `immediate`, the
    /// items discarded count as done, so [`join`](JoinableQueue::join)
    /// returns once the tasks already taken are done (Python 3.13).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.put(1).unwrap();
    /// q.shutdown(true);
    /// q.join(); // the discarded item needs no task_done
    /// assert!(q.get().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        if self.queue.ring.shutdown(immediate) > 0 {
            self.wake_joiners();
        }
    }

    /// Whether [`shutdown`](JoinableQueue::shutdown) was called, by any
    /// process.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::JoinableQueue::<u8>::new()?;
    /// q.shutdown(false);
    /// assert!(q.is_shutdown());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.queue.ring.is_shutdown()
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
            slot_cache: self.slot_cache.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.qsize())
            .field("unfinished_tasks", &self.unfinished_tasks())
            .field("maxsize", &self.queue.ring.maxsize())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.queue.ring.fd(), "JoinableQueue", serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + 'static> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fd = codec::deserialize_fd("JoinableQueue", deserializer)?;
        JoinableQueue::from_fd(fd).map_err(|e| codec::handle_de_error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_put_get_done() {
        let q = JoinableQueue::new().unwrap();
        for i in 0..5u32 {
            q.put(i).unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 5);
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        for _ in 0..5 {
            q.get().unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 5);
        assert!(q.join_timeout(Duration::from_millis(20)).is_err());
        for _ in 0..5 {
            q.task_done().unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 0);
        q.join_timeout(Duration::from_millis(20)).unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    }

    #[test]
    fn joiner_is_woken_by_task_done() {
        let q = JoinableQueue::new().unwrap();
        q.put(1u8).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            q2.join_timeout(Duration::from_secs(10)).unwrap();
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        q.get().unwrap();
        q.task_done().unwrap();
        assert!(t.join().unwrap() < Duration::from_secs(5));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_slot_is_released() {
        let q = JoinableQueue::<u8>::new().unwrap();
        let dead = crate::sync::raw_lock::tests::dead_id();
        q.slot(5).store(u64::from(dead) << 32 | 3, Ordering::SeqCst);
        assert_eq!(q.unfinished_tasks(), 3);
        q.join_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(q.abandoned_tasks(), 3);
        assert_eq!(q.unfinished_tasks(), 0);
    }

    #[test]
    fn item_abandoned_mid_stream_is_not_a_task() {
        let q: JoinableQueue<Vec<u8>> = QueueBuilder::new()
            .capacity_bytes(1024)
            .build_joinable()
            .unwrap();
        // Bigger than the ring and nobody reading: the producer streams the
        // first chunk, then gives up with an ABORT record.
        let err = q.put_timeout(vec![7; 8192], Duration::from_millis(50));
        assert!(err.is_err());
        assert_eq!(q.unfinished_tasks(), 1, "counted until a consumer drops it");
        assert!(q.try_get().is_err());
        assert_eq!(q.unfinished_tasks(), 0);
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        q.put(vec![1, 2, 3]).unwrap();
        assert_eq!(q.get().unwrap(), [1, 2, 3]);
        q.task_done().unwrap();
        q.join_timeout(Duration::from_millis(10)).unwrap();
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn plain_and_joinable_descriptors_are_not_mixed() {
        let q = JoinableQueue::<u8>::new().unwrap();
        let fd = q.queue.ring.fd().try_clone_to_owned().unwrap();
        let err = Queue::<u8>::from_fd(fd).unwrap_err();
        assert!(err.to_string().contains("is a JoinableQueue"), "{err}");
        let p = Queue::<u8>::new().unwrap();
        let fd = p.ring.fd().try_clone_to_owned().unwrap();
        let err = JoinableQueue::<u8>::from_fd(fd).unwrap_err();
        assert!(err.to_string().contains("not a JoinableQueue"), "{err}");
    }
}
