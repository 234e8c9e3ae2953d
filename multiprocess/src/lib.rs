//! `multiprocess`: what Python's `multiprocessing` gives Python programs, for Rust.
//!
//! (Crate documentation is written as the modules land.)
#![deny(unsafe_op_in_unsafe_fn)]

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
