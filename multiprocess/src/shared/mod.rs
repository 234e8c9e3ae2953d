//! State shared between processes.

mod named;
mod tracker;

pub use named::{SharedMemory, SharedMemoryError};
pub(crate) use tracker::{TRACKER_ENV, serve as serve_tracker};
