//! [`Executor`]: Python's `ProcessPoolExecutor` across machines, on a
//! remote [`Pool`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::cluster::Cluster;
use super::pool::{Pool, Worker, registered};
use crate::backend::BackendError;
use crate::pool::shared_with_remote::{IterJob, Job, Shared, job_id};
use crate::{ExecutorError, ImapIter, MapResults, PoolError, Task, TaskFuture};

impl Cluster {
    /// The remote executor over pool `name` (the same workers as
    /// [`Cluster::pool`] with that name).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let ex = c.executor("squares")?;
    /// # Ok::<(), multiprocess::ExecutorError>(())
    /// ```
    pub fn executor(&self, name: &str) -> Result<Executor, ExecutorError> {
        Ok(Executor {
            pool: self.pool(name).map_err(from_pool)?,
        })
    }
}

fn from_pool(e: PoolError) -> ExecutorError {
    match e {
        PoolError::Closed | PoolError::Terminated => ExecutorError::ShutDown,
        PoolError::Timeout => ExecutorError::Timeout,
        other => ExecutorError::Pool(other),
    }
}

/// [`Executor::map`] with a chunk size and a timeout (from
/// [`Executor::with_chunksize`] and [`Executor::with_timeout`]).
#[derive(Debug)]
pub struct ExecutorMap<'a> {
    executor: &'a Executor,
    chunksize: usize,
    timeout: Option<Duration>,
}

impl ExecutorMap<'_> {
    /// Sets the chunk size.
    pub fn with_chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = chunksize;
        self
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// [`Executor::map`] with these options.
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.executor
            .map_with(f, iterable, self.chunksize, self.timeout)
    }
}

/// Python's `concurrent.futures.ProcessPoolExecutor` across machines: the
/// methods of [`crate::Executor`], run by a remote pool's workers.
///
/// Unlike the local executor, a worker's death does not break the
/// executor: its task runs again on another worker, and only after
/// `max_deliveries` deliveries does that one future fail with
/// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost).
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
///     let ex = c.executor("squares")?;
///     ex.spawn_local_workers(2)?;
///     let f = ex.submit(square, (7,))?;
///     assert_eq!(f.result()?, 49);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Executor {
    pool: Pool,
}

impl Executor {
    /// The live workers of the pool, of every build.
    pub fn workers(&self) -> Result<Vec<Worker>, BackendError> {
        self.pool.workers()
    }

    /// The pids of the live workers of this build.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.worker_pids()
    }

    /// Starts `n` local workers (see [`Pool::spawn_local_workers`]).
    pub fn spawn_local_workers(&self, n: usize) -> Result<(), ExecutorError> {
        self.pool.spawn_local_workers(n).map_err(from_pool)
    }

    /// Schedules `f(args…)` (Python's `submit`).
    pub fn submit<F, Args>(&self, _f: F, args: Args) -> Result<TaskFuture<F::Output>, ExecutorError>
    where
        F: Task<Args>,
        Args: Serialize + 'static,
    {
        let name = registered::<F, Args>().map_err(from_pool)?;
        let shared = Arc::new(Shared::<F::Output>::new());
        let job: Arc<dyn Job> = shared.clone();
        let seq = self
            .pool
            .submit_job(&name, &[args], 1, job)
            .map_err(from_pool)?;
        Ok(TaskFuture {
            shared,
            core: self.pool.backlog(),
            seq,
        })
    }

    /// Python's `map`: results in input order; each item's error is its
    /// own.
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_with(f, iterable, 1, None)
    }

    /// [`map`](Self::map) with Python's `chunksize`.
    pub fn with_chunksize(&self, chunksize: usize) -> ExecutorMap<'_> {
        ExecutorMap {
            executor: self,
            chunksize,
            timeout: None,
        }
    }

    /// [`map`](Self::map) with Python's `timeout`: every result must be in
    /// by then (from the call to `map`).
    pub fn with_timeout(&self, timeout: Duration) -> ExecutorMap<'_> {
        ExecutorMap {
            executor: self,
            chunksize: 1,
            timeout: Some(timeout),
        }
    }

    fn map_with<F, A, I>(
        &self,
        _f: F,
        iterable: I,
        chunksize: usize,
        timeout: Option<Duration>,
    ) -> Result<MapResults<F::Output>, ExecutorError>
    where
        F: Task<(A,)>,
        A: Serialize + 'static,
        I: IntoIterator<Item = A>,
    {
        let name = registered::<F, (A,)>().map_err(from_pool)?;
        let deadline = timeout.and_then(crate::deadline::after);
        let items: Vec<(A,)> = iterable.into_iter().map(|a| (a,)).collect();
        let job = IterJob::new(true);
        let dyn_job: Arc<dyn Job> = job.clone();
        let id = job_id(&dyn_job);
        if !items.is_empty() {
            self.pool
                .submit_job(&name, &items, chunksize.max(1), dyn_job)
                .map_err(from_pool)?;
        }
        Ok(MapResults::new(
            ImapIter::new(job, items.len()),
            self.pool.backlog(),
            id,
            deadline,
        ))
    }

    /// Takes no new work; with `wait`, waits for the submitted work; with
    /// `cancel_futures`, withdraws what no worker started (Python's
    /// `shutdown`).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        if cancel_futures {
            self.pool.terminate();
            return;
        }
        self.pool.close();
        if wait {
            let _ = self.pool.join();
        }
    }
}
