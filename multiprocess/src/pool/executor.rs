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

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::core::Core;
use super::error::{ExecutorError, PoolError, TaskError};
use super::future::{Shared, TaskFuture};
use super::job::{Backlog, BrokenWhy, Cancel, Job};
use super::lock::lock;
use super::result::ImapIter;
use super::task::Task;
use super::{Pool, PoolBuilder};
use crate::process::{StartMethod, Target};

impl ExecutorError {
    pub(crate) fn broken(why: BrokenWhy) -> ExecutorError {
        ExecutorError::BrokenPool {
            message: why.message,
            pid: why.pid,
            signal: why.signal,
        }
    }

    pub(crate) fn from_cancel(why: &Cancel) -> ExecutorError {
        match why {
            Cancel::Broken(b) => ExecutorError::broken(b.clone()),
            Cancel::Cancelled => ExecutorError::Cancelled,
            Cancel::Terminated => ExecutorError::Terminated,
            #[cfg(feature = "redis")]
            Cancel::Backend(e) => ExecutorError::Pool(PoolError::Backend(e.clone())),
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
/// order as they come; [`as_completed`](crate::as_completed) yields futures as they finish.
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
        F::check_args(&args).map_err(|e| err(e.into()))?;
        let shared = Arc::new(Shared::new());
        let job: Arc<dyn Job> = shared.clone();
        let chunks = self
            .pool
            .encode_chunks(entry, std::slice::from_ref(&args), 1, &job)
            .map_err(err)?;
        let seq = core.submit(chunks).map_err(err)?;
        Ok(TaskFuture {
            shared,
            core: Arc::downgrade(core) as Weak<dyn Backlog>,
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
        self.options().map(f, iterable)
    }

    /// [`map`](Self::map) over argument tuples: Python's
    /// `executor.map(fn, *iterables)`, which calls `fn(a, b)` on items taken
    /// from several iterables in step and stops at the shortest, is
    /// `executor.starmap(f, a.into_iter().zip(b))` (a `zip` stops at the
    /// shortest too). Lazy and ordered as `map`, and it takes the same
    /// options ([`with_chunksize`](Self::with_chunksize),
    /// [`with_timeout`](Self::with_timeout)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn power(base: u64, exp: u32) -> u64 {
    ///     base.pow(exp)
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// // Python: executor.map(pow, [2, 3, 10], [5, 2])
    /// let powers: Vec<u64> = executor
    ///     .starmap(power, vec![2, 3, 10].into_iter().zip(vec![5, 2]))?
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(powers, [32, 9]);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`submit`](Self::submit).
    pub fn starmap<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.options().starmap(f, iterable)
    }

    /// [`map`](Self::map) with an explicit chunk size (Python's
    /// `chunksize=`): how many items travel to a worker at once (default
    /// 1). Chain [`with_timeout`](ExecutorMap::with_timeout) for both.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// let squares: Vec<u64> = executor
    ///     .with_chunksize(100)
    ///     .with_timeout(Duration::from_secs(10))
    ///     .map(square, 0..1000)?
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn with_chunksize(&self, chunksize: usize) -> ExecutorMap<'_> {
        self.options().with_chunksize(chunksize)
    }

    /// [`map`](Self::map) with a timeout (Python's `timeout=`): the time,
    /// from the call to `map`, by which every result must be in; a result
    /// not in by then comes out as [`ExecutorError::Timeout`], which ends
    /// the iterator and cancels the items not yet started.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiprocess::ExecutorError;
    ///
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(1)?;
    /// let mut results = executor.with_timeout(Duration::from_millis(100)).map(nap, [10, 1000])?;
    /// assert_eq!(results.next().unwrap()?, 10);
    /// assert!(matches!(results.next(), Some(Err(ExecutorError::Timeout))));
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> ExecutorMap<'_> {
        self.options().with_timeout(timeout)
    }

    /// Python's defaults: chunk size 1, no timeout.
    fn options(&self) -> ExecutorMap<'_> {
        ExecutorMap {
            executor: self,
            chunksize: None,
            timeout: None,
        }
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

impl Executor {
    /// Stops every worker at once with SIGTERM (Python 3.14's
    /// `terminate_workers()`), and shuts the executor down: running and
    /// pending futures fail with [`ExecutorError::Terminated`], later
    /// submits with [`ExecutorError::ShutDown`]. A worker that survives
    /// SIGTERM for 5 s gets SIGKILL. This is how an executor with a hung
    /// task is stopped (dropping it would wait for the task).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiprocess::{Executor, ExecutorError};
    ///
    /// fn hang() {
    ///     loop {
    ///         std::thread::sleep(std::time::Duration::from_secs(1));
    ///     }
    /// }
    ///
    /// multiprocess::init();
    /// let executor = Executor::new(1)?;
    /// let stuck = executor.submit(hang, ())?;
    /// executor.terminate_workers();
    /// assert!(matches!(stuck.result(), Err(ExecutorError::Terminated)));
    /// # Ok::<(), ExecutorError>(())
    /// ```
    pub fn terminate_workers(&self) {
        self.stop_workers(false);
    }

    /// [`terminate_workers`](Self::terminate_workers) with SIGKILL (Python
    /// 3.14's `kill_workers()`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let executor = multiprocess::Executor::new(2)?;
    /// executor.kill_workers();
    /// assert!(executor.worker_pids().is_empty());
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn kill_workers(&self) {
        self.stop_workers(true);
    }

    fn stop_workers(&self, hard: bool) {
        self.pool.close();
        if self.pool.core.terminate_with(hard) {
            self.pool.join_threads();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// [`Executor::map`] with a chosen chunk size and/or timeout (Python's
/// `executor.map(f, it, timeout=t, chunksize=n)`); from
/// [`Executor::with_chunksize`] or [`Executor::with_timeout`].
#[derive(Debug, Clone, Copy)]
pub struct ExecutorMap<'a> {
    executor: &'a Executor,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
}

impl ExecutorMap<'_> {
    /// How many items travel to a worker at once (default 1).
    ///
    /// # Examples
    ///
    /// See [`Executor::with_chunksize`].
    pub fn with_chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// The time, from the call to [`map`](Self::map), by which every result
    /// must be in; see [`Executor::with_timeout`].
    ///
    /// # Examples
    ///
    /// See [`Executor::with_timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// [`Executor::map`] with these options.
    ///
    /// # Errors
    ///
    /// As for [`Executor::map`], and [`PoolError::ZeroChunksize`].
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        // A one-argument call is a starmap over 1-tuples, which encode as
        // the bare items do.
        self.starmap(f, iterable.into_iter().map(|a| (a,)))
    }

    /// [`Executor::starmap`] with these options.
    ///
    /// # Errors
    ///
    /// As for [`Executor::submit`].
    pub fn starmap<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        let deadline = self.timeout.and_then(crate::deadline::after);
        let core = &self.executor.pool.core;
        let entry = f.entry().offset();
        let items: Vec<Args> = iterable.into_iter().collect();
        super::task::check_first::<F, _, _>(&items)
            .map_err(|e| ExecutorError::from_pool(core, e.into()))?;
        let (iter, job) = self
            .executor
            .pool
            .submit_iter_seqs(entry, items, self.chunksize.unwrap_or(1), true)
            .map_err(|e| ExecutorError::from_pool(core, e))?;
        Ok(MapResults::new(
            iter,
            Arc::downgrade(core) as Weak<dyn Backlog>,
            job,
            deadline,
        ))
    }
}

/// The results of [`Executor::map`], in input order, produced as the
/// workers finish them.
///
/// Dropping it (or a timeout) cancels the items not yet started, as
/// closing Python's `map` generator does.
pub struct MapResults<R> {
    iter: ImapIter<R>,
    core: Weak<dyn Backlog>,
    /// The job's identity (`job::job_id`), to withdraw its chunks.
    job: usize,
    deadline: Option<Instant>,
    finished: bool,
}

impl<R> MapResults<R> {
    /// Results read from `iter`, whose not-yet-started calls `core` can
    /// withdraw (as job `job`).
    pub(crate) fn new(
        iter: ImapIter<R>,
        core: Weak<dyn Backlog>,
        job: usize,
        deadline: Option<Instant>,
    ) -> MapResults<R> {
        MapResults {
            iter,
            core,
            job,
            deadline,
            finished: false,
        }
    }
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
            core.cancel_job(job, &Cancel::Cancelled);
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
