//! Errors of the pool: one per task ([`TaskError`]) and one per call
//! ([`PoolError`]), and the executor's ([`ExecutorError`]).

use serde::{Deserialize, Serialize};

use crate::codec::EncodeError;
use crate::process::StartError;

/// Why one task gave no result. The pool keeps working after any of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; `message` is the panic payload (a `&str` or
    /// `String`, else a placeholder), `backtrace` the worker's backtrace.
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
        /// Where the panic happened, as `file:line:col`, if known.
        location: Option<String>,
        /// The worker's backtrace at the panic, as text.
        backtrace: Option<String>,
    },
    /// The task returned `Err`; `message` is the error's `Display` text.
    #[error("task failed: {message}")]
    Failed {
        /// The error's text.
        message: String,
    },
    /// The worker running the task died (killed by a signal, out of memory,
    /// or it exited) before the task finished. Other tasks are unaffected; a
    /// replacement worker was started.
    #[error("{}", worker_died_text(*pid, *signal, *exitcode))]
    WorkerDied {
        /// The worker's pid.
        pid: u32,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Its exit status, if it exited (for example through
        /// `std::process::exit`), or `None` if killed or unknown.
        exitcode: Option<i32>,
    },
    /// The task's result could not be serialized in the worker.
    #[error("cannot send the task's result: {message}")]
    Unserializable {
        /// What the serializer said.
        message: String,
    },
    /// The task's arguments or result did not decode on the other side.
    #[error("cannot decode the task's {what}: {message}")]
    Decode {
        /// `arguments` or `result`.
        what: String,
        /// What the decoder said.
        message: String,
    },
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Cancelled,
    /// A remote task was handed to workers `deliveries` times and every
    /// one of them died, froze or was cut off before finishing it (a
    /// [`remote`](crate::remote) pool's `max_deliveries`); other tasks are
    /// unaffected.
    #[error("the task was lost with its worker {deliveries} times (max_deliveries); giving up")]
    WorkerLost {
        /// How many times the task was handed out.
        deliveries: u32,
    },
}

fn worker_died_text(pid: u32, signal: Option<i32>, exitcode: Option<i32>) -> String {
    match (signal, exitcode) {
        (Some(sig), _) => format!("worker {pid} died from signal {sig} while running the task"),
        (None, Some(code)) => {
            format!("worker {pid} exited with code {code} while running the task")
        }
        (None, None) => format!("worker {pid} died while running the task"),
    }
}

impl TaskError {
    /// The error's message: the panic payload, the error's text, or a
    /// description of what happened.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = multiprocess::TaskError::Failed { message: "bad input".into() };
    /// assert_eq!(e.message(), "bad input");
    /// ```
    pub fn message(&self) -> String {
        match self {
            TaskError::Panicked { message, .. }
            | TaskError::Failed { message }
            | TaskError::Unserializable { message }
            | TaskError::Decode { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The remote backtrace text of a panicked task, if captured.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = multiprocess::TaskError::Failed { message: "bad input".into() };
    /// assert!(e.backtrace().is_none());
    /// ```
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            TaskError::Panicked { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }
}

/// Why a pool call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one process (Python's `ValueError`).
    #[error("number of processes must be at least 1")]
    ZeroProcesses,
    /// `maxtasksperchild` must be at least 1.
    #[error("maxtasksperchild must be at least 1")]
    ZeroMaxTasks,
    /// `chunksize` must be at least 1.
    #[error("chunksize must be at least 1")]
    ZeroChunksize,
    /// The pool's workers must be started by re-execution (Spawn or
    /// ForkServer): the pool has threads, so Fork could not replace workers.
    #[error("a pool needs the Spawn or ForkServer start method")]
    ForkUnsupported,
    /// [`Pool::close`](crate::Pool::close) was called: no new work is taken.
    #[error("the pool is closed")]
    Closed,
    /// [`Pool::join`](crate::Pool::join) before `close` or `terminate`
    /// (Python's `ValueError`).
    #[error("the pool is still running; close() or terminate() it before join()")]
    NotClosed,
    /// The pool was terminated (or dropped) before the work finished.
    #[error("the pool was terminated")]
    Terminated,
    /// Workers keep dying before they can take work (for example a failing
    /// initializer), so the pool gave up.
    #[error("the pool is broken: {0}")]
    Broken(String),
    /// A task failed; `index` is its position in the input.
    #[error("task {index} failed: {error}")]
    Task {
        /// The position of the failed item in the input (0 for `apply`).
        index: usize,
        /// What went wrong.
        error: TaskError,
    },
    /// No result came within the timeout; the task goes on running.
    #[error("timed out waiting for the result")]
    Timeout,
    /// The result was already taken by an earlier `get`.
    #[error("the result was already taken")]
    ResultTaken,
    /// The arguments could not be serialized; nothing was submitted.
    #[error("cannot send the task arguments: {0}")]
    Encode(#[from] EncodeError),
    /// A worker could not be started.
    #[error("cannot start a pool worker: {0}")]
    Start(#[from] StartError),
    /// The workers do not fit the process's open-file limit
    /// (`RLIMIT_NOFILE`, `ulimit -n`): each costs the pool a descriptor or
    /// two (its pidfd, and with the fork server the socket its exit code
    /// comes on). Checked before any worker starts, and reported instead of
    /// a bare `EMFILE` if the limit is reached while they start; the
    /// workers already started are stopped.
    #[error(
        "a pool of {processes} workers needs about {needed} open descriptors, but \
         RLIMIT_NOFILE is {limit} (the soft limit; `ulimit -n`): raise it or use fewer workers"
    )]
    TooManyWorkers {
        /// The workers asked for.
        processes: usize,
        /// About how many descriptors the process would hold with them all
        /// running (those already open included).
        needed: u64,
        /// The soft `RLIMIT_NOFILE`.
        limit: u64,
    },
    /// The operating system refused (shared memory, threads).
    #[error("pool setup failed: {0}")]
    Io(#[from] std::io::Error),
    /// The Redis server of a [`remote`](crate::remote) pool failed the call.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// No live worker of a [`remote`](crate::remote) pool can run the task:
    /// none is running, or none is of the caller's build (`why` names the
    /// builds). Nothing was submitted.
    #[cfg(feature = "redis")]
    #[error("no worker can run the task: {why}")]
    NoWorkers {
        /// What the pool saw: the caller's build id and the live workers'.
        why: String,
    },
    /// The function was not registered with
    /// [`remote_task!`](crate::remote_task), so no remote worker could run
    /// it; nothing was sent.
    #[cfg(feature = "redis")]
    #[error(
        "{name} is not registered for remote runs: add multiprocess::remote_task!({short}) next to it"
    )]
    NotRegistered {
        /// The function's type name.
        name: String,
        /// Its last path segment.
        short: String,
    },
}

/// Why an [`Executor`](super::Executor) call or a [`TaskFuture`](super::TaskFuture) gave no result.
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
    /// [`Executor::shutdown`](super::Executor::shutdown) was called: no new work is taken (Python's
    /// `RuntimeError: cannot schedule new futures after shutdown`).
    #[error("cannot schedule new tasks after shutdown")]
    ShutDown,
    /// The result was already moved out by
    /// [`take_result`](crate::TaskFuture::take_result) or `.await`.
    #[error("the result was already taken")]
    ResultTaken,
    /// Setting up the executor or encoding the arguments failed.
    #[error(transparent)]
    Pool(PoolError),
    /// The executor's workers were stopped by
    /// [`Executor::terminate_workers`](crate::Executor::terminate_workers) or
    /// [`kill_workers`](crate::Executor::kill_workers) before the task
    /// finished (a pending task never ran; a running one was stopped).
    #[error(
        "the executor's workers were stopped (terminate_workers/kill_workers) before the task finished"
    )]
    Terminated,
}
