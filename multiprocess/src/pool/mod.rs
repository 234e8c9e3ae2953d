//! [`Pool`]: Python's `multiprocessing.Pool`, minus its hang when a worker
//! dies.
//!
//! # Design
//!
//! **Tasks** are plain `fn`s ([`Task`]), named in the worker by code offset
//! and recreated there as zero-sized values, exactly as [`Process`] targets
//! are (`sys::code::entry`). Work travels in *chunks*: the pool
//! encodes a run of argument tuples once, in the caller, submitting chunks
//! in batches as they are encoded (the first alone, so workers start while
//! the rest are encoded); an argument that does not serialize fails the call
//! with [`PoolError::Encode`] and withdraws the job's chunks no worker has
//! taken (those already taken run unseen, as in Python). A worker sends
//! back one message per chunk: while every call succeeds, the results as one
//! encoded `Vec<R>`, which the result thread decodes straight onto the end
//! of the job's result list; otherwise one outcome per call.
//!
//! **Dispatch.** Each worker has its own shared-memory [`Queue`] of task
//! messages; there is no shared task queue, so the pool always knows which
//! chunks each worker holds (its *window*, in dispatch order). A chunk goes
//! to the worker with the fewest chunks in flight, if that is below the
//! window size, which adapts to the observed chunk run time: enough queued
//! work to cover ~0.5 ms (up to 64 chunks) so a busy worker never waits for
//! the pool, and one at a time for long tasks, so a long task never holds
//! another up while a worker idles. Submitting threads dispatch directly
//! (no feeder thread on the way out); the result thread refills windows as
//! results come back. On the busy path nothing makes a syscall: the queues
//! are shared-memory rings that only touch a futex when a side sleeps.
//!
//! **Results.** Workers put outcomes on one shared results queue, read by a
//! result thread in the pool's process, which hands them to the waiting
//! [`AsyncResult`] or iterator and runs callbacks.
//!
//! **Death.** Before each call a worker writes `(chunk number, position)`
//! into a pair of words in shared memory (`wire::Progress`). A monitor thread
//! polls the workers' pidfds; when one exits, it puts an `Exited` marker on
//! the results queue. Everything that worker put is ahead of the marker, so
//! when the result thread reaches it, the worker's window holds exactly the
//! chunks without results: in the chunk its progress names, the call at the
//! recorded position fails with [`TaskError::WorkerDied`] (or is retried, up
//! to [`PoolBuilder::retries`] times); the rest of that chunk and every later
//! chunk go back to the front of the pending queue (including a chunk the
//! worker had taken but not started, which therefore never ran), and a
//! replacement worker starts. Nothing waits on a lock the dead worker held:
//! the queues recover from a holder's death. Workers are daemons, so they
//! die with the pool's process.
//!
//! **Lifetimes.** `maxtasksperchild` is a per-worker budget of chunks: the
//! pool never gives a worker more, and the worker exits after running them.
//! Its replacement starts as soon as its last result is processed, while it
//! exits (not when the monitor reports the exit), so `maxtasksperchild(1)`
//! costs a process start per task and no more. An initializer that fails makes the pool *broken*
//! ([`PoolError::Broken`]) instead of respawning workers forever.
//!
//! **Descriptors.** A worker costs the pool's process one descriptor (its
//! pidfd, whatever the start method; the fork server reports exit codes on
//! one channel for all its children): the task queue's and progress words' memfds are closed once the
//! worker has its copies (the mappings stay; a replacement gets fresh
//! ones), so `Pool::new(cpu_count())` fits `ulimit -n 1024` on a 256-CPU
//! host. Workers that cannot fit `RLIMIT_NOFILE` are
//! [`PoolError::TooManyWorkers`], up front from that lower bound or from
//! the `EMFILE` met while starting them.
//!
//! **Executor.** [`Executor`] (`executor.rs`) is the same machinery with
//! one-call chunks whose job is a future's state, and one rule changed: an
//! abrupt worker death breaks the pool (Python's `BrokenProcessPool`)
//! instead of failing one call and replacing the worker. Its futures are
//! in `future.rs`, [`as_completed`] and [`wait_futures`] in
//! `completion.rs`.
//!
//! **Files.** `core.rs` is the machinery in the parent (dispatch, the
//! result thread, the monitor); `result.rs` is where a pool's results land;
//! `job.rs` is what those two share (the `Job` interface, why work was
//! cancelled), so neither names the other; `wire.rs` is what travels
//! between the pool and its workers, including the list codec of a chunk;
//! `worker.rs` is the worker's loop.

mod completion;
mod core;
mod error;
mod executor;
mod future;
mod job;
mod lock;
mod result;
mod task;
mod wire;
mod worker;

/// What the remote pool (`crate::remote`) shares with this one: the jobs
/// results land in, the list codec, and the chunk runner.
#[cfg(feature = "redis")]
pub(crate) mod shared_with_remote {
    pub(crate) use super::auto_chunksize;
    pub(crate) use super::future::Shared;
    pub(crate) use super::job::{Backlog, BrokenWhy, Cancel, Job, job_id};
    pub(crate) use super::result::{IterJob, ListJob};
    pub(crate) use super::wire::encode_list;
    pub(crate) use super::worker::{install_panic_hook, run_plain_chunk};
}

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

pub use completion::{AsCompleted, DoneAndNotDone, ReturnWhen, as_completed, wait_futures};
pub use error::{ExecutorError, PoolError, TaskError};
pub use executor::{Executor, ExecutorBuilder, ExecutorMap, MapResults};
pub use future::TaskFuture;
pub use result::{AsyncResult, Callbacks, ImapIter};
pub use task::{Task, TaskReturn};

use self::core::{Chunk, Config, Core, InitSpec, Phase};
use self::job::{Cancel, Job, job_id};
use self::lock::lock;
use crate::codec;
use crate::process::{StartMethod, Target, get_start_method};
use crate::sys::code;
use result::{IterJob, ListJob};
use wire::Payload;

#[cfg(doc)]
use crate::{Process, Queue};

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Tasks are plain `fn`s over serde values; results come back in input
/// order from [`map`](Self::map), lazily from [`imap`](Self::imap), or one by
/// one from [`apply_async`](Self::apply_async). A task that panics or returns
/// `Err` gives a [`TaskError`] and the pool keeps working; a worker that is
/// killed mid-task (SIGKILL, the OOM killer) fails that one call with
/// [`TaskError::WorkerDied`] and is replaced, where Python's pool hangs.
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
/// fn main() -> Result<(), multiprocess::PoolError> {
///     multiprocess::init();
///     let pool = Pool::new(4)?;
///     assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
///     Ok(())
/// }
/// ```
///
/// # Caveats
///
/// - Dropping a pool terminates it (Python's `with Pool() as p:`): workers
///   are killed and outstanding results fail with
///   [`PoolError::Terminated`]. Call [`close`](Self::close) and
///   [`join`](Self::join) to let the work finish first.
/// - [`imap`](Self::imap) and friends read the whole input iterator up
///   front (encoding it); only the results are produced lazily.
/// - Callbacks run on the pool's result thread: waiting there for another
///   result of the same pool deadlocks, as in Python.
pub struct Pool {
    core: Arc<Core>,
    /// The result and monitor threads, joined once the pool has stopped
    /// (so every handle of the pool is closed when `drop` returns).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = lock(&self.core.state).phase.clone();
        f.debug_struct("Pool")
            .field("processes", &self.core.config.processes)
            .field("state", &phase)
            .finish()
    }
}

/// Options for a [`Pool`]: Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`, plus retries.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Pool, StartMethod};
///
/// fn setup(tag: String) {
///     eprintln!("worker {} ready ({tag})", std::process::id());
/// }
///
/// multiprocess::init();
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, ("demo".to_string(),))
///     .maxtasksperchild(100)
///     .start_method(StartMethod::Spawn)
///     .build()?;
/// # Ok::<(), multiprocess::PoolError>(())
/// ```
#[derive(Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    init: Option<Result<InitSpec, PoolError>>,
    retries: u32,
    window: Option<usize>,
    break_on_death: bool,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("maxtasksperchild", &self.max_tasks)
            .field("start_method", &self.method)
            .field("initializer", &self.init.is_some())
            .field("retries", &self.retries)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A function every worker runs once when it starts (Python's
    /// `initializer`/`initargs`). Its arguments may hold handles (a
    /// [`Queue`], a [`Lock`](crate::Lock)); each worker gets its own copy.
    /// If it panics or returns `Err`, the pool becomes broken.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A>,
        A: Serialize + Send + 'static,
    {
        let spec = (|| {
            F::check_args(&args)?;
            let (bytes, fds) = codec::encode(&args)?;
            Ok(InitSpec {
                entry: f.entry().offset(),
                exe: code::exe_identity()?,
                args: bytes,
                fds,
            })
        })();
        self.init = Some(spec);
        self
    }

    /// Replace each worker after it has run `n` tasks (chunks), as Python's
    /// `maxtasksperchild`; results are unaffected. `0` is an error.
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How workers are started (default: [`get_start_method`]); `Fork` is
    /// refused, since the pool's own threads would make replacing workers
    /// by fork unsound.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// How many times a call whose worker died is run again on another
    /// worker before it fails with [`TaskError::WorkerDied`] (default 0).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Fixes how many chunks are queued ahead of each worker, instead of
    /// adapting it to the chunks' run time (see the module design notes).
    #[doc(hidden)]
    pub fn window(mut self, chunks: usize) -> Self {
        self.window = Some(chunks.max(1));
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`PoolError::ZeroProcesses`], [`PoolError::ZeroMaxTasks`],
    /// [`PoolError::ForkUnsupported`], an initializer whose arguments do not
    /// serialize ([`PoolError::Encode`]), or a worker that cannot start (the
    /// ones already started are killed).
    pub fn build(self) -> Result<Pool, PoolError> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(PoolError::ZeroProcesses);
        }
        if self.max_tasks == Some(0) {
            return Err(PoolError::ZeroMaxTasks);
        }
        let method = self.method.unwrap_or_else(get_start_method);
        if method == StartMethod::Fork {
            return Err(PoolError::ForkUnsupported);
        }
        let init = self.init.transpose()?;
        let core = Core::new(Config {
            processes,
            max_tasks: self.max_tasks,
            method,
            init,
            retries: self.retries,
            window: self.window,
            break_on_death: self.break_on_death,
        })?;
        core.start_workers()?;
        let monitor = core.clone();
        let monitor_thread = match std::thread::Builder::new()
            .name("multiprocess-pool-monitor".into())
            .spawn(move || monitor.monitor_loop())
        {
            Ok(handle) => handle,
            Err(e) => {
                core.terminate();
                return Err(e.into());
            }
        };
        let results = core.clone();
        let result_thread = match std::thread::Builder::new()
            .name("multiprocess-pool-results".into())
            .spawn(move || results.result_loop())
        {
            Ok(handle) => handle,
            Err(e) => {
                core.terminate();
                return Err(e.into());
            }
        };
        Ok(Pool {
            core,
            threads: Mutex::new(vec![result_thread, monitor_thread]),
        })
    }
}

/// Python's automatic chunk size: `ceil(len / (4 * processes))`.
pub(crate) fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).max(1)
}

impl Pool {
    /// A pool of `processes` workers with default options.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PoolError::ZeroProcesses`] for 0 (Python's `ValueError`); see
    /// [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// Options for a pool; see [`PoolBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::builder().processes(2).retries(1).build()?;
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.core.config.processes
    }

    /// The pids of the current workers (they change as workers are replaced).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    /// Encodes one chunk of calls, whose first is at input position
    /// `first`.
    fn encode_chunk<S: Serialize + 'static>(
        &self,
        entry: i64,
        part: &[S],
        first: usize,
        job: &Arc<dyn Job>,
        fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> Result<Chunk, PoolError> {
        let mut buf = self.core.take_buffer();
        wire::encode_list(part, &mut buf, fds)?;
        if !fds.is_empty() {
            return Err(PoolError::Encode(codec::EncodeError::Serialize(
                "pool task arguments cannot carry OS handles (Queue, Lock, Connection); \
                 pass them to the initializer instead"
                    .into(),
            )));
        }
        Ok(Chunk {
            seq: 0,
            entry,
            first,
            count: part.len() as u32,
            payload: Payload(Arc::new(buf)),
            skip: Vec::new(),
            deaths: Vec::new(),
            job: job.clone(),
        })
    }

    fn encode_chunks<S: Serialize + 'static>(
        &self,
        entry: i64,
        items: &[S],
        chunksize: usize,
        job: &Arc<dyn Job>,
    ) -> Result<Vec<Chunk>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let mut fds = Vec::new();
        items
            .chunks(chunksize)
            .enumerate()
            .map(|(n, part)| self.encode_chunk(entry, part, n * chunksize, job, &mut fds))
            .collect()
    }

    /// Encodes `items` in chunks and submits them as they are encoded, in
    /// batches, the first chunk alone: the workers start on it while the
    /// rest are encoded. If a chunk fails to encode, the job's chunks that
    /// no worker has taken yet are withdrawn and the error returned; those
    /// already taken run, unseen (Python's pool also runs the chunks before
    /// one that fails to pickle).
    fn encode_and_submit<S: Serialize + 'static>(
        &self,
        entry: i64,
        items: &[S],
        chunksize: usize,
        job: &Arc<dyn Job>,
    ) -> Result<(), PoolError> {
        /// A batch is submitted once its encoded arguments reach this size
        /// or it holds this many chunks.
        const BATCH_BYTES: usize = 64 << 10;
        const BATCH_CHUNKS: usize = 256;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let mut fds = Vec::new();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut submitted = false;
        let mut result = Ok(());
        for (n, part) in items.chunks(chunksize).enumerate() {
            let chunk = match self.encode_chunk(entry, part, n * chunksize, job, &mut fds) {
                Ok(chunk) => chunk,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            batch_bytes += chunk.payload.0.len();
            batch.push(chunk);
            if !submitted || batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_CHUNKS {
                batch_bytes = 0;
                if let Err(e) = self.core.submit(std::mem::take(&mut batch)) {
                    result = Err(e);
                    break;
                }
                submitted = true;
            }
        }
        if result.is_ok() && !batch.is_empty() {
            result = self.core.submit(batch).map(drop);
        }
        if result.is_err() && submitted {
            let id = job_id(job);
            self.core
                .cancel_pending(|c| job_id(&c.job) == id, &Cancel::Terminated);
        }
        result
    }

    fn check_open(&self) -> Result<(), PoolError> {
        Core::check_open(&lock(&self.core.state))
    }

    fn submit_list<R, S, T>(
        &self,
        entry: i64,
        items: Vec<S>,
        chunksize: Option<usize>,
        finish: fn(Vec<R>) -> T,
        callbacks: Callbacks<T>,
    ) -> Result<AsyncResult<T>, PoolError>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        S: Serialize + 'static,
        T: Send + 'static,
    {
        self.check_open()?;
        let chunksize = chunksize.unwrap_or_else(|| auto_chunksize(items.len(), self.processes()));
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let (job, result) = ListJob::new(items.len(), finish, callbacks);
        let job: Arc<dyn Job> = job;
        self.encode_and_submit(entry, &items, chunksize, &job)?;
        Ok(result)
    }

    fn submit_iter<R, S>(
        &self,
        entry: i64,
        items: Vec<S>,
        chunksize: usize,
        ordered: bool,
    ) -> Result<ImapIter<R>, PoolError>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        S: Serialize + 'static,
    {
        Ok(self.submit_iter_seqs(entry, items, chunksize, ordered)?.0)
    }

    /// [`submit_iter`](Self::submit_iter), also returning the job's
    /// identity (see `job::job_id`).
    fn submit_iter_seqs<R, S>(
        &self,
        entry: i64,
        items: Vec<S>,
        chunksize: usize,
        ordered: bool,
    ) -> Result<(ImapIter<R>, usize), PoolError>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        S: Serialize + 'static,
    {
        self.check_open()?;
        let job = IterJob::new(ordered);
        let dyn_job: Arc<dyn Job> = job.clone();
        self.encode_and_submit(entry, &items, chunksize, &dyn_job)?;
        Ok((ImapIter::new(job, items.len()), job_id(&dyn_job)))
    }

    /// Runs `f(args…)` in a worker and waits for the result (Python's
    /// `apply`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(1)?;
    /// assert_eq!(pool.apply(add, (2, 3))?, 5);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] if the task failed; [`PoolError::Closed`] or
    /// [`PoolError::Terminated`] for a pool no longer taking work;
    /// [`PoolError::Encode`] for arguments that do not serialize (for the
    /// mapping calls, chunks before the failing one may have run).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Submits `f(args…)` and returns at once (Python's `apply_async`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// let results: Vec<_> = (0..4).map(|i| pool.apply_async(add, (i, i))).collect::<Result<_, _>>()?;
    /// let sums: Vec<i32> = results.iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    /// assert_eq!(sums, [0, 2, 4, 6]);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`apply`](Self::apply), except task failures, which the
    /// [`AsyncResult`] reports.
    pub fn apply_async<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        self.apply_async_with(f, args, Callbacks::new())
    }

    /// [`apply_async`](Self::apply_async) with a success and/or error
    /// callback, run in this process when the result is ready.
    ///
    /// # Examples
    ///
    /// See [`Callbacks`].
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn apply_async_with<F, Args>(
        &self,
        f: F,
        args: Args,
        callbacks: Callbacks<F::Output>,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        let entry = f.entry().offset();
        F::check_args(&args)?;
        self.submit_list(entry, vec![args], Some(1), take_one, callbacks)
    }

    /// Runs `f` on every item, in chunks of Python's automatic size, and
    /// returns the results in input order (Python's `map`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// assert_eq!(pool.map(square, vec![1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PoolError::Task`] with the first failed item (all items are waited
    /// for); otherwise as for [`apply`](Self::apply).
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize_opt(None).map(f, iterable)
    }

    /// [`map`](Self::map) without waiting (Python's `map_async`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// let r = pool.map_async(square, 0..100)?;
    /// assert_eq!(r.get()?.len(), 100);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize_opt(None).map_async(f, iterable)
    }

    /// [`map_async`](Self::map_async) with callbacks; the success callback
    /// gets the whole result list once.
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn map_async_with<F, A, I>(
        &self,
        f: F,
        iterable: I,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize_opt(None)
            .map_async_with(f, iterable, callbacks)
    }

    /// Like [`map`](Self::map), with each item a tuple of arguments
    /// (Python's `starmap`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn add(a: i32, b: i32) -> i32 {
    ///     a + b
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map).
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.with_chunksize_opt(None).starmap(f, iterable)
    }

    /// [`starmap`](Self::starmap) without waiting (Python's
    /// `starmap_async`).
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.with_chunksize_opt(None).starmap_async(f, iterable)
    }

    /// Runs `f` on every item and yields the results in input order as they
    /// become available (Python's `imap`, chunk size 1 by default).
    ///
    /// The results are lazy; the input is not: it is read and encoded
    /// before `imap` returns, so an argument that does not serialize is an
    /// error here rather than after the results before it, and an endless
    /// iterator never returns. (Python's task-handler thread also reads the
    /// whole input as fast as it can, so its memory grows the same way.)
    ///
    /// # Examples
    ///
    /// See [`ImapIter`].
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn imap<F, A, I>(&self, f: F, iterable: I) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize(1).imap(f, iterable)
    }

    /// Like [`imap`](Self::imap), yielding results in the order they finish
    /// (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As for [`apply_async`](Self::apply_async).
    pub fn imap_unordered<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize(1).imap_unordered(f, iterable)
    }

    /// The mapping methods with an explicit chunk size (Python's
    /// `chunksize=` argument): how many items travel to a worker at once.
    /// Per-call options are always written this way, before the call
    /// (`pool.map(f, it, chunksize=100)` is
    /// `pool.with_chunksize(100).map(f, it)`), as for the
    /// [`Executor`](Executor::with_chunksize).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::new(2)?;
    /// let squares = pool.with_chunksize(100).map(square, 0..1000)?;
    /// assert_eq!(squares[999], 998_001);
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    pub fn with_chunksize(&self, chunksize: usize) -> Chunked<'_> {
        self.with_chunksize_opt(Some(chunksize))
    }

    fn with_chunksize_opt(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
        }
    }

    /// Stops taking new work; submitted work goes on (Python's `close`).
    pub fn close(&self) {
        let mut st = lock(&self.core.state);
        if matches!(st.phase, Phase::Running) {
            st.phase = Phase::Closed;
        }
    }

    /// Kills the workers at once; outstanding results fail with
    /// [`PoolError::Terminated`] (Python's `terminate`). Also what dropping
    /// the pool does.
    pub fn terminate(&self) {
        if self.core.terminate() {
            self.join_threads();
        }
    }

    /// After [`close`](Self::close), waits for all submitted work to finish
    /// and the workers to exit (Python's `join`); after
    /// [`terminate`](Self::terminate), returns at once.
    ///
    /// # Errors
    ///
    /// [`PoolError::NotClosed`] if the pool still takes work (Python's
    /// `ValueError`).
    pub fn join(&self) -> Result<(), PoolError> {
        let phase = lock(&self.core.state).phase.clone();
        match phase {
            Phase::Running => return Err(PoolError::NotClosed),
            Phase::Closed => self.core.join_closed(),
            Phase::Broken(_) => {
                self.core.terminate();
            }
            Phase::Terminated => {}
        }
        self.join_threads();
        Ok(())
    }

    /// Joins the result and monitor threads (the pool has told them to
    /// stop).
    fn join_threads(&self) {
        let handles = std::mem::take(&mut *lock(&self.threads));
        for handle in handles {
            if handle.thread().id() == std::thread::current().id() {
                // Called from a callback: the thread ends after it returns.
                continue;
            }
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        self.join_threads();
    }
}

fn take_one<R>(mut v: Vec<R>) -> R {
    v.pop().expect("one result for one call")
}

/// The mapping methods of a [`Pool`] with a chosen chunk size; from
/// [`Pool::with_chunksize`].
#[derive(Debug, Clone, Copy)]
pub struct Chunked<'a> {
    pool: &'a Pool,
    chunksize: Option<usize>,
}

impl Chunked<'_> {
    /// [`Pool::map`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::map`], and [`PoolError::ZeroChunksize`].
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable)?.get()
    }

    /// [`Pool::map_async`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn map_async<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, iterable, Callbacks::new())
    }

    /// [`Pool::map_async_with`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::map_async`], and [`PoolError::ZeroChunksize`].
    pub fn map_async_with<F, A, I>(
        &self,
        f: F,
        iterable: I,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let entry = f.entry().offset();
        let items: Vec<A> = iterable.into_iter().collect();
        task::check_first::<F, _, _>(&items)?;
        self.pool.submit_list(
            entry,
            items,
            self.chunksize,
            std::convert::identity,
            callbacks,
        )
    }

    /// [`Pool::starmap`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::starmap`], and [`PoolError::ZeroChunksize`].
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, iterable)?.get()
    }

    /// [`Pool::starmap_async`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::starmap_async`], and [`PoolError::ZeroChunksize`].
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        let entry = f.entry().offset();
        let items: Vec<Args> = iterable.into_iter().collect();
        task::check_first::<F, _, _>(&items)?;
        self.pool.submit_list(
            entry,
            items,
            self.chunksize,
            std::convert::identity,
            Callbacks::new(),
        )
    }

    /// [`Pool::imap`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::imap`], and [`PoolError::ZeroChunksize`].
    pub fn imap<F, A, I>(&self, f: F, iterable: I) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let entry = f.entry().offset();
        let items: Vec<A> = iterable.into_iter().collect();
        task::check_first::<F, _, _>(&items)?;
        self.pool
            .submit_iter(entry, items, self.chunksize.unwrap_or(1), true)
    }

    /// [`Pool::imap_unordered`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As for [`Pool::imap_unordered`], and [`PoolError::ZeroChunksize`].
    pub fn imap_unordered<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let entry = f.entry().offset();
        let items: Vec<A> = iterable.into_iter().collect();
        task::check_first::<F, _, _>(&items)?;
        self.pool
            .submit_iter(entry, items, self.chunksize.unwrap_or(1), false)
    }
}
