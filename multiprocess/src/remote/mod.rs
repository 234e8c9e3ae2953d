//! `multiprocess::remote` (feature `redis`): the same [`Pool`], [`Executor`],
//! [`Queue`], [`JoinableQueue`] and [`Lock`] across machines, on one Redis 7
//! primary.
//!
//! ```no_run
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! multiprocess::remote_task!(square);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // With MULTIPROCESS_WORKER=redis://… in its environment, this process
//!     // is a worker: init() serves tasks and never returns.
//!     multiprocess::init();
//!     let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
//!     let pool = c.pool("squares")?;
//!     pool.spawn_local_workers(2)?;
//!     assert_eq!(pool.map(square, 1..=4u64)?, [1, 4, 9, 16]);
//!     Ok(())
//! }
//! ```
//!
//! # What differs from the local types
//!
//! - **Tasks run at least once.** A worker that dies, freezes or is cut off
//!   loses its lease, and the task runs again elsewhere (up to
//!   [`ClusterBuilder::max_deliveries`] times, then the result is
//!   [`TaskError::WorkerLost`](crate::TaskError::WorkerLost)). Each input's
//!   result is seen exactly once by the caller.
//! - **A function is named, not addressed**: only functions registered with
//!   [`remote_task!`](crate::remote_task) run remotely, and only on workers
//!   built from the same executable (the same SHA-256 build id).
//! - **A lock is a lease**: a holder that stops renewing it (dead, frozen,
//!   cut off) loses it after the lease; [`LockGuard::fence`] gives a fencing
//!   token that only grows, for the resource to reject a stale holder.
//! - **The server is a single point of failure**, and durable only with
//!   `appendonly yes` and `appendfsync always`: a server that restarts
//!   without its data makes waiting calls return
//!   [`BackendError::Lost`].
//!
//! Redis access is the trust boundary: whoever can write to the server can
//! call any registered function with any arguments, and nothing more (see
//! SECURITY.md).

mod cluster;
mod executor;
mod lock;
mod pool;
mod queue;
mod registry;
mod server;
mod stream;
mod worker;

pub use crate::backend::BackendError;
pub use cluster::{Cluster, ClusterBuilder};
pub use executor::{Executor, ExecutorMap};
pub use lock::{Lock, LockGuard};
pub use pool::{Chunked, Pool, Worker};
pub use queue::{JoinableQueue, Queue};
pub use registry::{BuildId, build_id};
pub use server::{LocalServer, LocalServerBuilder};

#[doc(hidden)]
pub use registry::{__TASKS, __TaskEntry, __describe, __run};

pub(crate) use worker::serve_if_worker;

/// The environment variable that makes a process a remote worker: its
/// value is the server's URL, and [`init`](fn@crate::init) serves tasks
/// instead of returning. `MULTIPROCESS_WORKER_POOLS` (comma-separated pool
/// names, default every pool) and `MULTIPROCESS_WORKER_NAMESPACE`
/// (default `default`) narrow what it serves.
pub const WORKER_ENV: &str = "MULTIPROCESS_WORKER";
