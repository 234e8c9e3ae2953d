//! State shared between processes: [`Value`], [`Array`] and their lock-free
//! raw forms (plain data in a sealed memfd mapped by every process holding
//! them), named [`SharedMemory`] segments with the resource tracker that
//! unlinks them when every process holding them is gone, the
//! [`ShareableList`] kept in one, and the [`SharedMemoryManager`] that
//! unlinks the segments it made.

mod array;
mod item;
mod manager;
mod named;
mod shareable_list;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, IndexError, LengthError, RawArray};
pub use item::{Item, ItemKind};
pub use manager::SharedMemoryManager;
pub use named::{SharedMemory, SharedMemoryError};
pub use shareable_list::{ShareableList, ShareableListError};
pub(crate) use tracker::{TRACKER_ENV, serve as serve_tracker};
pub use value::{RawValue, Value, ValueGuard};
