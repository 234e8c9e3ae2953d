//! [`Array`] and [`RawArray`], and the shared block under them and under
//! [`Value`](super::Value).
//!
//! A block is a sealed memfd: a 64-byte header (magic, kind, the element
//! type's tag, the length) and then the elements, aligned for `T`. Locked
//! blocks (`Value`, `Array`) are only read and written through a view made
//! while their [`Lock`] is held (`sys::shm::LockedSlice`); raw blocks
//! (`RawValue`, `RawArray`) only through relaxed atomic byte copies, so a
//! concurrent write may tear a value but is never undefined behaviour. The
//! kind is checked on opening, so one block is never accessed both ways.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::sync::{RLock, RLockGuard};
use crate::sys::atomic::AtomicU32;
use crate::sys::shm::{LockedSlice, SharedRegion};

const MAGIC_AT: usize = 0;
const KIND_AT: usize = 8;
const TYPE_TAG_AT: usize = 16;
const LEN_AT: usize = 24;
/// 1 while a view (`Value::lock`, `Array::lock`) of the block is open;
/// read and written only by the thread holding the block's lock.
const VIEW_AT: usize = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"mpShare1");

/// What guards a block's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `Value` or `Array`: accessed under its lock.
    Locked = 1,
    /// A `RawValue` or `RawArray`: accessed with racy atomic copies.
    Raw = 2,
}

/// The elements of a block of `T` start here.
fn data_at<T>() -> usize {
    64usize.max(std::mem::align_of::<T>())
}

/// A shared block of `len` values of `T` (see the module docs).
pub(crate) struct Block<T> {
    region: Arc<SharedRegion>,
    len: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        Block {
            region: self.region.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Block<T> {
    /// A zero-filled block (the memfd starts zeroed).
    pub(crate) fn create(len: usize, kind: Kind, what: &str) -> io::Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|n| n.checked_add(data_at::<T>()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "array too large"))?;
        // Take a liveness id now (the lock records it; see `sync/shared.rs`).
        crate::sys::liveness::register()?;
        let region = SharedRegion::create(what, bytes)?;
        region
            .atomic_u32(KIND_AT)
            .store(kind as u32, Ordering::Relaxed);
        region
            .atomic_u64(TYPE_TAG_AT)
            .store(codec::type_tag::<T>(), Ordering::Relaxed);
        region
            .atomic_u64(LEN_AT)
            .store(len as u64, Ordering::Relaxed);
        region.atomic_u64(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(Block {
            region: Arc::new(region),
            len,
            _t: PhantomData,
        })
    }

    /// Maps a block received as a descriptor, checking it holds `T`s and is
    /// of `kind`; `what` names the handle type in errors.
    pub(crate) fn open(fd: OwnedFd, kind: Kind, what: &str) -> io::Result<Self> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        crate::sys::liveness::register()?;
        let region = SharedRegion::from_fd(fd, 64)?;
        if region.atomic_u64(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(bad(format!("descriptor is not a multiprocess {what}")));
        }
        let found = region.atomic_u32(KIND_AT).load(Ordering::Relaxed);
        if found != kind as u32 {
            return Err(bad(format!(
                "descriptor is not a multiprocess {what} (it is the {} form)",
                if found == Kind::Raw as u32 {
                    "raw, lock-free"
                } else {
                    "locked"
                }
            )));
        }
        if region.atomic_u64(TYPE_TAG_AT).load(Ordering::Relaxed) != codec::type_tag::<T>() {
            return Err(bad(format!(
                "the shared {what} does not hold values of type {} \
                 (it was created with another type)",
                std::any::type_name::<T>()
            )));
        }
        let len = region.atomic_u64(LEN_AT).load(Ordering::Relaxed);
        let fits = usize::try_from(len).ok().filter(|&n| {
            n.checked_mul(std::mem::size_of::<T>())
                .and_then(|b| b.checked_add(data_at::<T>()))
                .is_some_and(|end| end <= region.len())
        });
        let Some(len) = fits else {
            return Err(bad(format!(
                "shared {what} header has an invalid length {len}"
            )));
        };
        Ok(Block {
            region: Arc::new(region),
            len,
            _t: PhantomData,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// Takes `lock` (the block's, reentrantly) and gives the elements,
    /// exclusively, while it is held.
    ///
    /// # Panics
    /// If this thread already has a view of this block open: a second one
    /// would alias the first's `&mut [T]` (`what` names the type).
    pub(crate) fn locked<'a>(
        &'a self,
        lock: &'a RLock,
        what: &str,
    ) -> LockedSlice<'a, T, ViewGuard<'a>> {
        let guard = lock.acquire();
        let open = self.region.atomic_u32(VIEW_AT);
        // At depth 1 the lock was free a moment ago, so a set flag is stale
        // (left by a holder that died); deeper, this thread set it.
        if lock.depth() > 1 && open.load(Ordering::Relaxed) != 0 {
            drop(guard);
            panic!(
                "{what} accessed while this thread holds its guard (from `lock()`): \
                 use that guard (a second view would alias it)"
            );
        }
        open.store(1, Ordering::Relaxed);
        self.region
            .locked_slice(data_at::<T>(), self.len, ViewGuard { open, guard })
    }

    fn offset(&self, index: usize) -> usize {
        data_at::<T>() + index * std::mem::size_of::<T>()
    }

    /// Racy copy of element `index` (raw blocks).
    pub(crate) fn racy_get(&self, index: usize) -> T {
        let mut v = T::zeroed();
        self.region
            .racy_read(self.offset(index), bytemuck::bytes_of_mut(&mut v));
        v
    }

    /// Racy store of element `index` (raw blocks).
    pub(crate) fn racy_set(&self, index: usize, v: T) {
        self.region
            .racy_write(self.offset(index), bytemuck::bytes_of(&v));
    }

    /// Racy copy of all elements (raw blocks).
    pub(crate) fn racy_to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len];
        self.region
            .racy_read(self.offset(0), bytemuck::cast_slice_mut(&mut out));
        out
    }

    /// Fills a block no other handle can see yet (just created, not
    /// cloned or sent), without taking its lock: so a constructor given a
    /// lock the caller already holds does not deadlock. The atomic byte
    /// stores are ordered before any later access by the clone or the
    /// descriptor passing that shares the block.
    pub(crate) fn init_from(&self, src: &[T]) {
        self.racy_copy_from(src);
    }

    /// Racy store of all elements (raw blocks); `src.len() == len`.
    pub(crate) fn racy_copy_from(&self, src: &[T]) {
        self.region
            .racy_write(self.offset(0), bytemuck::cast_slice(src));
    }
}

/// A block's lock held for an open view; closes the view on drop, then
/// releases one level of the lock.
pub(crate) struct ViewGuard<'a> {
    open: &'a AtomicU32,
    guard: RLockGuard<'a>,
}

impl ViewGuard<'_> {
    pub(crate) fn previous_owner_died(&self) -> bool {
        self.guard.previous_owner_died()
    }
}

impl Drop for ViewGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: `guard` is dropped after this.
        self.open.store(0, Ordering::Relaxed);
    }
}

/// Serializes a block's descriptor as a handle.
pub(crate) struct FdOut<'a>(pub(crate) BorrowedFd<'a>, pub(crate) &'static str);

impl Serialize for FdOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, self.1, serializer)
    }
}

/// Deserializes a block's descriptor written by [`FdOut`].
pub(crate) struct FdIn(pub(crate) OwnedFd);

impl<'de> Deserialize<'de> for FdIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::deserialize_fd("shared value or array", deserializer).map(FdIn)
    }
}

/// Error of [`Array::set`] and [`RawArray::set`]: the index is past the end.
///
/// # Examples
///
/// ```
/// let a = multiprocess::Array::<i32>::new(3)?;
/// let err = a.set(5, 1).unwrap_err();
/// assert_eq!(err.to_string(), "index 5 is out of range for an array of length 3");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index {index} is out of range for an array of length {len}")]
#[non_exhaustive]
pub struct IndexError {
    /// The index given.
    pub index: usize,
    /// The array's length.
    pub len: usize,
}

/// Error of [`Array::copy_from_slice`] and [`RawArray::copy_from_slice`]:
/// the slice's length differs from the array's.
///
/// # Examples
///
/// ```
/// let a = multiprocess::Array::<u8>::new(2)?;
/// assert!(a.copy_from_slice(&[1, 2, 3]).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot copy {given} values into an array of length {len}")]
#[non_exhaustive]
pub struct LengthError {
    /// The slice's length.
    pub given: usize,
    /// The array's length.
    pub len: usize,
}

/// A fixed-length array of plain data shared by processes, with its own
/// [`RLock`], like Python's `multiprocessing.Array('i', n)` (whose default
/// lock is an `RLock`).
///
/// `T` is any [`bytemuck::Pod`] type: numbers, arrays of them, and
/// `#[repr(C)]` structs of them deriving `Pod` and `Zeroable`. Cloning
/// gives another handle to the same memory; so does passing it to a child
/// process. Every access takes the lock: [`lock`](Array::lock) gives a guard
/// that derefs to `[T]` (and `&mut [T]`) while it is held.
///
/// # Examples
///
/// ```
/// use multiprocess::Array;
///
/// let a = Array::<i32>::new(4)?; // zero-initialised
/// assert_eq!(a.to_vec(), [0, 0, 0, 0]);
/// a.set(1, 7).unwrap();
/// {
///     let mut values = a.lock();
///     values[2] = 9;
///     values.reverse();
/// }
/// assert_eq!(a.to_vec(), [0, 9, 7, 0]);
/// assert_eq!(a.get(9), None);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The lock is reentrant, so Python's
/// `with arr.get_lock(): arr[0] += 1` translates directly:
///
/// ```
/// let a = multiprocess::Array::<i32>::new(2)?;
/// let _held = a.get_lock().acquire();
/// a.set(0, a.get(0).unwrap() + 1).unwrap(); // same thread: no deadlock
/// assert_eq!(a.to_vec(), [1, 0]);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// Calling a method of the array that reads or writes it while this thread
/// holds its [`ArrayGuard`] panics (the guard is the way to access it then).
pub struct Array<T> {
    block: Block<T>,
    lock: RLock,
}

impl<T: Pod> Array<T> {
    /// A zero-initialised array of `len` values (Python's `Array('i', n)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<f64>::new(3)?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd or the lock cannot be created.
    pub fn new(len: usize) -> io::Result<Array<T>> {
        Self::with_lock_zeroed(len, RLock::new()?)
    }

    fn with_lock_zeroed(len: usize, lock: RLock) -> io::Result<Array<T>> {
        Ok(Array {
            block: Block::create(len, Kind::Locked, "multiprocess-array")?,
            lock,
        })
    }

    /// An array holding a copy of `values` (Python's `Array('i', [1, 2])`).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::from_slice(&[1u8, 2, 3])?;
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd or the lock cannot be created.
    pub fn from_slice(values: &[T]) -> io::Result<Array<T>> {
        Self::with_lock(values, RLock::new()?)
    }

    /// An array holding a copy of `values`, guarded by an existing `lock`
    /// (Python's `Array('i', values, lock=lock)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Array, RLock};
    /// let lock = RLock::new()?;
    /// let a = Array::with_lock(&[0u32; 4], lock.clone())?;
    /// let _held = lock.acquire();
    /// assert!(a.get_lock().is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn with_lock(values: &[T], lock: RLock) -> io::Result<Array<T>> {
        let a = Self::with_lock_zeroed(values.len(), lock)?;
        a.block.init_from(values);
        Ok(a)
    }

    /// Takes the lock and gives the elements (Python's `with
    /// arr.get_lock():`); released when the guard drops.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<u64>::new(3)?;
    /// for (i, x) in a.lock().iter_mut().enumerate() {
    ///     *x = i as u64 * 10;
    /// }
    /// assert_eq!(a.lock()[..], [0, 10, 20]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            view: self.block.locked(&self.lock, "Array"),
        }
    }

    /// The value at `index` (under the lock), or `None` past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::from_slice(&[5i16, 6])?;
    /// assert_eq!(a.get(1), Some(6));
    /// assert_eq!(a.get(2), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len() {
            return None;
        }
        Some(self.lock()[index])
    }

    /// Stores `value` at `index` (under the lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<u8>::new(2)?;
    /// a.set(0, 1).unwrap();
    /// assert!(a.set(2, 1).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`IndexError`] if `index >= len`.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        let len = self.len();
        if index >= len {
            return Err(IndexError { index, len });
        }
        self.lock()[index] = value;
        Ok(())
    }

    /// A copy of every value (Python's `arr[:]`), taken under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::from_slice(&[1.5f32])?;
    /// assert_eq!(a.to_vec(), [1.5]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// Overwrites every value (Python's `arr[:] = values`), under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<i64>::new(2)?;
    /// a.copy_from_slice(&[3, 4]).unwrap();
    /// assert_eq!(a.to_vec(), [3, 4]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`LengthError`] if `values.len()` differs from the array's length.
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), LengthError> {
        let len = self.len();
        if values.len() != len {
            return Err(LengthError {
                given: values.len(),
                len,
            });
        }
        self.lock().copy_from_slice(values);
        Ok(())
    }
}

impl<T> Array<T> {
    /// The number of values (Python's `len(arr)`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Array::<u8>::new(5)?.len(), 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no values.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiprocess::Array::<u8>::new(0)?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }

    /// The lock guarding the array (Python's `arr.get_lock()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<u8>::new(1)?;
    /// assert!(!a.get_lock().is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_lock(&self) -> &RLock {
        &self.lock
    }
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            block: self.block.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdOut(self.block.fd(), "Array"), &self.lock).serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (FdIn(fd), lock) = <(FdIn, RLock)>::deserialize(deserializer)?;
        let block = Block::open(fd, Kind::Locked, "Array")
            .map_err(|e| codec::handle_de_error(e.to_string()))?;
        Ok(Array { block, lock })
    }
}

/// The elements of an [`Array`] while its lock is held; derefs to `[T]`.
///
/// # Examples
///
/// ```
/// let a = multiprocess::Array::<u8>::new(2)?;
/// let mut g = a.lock();
/// g[0] = 1;
/// assert!(!g.previous_owner_died());
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    view: LockedSlice<'a, T, ViewGuard<'a>>,
}

impl<T> ArrayGuard<'_, T> {
    /// Whether the lock was taken over from a process that died holding it
    /// (the values may be half-updated).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::Array::<u8>::new(1)?;
    /// assert!(!a.lock().previous_owner_died());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn previous_owner_died(&self) -> bool {
        self.view.guard().previous_owner_died()
    }
}

impl<T: Pod> std::ops::Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.view
    }
}

impl<T: Pod> std::ops::DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.view
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A shared array without a lock, like Python's `RawArray('i', n)`: each
/// access is a relaxed atomic byte copy, so a value read while another
/// process writes it may be torn (a mix of old and new bytes), but never
/// undefined behaviour.
///
/// # Examples
///
/// ```
/// let a = multiprocess::RawArray::<u32>::new(3)?;
/// a.set(2, 8).unwrap();
/// assert_eq!(a.to_vec(), [0, 0, 8]);
/// assert_eq!(a.get(2), Some(8));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RawArray<T> {
    block: Block<T>,
}

impl<T: Pod> RawArray<T> {
    /// A zero-initialised array of `len` values.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawArray::<u8>::new(2)?.to_vec(), [0, 0]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn new(len: usize) -> io::Result<RawArray<T>> {
        Ok(RawArray {
            block: Block::create(len, Kind::Raw, "multiprocess-rawarray")?,
        })
    }

    /// An array holding a copy of `values`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::RawArray::from_slice(&[1i8, -1])?;
    /// assert_eq!(a.get(1), Some(-1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created.
    pub fn from_slice(values: &[T]) -> io::Result<RawArray<T>> {
        let a = Self::new(values.len())?;
        a.block.racy_copy_from(values);
        Ok(a)
    }

    /// The value at `index` (racy), or `None` past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawArray::<u8>::new(1)?.get(1), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        (index < self.len()).then(|| self.block.racy_get(index))
    }

    /// Stores `value` at `index` (racy).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::RawArray::<u8>::new(1)?;
    /// assert!(a.set(0, 1).is_ok() && a.set(1, 1).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`IndexError`] if `index >= len`.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        let len = self.len();
        if index >= len {
            return Err(IndexError { index, len });
        }
        self.block.racy_set(index, value);
        Ok(())
    }

    /// A copy of every value (racy).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawArray::from_slice(&[2u16])?.to_vec(), [2]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.block.racy_to_vec()
    }

    /// Overwrites every value (racy).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = multiprocess::RawArray::<u8>::new(2)?;
    /// a.copy_from_slice(&[4, 5]).unwrap();
    /// assert_eq!(a.to_vec(), [4, 5]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`LengthError`] if `values.len()` differs from the array's length.
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), LengthError> {
        let len = self.len();
        if values.len() != len {
            return Err(LengthError {
                given: values.len(),
                len,
            });
        }
        self.block.racy_copy_from(values);
        Ok(())
    }
}

impl<T> RawArray<T> {
    /// The number of values.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::RawArray::<u8>::new(3)?.len(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.block.len
    }

    /// Whether the array has no values.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!multiprocess::RawArray::<u8>::new(3)?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            block: self.block.clone(),
        }
    }
}

impl<T> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FdOut(self.block.fd(), "RawArray").serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FdIn(fd) = FdIn::deserialize(deserializer)?;
        let block = Block::open(fd, Kind::Raw, "RawArray")
            .map_err(|e| codec::handle_de_error(e.to_string()))?;
        Ok(RawArray { block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_view_flag_is_ignored_when_the_lock_is_taken_fresh() {
        // As left by a process that died with a view open.
        let a = Array::<u8>::new(1).unwrap();
        a.block
            .region
            .atomic_u32(VIEW_AT)
            .store(1, Ordering::Relaxed);
        a.set(0, 9).unwrap();
        assert_eq!(a.get(0), Some(9));
    }
}
