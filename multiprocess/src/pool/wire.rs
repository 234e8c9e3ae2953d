//! What travels between the pool and its workers: task and result messages,
//! the per-worker progress words, and the worker's start arguments.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::TaskError;
use crate::handle;
use crate::queue::Queue;
use crate::sys::shm::SharedRegion;

/// Encoded bytes shared between the pool's bookkeeping and the message it
/// puts (so a chunk is encoded once, however often it is dispatched).
#[derive(Debug, Clone, Default)]
pub(crate) struct Payload(pub Arc<Vec<u8>>);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Arc::new(v.to_vec())))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Arc::new(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Bytes that serialize as one byte string (postcard: length and a copy),
/// not as a sequence of `u8`s encoded and decoded one at a time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Payload::deserialize(d).map(|p| Bytes(Arc::unwrap_or_clone(p.0)))
    }
}

/// A message on a worker's task queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskMsg {
    /// Run a chunk of calls.
    Run {
        /// The chunk's sequence number, unique in the pool.
        seq: u64,
        /// The task entry point (see `sys::code::task_entry_offset`).
        entry: i64,
        /// How many calls the chunk holds.
        count: u32,
        /// Positions in the chunk not to run (already failed with their
        /// worker); sorted.
        skip: Vec<u32>,
        /// The encoded `Vec<Args>`.
        payload: Payload,
    },
    /// Exit once the queue has been read this far.
    Stop,
}

/// A message on the pool's results queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResultMsg {
    /// A worker finished a chunk: `body` is the encoded `Vec<Outcome<R>>`.
    Done {
        /// The worker's id.
        worker: u64,
        /// The chunk's sequence number.
        seq: u64,
        /// How long the chunk took, in nanoseconds.
        nanos: u64,
        /// The outcomes.
        body: Bytes,
    },
    /// The monitor saw worker `worker` exit with `code` (Python's exit code
    /// convention; `None` if unknown). Every result the worker put is ahead
    /// of this message in the queue.
    Exited {
        /// The worker's id.
        worker: u64,
        /// Its exit code, `-N` for signal N.
        code: Option<i32>,
    },
    /// A worker's initializer failed: the pool cannot work.
    InitFailed {
        /// The worker's id.
        worker: u64,
        /// What went wrong.
        message: String,
    },
    /// The pool is shutting down: the result thread ends.
    Shutdown,
}

/// The first byte of a chunk's result body: every call succeeded and the
/// rest is the encoded `Vec<R>` of their results.
pub(crate) const ALL_OK: u8 = 0;
/// The first byte of a chunk's result body: the rest is the encoded
/// `Vec<Outcome<R>>`, one per call.
pub(crate) const MIXED: u8 = 1;

/// The outcome of one call in a chunk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    /// The task's result.
    Ok(R),
    /// The task failed.
    Err(TaskError),
    /// The call was in the chunk's skip list and did not run.
    Skipped,
}

/// Byte offsets of the two progress words in a worker's region.
const SEQ: usize = 0;
const INDEX: usize = 8;

/// A worker's progress, in shared memory: the sequence number of the chunk
/// it runs and the position of the call within it. Written by the worker
/// before each call; read by the pool after the worker's death, to know
/// which call it died in.
#[derive(Debug, Clone)]
pub(crate) struct Progress(Arc<SharedRegion>);

/// No chunk started yet.
pub(crate) const NO_SEQ: u64 = u64::MAX;

impl Progress {
    pub(crate) fn new() -> io::Result<Progress> {
        let region = SharedRegion::create("multiprocess-pool-progress", 16)?;
        region.atomic_u64(SEQ).store(NO_SEQ, Ordering::Relaxed);
        Ok(Progress(Arc::new(region)))
    }

    /// Records that call `index` of chunk `seq` starts. The position is
    /// written first: a worker that dies between the two stores leaves the
    /// previous chunk's number, so the new chunk counts as never started
    /// and is re-run whole, which is right since none of it ran.
    pub(crate) fn start(&self, seq: u64, index: u32) {
        self.0
            .atomic_u64(INDEX)
            .store(index as u64, Ordering::Release);
        self.0.atomic_u64(SEQ).store(seq, Ordering::Release);
    }

    /// The position word alone, for the later calls of a chunk whose number
    /// [`start`](Self::start) recorded: one store per call.
    pub(crate) fn index_word(&self) -> &crate::sys::atomic::AtomicU64 {
        self.0.atomic_u64(INDEX)
    }

    /// `(seq, index)` as last recorded.
    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.0.atomic_u64(SEQ).load(Ordering::Acquire),
            self.0.atomic_u64(INDEX).load(Ordering::Acquire),
        )
    }
}

impl Serialize for Progress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        handle::serialize_fd(self.0.fd(), "pool progress region", s)
    }
}

impl<'de> Deserialize<'de> for Progress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fd = handle::deserialize_fd("pool progress region", d)?;
        let region =
            SharedRegion::from_fd(fd, 16).map_err(|e| handle::handle_de_error(e.to_string()))?;
        Ok(Progress(Arc::new(region)))
    }
}

/// A descriptor passed to a worker as is (the initializer's handles).
#[derive(Debug)]
pub(crate) struct PassFd(pub OwnedFd);

impl Serialize for PassFd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        handle::serialize_fd(self.0.as_fd(), "initializer handle", s)
    }
}

impl<'de> Deserialize<'de> for PassFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        handle::deserialize_fd("initializer handle", d).map(PassFd)
    }
}

/// The initializer as a worker receives it: a process entry point and its
/// encoded arguments with their descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitCall {
    pub entry: i64,
    pub exe: (u64, u64),
    pub args: Vec<u8>,
    pub fds: Vec<PassFd>,
}

/// A worker's start arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub id: u64,
    pub tasks: Queue<TaskMsg>,
    pub results: Queue<ResultMsg>,
    pub progress: Progress,
    pub init: Option<InitCall>,
    /// Exit after this many chunks.
    pub max_tasks: Option<u64>,
}
