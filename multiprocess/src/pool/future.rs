//! [`TaskFuture`]: the eventual result of [`Executor::submit`](super::Executor::submit) (Python's
//! `concurrent.futures.Future`), and the state it shares with the pool's
//! result thread, for which it is the job of a one-call chunk.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::error::{ExecutorError, TaskError};
use super::job::{Backlog, Cancel, Job};
use super::lock::{lock, wait_until};
use super::result::decode_outcomes;
use super::wire::Outcome;

enum State<R> {
    Pending,
    Ready(Result<R, ExecutorError>),
    Taken,
}

/// A done-callback, holding its own handle on the future.
type DoneCallback = Box<dyn FnOnce() + Send>;

struct Inner<R> {
    state: State<R>,
    /// Wakers to wake when the future completes: the `Future` impl's,
    /// [`as_completed`](crate::as_completed)'s and [`wait_futures`](crate::wait_futures)'.
    wakers: Vec<Waker>,
    /// [`TaskFuture::add_done_callback`]'s, run in order on completion.
    callbacks: Vec<DoneCallback>,
}

/// A future's state, shared between the [`TaskFuture`] and the pool's
/// result thread (for which it is the job of a one-call chunk).
pub(crate) struct Shared<R> {
    inner: Mutex<Inner<R>>,
    cv: Condvar,
}

impl<R> Shared<R> {
    pub(crate) fn new() -> Shared<R> {
        Shared {
            inner: Mutex::new(Inner {
                state: State::Pending,
                wakers: Vec::new(),
                callbacks: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn set(&self, result: Result<R, ExecutorError>) {
        let (wakers, callbacks) = {
            let mut inner = lock(&self.inner);
            if !matches!(inner.state, State::Pending) {
                return;
            }
            inner.state = State::Ready(result);
            (
                std::mem::take(&mut inner.wakers),
                std::mem::take(&mut inner.callbacks),
            )
        };
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
        for callback in callbacks {
            run_callback(callback);
        }
    }

    /// Registers `waker` to be woken on completion; wakes it now if the
    /// future is already complete.
    pub(super) fn listen(&self, waker: Waker) {
        let mut inner = lock(&self.inner);
        if matches!(inner.state, State::Pending) {
            inner.wakers.push(waker);
        } else {
            drop(inner);
            waker.wake();
        }
    }

    /// Waits until complete or `deadline`; the guard, and whether complete.
    fn wait_until(&self, deadline: Option<Instant>) -> (MutexGuard<'_, Inner<R>>, bool) {
        let mut inner = lock(&self.inner);
        while matches!(inner.state, State::Pending) {
            inner = match wait_until(&self.cv, inner, deadline) {
                Ok(next) => next,
                Err(timed_out) => return (timed_out, false),
            };
        }
        (inner, true)
    }
}

/// Runs a done-callback; a panic in it is reported and goes no further (as
/// Python logs a callback's exception), so the other callbacks still run.
fn run_callback(callback: DoneCallback) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).is_err() {
        eprintln!("multiprocess: a future's done-callback panicked");
    }
}

/// A copy of a stored error, for a result read again. Every error a future
/// stores is one of these variants; anything else (never stored) is
/// described by its text.
fn again(e: &ExecutorError) -> ExecutorError {
    match e {
        ExecutorError::BrokenPool {
            message,
            pid,
            signal,
        } => ExecutorError::BrokenPool {
            message: message.clone(),
            pid: *pid,
            signal: *signal,
        },
        ExecutorError::Task(t) => ExecutorError::Task(t.clone()),
        ExecutorError::Cancelled => ExecutorError::Cancelled,
        ExecutorError::Timeout => ExecutorError::Timeout,
        ExecutorError::ShutDown => ExecutorError::ShutDown,
        ExecutorError::ResultTaken => ExecutorError::ResultTaken,
        ExecutorError::Terminated => ExecutorError::Terminated,
        #[cfg(feature = "redis")]
        ExecutorError::Pool(super::error::PoolError::Backend(b)) => {
            ExecutorError::Pool(super::error::PoolError::Backend(b.clone()))
        }
        other => ExecutorError::Pool(super::error::PoolError::Broken(other.to_string())),
    }
}

/// The result, copied, leaving it in place (a second read gives the same).
fn peek<R: Clone>(inner: &Inner<R>) -> Result<R, ExecutorError> {
    match &inner.state {
        State::Ready(Ok(v)) => Ok(v.clone()),
        State::Ready(Err(e)) => Err(again(e)),
        State::Taken => Err(ExecutorError::ResultTaken),
        State::Pending => Err(ExecutorError::Timeout),
    }
}

fn take<R>(inner: &mut Inner<R>) -> Result<R, ExecutorError> {
    match std::mem::replace(&mut inner.state, State::Taken) {
        State::Ready(Ok(v)) => Ok(v),
        State::Ready(Err(e)) => {
            let copy = again(&e);
            inner.state = State::Ready(Err(e));
            Err(copy)
        }
        State::Taken => Err(ExecutorError::ResultTaken),
        State::Pending => {
            inner.state = State::Pending;
            Err(ExecutorError::Timeout)
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Job for Shared<R> {
    fn deliver(&self, _first: usize, count: u32, body: &[u8]) {
        for outcome in decode_outcomes::<R>(count, body).into_outcomes() {
            match outcome {
                Outcome::Ok(v) => self.set(Ok(v)),
                Outcome::Err(e) => self.set(Err(ExecutorError::Task(e))),
                Outcome::Skipped => {}
            }
        }
    }

    fn fail(&self, _index: usize, error: TaskError) {
        self.set(Err(ExecutorError::Task(error)));
    }

    fn cancel(&self, why: &Cancel) {
        self.set(Err(ExecutorError::from_cancel(why)));
    }
}

/// The eventual result of [`Executor::submit`](super::Executor::submit) (Python's
/// `concurrent.futures.Future`).
///
/// Wait for it with [`result`](Self::result) (blocking) or `.await` it: it
/// implements [`std::future::Future`], woken by the pool's result thread,
/// with no polling loop and no runtime needed.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiprocess::{Executor, ExecutorError};
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(200));
///     x * x
/// }
///
/// multiprocess::init();
/// let executor = Executor::new(1)?;
/// let first = executor.submit(slow_square, (3,))?;
/// let second = executor.submit(slow_square, (4,))?;
/// assert!(second.cancel()); // not started: the one worker is busy
/// assert!(matches!(first.result_timeout(Duration::from_millis(10)), Err(ExecutorError::Timeout)));
/// assert_eq!(first.result()?, 9);
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
pub struct TaskFuture<R> {
    pub(crate) shared: Arc<Shared<R>>,
    pub(crate) core: Weak<dyn Backlog>,
    /// The sequence number of its one-call chunk.
    pub(crate) seq: u64,
}

impl<R> fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFuture")
            .field("done", &self.done())
            .finish()
    }
}

impl<R> TaskFuture<R> {
    /// Whether the task finished, failed or was cancelled (Python's
    /// `done()`).
    pub fn done(&self) -> bool {
        !matches!(lock(&self.shared.inner).state, State::Pending)
    }

    /// Whether the future was cancelled (Python's `cancelled()`).
    pub fn cancelled(&self) -> bool {
        matches!(
            lock(&self.shared.inner).state,
            State::Ready(Err(ExecutorError::Cancelled))
        )
    }

    /// Cancels the task if it has not started (Python's `cancel()`): true
    /// if it is cancelled (now or before), false if it is running or done.
    /// A task counts as started once it was handed to a worker.
    pub fn cancel(&self) -> bool {
        if self.done() {
            return self.cancelled();
        }
        if let Some(core) = self.core.upgrade() {
            core.cancel_seq(self.seq, &Cancel::Cancelled);
        }
        self.cancelled()
    }

    /// Whether a worker is running the task (Python's `running()`): it was
    /// handed to a worker, so it can no longer be cancelled, and is not
    /// done.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(1)?;
    /// let first = executor.submit(nap, (300,))?;
    /// let second = executor.submit(nap, (0,))?;
    /// std::thread::sleep(Duration::from_millis(100));
    /// assert!(first.running() && !second.running());
    /// first.wait();
    /// assert!(!first.running());
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn running(&self) -> bool {
        !self.done()
            && self
                .core
                .upgrade()
                .is_some_and(|core| !core.is_pending(self.seq))
    }

    /// Runs `callback` with this future once it is done (Python's
    /// `add_done_callback(fn)`): on the pool's result thread when the task
    /// completes, or at once on this thread if it is already done.
    /// Callbacks run in the order they were added; one that panics is
    /// reported on stderr and the others still run.
    ///
    /// The callback gets its own handle on the future, so it may read the
    /// result with [`result`](Self::result), which leaves it in place for
    /// the future's other readers (as in Python).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let future = executor.submit(square, (7,))?;
    /// future.add_done_callback(move |f| {
    ///     let _ = tx.send(f.result().unwrap());
    /// });
    /// assert_eq!(rx.recv().unwrap(), 49);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn add_done_callback(&self, callback: impl FnOnce(&TaskFuture<R>) + Send + 'static)
    where
        R: Send + 'static,
    {
        let handle = TaskFuture {
            shared: self.shared.clone(),
            core: self.core.clone(),
            seq: self.seq,
        };
        let callback: DoneCallback = Box::new(move || callback(&handle));
        let mut inner = lock(&self.shared.inner);
        if matches!(inner.state, State::Pending) {
            inner.callbacks.push(callback);
        } else {
            drop(inner);
            run_callback(callback);
        }
    }

    /// Whether the task finished with an error other than cancellation
    /// (what Python's `FIRST_EXCEPTION` waits for).
    pub(super) fn failed(&self) -> bool {
        matches!(
            lock(&self.shared.inner).state,
            State::Ready(Err(ref e)) if !matches!(e, ExecutorError::Cancelled)
        )
    }

    /// Waits until the future is done (Python's `wait([f])`).
    pub fn wait(&self) {
        drop(self.shared.wait_until(None));
    }

    /// Waits at most `timeout` until the future is done; true if it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait_until(crate::deadline::after(timeout)).1
    }

    /// Waits for the task and returns its result (Python's `result()`):
    /// the same value (a clone) or the same error on every call, from any
    /// handle, including a done-callback's. For a result that is not
    /// `Clone`, [`take_result`](Self::take_result) moves it out once.
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Task`] if the task panicked or returned `Err`,
    /// [`ExecutorError::BrokenPool`] if a worker died,
    /// [`ExecutorError::Cancelled`] if cancelled,
    /// [`ExecutorError::ResultTaken`] if [`take_result`](Self::take_result)
    /// or `.await` already moved the value out.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(1)?;
    /// let future = executor.submit(square, (7,))?;
    /// assert_eq!(future.result()?, 49);
    /// assert_eq!(future.result()?, 49); // as in Python: the same again
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn result(&self) -> Result<R, ExecutorError>
    where
        R: Clone,
    {
        peek(&self.shared.wait_until(None).0)
    }

    /// Waits at most `timeout` for the task and returns its result
    /// (Python's `result(timeout)`), leaving it in place as
    /// [`result`](Self::result) does.
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Timeout`] if it is not done in time (the task goes
    /// on; call again later); otherwise as for [`result`](Self::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, ExecutorError>
    where
        R: Clone,
    {
        peek(&self.shared.wait_until(crate::deadline::after(timeout)).0)
    }

    /// Waits for the task and moves its result out, for any `R` (a later
    /// read on any handle gives [`ExecutorError::ResultTaken`]; an error
    /// stays readable).
    ///
    /// # Errors
    ///
    /// As for [`result`](Self::result).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn handle(n: u64) -> Vec<u8> {
    ///     vec![0; n as usize]
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(1)?;
    /// let future = executor.submit(handle, (3,))?;
    /// assert_eq!(future.take_result()?.len(), 3);
    /// assert!(matches!(future.take_result(), Err(multiprocess::ExecutorError::ResultTaken)));
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn take_result(&self) -> Result<R, ExecutorError> {
        take(&mut self.shared.wait_until(None).0)
    }

    /// [`take_result`](Self::take_result) waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Timeout`] if it is not done in time; otherwise as
    /// for [`result`](Self::result).
    pub fn take_result_timeout(&self, timeout: Duration) -> Result<R, ExecutorError> {
        take(&mut self.shared.wait_until(crate::deadline::after(timeout)).0)
    }
}

impl<R> Future for TaskFuture<R> {
    type Output = Result<R, ExecutorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = lock(&self.shared.inner);
        if matches!(inner.state, State::Pending) {
            if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                inner.wakers.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        Poll::Ready(take(&mut inner))
    }
}
