//! [`Value`] and [`RawValue`]: one plain-data value in shared memory (a
//! block of length 1, see `array.rs`).

use std::fmt;
use std::io;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::{Block, FdIn, FdOut, Kind};
use crate::codec;
use crate::sync::{Lock, LockGuard};
use crate::sys::shm::LockedSlice;

/// One value of plain data shared by processes, with its own [`Lock`], like
/// Python's `multiprocessing.Value('i', 0)`.
///
/// `T` is any [`bytemuck::Pod`] type: `i32`, `f64`, `u8`, arrays of them,
/// or a `#[repr(C)]` struct deriving `Pod` and `Zeroable`. Cloning gives
/// another handle to the same memory; so does passing it to a child
/// process. [`get`](Value::get) and [`set`](Value::set) take the lock for
/// one copy; [`lock`](Value::lock) holds it for a read-modify-write.
///
/// # Examples
///
/// Python's `with v.get_lock(): v.value += 1` is:
///
/// ```
/// use multiprocess::Value;
///
/// let v = Value::<i32>::new(0)?;
/// *v.lock() += 1;
/// v.set(v.get() * 10); // two separate lock holds: not atomic together
/// assert_eq!(v.get(), 10);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A counter incremented by child processes:
///
/// ```no_run
/// use multiprocess::{Process, Value};
///
/// fn add(counter: Value<u64>) {
///     for _ in 0..1000 {
///         *counter.lock() += 1;
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let counter = Value::new(0u64)?;
///     let ps: Vec<Process> = (0..4).map(|_| Process::new(add, (counter.clone(),))).collect();
///     for p in &ps {
///         p.start()?;
///     }
///     for p in &ps {
///         p.join()?;
///     }
///     assert_eq!(counter.get(), 4000);
///     Ok(())
/// }
/// ```
///
/// # Caveats
/// The lock is not reentrant: calling `get`/`set` (or `lock`) while holding
/// a guard of the same value, or of a value sharing its lock, deadlocks.
pub struct Value<T> {
    block: Block<T>,
    lock: Lock,
}

impl<T: Pod> Value<T> {
    /// A shared value holding `value`, with a new lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::Value::new(2.5f64)?;
    /// assert_eq!(v.get(), 2.5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd or the lock cannot be created.
    pub fn new(value: T) -> io::Result<Value<T>> {
        Self::with_lock(value, Lock::new()?)
    }

    /// A shared value guarded by an existing `lock` (Python's
    /// `Value('i', 0, lock=lock)`), e.g. to update several values under one
    /// lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Lock, Value};
    /// let lock = Lock::new()?;
    /// let a = Value::with_lock(1i32, lock.clone())?;
    /// let b = Value::with_lock(2i32, lock.clone())?;
    /// let held = a.lock();
    /// assert!(b.get_lock().is_locked());
    /// drop(held);
    /// assert_eq!(b.get(), 2);
    /// // Creating a value does not take the lock, so this is fine:
    /// let _g = lock.acquire();
    /// let _c = Value::with_lock(3i32, lock.clone())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn with_lock(value: T, lock: Lock) -> io::Result<Value<T>> {
        let block = Block::create(1, Kind::Locked, "multiprocess-value")?;
        block.init_from(&[value]);
        Ok(Value { block, lock })
    }

    /// Takes the lock and gives the value; released when the guard drops.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::Value::new(1u8)?;
    /// {
    ///     let mut g = v.lock();
    ///     *g = g.wrapping_mul(3);
    /// }
    /// assert_eq!(v.get(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            view: self.block.locked(self.lock.acquire()),
        }
    }

    /// A copy of the value, read under the lock (Python's `v.value`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Value::new(-4i16)?.get(), -4);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self) -> T {
        *self.lock()
    }

    /// Stores `value` under the lock (Python's `v.value = x`).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::Value::new(0i64)?;
    /// v.set(1 << 40);
    /// assert_eq!(v.get(), 1 << 40);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        *self.lock() = value;
    }
}

impl<T> Value<T> {
    /// The lock guarding the value (Python's `v.get_lock()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::Value::new(0u32)?;
    /// let _g = v.get_lock().acquire();
    /// assert!(v.get_lock().is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            block: self.block.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdOut(self.block.fd(), "Value"), &self.lock).serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (FdIn(fd), lock) = <(FdIn, Lock)>::deserialize(deserializer)?;
        let block = Block::open(fd, Kind::Locked, "Value")
            .map_err(|e| codec::handle_de_error(e.to_string()))?;
        if block.len() != 1 {
            return Err(codec::handle_de_error(
                "descriptor is an Array, not a Value".into(),
            ));
        }
        Ok(Value { block, lock })
    }
}

/// A [`Value`]'s contents while its lock is held; derefs to `T`.
///
/// # Examples
///
/// ```
/// let v = multiprocess::Value::new(5u32)?;
/// let mut g = v.lock();
/// *g += 1;
/// assert_eq!(*g, 6);
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    view: LockedSlice<'a, T, LockGuard<'a>>,
}

impl<T> ValueGuard<'_, T> {
    /// Whether the lock was taken over from a process that died holding it
    /// (the value may be half-updated).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::Value::new(0u8)?;
    /// assert!(!v.lock().previous_owner_died());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn previous_owner_died(&self) -> bool {
        self.view.guard().previous_owner_died()
    }
}

impl<T: Pod> std::ops::Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.view[0]
    }
}

impl<T: Pod> std::ops::DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.view[0]
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A shared value without a lock, like Python's `RawValue('i', 0)`.
///
/// `get` and `set` copy the bytes with relaxed atomic loads and stores, one
/// byte at a time: racy by design (a read concurrent with a write may see a
/// torn mix of old and new bytes, and read-modify-write sequences lose
/// updates), but never undefined behaviour, and `T: Pod` makes any mix of
/// bytes a valid `T`. Use a [`Value`] when updates must not be lost.
///
/// # Examples
///
/// ```
/// let v = multiprocess::RawValue::new(7u16)?;
/// v.set(v.get() + 1);
/// assert_eq!(v.get(), 8);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RawValue<T> {
    block: Block<T>,
}

impl<T: Pod> RawValue<T> {
    /// A shared value holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawValue::new(1.0f32)?.get(), 1.0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn new(value: T) -> io::Result<RawValue<T>> {
        let v = RawValue {
            block: Block::create(1, Kind::Raw, "multiprocess-rawvalue")?,
        };
        v.set(value);
        Ok(v)
    }

    /// A copy of the value (racy, see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawValue::new(3u64)?.get(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self) -> T {
        self.block.racy_get(0)
    }

    /// Stores `value` (racy, see the type's docs).
    ///
    /// # Examples
    ///
    /// ```
    /// let v = multiprocess::RawValue::new(0i8)?;
    /// v.set(-1);
    /// assert_eq!(v.get(), -1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        self.block.racy_set(0, value);
    }
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            block: self.block.clone(),
        }
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FdOut(self.block.fd(), "RawValue").serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FdIn(fd) = FdIn::deserialize(deserializer)?;
        let block = Block::open(fd, Kind::Raw, "RawValue")
            .map_err(|e| codec::handle_de_error(e.to_string()))?;
        if block.len() != 1 {
            return Err(codec::handle_de_error(
                "descriptor is a RawArray, not a RawValue".into(),
            ));
        }
        Ok(RawValue { block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{Array, RawArray};

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn wrong_type_on_decode_names_the_type() {
        let v = Value::new(1i32).unwrap();
        let (bytes, fds) = codec::encode(&v).unwrap();
        let err = codec::decode::<Value<f64>>(&bytes, fds).unwrap_err();
        assert!(err.to_string().contains("type f64"), "{err}");
        let (bytes, fds) = codec::encode(&v).unwrap();
        let back: Value<i32> = codec::decode(&bytes, fds).unwrap();
        back.set(5);
        assert_eq!(v.get(), 5);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn locked_and_raw_forms_are_not_mixed() {
        let a = Array::<u8>::new(2).unwrap();
        let (bytes, fds) = codec::encode(&a).unwrap();
        assert!(codec::decode::<Value<u8>>(&bytes, fds).is_err());
        let r = RawArray::<u8>::new(2).unwrap();
        let (bytes, fds) = codec::encode(&r).unwrap();
        let err = codec::decode::<RawValue<u8>>(&bytes, fds).unwrap_err();
        assert!(err.to_string().contains("not a RawValue"), "{err}");
    }
}
