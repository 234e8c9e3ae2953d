//! What the pool's machinery (`core.rs`) and the places results land
//! (`result.rs`, `future.rs`) share: the [`Job`] a chunk delivers to, why
//! the pool gave up on outstanding work ([`Cancel`], [`BrokenWhy`]), and a
//! job's identity ([`job_id`]).

use std::sync::Arc;

use super::error::{PoolError, TaskError};

/// Why the pool stopped working, and which worker's death did it.
#[derive(Debug, Clone)]
pub(crate) struct BrokenWhy {
    pub message: String,
    pub pid: Option<u32>,
    pub signal: Option<i32>,
}

/// Why the pool gave up on outstanding work.
#[derive(Debug, Clone)]
pub(crate) enum Cancel {
    Terminated,
    Broken(BrokenWhy),
    /// Cancelled before it started (the executor's `cancel`).
    Cancelled,
    /// A remote pool's server failed the work (lost its data, unreachable).
    #[cfg(feature = "redis")]
    Backend(crate::backend::BackendError),
}

impl Cancel {
    pub(super) fn error(&self) -> PoolError {
        match self {
            Cancel::Terminated | Cancel::Cancelled => PoolError::Terminated,
            Cancel::Broken(b) => PoolError::Broken(b.message.clone()),
            #[cfg(feature = "redis")]
            Cancel::Backend(e) => PoolError::Backend(e.clone()),
        }
    }
}

/// Where submitted calls wait until a worker takes them: what a
/// [`TaskFuture`](super::TaskFuture) or an executor's map results ask to
/// withdraw calls that have not started. The local pool's `Core` and the
/// remote pool each are one.
pub(crate) trait Backlog: Send + Sync {
    /// Withdraws the call with sequence number `seq` if no worker took it,
    /// cancelling its job with `why`.
    fn cancel_seq(&self, seq: u64, why: &Cancel);
    /// Withdraws the calls of job `job` (see [`job_id`]) no worker took.
    fn cancel_job(&self, job: usize, why: &Cancel);
    /// Whether the call `seq` still waits for a worker.
    fn is_pending(&self, seq: u64) -> bool;
    /// Why the pool broke, if it did.
    fn broken_why(&self) -> Option<BrokenWhy>;
}

/// The receiving end of submitted work, as the pool's result thread sees it.
pub(crate) trait Job: Send + Sync {
    /// A chunk of `count` calls starting at input position `first` finished;
    /// `body` holds their encoded outcomes.
    fn deliver(&self, first: usize, count: u32, body: &[u8]);
    /// The call at input position `index` failed without an outcome.
    fn fail(&self, index: usize, error: TaskError);
    /// The pool gave up on the job's remaining calls.
    fn cancel(&self, why: &Cancel);
}

/// A job's identity: the address of its shared state, for finding its
/// chunks while the job is alive.
pub(crate) fn job_id(job: &Arc<dyn Job>) -> usize {
    Arc::as_ptr(job).cast::<()>() as usize
}
