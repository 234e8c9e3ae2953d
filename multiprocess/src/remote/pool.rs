//! [`Pool`]: the local [`Pool`](crate::Pool)'s calls, run by remote workers.
//!
//! A call is a *map*: its input is cut into chunks, each an entry of the
//! task stream of this pool and the caller's build. Results come back on
//! the caller's own result stream, which one collector thread per pool
//! reads by cursor and hands to the same jobs the local pool fills
//! ([`AsyncResult`], [`ImapIter`], [`TaskFuture`](crate::TaskFuture)), so
//! a lost reply loses nothing: the entry stays until read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use serde::Serialize;

use super::cluster::Cluster;
use super::registry::{Registered, build_id, lookup};
use super::stream::{self, GROUP, WorkerInfo};
use super::worker::{NAMESPACE_ENV, PARENT_ENV, POOL_ENV};
use crate::backend::BackendError;
use crate::pool::shared_with_remote::{
    Backlog, BrokenWhy, Cancel, IterJob, Job, ListJob, auto_chunksize, encode_list, job_id,
};
use crate::{AsyncResult, Callbacks, ImapIter, PoolError, Task, TaskError};

/// How long a "a live worker of this build exists" answer is trusted.
const WORKERS_FRESH: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// The remote pool `name`: calls go to workers serving `name` (started
    /// with [`Pool::spawn_local_workers`] or, on any machine, by running the
    /// same executable with `MULTIPROCESS_WORKER=<url>` and
    /// `MULTIPROCESS_WORKER_POOL=<name>`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let pool = c.pool("squares")?;
    /// # Ok::<(), multiprocess::PoolError>(())
    /// ```
    pub fn pool(&self, name: &str) -> Result<Pool, PoolError> {
        Pool::open(self.clone(), name)
    }
}

/// A live worker's description, from [`Pool::workers`].
pub use stream::WorkerInfo as Worker;

/// Python's `Pool` across machines: the methods of [`crate::Pool`], run by
/// the workers of a named pool on a Redis server, plus
/// [`workers`](Pool::workers) and
/// [`spawn_local_workers`](Pool::spawn_local_workers).
///
/// Tasks are functions registered with [`remote_task!`](crate::remote_task).
/// They run at least once: a worker that dies, freezes or is cut off loses
/// its lease and the chunk runs again elsewhere, up to `max_deliveries`
/// times ([`TaskError::WorkerLost`] after that). Each input's result is
/// seen exactly once: `map`/`imap` in input order, `imap_unordered` as
/// they arrive. No call hangs on a lost server: it returns
/// [`PoolError::Backend`]; with no live worker of the caller's build, a
/// call fails at once with [`PoolError::NoWorkers`], and pending calls
/// fail with [`PoolError::Broken`] once none has been seen for two leases.
///
/// # Examples
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// multiprocess::remote_task!(square);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
///     let pool = c.pool("squares")?;
///     pool.spawn_local_workers(2)?;
///     assert_eq!(pool.map(square, 1..=4u64)?, [1, 4, 9, 16]);
///     Ok(())
/// }
/// ```
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("remote::Pool")
            .field("name", &self.inner.name)
            .field("url", &self.inner.cluster.url())
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Closed,
    Terminated,
}

struct MapState {
    job: Arc<dyn Job>,
    chunks_left: usize,
    /// The task entries' ids, to withdraw the ones not started.
    entries: Vec<String>,
}

struct State {
    phase: Phase,
    maps: HashMap<u64, MapState>,
}

pub(crate) struct Inner {
    cluster: Cluster,
    name: String,
    prefix: String,
    tasks: String,
    caller: String,
    state: Mutex<State>,
    /// Wakes `join` when the last map finishes.
    idle: std::sync::Condvar,
    next_map: AtomicU64,
    stop: AtomicBool,
    collector: Mutex<Option<JoinHandle<()>>>,
    workers_seen: Mutex<Option<Instant>>,
    local: Mutex<LocalWorkers>,
}

#[derive(Default)]
struct LocalWorkers {
    wanted: usize,
    children: Vec<std::process::Child>,
    supervisor: Option<JoinHandle<()>>,
}

impl Pool {
    fn open(cluster: Cluster, name: &str) -> Result<Pool, PoolError> {
        let prefix = cluster.key(name, "");
        let tasks = format!("{prefix}t:{}", build_id().short());
        let caller = stream::random_id();
        let opts = cluster.opts().clone();
        let ttl = opts.key_ttl.as_millis() as u64;
        cluster.with_conn(|c| {
            stream::create_group(c, &tasks)?;
            redis::pipe()
                .cmd("HSET")
                .arg(format!("{prefix}config"))
                .arg("lease_ms")
                .arg(opts.lease.as_millis() as u64)
                .arg("max_deliveries")
                .arg(opts.max_deliveries)
                .arg("ttl_ms")
                .arg(ttl)
                .ignore()
                .cmd("SET")
                .arg(format!("{prefix}l:{caller}"))
                .arg(ttl)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .query::<()>(c)
        })?;
        let inner = Arc::new(Inner {
            cluster,
            name: name.to_owned(),
            prefix,
            tasks,
            caller,
            state: Mutex::new(State {
                phase: Phase::Running,
                maps: HashMap::new(),
            }),
            idle: std::sync::Condvar::new(),
            next_map: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            collector: Mutex::new(None),
            workers_seen: Mutex::new(None),
            local: Mutex::new(LocalWorkers::default()),
        });
        let for_thread = inner.clone();
        let handle = std::thread::Builder::new()
            .name("mp-remote-results".into())
            .spawn(move || for_thread.collect())?;
        *lock(&inner.collector) = Some(handle);
        Ok(Pool { inner })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The live workers of this pool, of every build.
    pub fn workers(&self) -> Result<Vec<Worker>, BackendError> {
        self.inner.live_workers()
    }

    /// How many live workers of this executable's build serve the pool
    /// (0 if the server cannot be asked).
    pub fn processes(&self) -> usize {
        self.worker_pids().len()
    }

    /// The pids of the live workers of this build (each in its own host's
    /// pid namespace).
    pub fn worker_pids(&self) -> Vec<u32> {
        let build = &build_id().0;
        self.workers()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| &w.build == build)
            .map(|w| w.pid)
            .collect()
    }

    /// Starts `n` workers on this machine: this executable, re-executed
    /// with `MULTIPROCESS_WORKER` set, kept running (a worker that dies is
    /// replaced) until the pool is terminated, joined or dropped, and
    /// killed if this process dies. Returns once they serve the pool (up
    /// to 10 s).
    ///
    /// # Errors
    ///
    /// [`PoolError::Start`]-like [`PoolError::Io`] if they cannot be
    /// started, [`PoolError::NoWorkers`] if they do not come up in time
    /// (for example: `init()` is not called first in `main`).
    pub fn spawn_local_workers(&self, n: usize) -> Result<(), PoolError> {
        if !crate::process::init_called() {
            return Err(PoolError::NoWorkers {
                why: "call multiprocess::init() first in main (or init_before_main!()): \
                      the workers are this executable, re-executed"
                    .into(),
            });
        }
        let before = self.inner.own_build_workers().unwrap_or(0);
        {
            let mut local = lock(&self.inner.local);
            local.wanted += n;
            for _ in 0..n {
                let child = self.inner.spawn_worker()?;
                local.children.push(child);
            }
            if local.supervisor.is_none() {
                let inner = self.inner.clone();
                local.supervisor = Some(
                    std::thread::Builder::new()
                        .name("mp-remote-supervisor".into())
                        .spawn(move || inner.supervise())?,
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A slow answer under load is not a failure: ask again until
            // the deadline.
            let now = match self.inner.own_build_workers() {
                Ok(now) => now,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => 0,
            };
            if now >= before + n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PoolError::NoWorkers {
                    why: format!(
                        "{} of {n} local workers came up within 10 s (is multiprocess::init() \
                         first in main?)",
                        now.saturating_sub(before)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `f(args…)` on a worker and waits for the result (Python's
    /// `apply`).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Submits `f(args…)` and returns at once (Python's `apply_async`).
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

    /// [`apply_async`](Self::apply_async) with callbacks, run on the
    /// pool's result thread.
    pub fn apply_async_with<F, Args>(
        &self,
        _f: F,
        args: Args,
        callbacks: Callbacks<F::Output>,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        let name = registered::<F, Args>()?;
        let (job, result) = ListJob::new(1, take_one, callbacks);
        self.inner.submit(&name, &[args], 1, job)?;
        Ok(result)
    }

    /// Python's `map`: `f(x)` for each item, results in input order.
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.chunked(None).map(f, iterable)
    }

    /// Python's `map_async`.
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
        self.chunked(None).map_async(f, iterable)
    }

    /// [`map_async`](Self::map_async) with callbacks.
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
        self.chunked(None).map_async_with(f, iterable, callbacks)
    }

    /// Python's `starmap`: `f(a, b, …)` for each tuple.
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.chunked(None).starmap(f, iterable)
    }

    /// Python's `starmap_async`.
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
        self.chunked(None).starmap_async(f, iterable)
    }

    /// Python's `imap`: results in input order, as they come.
    pub fn imap<F, A, I>(&self, f: F, iterable: I) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.with_chunksize(1).imap(f, iterable)
    }

    /// Python's `imap_unordered`: results as they finish.
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

    /// The map-like calls with Python's `chunksize` argument.
    pub fn with_chunksize(&self, chunksize: usize) -> Chunked<'_> {
        self.chunked(Some(chunksize))
    }

    fn chunked(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
        }
    }

    /// Takes no new work (Python's `close`); submitted work goes on.
    pub fn close(&self) {
        let mut st = lock(&self.inner.state);
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
    }

    /// Stops at once: pending calls fail with [`PoolError::Terminated`],
    /// their chunks not yet taken are withdrawn, and local workers are
    /// killed (Python's `terminate`).
    pub fn terminate(&self) {
        self.inner.terminate();
    }

    /// Waits for submitted work to finish, then stops the local workers
    /// (Python's `join`; after `close` or `terminate`).
    pub fn join(&self) -> Result<(), PoolError> {
        {
            let mut st = lock(&self.inner.state);
            if st.phase == Phase::Running {
                return Err(PoolError::NotClosed);
            }
            while !st.maps.is_empty() {
                st = self.inner.idle.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        self.inner.stop_local_workers();
        Ok(())
    }

    /// As a [`Backlog`], for futures that withdraw their calls.
    pub(crate) fn backlog(&self) -> std::sync::Weak<dyn Backlog> {
        let weak: std::sync::Weak<Inner> = Arc::downgrade(&self.inner);
        weak
    }

    /// Submits with the map id returned (the executor's futures).
    pub(crate) fn submit_job<S: Serialize + 'static>(
        &self,
        name: &Registered,
        items: &[S],
        chunksize: usize,
        job: Arc<dyn Job>,
    ) -> Result<u64, PoolError> {
        self.inner.submit(name, items, chunksize, job)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.terminate();
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(h) = lock(&self.inner.collector).take() {
            let _ = h.join();
        }
        let prefix = &self.inner.prefix;
        let caller = &self.inner.caller;
        let _ = self.inner.cluster.with_conn(|c| {
            redis::cmd("DEL")
                .arg(format!("{prefix}l:{caller}"))
                .arg(format!("{prefix}r:{caller}"))
                .query::<()>(c)
        });
    }
}

/// The registered name of `F`, or why it cannot run remotely.
pub(crate) fn registered<F: Task<Args>, Args: 'static>() -> Result<Registered, PoolError> {
    match lookup::<F>() {
        Some(r) => Ok(r),
        None => {
            let name = std::any::type_name::<F>().to_owned();
            let short = name.rsplit("::").next().unwrap_or(&name).to_owned();
            Err(PoolError::NotRegistered { name, short })
        }
    }
}

fn take_one<R>(mut v: Vec<R>) -> R {
    v.pop().expect("one result")
}

fn identity<R>(v: Vec<R>) -> Vec<R> {
    v
}

/// The map-like calls of a [`Pool`] with a `chunksize` (from
/// [`Pool::with_chunksize`]).
#[derive(Debug)]
pub struct Chunked<'a> {
    pool: &'a Pool,
    chunksize: Option<usize>,
}

impl Chunked<'_> {
    fn chunksize(&self, len: usize) -> Result<usize, PoolError> {
        match self.chunksize {
            Some(0) => Err(PoolError::ZeroChunksize),
            Some(n) => Ok(n),
            None => Ok(auto_chunksize(len, self.pool.processes().max(1))),
        }
    }

    /// [`Pool::map`] with this chunksize.
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, iterable)?.get()
    }

    /// [`Pool::map_async`] with this chunksize.
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

    /// [`Pool::map_async_with`] with this chunksize.
    pub fn map_async_with<F, A, I>(
        &self,
        _f: F,
        iterable: I,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let name = registered::<F, (A,)>()?;
        let items: Vec<(A,)> = iterable.into_iter().map(|a| (a,)).collect();
        self.submit_list(&name, items, callbacks)
    }

    /// [`Pool::starmap`] with this chunksize.
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, iterable)?.get()
    }

    /// [`Pool::starmap_async`] with this chunksize.
    pub fn starmap_async<F, Args, I>(
        &self,
        _f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
        I: IntoIterator<Item = Args>,
    {
        let name = registered::<F, Args>()?;
        let items: Vec<Args> = iterable.into_iter().collect();
        self.submit_list(&name, items, Callbacks::new())
    }

    fn submit_list<R, S>(
        &self,
        name: &Registered,
        items: Vec<S>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        S: Serialize + 'static,
    {
        let chunksize = self.chunksize(items.len())?;
        self.pool.inner.check_open()?;
        let (job, result) = ListJob::new(items.len(), identity, callbacks);
        if !items.is_empty() {
            self.pool.inner.submit(name, &items, chunksize, job)?;
        }
        Ok(result)
    }

    /// [`Pool::imap`] with this chunksize.
    pub fn imap<F, A, I>(&self, _f: F, iterable: I) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let name = registered::<F, (A,)>()?;
        self.submit_iter(&name, iterable, true)
    }

    /// [`Pool::imap_unordered`] with this chunksize.
    pub fn imap_unordered<F, A, I>(
        &self,
        _f: F,
        iterable: I,
    ) -> Result<ImapIter<F::Output>, PoolError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let name = registered::<F, (A,)>()?;
        self.submit_iter(&name, iterable, false)
    }

    fn submit_iter<R, A, I>(
        &self,
        name: &Registered,
        iterable: I,
        ordered: bool,
    ) -> Result<ImapIter<R>, PoolError>
    where
        R: serde::de::DeserializeOwned + Send + 'static,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<(A,)> = iterable.into_iter().map(|a| (a,)).collect();
        let chunksize = self.chunksize(items.len())?;
        self.pool.inner.check_open()?;
        let job = IterJob::new(ordered);
        let total = items.len();
        if !items.is_empty() {
            let dyn_job: Arc<dyn Job> = job.clone();
            self.pool.inner.submit(name, &items, chunksize, dyn_job)?;
        }
        Ok(ImapIter::new(job, total))
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), PoolError> {
        match lock(&self.state).phase {
            Phase::Running => Ok(()),
            Phase::Closed => Err(PoolError::Closed),
            Phase::Terminated => Err(PoolError::Terminated),
        }
    }

    fn live_workers(&self) -> Result<Vec<WorkerInfo>, BackendError> {
        let prefix = &self.prefix;
        let all: HashMap<String, String> = self.cluster.with_conn(|c| {
            redis::cmd("HGETALL")
                .arg(format!("{prefix}workers"))
                .query(c)
        })?;
        let ids: Vec<&String> = all.keys().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let alive: Vec<bool> = self.cluster.with_conn(|c| {
            let mut p = redis::pipe();
            for id in &ids {
                p.cmd("EXISTS").arg(format!("{prefix}w:{id}"));
            }
            p.query(c)
        })?;
        let dead: Vec<&String> = ids
            .iter()
            .zip(&alive)
            .filter(|(_, a)| !**a)
            .map(|(id, _)| *id)
            .collect();
        if !dead.is_empty() {
            let _ = self.cluster.with_conn(|c| {
                redis::cmd("HDEL")
                    .arg(format!("{prefix}workers"))
                    .arg(&dead)
                    .query::<()>(c)
            });
        }
        let mut live: Vec<WorkerInfo> = ids
            .iter()
            .zip(alive)
            .filter(|(_, a)| *a)
            .filter_map(|(id, _)| WorkerInfo::decode(id, &all[*id]))
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    fn own_build_workers(&self) -> Result<usize, BackendError> {
        let build = &build_id().0;
        Ok(self
            .live_workers()?
            .iter()
            .filter(|w| &w.build == build)
            .count())
    }

    /// Fails fast if no live worker of this build serves the pool.
    fn check_workers(&self) -> Result<(), PoolError> {
        if lock(&self.workers_seen).is_some_and(|t| t.elapsed() < WORKERS_FRESH) {
            return Ok(());
        }
        let live = self.live_workers()?;
        let build = &build_id().0;
        if live.iter().any(|w| &w.build == build) {
            *lock(&self.workers_seen) = Some(Instant::now());
            return Ok(());
        }
        let why = if live.is_empty() {
            format!(
                "no live worker serves pool {:?} (caller build {})",
                self.name,
                build_id().short()
            )
        } else {
            let others: Vec<String> = live
                .iter()
                .map(|w| {
                    format!(
                        "{} (pid {} on {})",
                        &w.build[..16.min(w.build.len())],
                        w.pid,
                        w.host
                    )
                })
                .collect();
            format!(
                "no live worker of the caller's build {} serves pool {:?}; live workers run \
                 other builds: {}",
                build_id().short(),
                self.name,
                others.join(", ")
            )
        };
        Err(PoolError::NoWorkers { why })
    }

    /// Encodes `items` in chunks and adds them to the task stream; the
    /// map's id.
    fn submit<S: Serialize + 'static>(
        &self,
        name: &Registered,
        items: &[S],
        chunksize: usize,
        job: Arc<dyn Job>,
    ) -> Result<u64, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.check_open()?;
        self.check_workers()?;
        // Encode everything first: a bad item sends nothing.
        let mut chunks = Vec::with_capacity(items.len().div_ceil(chunksize));
        let mut fds = Vec::new();
        for part in items.chunks(chunksize) {
            let mut buf = Vec::new();
            encode_list(part, &mut buf, &mut fds)?;
            if !fds.is_empty() {
                return Err(PoolError::Encode(crate::EncodeError::Serialize(
                    "remote task arguments cannot carry OS handles (Queue, Lock, Connection): \
                     they cannot leave this machine"
                        .into(),
                )));
            }
            self.cluster.check_size(buf.len())?;
            chunks.push(buf);
        }
        let map = self.next_map.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = lock(&self.state);
            st.maps.insert(
                map,
                MapState {
                    job: job.clone(),
                    chunks_left: chunks.len(),
                    entries: Vec::new(),
                },
            );
        }
        let map_text = map.to_string();
        let mut ids: Vec<String> = Vec::with_capacity(chunks.len());
        let mut start = 0;
        while start < chunks.len() {
            // Pipelines of up to 512 chunks or about 1 MiB.
            let mut end = start;
            let mut bytes = 0;
            while end < chunks.len() && end - start < 512 && bytes < (1 << 20) {
                bytes += chunks[end].len();
                end += 1;
            }
            let sent: Result<Vec<String>, BackendError> = self.cluster.with_conn(|c| {
                let mut p = redis::pipe();
                for (k, payload) in chunks[start..end].iter().enumerate() {
                    let k = start + k;
                    let first = k * chunksize;
                    let count = payload_count(items.len(), first, chunksize);
                    p.cmd("XADD")
                        .arg(&self.tasks)
                        .arg("*")
                        .arg("f")
                        .arg(name.name)
                        .arg("g")
                        .arg(&name.fingerprint)
                        .arg("c")
                        .arg(&self.caller)
                        .arg("m")
                        .arg(&map_text)
                        .arg("k")
                        .arg(k)
                        .arg("s")
                        .arg(first)
                        .arg("n")
                        .arg(count)
                        .arg("p")
                        .arg(payload.as_slice());
                }
                p.query(c)
            });
            match sent {
                Ok(new) => ids.extend(new),
                Err(e) => {
                    // Withdraw what went; fail the call.
                    self.withdraw(&ids);
                    lock(&self.state).maps.remove(&map);
                    return Err(e.into());
                }
            }
            start = end;
        }
        if let Some(m) = lock(&self.state).maps.get_mut(&map) {
            m.entries = ids;
        }
        Ok(map)
    }

    /// Withdraws the task entries in `ids` that no worker took.
    fn withdraw(&self, ids: &[String]) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let script = redis::Script::new(stream::WITHDRAW);
        let mut n = 0;
        for part in ids.chunks(512) {
            let mut inv = script.prepare_invoke();
            inv.key(&self.tasks).arg(GROUP);
            for id in part {
                inv.arg(id);
            }
            n += self
                .cluster
                .with_conn(|c| inv.invoke::<usize>(c))
                .unwrap_or(0);
        }
        n
    }

    fn terminate(&self) {
        let maps: Vec<MapState> = {
            let mut st = lock(&self.state);
            st.phase = Phase::Terminated;
            st.maps.drain().map(|(_, m)| m).collect()
        };
        for m in &maps {
            self.withdraw(&m.entries);
            m.job.cancel(&Cancel::Terminated);
        }
        self.idle.notify_all();
        self.stop_local_workers();
    }

    /// Fails every pending map with `why`.
    fn fail_all(&self, why: &Cancel) {
        let maps: Vec<MapState> = lock(&self.state).maps.drain().map(|(_, m)| m).collect();
        for m in maps {
            m.job.cancel(why);
        }
        self.idle.notify_all();
    }

    /// The collector thread: reads the caller's result stream by cursor
    /// and delivers each result to its map's job; keeps the caller's keys
    /// alive; fails pending maps when no worker is left or the server lost
    /// the data.
    fn collect(self: Arc<Self>) {
        let res = format!("{}r:{}", self.prefix, self.caller);
        let live = format!("{}l:{}", self.prefix, self.caller);
        let ttl = self.cluster.opts().key_ttl;
        let lease = self.cluster.opts().lease;
        let mut cursor = "0".to_owned();
        let mut last_refresh = Instant::now();
        let mut last_check = Instant::now();
        let mut no_workers_since: Option<Instant> = None;
        let mut failing_since: Option<Instant> = None;
        let mut losses = self.cluster.losses();
        let block = Duration::from_millis(100);
        while !self.stop.load(Ordering::Relaxed) {
            // A loss noticed by any thread of this process (a submit, a
            // queue) is this pool's loss too.
            let now_losses = self.cluster.losses();
            if now_losses != losses {
                losses = now_losses;
                self.after_loss(&live, ttl, "the server lost its data");
                cursor = "0".into();
            }
            let reply = self.read_results(&res, &cursor, block);
            let entries = match reply {
                Ok(v) => {
                    failing_since = None;
                    stream::read_reply(&v)
                }
                Err(e) => {
                    if matches!(e, BackendError::Lost(_)) {
                        losses = self.cluster.losses();
                        self.after_loss(&live, ttl, "the server lost its data");
                        cursor = "0".into();
                        continue;
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.cluster.opts().call_timeout
                        && !lock(&self.state).maps.is_empty()
                    {
                        self.fail_all(&Cancel::Backend(e));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            // Deliver first (the waiting callers wake now), then tidy up:
            // the entries read, and the bitmaps of finished maps.
            let mut finished_maps = Vec::new();
            for entry in &entries {
                if let Some(map) = self.deliver(entry) {
                    finished_maps.push(map);
                }
            }
            if let Some(last) = entries.last() {
                cursor = last.id.clone();
                let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                let keys: Vec<String> = finished_maps
                    .iter()
                    .map(|m| format!("{}d:{}:{m}", self.prefix, self.caller))
                    .collect();
                let _ = self.cluster.with_conn(|c| {
                    let mut p = redis::pipe();
                    p.cmd("XDEL").arg(&res).arg(&ids).ignore();
                    if !keys.is_empty() {
                        p.cmd("DEL").arg(&keys).ignore();
                    }
                    p.query::<()>(c)
                });
            }
            if last_refresh.elapsed() >= ttl / 3 {
                last_refresh = Instant::now();
                let ttl_ms = ttl.as_millis() as u64;
                let _ = self.cluster.with_conn(|c| {
                    redis::pipe()
                        .cmd("SET")
                        .arg(&live)
                        .arg(ttl_ms)
                        .arg("PX")
                        .arg(ttl_ms)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&res)
                        .arg(ttl_ms)
                        .ignore()
                        .query::<()>(c)
                });
            }
            if last_check.elapsed() >= lease.max(Duration::from_millis(200)) {
                last_check = Instant::now();
                let busy = !lock(&self.state).maps.is_empty();
                // The caller's own key must still be there: if it is not,
                // the server lost it (restarted without its data, or was
                // flushed: the epoch check misses this when another
                // process reconnected first and put the epoch back) or
                // this process stalled past key_ttl; either way workers
                // drop this caller's results, so pending maps cannot
                // finish.
                let ttl_ms = ttl.as_millis() as u64;
                let was: Result<Option<String>, _> = self.cluster.with_conn(|c| {
                    redis::cmd("SET")
                        .arg(&live)
                        .arg(ttl_ms)
                        .arg("PX")
                        .arg(ttl_ms)
                        .arg("GET")
                        .query(c)
                });
                let gone = matches!(was, Ok(None));
                if gone && busy {
                    self.fail_all(&Cancel::Backend(BackendError::Lost(
                        "this caller's keys are gone from the server (it restarted without its \
                         data or was flushed, or this process stalled past key_ttl)"
                            .into(),
                    )));
                }
                if gone {
                    cursor = "0".into();
                    continue;
                }
                // Local workers being replaced by the supervisor get the
                // time they are given to come up.
                let grace = if lock(&self.local).wanted > 0 {
                    (lease * 2).max(Duration::from_secs(10))
                } else {
                    lease * 2
                };
                if busy && self.own_build_workers().is_ok_and(|n| n == 0) {
                    let since = *no_workers_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= grace {
                        self.fail_all(&Cancel::Broken(BrokenWhy {
                            message: format!(
                                "no live worker of build {} served pool {:?} for {:?}",
                                build_id().short(),
                                self.name,
                                since.elapsed()
                            ),
                            pid: None,
                            signal: None,
                        }));
                        no_workers_since = None;
                    }
                } else {
                    no_workers_since = None;
                }
            }
        }
    }

    /// Fails every pending call with `Backend(Lost)` and starts over on
    /// the server (the caller's key again; the result stream from its
    /// start).
    fn after_loss(&self, live: &str, ttl: Duration, why: &str) {
        self.fail_all(&Cancel::Backend(BackendError::Lost(why.into())));
        let ttl_ms = ttl.as_millis() as u64;
        let _ = self.cluster.with_conn(|c| {
            redis::cmd("SET")
                .arg(live)
                .arg(ttl_ms)
                .arg("PX")
                .arg(ttl_ms)
                .query::<()>(c)
        });
    }

    fn read_results(
        &self,
        res: &str,
        cursor: &str,
        block: Duration,
    ) -> Result<Value, BackendError> {
        let mut conn = self.cluster.take_conn()?;
        let _ = conn.set_read_timeout(Some(self.cluster.blocking_timeout(block)));
        let reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1024)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(res)
            .arg(cursor)
            .query(&mut conn);
        match reply {
            Ok(v) => {
                let _ = conn.set_read_timeout(Some(self.cluster.opts().call_timeout));
                self.cluster.put_back(conn);
                Ok(v)
            }
            Err(e) => Err(self.cluster.error(&e)),
        }
    }

    /// Delivers one result entry (one or more chunks of one map); the
    /// map's id if that was its last chunk.
    fn deliver(&self, entry: &stream::Entry) -> Option<u64> {
        let map: u64 = entry.number(b"m")?;
        let job = {
            let st = lock(&self.state);
            st.maps.get(&map)?.job.clone()
        };
        let mut chunks = 0;
        let (mut first, mut count) = (0usize, 0u32);
        for (name, value) in &entry.fields {
            let text = || std::str::from_utf8(value).ok();
            match name.as_slice() {
                b"s" => first = text().and_then(|t| t.parse().ok()).unwrap_or(0),
                b"n" => count = text().and_then(|t| t.parse().ok()).unwrap_or(0),
                b"b" => {
                    job.deliver(first, count, value);
                    chunks += 1;
                }
                b"x" => {
                    let deliveries = text().and_then(|t| t.parse().ok()).unwrap_or(0);
                    for i in 0..count as usize {
                        job.fail(first + i, TaskError::WorkerLost { deliveries });
                    }
                    chunks += 1;
                }
                b"e" => {
                    let error = crate::codec::decode_plain::<TaskError>(value).unwrap_or(
                        TaskError::Failed {
                            message: "a worker sent a result this caller cannot read".into(),
                        },
                    );
                    for i in 0..count as usize {
                        job.fail(first + i, error.clone());
                    }
                    chunks += 1;
                }
                _ => {}
            }
        }
        let mut st = lock(&self.state);
        let m = st.maps.get_mut(&map)?;
        m.chunks_left = m.chunks_left.saturating_sub(chunks);
        if m.chunks_left == 0 {
            st.maps.remove(&map);
            if st.maps.is_empty() {
                self.idle.notify_all();
            }
            return Some(map);
        }
        None
    }

    fn spawn_worker(&self) -> std::io::Result<std::process::Child> {
        let exe = std::env::current_exe()?;
        std::process::Command::new(exe)
            .env(super::WORKER_ENV, self.cluster.full_url())
            .env(POOL_ENV, &self.name)
            .env(NAMESPACE_ENV, self.cluster.namespace())
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
    }

    /// Replaces local workers that died, until stopped.
    fn supervise(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let mut local = lock(&self.local);
            if local.wanted == 0 {
                continue;
            }
            let mut i = 0;
            while i < local.children.len() {
                if matches!(local.children[i].try_wait(), Ok(Some(_))) {
                    // Reaped by try_wait; wait returns its status at once.
                    let _ = local.children.swap_remove(i).wait();
                } else {
                    i += 1;
                }
            }
            while local.children.len() < local.wanted {
                match self.spawn_worker() {
                    Ok(child) => local.children.push(child),
                    Err(_) => break,
                }
            }
        }
    }

    fn stop_local_workers(&self) {
        let (children, supervisor) = {
            let mut local = lock(&self.local);
            local.wanted = 0;
            (std::mem::take(&mut local.children), local.supervisor.take())
        };
        let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Unpublish them now rather than after their lease.
        if !pids.is_empty() {
            let host = stream::host_name();
            let gone: Vec<String> = self
                .live_workers()
                .unwrap_or_default()
                .into_iter()
                .filter(|w| w.host == host && pids.contains(&w.pid))
                .map(|w| w.id)
                .collect();
            if !gone.is_empty() {
                let prefix = &self.prefix;
                let _ = self.cluster.with_conn(|c| {
                    let mut p = redis::pipe();
                    p.cmd("HDEL")
                        .arg(format!("{prefix}workers"))
                        .arg(&gone)
                        .ignore();
                    for id in &gone {
                        p.cmd("DEL").arg(format!("{prefix}w:{id}")).ignore();
                    }
                    p.query::<()>(c)
                });
            }
        }
        if let Some(h) = supervisor
            && h.thread().id() != std::thread::current().id()
        {
            // It exits at the next tick once `stop` is set; otherwise it
            // idles (wanted = 0) until the pool is dropped.
            if self.stop.load(Ordering::Relaxed) {
                let _ = h.join();
            }
        }
    }
}

fn payload_count(len: usize, first: usize, chunksize: usize) -> usize {
    chunksize.min(len - first)
}

impl Backlog for Inner {
    fn cancel_seq(&self, seq: u64, why: &Cancel) {
        let ids = match lock(&self.state).maps.get(&seq) {
            Some(m) => m.entries.clone(),
            None => return,
        };
        if self.withdraw(&ids) == ids.len()
            && let Some(m) = lock(&self.state).maps.remove(&seq)
        {
            m.job.cancel(why);
        }
    }

    fn cancel_job(&self, job: usize, why: &Cancel) {
        let found: Vec<(u64, Vec<String>)> = lock(&self.state)
            .maps
            .iter()
            .filter(|(_, m)| job_id(&m.job) == job)
            .map(|(k, m)| (*k, m.entries.clone()))
            .collect();
        for (map, ids) in found {
            self.withdraw(&ids);
            if let Some(m) = lock(&self.state).maps.get(&map) {
                m.job.cancel(why);
            }
        }
    }

    fn is_pending(&self, seq: u64) -> bool {
        let ids = match lock(&self.state).maps.get(&seq) {
            Some(m) => m.entries.clone(),
            None => return false,
        };
        let script = redis::Script::new(stream::WAITING);
        ids.first().is_some_and(|id| {
            self.cluster
                .with_conn(|c| script.key(&self.tasks).arg(GROUP).arg(id).invoke::<u32>(c))
                .is_ok_and(|n| n == 1)
        })
    }

    fn broken_why(&self) -> Option<BrokenWhy> {
        None
    }
}
