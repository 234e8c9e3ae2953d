//! Where results land: [`AsyncResult`] for `apply_async`/`map_async`, and
//! the iterators of `imap`/`imap_unordered`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::{PoolError, TaskError};
use super::job::{Cancel, Job};
use super::lock::{lock, wait_until};
use super::wire::{ALL_OK, MIXED, Outcome, decode_list_into};
use crate::codec;

/// A chunk's decoded outcomes: its results, if every call succeeded, or
/// one outcome per call.
pub(crate) enum Outcomes<R> {
    AllOk(Vec<R>),
    Mixed(Vec<Outcome<R>>),
}

impl<R> Outcomes<R> {
    /// One outcome per call, in chunk order.
    pub(crate) fn into_outcomes(self) -> Vec<Outcome<R>> {
        match self {
            Outcomes::AllOk(v) => v.into_iter().map(Outcome::Ok).collect(),
            Outcomes::Mixed(v) => v,
        }
    }
}

/// Decodes a chunk's result body (see `worker::run_chunk`); a body that does
/// not decode to `count` outcomes fails every call with a decode error.
pub(crate) fn decode_outcomes<R: DeserializeOwned + 'static>(
    count: u32,
    body: &[u8],
) -> Outcomes<R> {
    let decoded = match body.split_first() {
        Some((&ALL_OK, rest)) => {
            let mut v = Vec::with_capacity(count as usize);
            decode_list_into::<R>(rest, &mut v).map(|n| (n, Outcomes::AllOk(v)))
        }
        Some((&MIXED, rest)) => codec::decode::<Vec<Outcome<R>>>(rest, Vec::new())
            .map(|v| (v.len(), Outcomes::Mixed(v))),
        _ => Err(codec::malformed::<Vec<R>>("unknown result body".into())),
    };
    let message = match decoded {
        Ok((n, outcomes)) if n == count as usize => return outcomes,
        Ok((n, _)) => format!("expected {count} outcomes, got {n}"),
        Err(e) => e.to_string(),
    };
    let error = TaskError::Decode {
        what: "result".into(),
        message,
    };
    Outcomes::Mixed((0..count).map(|_| Outcome::Err(error.clone())).collect())
}

/// Functions run in the pool's process when a result is ready: Python's
/// `callback` and `error_callback`.
///
/// They run on the pool's result thread, before waiters of the
/// [`AsyncResult`] are woken; they should be quick, and must not wait for
/// another result of the same pool (which that thread would deliver).
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Callbacks, Pool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiprocess::init();
/// let pool = Pool::new(2)?;
/// let result = pool.apply_async_with(
///     square,
///     (7,),
///     Callbacks::new()
///         .on_success(|r: &u64| println!("got {r}"))
///         .on_error(|e| eprintln!("failed: {e}")),
/// )?;
/// assert_eq!(result.get()?, 49);
/// # Ok::<(), multiprocess::PoolError>(())
/// ```
pub struct Callbacks<T> {
    success: Option<SuccessFn<T>>,
    error: Option<ErrorFn>,
}

type SuccessFn<T> = Box<dyn FnOnce(&T) + Send>;
type ErrorFn = Box<dyn FnOnce(&PoolError) + Send>;

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            success: None,
            error: None,
        }
    }
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("success", &self.success.is_some())
            .field("error", &self.error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    ///
    /// # Examples
    ///
    /// ```
    /// let none: multiprocess::Callbacks<u32> = multiprocess::Callbacks::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the result when the work succeeds.
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = multiprocess::Callbacks::new().on_success(|v: &Vec<u32>| println!("{v:?}"));
    /// ```
    pub fn on_success(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the work fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let cb = multiprocess::Callbacks::<u32>::new().on_error(|e| eprintln!("{e}"));
    /// ```
    pub fn on_error(mut self, f: impl FnOnce(&PoolError) + Send + 'static) -> Self {
        self.error = Some(Box::new(f));
        self
    }
}

enum SlotState<T> {
    Pending,
    Ready(Result<T, PoolError>),
    Taken,
}

struct Slot<T> {
    state: Mutex<(SlotState<T>, Option<bool>)>,
    cv: Condvar,
}

impl<T> Slot<T> {
    fn set(&self, result: Result<T, PoolError>) {
        let mut st = lock(&self.state);
        st.1 = Some(result.is_ok());
        st.0 = SlotState::Ready(result);
        drop(st);
        self.cv.notify_all();
    }
}

/// A result that will be ready later (Python's `AsyncResult`), from
/// [`Pool::apply_async`](crate::Pool::apply_async) and
/// [`Pool::map_async`](crate::Pool::map_async).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiprocess::Pool;
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(100));
///     x * x
/// }
///
/// multiprocess::init();
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(slow_square, (3,))?;
/// assert!(!r.ready());
/// assert_eq!(r.get_timeout(Duration::from_secs(5))?, 9);
/// # Ok::<(), multiprocess::PoolError>(())
/// ```
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    fn new() -> (AsyncResult<T>, Arc<Slot<T>>) {
        let slot = Arc::new(Slot {
            state: Mutex::new((SlotState::Pending, None)),
            cv: Condvar::new(),
        });
        (AsyncResult { slot: slot.clone() }, slot)
    }

    fn take(&self, deadline: Option<Instant>) -> Result<T, PoolError> {
        let mut st = lock(&self.slot.state);
        loop {
            match std::mem::replace(&mut st.0, SlotState::Taken) {
                SlotState::Ready(r) => return r,
                SlotState::Taken => return Err(PoolError::ResultTaken),
                SlotState::Pending => st.0 = SlotState::Pending,
            }
            st = wait_until(&self.slot.cv, st, deadline).map_err(|_| PoolError::Timeout)?;
        }
    }

    /// Waits for the result and takes it (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] if a task failed (for `map_async`, the first
    /// failed item's), [`PoolError::Terminated`] if the pool was terminated
    /// first, [`PoolError::ResultTaken`] on a second call.
    pub fn get(&self) -> Result<T, PoolError> {
        self.take(None)
    }

    /// Waits at most `timeout` for the result and takes it.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] if it is not ready in time (the work goes on;
    /// call again later); otherwise as for [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.take(crate::deadline::after(timeout))
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        let mut st = lock(&self.slot.state);
        while matches!(st.0, SlotState::Pending) {
            st = self.slot.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits at most `timeout` until the result is ready; true if it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = crate::deadline::after(timeout);
        let mut st = lock(&self.slot.state);
        while matches!(st.0, SlotState::Pending) {
            match wait_until(&self.slot.cv, st, deadline) {
                Ok(next) => st = next,
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        !matches!(lock(&self.slot.state).0, SlotState::Pending)
    }

    /// Whether the work succeeded: `None` while not ready (where Python
    /// raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        lock(&self.slot.state).1
    }
}

struct ListState<R> {
    /// The results from position 0 on, as far as they have arrived without
    /// a gap: a chunk that arrives in order is decoded straight into it.
    all: Vec<R>,
    /// Runs of results that arrived ahead of a gap, by first position.
    parts: BTreeMap<usize, Vec<R>>,
    len: usize,
    remaining: usize,
    error: Option<(usize, TaskError)>,
    done: bool,
}

/// The job behind `apply_async`, `map_async` and `starmap_async`: collects
/// every outcome, then completes the [`AsyncResult`] once.
pub(crate) struct ListJob<R, T> {
    state: Mutex<ListState<R>>,
    finish: fn(Vec<R>) -> T,
    callbacks: Mutex<Option<Callbacks<T>>>,
    slot: Arc<Slot<T>>,
}

impl<R: Send + 'static, T: Send + 'static> ListJob<R, T> {
    pub(crate) fn new(
        len: usize,
        finish: fn(Vec<R>) -> T,
        callbacks: Callbacks<T>,
    ) -> (Arc<ListJob<R, T>>, AsyncResult<T>) {
        let (result, slot) = AsyncResult::new();
        let job = Arc::new(ListJob {
            state: Mutex::new(ListState {
                all: Vec::with_capacity(len),
                parts: BTreeMap::new(),
                len,
                remaining: len,
                error: None,
                done: false,
            }),
            finish,
            callbacks: Mutex::new(Some(callbacks)),
            slot,
        });
        if len == 0 {
            lock(&job.state).done = true;
            job.complete(Ok(Vec::new()));
        }
        (job, result)
    }

    fn complete(&self, result: Result<Vec<R>, PoolError>) {
        let result = result.map(self.finish);
        let callbacks = lock(&self.callbacks).take().unwrap_or_default();
        match &result {
            Ok(v) => {
                if let Some(f) = callbacks.success {
                    f(v)
                }
            }
            Err(e) => {
                if let Some(f) = callbacks.error {
                    f(e)
                }
            }
        }
        self.slot.set(result);
    }

    /// Records outcomes under the lock; returns the final result if this
    /// completed the job.
    fn record(
        &self,
        outcomes: impl Iterator<Item = (usize, Result<R, TaskError>)>,
    ) -> Option<Result<Vec<R>, PoolError>> {
        let mut st = lock(&self.state);
        for (i, outcome) in outcomes {
            if st.done || i >= st.len {
                continue;
            }
            st.remaining = st.remaining.saturating_sub(1);
            match outcome {
                Ok(v) => {
                    if i == st.all.len() {
                        st.all.push(v);
                    } else {
                        st.parts.insert(i, vec![v]);
                    }
                }
                Err(e) => {
                    if st.error.as_ref().is_none_or(|(j, _)| i < *j) {
                        st.error = Some((i, e));
                    }
                }
            }
        }
        Self::finish_if_done(&mut st)
    }

    /// Decodes the `ALL_OK` results of the `count` calls from `first` on
    /// (`encoded`, a `Vec<R>`): straight onto the end of the results if
    /// they continue them, else into a run of their own.
    fn record_encoded(
        &self,
        first: usize,
        count: u32,
        encoded: &[u8],
    ) -> Option<Result<Vec<R>, PoolError>>
    where
        R: DeserializeOwned,
    {
        let count = count as usize;
        let mut st = lock(&self.state);
        if st.done || first + count > st.len {
            return None;
        }
        let decoded = if first == st.all.len() {
            let start = st.all.len();
            let r = decode_list_into(encoded, &mut st.all);
            if !matches!(r, Ok(n) if n == count) {
                st.all.truncate(start);
            }
            r
        } else {
            let mut run = Vec::with_capacity(count);
            let r = decode_list_into(encoded, &mut run);
            if matches!(r, Ok(n) if n == count) {
                st.parts.insert(first, run);
            }
            r
        };
        st.remaining = st.remaining.saturating_sub(count);
        let message = match decoded {
            Ok(n) if n == count => None,
            Ok(n) => Some(format!("expected {count} outcomes, got {n}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(message) = message
            && st.error.as_ref().is_none_or(|(j, _)| first < *j)
        {
            let error = TaskError::Decode {
                what: "result".into(),
                message,
            };
            st.error = Some((first, error));
        }
        Self::finish_if_done(&mut st)
    }

    fn finish_if_done(st: &mut ListState<R>) -> Option<Result<Vec<R>, PoolError>> {
        // Runs that now continue the results join them.
        while let Some(run) = st.parts.remove(&st.all.len()) {
            st.all.extend(run);
        }
        if st.done || st.remaining > 0 {
            return None;
        }
        st.done = true;
        if let Some((index, error)) = st.error.take() {
            return Some(Err(PoolError::Task { index, error }));
        }
        debug_assert!(st.parts.is_empty() && st.all.len() == st.len);
        Some(Ok(std::mem::take(&mut st.all)))
    }
}

impl<R, T> Job for ListJob<R, T>
where
    R: DeserializeOwned + Send + 'static,
    T: Send + 'static,
{
    fn deliver(&self, first: usize, count: u32, body: &[u8]) {
        if let Some((&ALL_OK, encoded)) = body.split_first() {
            if let Some(result) = self.record_encoded(first, count, encoded) {
                self.complete(result);
            }
            return;
        }
        let outcomes = decode_outcomes::<R>(count, body).into_outcomes();
        let items = outcomes
            .into_iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Ok(v) => Some((first + i, Ok(v))),
                Outcome::Err(e) => Some((first + i, Err(e))),
                Outcome::Skipped => None,
            });
        if let Some(result) = self.record(items) {
            self.complete(result);
        }
    }

    fn fail(&self, index: usize, error: TaskError) {
        if let Some(result) = self.record(std::iter::once((index, Err(error)))) {
            self.complete(result);
        }
    }

    fn cancel(&self, why: &Cancel) {
        {
            let mut st = lock(&self.state);
            if st.done {
                return;
            }
            st.done = true;
        }
        self.complete(Err(why.error()));
    }
}

struct IterState<R> {
    ordered: BTreeMap<usize, Result<R, TaskError>>,
    unordered: VecDeque<Result<R, TaskError>>,
    cancelled: bool,
}

/// The job behind `imap` and `imap_unordered`.
pub(crate) struct IterJob<R> {
    ordered: bool,
    state: Mutex<IterState<R>>,
    cv: Condvar,
}

impl<R> IterJob<R> {
    pub(crate) fn new(ordered: bool) -> Arc<IterJob<R>> {
        Arc::new(IterJob {
            ordered,
            state: Mutex::new(IterState {
                ordered: BTreeMap::new(),
                unordered: VecDeque::new(),
                cancelled: false,
            }),
            cv: Condvar::new(),
        })
    }

    fn push(&self, items: impl Iterator<Item = (usize, Result<R, TaskError>)>) {
        let mut st = lock(&self.state);
        for (i, item) in items {
            if self.ordered {
                st.ordered.insert(i, item);
            } else {
                st.unordered.push_back(item);
            }
        }
        drop(st);
        self.cv.notify_all();
    }
}

impl<R: DeserializeOwned + Send + 'static> Job for IterJob<R> {
    fn deliver(&self, first: usize, count: u32, body: &[u8]) {
        let outcomes = decode_outcomes::<R>(count, body).into_outcomes();
        self.push(
            outcomes
                .into_iter()
                .enumerate()
                .filter_map(|(i, o)| match o {
                    Outcome::Ok(v) => Some((first + i, Ok(v))),
                    Outcome::Err(e) => Some((first + i, Err(e))),
                    Outcome::Skipped => None,
                }),
        );
    }

    fn fail(&self, index: usize, error: TaskError) {
        self.push(std::iter::once((index, Err(error))));
    }

    fn cancel(&self, _why: &Cancel) {
        lock(&self.state).cancelled = true;
        self.cv.notify_all();
    }
}

/// The results of [`Pool::imap`](crate::Pool::imap) (in input order) or
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered) (as they finish):
/// one `Result` per input item, produced as the workers finish them.
///
/// If the pool is terminated first, the missing items come out as
/// [`TaskError::Cancelled`].
///
/// # Examples
///
/// ```no_run
/// use multiprocess::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiprocess::init();
/// let pool = Pool::new(2)?;
/// let squares: Vec<u64> = pool.imap(square, 0..10)?.map(Result::unwrap).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok::<(), multiprocess::PoolError>(())
/// ```
pub struct ImapIter<R> {
    job: Arc<IterJob<R>>,
    next: usize,
    total: usize,
}

impl<R> fmt::Debug for ImapIter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapIter")
            .field("ordered", &self.job.ordered)
            .field("next", &self.next)
            .field("total", &self.total)
            .finish()
    }
}

impl<R> ImapIter<R> {
    pub(crate) fn new(job: Arc<IterJob<R>>, total: usize) -> ImapIter<R> {
        ImapIter {
            job,
            next: 0,
            total,
        }
    }

    /// The next result, waiting at most `timeout` (Python's
    /// `next(timeout)`): `Ok(None)` at the end.
    ///
    /// # Errors
    ///
    /// [`PoolError::Timeout`] if the next result is not ready in time; the
    /// iterator stays where it was.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        self.next_until(crate::deadline::after(timeout))
    }

    pub(crate) fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        if self.next >= self.total {
            return Ok(None);
        }
        let mut st = lock(&self.job.state);
        loop {
            let item = if self.job.ordered {
                st.ordered.remove(&self.next)
            } else {
                st.unordered.pop_front()
            };
            if let Some(item) = item {
                self.next += 1;
                return Ok(Some(item));
            }
            if st.cancelled {
                self.next += 1;
                return Ok(Some(Err(TaskError::Cancelled)));
            }
            st = wait_until(&self.job.cv, st, deadline).map_err(|_| PoolError::Timeout)?;
        }
    }
}

impl<R> Iterator for ImapIter<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl<R> ExactSizeIterator for ImapIter<R> {}
