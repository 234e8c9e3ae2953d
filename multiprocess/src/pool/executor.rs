//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor`, built on
//! the pool's machinery.
//!
//! Each [`submit`](Executor::submit) is a one-call chunk of the pool (see the
//! design notes in `pool/mod.rs`) whose job is the future's shared state;
//! [`map`](Executor::map) is the pool's ordered `imap`. The difference from
//! [`Pool`] is what a worker's death means. The pool's monitor turns every
//! worker exit into an exact marker on the results queue; for an executor
//! (`Config::break_on_death`), an *abrupt* exit — killed by a signal, a
//! non-zero exit code, or any exit while it held work — makes the result
//! thread *break* the pool instead of replacing the worker: the other
//! workers are killed, every pending and running future fails with
//! [`ExecutorError::BrokenPool`] naming the dead worker's pid and signal,
//! and further submissions fail the same way, as Python's
//! `BrokenProcessPool`. A worker that exits cleanly after
//! `max_tasks_per_child` tasks is replaced as in the pool.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::core::{BrokenWhy, Core, job_id, lock, wait_until};
use super::error::{PoolError, TaskError};
use super::result::{Cancel, ImapIter, Job, decode_outcomes};
use super::task::Task;
use super::wire::Outcome;
use super::{Pool, PoolBuilder};
use crate::process::{StartMethod, Target};

/// Why an [`Executor`] call or a [`TaskFuture`] gave no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// A worker process died abruptly (Python's `BrokenProcessPool`): the
    /// executor killed its other workers, failed every pending and running
    /// future, and takes no more work.
    #[error("the executor is broken: {message}")]
    BrokenPool {
        /// What happened, naming the worker.
        message: String,
        /// The pid of the worker whose death broke the executor, if a death
        /// did (a failing initializer also breaks it).
        pid: Option<u32>,
        /// The signal that killed that worker, if one did.
        signal: Option<i32>,
    },
    /// The task panicked or returned `Err` (Python re-raises the task's
    /// exception); the executor keeps working.
    #[error("{0}")]
    Task(TaskError),
    /// The future was cancelled before it started.
    #[error("the task was cancelled")]
    Cancelled,
    /// No result came within the timeout; the task goes on running.
    #[error("timed out waiting for the result")]
    Timeout,
    /// [`Executor::shutdown`] was called: no new work is taken (Python's
    /// `RuntimeError: cannot schedule new futures after shutdown`).
    #[error("cannot schedule new tasks after shutdown")]
    ShutDown,
    /// The result was already taken by an earlier `result` or `.await`.
    #[error("the result was already taken")]
    ResultTaken,
    /// Setting up the executor or encoding the arguments failed.
    #[error(transparent)]
    Pool(PoolError),
}

impl ExecutorError {
    fn broken(why: BrokenWhy) -> ExecutorError {
        ExecutorError::BrokenPool {
            message: why.message,
            pid: why.pid,
            signal: why.signal,
        }
    }

    fn from_pool(core: &Core, e: PoolError) -> ExecutorError {
        match e {
            PoolError::Closed | PoolError::Terminated => ExecutorError::ShutDown,
            PoolError::Broken(message) => match core.broken_why() {
                Some(why) => ExecutorError::broken(why),
                None => ExecutorError::BrokenPool {
                    message,
                    pid: None,
                    signal: None,
                },
            },
            PoolError::Timeout => ExecutorError::Timeout,
            other => ExecutorError::Pool(other),
        }
    }

    fn from_cancel(why: &Cancel) -> ExecutorError {
        match why {
            Cancel::Broken(b) => ExecutorError::broken(b.clone()),
            Cancel::Cancelled | Cancel::Terminated => ExecutorError::Cancelled,
        }
    }
}

/// Options for an [`Executor`]: Python's `ProcessPoolExecutor(max_workers,
/// mp_context, initializer, initargs, max_tasks_per_child)`.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Executor, StartMethod};
///
/// fn setup(tag: String) {
///     eprintln!("worker {} ready ({tag})", std::process::id());
/// }
///
/// multiprocess::init();
/// let executor = Executor::builder()
///     .max_workers(2)
///     .initializer(setup, ("demo".to_string(),))
///     .max_tasks_per_child(100)
///     .start_method(StartMethod::Spawn)
///     .build()?;
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
#[derive(Debug, Default)]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
}

impl ExecutorBuilder {
    /// The number of worker processes (default:
    /// [`cpu_count`](crate::cpu_count)).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.pool = self.pool.processes(n);
        self
    }

    /// A function every worker runs once when it starts (Python's
    /// `initializer`/`initargs`). If it fails, the executor is broken.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + Send + 'static,
    {
        self.pool = self.pool.initializer(f, args);
        self
    }

    /// Replace each worker after it has run `n` tasks (Python's
    /// `max_tasks_per_child`). `0` is an error.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.pool = self.pool.maxtasksperchild(n);
        self
    }

    /// How workers are started (Python's `mp_context`); `Fork` is refused,
    /// as for [`Pool`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Pool`] with the reason, as for
    /// [`PoolBuilder::build`].
    pub fn build(self) -> Result<Executor, ExecutorError> {
        let mut pool = self.pool;
        pool.break_on_death = true;
        let pool = pool.build().map_err(ExecutorError::Pool)?;
        Ok(Executor {
            pool: Arc::new(pool),
            shutdown_thread: Mutex::new(None),
        })
    }
}

/// A pool of worker processes handing out futures (Python's
/// `concurrent.futures.ProcessPoolExecutor`).
///
/// [`submit`](Self::submit) returns a [`TaskFuture`]: wait for it, poll it,
/// cancel it while it has not started, or `.await` it (it implements
/// [`std::future::Future`]). [`map`](Self::map) yields results in input
/// order as they come; [`as_completed`] yields futures as they finish.
///
/// Unlike [`Pool`], which replaces a worker that dies and fails only the
/// call it ran, an executor follows Python's `BrokenProcessPool` rule: when
/// a worker dies abruptly, every pending and running future fails with
/// [`ExecutorError::BrokenPool`] (naming the worker's pid and signal), and
/// so does every later `submit` — never a hang.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::Executor;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), multiprocess::ExecutorError> {
///     multiprocess::init();
///     let executor = Executor::new(2)?;
///     let future = executor.submit(square, (7,))?;
///     assert_eq!(future.result()?, 49);
///     let squares: Vec<u64> = executor.map(square, 1..=4)?.collect::<Result<_, _>>()?;
///     assert_eq!(squares, [1, 4, 9, 16]);
///     Ok(())
/// }
/// ```
///
/// # Caveats
///
/// - Dropping an executor is `shutdown(true, false)`, like leaving
///   Python's `with ProcessPoolExecutor() as e:` block: it waits for every
///   submitted task, then stops the workers. Call
///   [`shutdown`](Self::shutdown) with `cancel_futures` first to drop
///   queued work instead.
/// - Futures outlive the executor: a future dropped unfinished still runs.
pub struct Executor {
    pool: Arc<Pool>,
    shutdown_thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("max_workers", &self.pool.processes())
            .field("broken", &self.pool.core.broken_why().is_some())
            .finish()
    }
}

/// Options for [`Executor::map_with`]: Python's `chunksize` and `timeout`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let options = multiprocess::MapOptions::new().chunksize(100).timeout(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl MapOptions {
    /// Chunk size 1 and no timeout, as Python's defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = multiprocess::MapOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How many items travel to a worker at once (default 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = multiprocess::MapOptions::new().chunksize(64);
    /// ```
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n);
        self
    }

    /// The time, from the call to `map_with`, by which every result must be
    /// in; a result not in by then comes out as [`ExecutorError::Timeout`],
    /// which ends the iterator and cancels the items not yet started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = multiprocess::MapOptions::new().timeout(Duration::from_secs(1));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl Executor {
    /// An executor of `max_workers` worker processes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Pool`] with [`PoolError::ZeroProcesses`] for 0
    /// (Python's `ValueError`), or a worker that cannot start.
    pub fn new(max_workers: usize) -> Result<Executor, ExecutorError> {
        Executor::builder().max_workers(max_workers).build()
    }

    /// Options for an executor; see [`ExecutorBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::builder().max_workers(2).build()?;
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The pids of the current workers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// assert_eq!(executor.worker_pids().len(), 2);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.worker_pids()
    }

    /// Schedules `f(args…)` in a worker and returns its future (Python's
    /// `submit`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// let future = executor.submit(add, (2, 3))?;
    /// assert_eq!(future.result()?, 5);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ExecutorError::ShutDown`] after [`shutdown`](Self::shutdown),
    /// [`ExecutorError::BrokenPool`] once a worker died, and
    /// [`ExecutorError::Pool`] for arguments that do not serialize.
    pub fn submit<F, Args>(&self, f: F, args: Args) -> Result<TaskFuture<F::Output>, ExecutorError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        let core = &self.pool.core;
        let err = |e| ExecutorError::from_pool(core, e);
        self.pool.check_open().map_err(err)?;
        let entry = f.entry().offset();
        let shared = Arc::new(Shared::new());
        let job: Arc<dyn Job> = shared.clone();
        let chunks = self
            .pool
            .encode_chunks(entry, std::slice::from_ref(&args), 1, &job)
            .map_err(err)?;
        let seq = core.submit(chunks).map_err(err)?;
        Ok(TaskFuture {
            shared,
            core: Arc::downgrade(core),
            seq,
        })
    }

    /// Runs `f` on every item and yields the results in input order as they
    /// come (Python's `Executor.map`): the items are submitted at once, the
    /// results produced lazily. Each item gives its own `Result`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// for r in executor.map(square, 0..5)? {
    ///     println!("{}", r?);
    /// }
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`submit`](Self::submit).
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_with(f, iterable, MapOptions::new())
    }

    /// [`map`](Self::map) with a chunk size and/or a timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiprocess::MapOptions;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// let options = MapOptions::new().chunksize(100).timeout(Duration::from_secs(10));
    /// let squares: Vec<u64> = executor.map_with(square, 0..1000, options)?.collect::<Result<_, _>>()?;
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`submit`](Self::submit), and [`PoolError::ZeroChunksize`].
    pub fn map_with<F, A, I>(
        &self,
        f: F,
        iterable: I,
        options: MapOptions,
    ) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let deadline = options.timeout.and_then(crate::deadline::after);
        let core = &self.pool.core;
        let entry = f.entry().offset();
        let items: Vec<A> = iterable.into_iter().collect();
        let (iter, job) = self
            .pool
            .submit_iter_seqs(entry, items, options.chunksize.unwrap_or(1), true)
            .map_err(|e| ExecutorError::from_pool(core, e))?;
        Ok(MapResults {
            iter,
            core: Arc::downgrade(core),
            job,
            deadline,
            finished: false,
        })
    }

    /// Stops taking work (Python's `shutdown`). With `cancel_futures`, the
    /// futures that have not started are cancelled. With `wait`, returns
    /// once every remaining task has finished and the workers have exited;
    /// without, returns at once and a background thread finishes the job.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// let future = executor.submit(square, (3,))?;
    /// executor.shutdown(true, false);
    /// assert_eq!(future.result()?, 9);
    /// assert!(executor.submit(square, (4,)).is_err());
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.pool.close();
        if cancel_futures {
            self.pool.core.cancel_pending(|_| true, &Cancel::Cancelled);
        }
        let mut thread = lock(&self.shutdown_thread);
        if wait {
            match thread.take() {
                Some(handle) => {
                    let _ = handle.join();
                }
                None => {
                    let _ = self.pool.join();
                }
            }
        } else if thread.is_none() {
            let pool = self.pool.clone();
            let spawned = std::thread::Builder::new()
                .name("multiprocess-executor-shutdown".into())
                .spawn(move || {
                    let _ = pool.join();
                });
            match spawned {
                Ok(handle) => *thread = Some(handle),
                Err(_) => {
                    let _ = self.pool.join();
                }
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

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
    /// [`as_completed`]'s and [`wait_futures`]'.
    wakers: Vec<Waker>,
    /// [`TaskFuture::add_done_callback`]'s, run in order on completion.
    callbacks: Vec<DoneCallback>,
}

/// A future's state, shared between the [`TaskFuture`] and the pool's
/// result thread (for which it is the job of a one-call chunk).
struct Shared<R> {
    inner: Mutex<Inner<R>>,
    cv: Condvar,
}

impl<R> Shared<R> {
    fn new() -> Shared<R> {
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
    fn listen(&self, waker: Waker) {
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

fn take<R>(inner: &mut Inner<R>) -> Result<R, ExecutorError> {
    match std::mem::replace(&mut inner.state, State::Taken) {
        State::Ready(r) => r,
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

/// The eventual result of [`Executor::submit`] (Python's
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
    shared: Arc<Shared<R>>,
    core: Weak<Core>,
    seq: u64,
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
            core.cancel_pending(|c| c.seq == self.seq, &Cancel::Cancelled);
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
    /// The callback gets its own handle on the future, so it may take the
    /// result with [`result`](Self::result) (the value moves out once: a
    /// later `result()` on any handle gives
    /// [`ExecutorError::ResultTaken`]).
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
    fn failed(&self) -> bool {
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

    /// Waits for the task and takes its result (Python's `result()`).
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Task`] if the task panicked or returned `Err`,
    /// [`ExecutorError::BrokenPool`] if a worker died,
    /// [`ExecutorError::Cancelled`] if cancelled,
    /// [`ExecutorError::ResultTaken`] on a second call.
    pub fn result(&self) -> Result<R, ExecutorError> {
        take(&mut self.shared.wait_until(None).0)
    }

    /// Waits at most `timeout` for the task and takes its result (Python's
    /// `result(timeout)`).
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Timeout`] if it is not done in time (the task goes
    /// on; call again later); otherwise as for [`result`](Self::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, ExecutorError> {
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

/// Wakes [`AsCompleted`] with the index of a finished future.
struct Ready {
    queue: Mutex<VecDeque<usize>>,
    cv: Condvar,
}

struct IndexWaker {
    index: usize,
    ready: Arc<Ready>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        lock(&self.ready.queue).push_back(self.index);
        self.ready.cv.notify_all();
    }
}

/// Yields futures as they finish (Python's `as_completed`); from
/// [`as_completed`].
///
/// Each item is `Ok(future)`, already done, so its
/// [`result`](TaskFuture::result) returns at once. With a
/// [`timeout`](Self::timeout), an item not done by then comes out as
/// `Err(ExecutorError::Timeout)`, which ends the iterator.
pub struct AsCompleted<R> {
    futures: Vec<Option<TaskFuture<R>>>,
    ready: Arc<Ready>,
    left: usize,
    start: Instant,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

/// Yields `futures` as they finish, whatever their order (Python's
/// `concurrent.futures.as_completed`). Futures already done come first.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Executor, as_completed};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiprocess::init();
/// let executor = Executor::new(2)?;
/// let futures = (1..=3).map(|x| executor.submit(square, (x,))).collect::<Result<Vec<_>, _>>()?;
/// let mut total = 0;
/// for future in as_completed(futures) {
///     total += future?.result()?;
/// }
/// assert_eq!(total, 14);
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
pub fn as_completed<R>(futures: impl IntoIterator<Item = TaskFuture<R>>) -> AsCompleted<R> {
    let ready = Arc::new(Ready {
        queue: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
    });
    let futures: Vec<Option<TaskFuture<R>>> = futures.into_iter().map(Some).collect();
    for (index, f) in futures.iter().enumerate() {
        let waker = Waker::from(Arc::new(IndexWaker {
            index,
            ready: ready.clone(),
        }));
        if let Some(f) = f {
            f.shared.listen(waker);
        }
    }
    AsCompleted {
        left: futures.len(),
        futures,
        ready,
        start: Instant::now(),
        deadline: None,
        timed_out: false,
    }
}

impl<R> AsCompleted<R> {
    /// Gives up `timeout` after [`as_completed`] was called (Python's
    /// `timeout=`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiprocess::{Executor, as_completed};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = Executor::new(2)?;
    /// let futures = vec![executor.submit(square, (2,))?];
    /// for future in as_completed(futures).timeout(Duration::from_secs(10)) {
    ///     println!("{}", future?.result()?);
    /// }
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = self.start.checked_add(timeout);
        self
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Result<TaskFuture<R>, ExecutorError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        let mut queue = lock(&self.ready.queue);
        loop {
            while let Some(index) = queue.pop_front() {
                if let Some(f) = self.futures.get_mut(index).and_then(Option::take) {
                    self.left -= 1;
                    return Some(Ok(f));
                }
            }
            queue = match wait_until(&self.ready.cv, queue, self.deadline) {
                Ok(next) => next,
                Err(_) => {
                    self.timed_out = true;
                    return Some(Err(ExecutorError::Timeout));
                }
            };
        }
    }
}

/// When [`wait_futures`] returns (Python's `FIRST_COMPLETED`,
/// `FIRST_EXCEPTION` and `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done or cancelled.
    FirstCompleted,
    /// As soon as any future fails (an error other than cancellation);
    /// if none does, when all are done.
    FirstException,
    /// When all futures are done or cancelled.
    AllCompleted,
}

/// The futures [`wait_futures`] was given, split by whether they are done
/// (Python's `DoneAndNotDoneFutures`); each side keeps the input order.
#[derive(Debug)]
pub struct DoneAndNotDone<R> {
    /// The futures that are done or cancelled.
    pub done: Vec<TaskFuture<R>>,
    /// The others.
    pub not_done: Vec<TaskFuture<R>>,
}

/// Waits for `futures` until `return_when` holds or `timeout` passes
/// (`None`: no limit), then splits them into done and not done (Python's
/// `concurrent.futures.wait`; named apart from the crate's
/// [`wait`](crate::wait) for connections and processes). Futures that are
/// already done count at once; a timeout is not an error, it simply leaves
/// futures in `not_done`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiprocess::{Executor, ReturnWhen, wait_futures};
///
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// multiprocess::init();
/// let executor = Executor::new(2)?;
/// let futures = vec![executor.submit(nap, (2000,))?, executor.submit(nap, (10,))?];
/// let split = wait_futures(futures, ReturnWhen::FirstCompleted, Some(Duration::from_secs(10)));
/// assert_eq!(split.done.len(), 1);
/// assert_eq!(split.done[0].result()?, 10);
/// assert_eq!(split.not_done.len(), 1);
/// # Ok::<(), multiprocess::ExecutorError>(())
/// ```
pub fn wait_futures<R>(
    futures: impl IntoIterator<Item = TaskFuture<R>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> DoneAndNotDone<R> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let futures: Vec<TaskFuture<R>> = futures.into_iter().collect();
    let ready = Arc::new(Ready {
        queue: Mutex::new(VecDeque::new()),
        cv: Condvar::new(),
    });
    for (index, f) in futures.iter().enumerate() {
        f.shared.listen(Waker::from(Arc::new(IndexWaker {
            index,
            ready: ready.clone(),
        })));
    }
    let mut done = vec![false; futures.len()];
    let mut left = futures.len();
    let mut queue = lock(&ready.queue);
    // Each future's waker reports its index once; the queue lock is never
    // taken while a future's own lock is held, so looking into a future
    // here cannot deadlock.
    loop {
        let mut failed = false;
        while let Some(index) = queue.pop_front() {
            if let Some(d) = done.get_mut(index).filter(|d| !**d) {
                *d = true;
                left -= 1;
                failed |= futures[index].failed();
            }
        }
        let enough = match return_when {
            ReturnWhen::FirstCompleted => left < futures.len(),
            ReturnWhen::FirstException => failed || left == 0,
            ReturnWhen::AllCompleted => left == 0,
        };
        if enough || futures.is_empty() {
            break;
        }
        match wait_until(&ready.cv, queue, deadline) {
            Ok(next) => queue = next,
            Err(_) => break,
        }
    }
    // Those that finished after the last look count as done too.
    let mut split = DoneAndNotDone {
        done: Vec::new(),
        not_done: Vec::new(),
    };
    for f in futures {
        if f.done() {
            split.done.push(f);
        } else {
            split.not_done.push(f);
        }
    }
    split
}

/// The results of [`Executor::map`], in input order, produced as the
/// workers finish them.
///
/// Dropping it (or a timeout) cancels the items not yet started, as
/// closing Python's `map` generator does.
pub struct MapResults<R> {
    iter: ImapIter<R>,
    core: Weak<Core>,
    /// The job's identity (`core::job_id`), to withdraw its chunks.
    job: usize,
    deadline: Option<Instant>,
    finished: bool,
}

impl<R> fmt::Debug for MapResults<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResults")
            .field("left", &self.iter.len())
            .finish()
    }
}

impl<R> MapResults<R> {
    fn cancel_rest(&mut self) {
        if let Some(core) = self.core.upgrade() {
            let job = self.job;
            core.cancel_pending(|c| job_id(&c.job) == job, &Cancel::Cancelled);
        }
    }
}

impl<R> Iterator for MapResults<R> {
    type Item = Result<R, ExecutorError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.iter.next_until(self.deadline) {
            Ok(None) => {
                self.finished = true;
                None
            }
            Ok(Some(Ok(v))) => Some(Ok(v)),
            Ok(Some(Err(TaskError::Cancelled))) => {
                let broken = self.core.upgrade().and_then(|c| c.broken_why());
                Some(Err(match broken {
                    Some(why) => ExecutorError::broken(why),
                    None => ExecutorError::Cancelled,
                }))
            }
            Ok(Some(Err(e))) => Some(Err(ExecutorError::Task(e))),
            Err(_) => {
                self.finished = true;
                self.cancel_rest();
                Some(Err(ExecutorError::Timeout))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.finished {
            (0, Some(0))
        } else {
            self.iter.size_hint()
        }
    }
}

impl<R> Drop for MapResults<R> {
    fn drop(&mut self) {
        if self.iter.len() > 0 {
            self.cancel_rest();
        }
    }
}
