//! `multiprocess`: what Python's `multiprocessing` gives Python programs, for Rust.
//!
//! (Crate documentation is written as the modules land.)
#![deny(unsafe_op_in_unsafe_fn)]
// Examples keep `fn main` where they show that `init()` goes first in it.
#![allow(clippy::needless_doctest_main)]

mod connection;
mod deadline;
mod handle;
mod process;
mod queue;
mod sync;
mod sys;

pub use connection::{
    Connection, DEFAULT_MAX_MESSAGE_SIZE, Pipe, RecvError, RecvTimeoutError, SendError,
    TryRecvError,
};
pub use handle::{DecodeError, EncodeError};
pub use process::{
    Builder, Context, ParentProcess, Process, ProcessError, ProcessInfo, StartError, StartMethod,
    Target, TargetResult, active_children, cpu_count, current_process, get_context,
    get_start_method, init, parent_process, set_start_method,
};
pub use queue::{
    DEFAULT_CAPACITY, GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueBuilder,
    TryGetError, TryPutError,
};
pub use sync::{Lock, LockGuard};
