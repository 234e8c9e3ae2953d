//! State shared between processes: [`Value`], [`Array`] and their lock-free
//! raw forms (plain data in a sealed memfd mapped by every process holding
//! them), and named [`SharedMemory`] segments with the resource tracker that
//! unlinks them when every process holding them is gone.

mod array;
mod named;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, IndexError, LengthError, RawArray};
pub use named::{SharedMemory, SharedMemoryError};
pub(crate) use tracker::{TRACKER_ENV, serve as serve_tracker};
pub use value::{RawValue, Value, ValueGuard};
