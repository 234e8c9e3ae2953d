//! Shared state: [`Value`], [`Array`] and their lock-free raw forms, plain
//! data in a sealed memfd mapped by every process holding them.

mod array;
mod value;

pub use array::{Array, ArrayGuard, IndexError, LengthError, RawArray};
pub use value::{RawValue, Value, ValueGuard};
