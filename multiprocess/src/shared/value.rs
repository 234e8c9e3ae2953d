//! [`Value`] and [`RawValue`]: one plain-data value in shared memory (a
//! block of length 1, see `array.rs`).

use std::fmt;
use std::io;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::array::{Block, FdIn, FdOut, Kind, ViewGuard};
use crate::codec;
use crate::sync::RLock;
use crate::sys::shm::LockedSlice;

/// One value of plain data shared by processes, with its own [`RLock`],
/// like Python's `multiprocessing.Value('i', 0)` (whose default lock is an
/// `RLock`).
///
/// `T` is any [`bytemuck::Pod`] type: `i32`, `f64`, `u8`, arrays of them,
/// or a `#[repr(C)]` struct deriving `Pod` and `Zeroable`. Cloning gives
/// another handle to the same memory; so does passing it to a child
/// process. [`get`](Value::get) and [`set`](Value::set) take the lock for
/// one copy; [`lock`](Value::lock) holds it for a read-modify-write.
///
/// # Examples
///
/// Python's `with v.get_lock(): v.value += 1` is, shortest, `*v.lock() += 1`;
/// as the lock is reentrant, the word-for-word translation works too:
///
/// ```
/// use multiprocess::Value;
///
/// let v = Value::<i32>::new(0)?;
/// *v.lock() += 1;
/// {
///     let _held = v.get_lock().acquire();
///     v.set(v.get() * 10); // one lock hold: atomic together
/// }
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
/// # Panics
/// Calling `get`, `set` or `lock` while this thread holds a [`ValueGuard`]
/// of the same value panics (the guard is the way to access it then).
pub struct Value<T> {
    block: Block<T>,
    lock: RLock,
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
        Self::with_lock(value, RLock::new()?)
    }

    /// A shared value guarded by an existing `lock` (Python's
    /// `Value('i', 0, lock=lock)`), e.g. to update several values under one
    /// lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{RLock, Value};
    /// let lock = RLock::new()?;
    /// let a = Value::with_lock(1i32, lock.clone())?;
    /// let b = Value::with_lock(2i32, lock.clone())?;
    /// let held = a.lock();
    /// assert!(b.get_lock().is_locked());
    /// assert_eq!(b.get(), 2); // reentrant: this thread holds the lock
    /// drop(held);
    /// // Creating a value does not take the lock, so this is fine:
    /// let _g = lock.acquire();
    /// let _c = Value::with_lock(3i32, lock.clone())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn with_lock(value: T, lock: RLock) -> io::Result<Value<T>> {
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
            view: self.block.locked(&self.lock, "Value"),
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
    pub fn get_lock(&self) -> &RLock {
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
        let (FdIn(fd), lock) = <(FdIn, RLock)>::deserialize(deserializer)?;
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
    view: LockedSlice<'a, T, ViewGuard<'a>>,
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

    /// Runs `f` on a thread; false if it did not finish within 10 s (a
    /// deadlock), so the test fails instead of hanging.
    fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
    }

    #[test]
    fn get_lock_is_reentrant_for_get_and_set() {
        // Python: `with v.get_lock(): v.value += 1`.
        let v = Value::new(41i32).unwrap();
        let a = Array::<u8>::new(2).unwrap();
        let (v2, a2) = (v.clone(), a.clone());
        assert!(
            finishes(move || {
                let _held = v2.get_lock().acquire();
                v2.set(v2.get() + 1);
                *v2.lock() += 1;
                let _held = a2.get_lock().acquire();
                a2.set(1, a2.get(1).unwrap() + 7).unwrap();
                a2.lock()[0] = 3;
            }),
            "deadlocked: the lock is not reentrant"
        );
        assert_eq!(v.get(), 43);
        assert_eq!(a.to_vec(), [3, 7]);
        assert!(!v.get_lock().is_locked() && !a.get_lock().is_locked());
    }

    #[test]
    #[cfg_attr(miri, ignore = "unwinds through a panic")]
    fn access_while_own_guard_is_open_panics_and_frees_the_lock() {
        let v = Value::new(1u32).unwrap();
        let a = Array::<u32>::new(1).unwrap();
        let g = v.lock();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.get()));
        let msg = r.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("Value accessed while this thread holds"),
            "{msg}"
        );
        assert_eq!(v.get_lock().depth(), 1, "the failed access left no level");
        drop(g);
        assert!(!v.get_lock().is_locked());
        let g = a.lock();
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.set(0, 2))).is_err());
        drop(g);
        // A view closed cleanly can be reopened.
        a.set(0, 5).unwrap();
        assert_eq!(a.to_vec(), [5]);
    }

    #[test]
    fn other_values_sharing_the_lock_stay_accessible() {
        let lock = RLock::new().unwrap();
        let x = Value::with_lock(1u8, lock.clone()).unwrap();
        let y = Value::with_lock(2u8, lock.clone()).unwrap();
        let mut gx = x.lock();
        *gx += y.get();
        assert_eq!(*gx, 3);
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
