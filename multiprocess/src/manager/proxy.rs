//! The typed proxies. Each holds the server's address and the object's id;
//! every method is one request on this process's connection to the server.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wire::{Kind, Op, Response};
use super::{ManagerError, call_op, decode, encode};
use crate::connection::Address;

fn unexpected(r: Response) -> ManagerError {
    ManagerError::Refused(format!("unexpected answer {r:?}"))
}

fn maybe<T: DeserializeOwned>(r: Response) -> Result<Option<T>, ManagerError> {
    match r {
        Response::Maybe(Some(b)) => decode(&b).map(Some),
        Response::Maybe(None) => Ok(None),
        other => Err(unexpected(other)),
    }
}

fn many<T: DeserializeOwned>(r: Response) -> Result<Vec<T>, ManagerError> {
    match r {
        Response::Many(items) => items.iter().map(|b| decode(b)).collect(),
        other => Err(unexpected(other)),
    }
}

fn count(r: Response) -> Result<usize, ManagerError> {
    match r {
        Response::Count(n) => Ok(n as usize),
        other => Err(unexpected(other)),
    }
}

fn unit(r: Response) -> Result<(), ManagerError> {
    match r {
        Response::Unit => Ok(()),
        other => Err(unexpected(other)),
    }
}

macro_rules! proxy_common {
    ($name:ident, $kind:expr) => {
        proxy_common!($name<>, $kind);
    };
    ($name:ident < $($t:ident),* >, $kind:expr) => {
        impl<$($t),*> $name<$($t),*> {
            pub(crate) fn new(address: Address, id: u64) -> Self {
                $name { address, id, _types: PhantomData }
            }

            fn op(&self, op: Op) -> Result<Response, ManagerError> {
                call_op(&self.address, self.id, $kind, op)
            }
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { address: self.address.clone(), id: self.id, _types: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("address", &self.address)
                    .field("id", &self.id)
                    .finish()
            }
        }
    };
}

/// A dict in a [`Manager`](super::Manager) (Python's `DictProxy`): keys
/// `K`, values `V`, insertion order kept. Every method is one request.
///
/// # Examples
///
/// ```no_run
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let d = manager.dict::<String, u64>()?;
/// d.insert("a".into(), 1)?;
/// assert_eq!(d.get(&"a".to_string())?, Some(1));
/// assert_eq!(d.len()?, 1);
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DictProxy<K, V> {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn() -> (K, V)>,
}

proxy_common!(DictProxy<K, V>, Kind::Dict);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d[key] = value`; the value it replaced, if any.
    ///
    /// # Errors
    ///
    /// [`ManagerError`]: the server is gone, a value does not encode or
    /// decode, or the call timed out.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        maybe(self.op(Op::Insert(encode(&key)?, encode(&value)?))?)
    }

    /// `d.get(key)`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        maybe(self.op(Op::Get(encode(key)?))?)
    }

    /// `d.pop(key, None)`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        maybe(self.op(Op::Remove(encode(key)?))?)
    }

    /// `key in d`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        match self.op(Op::Contains(encode(key)?))? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// `d.setdefault(key, value)`: the value there, or `value` after
    /// storing it, in one request (atomic on the server).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V, ManagerError> {
        maybe(self.op(Op::GetOrInsert(encode(&key)?, encode(&value)?))?)?
            .ok_or_else(|| ManagerError::Refused("setdefault gave nothing".into()))
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn len(&self) -> Result<usize, ManagerError> {
        count(self.op(Op::Len)?)
    }

    /// `len(d) == 0`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// `list(d.keys())`, in insertion order.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        many(self.op(Op::Keys)?)
    }

    /// `list(d.values())`, in insertion order.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        many(self.op(Op::Values)?)
    }

    /// `list(d.items())`, in insertion order (Python's `d.copy()` as
    /// pairs).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        match self.op(Op::Items)? {
            Response::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// `d.clear()`.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn clear(&self) -> Result<(), ManagerError> {
        unit(self.op(Op::Clear)?)
    }
}

/// A list in a [`Manager`](super::Manager) (Python's `ListProxy`).
///
/// # Examples
///
/// ```no_run
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let l = manager.list::<u64>()?;
/// l.extend([3, 2, 1])?;
/// l.push(0)?;
/// assert_eq!(l.to_vec()?, [3, 2, 1, 0]);
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListProxy<T> {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn() -> T>,
}

proxy_common!(ListProxy<T>, Kind::List);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l.append(value)`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn push(&self, value: T) -> Result<(), ManagerError> {
        unit(self.op(Op::Push(encode(&value)?))?)
    }

    /// `l.extend(values)`, in one request.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let values = values
            .into_iter()
            .map(|v| encode(&v))
            .collect::<Result<_, _>>()?;
        unit(self.op(Op::Extend(values))?)
    }

    /// `l[index]`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        maybe(self.op(Op::At(index as u64))?)
    }

    /// `l[index] = value`: the value replaced, or `None` (and nothing
    /// stored) past the end.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn set(&self, index: usize, value: T) -> Result<Option<T>, ManagerError> {
        maybe(self.op(Op::SetAt(index as u64, encode(&value)?))?)
    }

    /// `l.insert(index, value)`; false (nothing stored) past the end.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn insert(&self, index: usize, value: T) -> Result<bool, ManagerError> {
        match self.op(Op::InsertAt(index as u64, encode(&value)?))? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// `l.pop(index)`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn remove(&self, index: usize) -> Result<Option<T>, ManagerError> {
        maybe(self.op(Op::RemoveAt(index as u64))?)
    }

    /// `l.pop()`, or `None` when empty.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        maybe(self.op(Op::Pop)?)
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn len(&self) -> Result<usize, ManagerError> {
        count(self.op(Op::Len)?)
    }

    /// `len(l) == 0`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// `l[:]`: a copy of the whole list.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        many(self.op(Op::ToVec)?)
    }

    /// `l.clear()`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        unit(self.op(Op::Clear)?)
    }
}

/// A value in a [`Manager`](super::Manager) (Python's `ValueProxy`). As in
/// Python, `v.set(v.get()? + 1)` is two requests and races other
/// processes; [`swap`](Self::swap) is one.
///
/// # Examples
///
/// ```no_run
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let v = manager.value(1.5f64)?;
/// v.set(2.5)?;
/// assert_eq!(v.get()?, 2.5);
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn() -> T>,
}

proxy_common!(ValueProxy<T>, Kind::Value);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn get(&self) -> Result<T, ManagerError> {
        maybe(self.op(Op::Load)?)?.ok_or_else(|| ManagerError::Refused("no value".into()))
    }

    /// `v.value = value`.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn set(&self, value: T) -> Result<(), ManagerError> {
        unit(self.op(Op::Store(encode(&value)?))?)
    }

    /// Stores `value` and returns the one it replaced, in one request.
    ///
    /// # Errors
    ///
    /// As for [`DictProxy::insert`].
    pub fn swap(&self, value: T) -> Result<T, ManagerError> {
        maybe(self.op(Op::Swap(encode(&value)?))?)?
            .ok_or_else(|| ManagerError::Refused("no value".into()))
    }
}

/// The longest one blocking request waits on the server; a longer wait is
/// several requests, so every call stays bounded.
const SLICE: Duration = Duration::from_secs(5);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn boolean(r: Response) -> Result<bool, ManagerError> {
    match r {
        Response::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

/// Waits up to `timeout` (`None`: no limit) in slices of [`SLICE`], each
/// one request; `Some` once `attempt` gives it.
fn sliced<R>(
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> Result<Option<R>, ManagerError>,
) -> Result<Option<R>, ManagerError> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        if let Some(r) = attempt(slice)? {
            return Ok(Some(r));
        }
        if left.is_some_and(|l| l <= slice) {
            return Ok(None);
        }
    }
}

/// A lock in a [`Manager`](super::Manager) (Python's `manager.Lock()`): not
/// reentrant; held by the connection of the process that took it, and
/// released by the server if that process dies or disconnects (Python's
/// stays held forever).
///
/// # Examples
///
/// ```no_run
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let lock = manager.lock()?;
/// {
///     let _guard = lock.acquire()?;
///     // ... the critical section ...
/// } // released here
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct LockProxy {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn()>,
}

proxy_common!(LockProxy, Kind::Lock);

/// Holds a [`LockProxy`]; releases it when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockProxyGuard<'a> {
    lock: &'a LockProxy,
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.op(Op::Release);
    }
}

impl LockProxy {
    /// Takes the lock, waiting as long as it takes (in bounded requests).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] and the like.
    pub fn acquire(&self) -> Result<LockProxyGuard<'_>, ManagerError> {
        self.acquire_inner(None)?
            .ok_or_else(|| ManagerError::Refused("an unbounded acquire ended".into()))
    }

    /// Takes the lock if it is free within `timeout`; `None` otherwise.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockProxyGuard<'_>>, ManagerError> {
        self.acquire_inner(Some(timeout))
    }

    fn acquire_inner(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<LockProxyGuard<'_>>, ManagerError> {
        sliced(timeout, |slice| {
            Ok(boolean(self.op(Op::Acquire(millis(slice)))?)?.then_some(()))
        })
        .map(|got| got.map(|()| LockProxyGuard { lock: self }))
    }
}

/// An event in a [`Manager`](super::Manager) (Python's `manager.Event()`).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let e = manager.event()?;
/// e.set()?;
/// assert!(e.wait_timeout(Duration::from_secs(1))?);
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct EventProxy {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn()>,
}

proxy_common!(EventProxy, Kind::Event);

impl EventProxy {
    /// `e.set()`: wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] and the like.
    pub fn set(&self) -> Result<(), ManagerError> {
        unit(self.op(Op::Set)?)
    }

    /// `e.clear()`.
    ///
    /// # Errors
    ///
    /// As for [`set`](Self::set).
    pub fn clear(&self) -> Result<(), ManagerError> {
        unit(self.op(Op::Clear)?)
    }

    /// `e.is_set()`.
    ///
    /// # Errors
    ///
    /// As for [`set`](Self::set).
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        boolean(self.op(Op::IsSet)?)
    }

    /// `e.wait(timeout)`: whether it is set.
    ///
    /// # Errors
    ///
    /// As for [`set`](Self::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        Ok(sliced(Some(timeout), |slice| {
            Ok(boolean(self.op(Op::Wait(millis(slice)))?)?.then_some(()))
        })?
        .is_some())
    }

    /// `e.wait()`: until it is set.
    ///
    /// # Errors
    ///
    /// As for [`set`](Self::set).
    pub fn wait(&self) -> Result<(), ManagerError> {
        sliced(None, |slice| {
            Ok(boolean(self.op(Op::Wait(millis(slice)))?)?.then_some(()))
        })
        .map(|_| ())
    }
}

/// A queue in a [`Manager`](super::Manager) (Python's `manager.Queue()`),
/// of items `T`; unbounded.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// multiprocess::init();
/// let manager = multiprocess::Manager::new()?;
/// let q = manager.queue::<String>()?;
/// q.put("job".into())?;
/// assert_eq!(q.get_timeout(Duration::from_secs(1))?, Some("job".to_string()));
/// # Ok::<(), multiprocess::ManagerError>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct QueueProxy<T> {
    address: Address,
    id: u64,
    #[serde(skip)]
    _types: PhantomData<fn() -> T>,
}

proxy_common!(QueueProxy<T>, Kind::Queue);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// `q.put(item)`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] (the item is not stored), or as for any
    /// request.
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        unit(self.op(Op::Put(encode(&item)?))?)
    }

    /// `q.get(timeout=t)`: the next item, or `None` after `timeout`.
    ///
    /// # Errors
    ///
    /// As for any request, and [`ManagerError::Decode`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
        sliced(Some(timeout), |slice| {
            maybe(self.op(Op::Take(millis(slice)))?)
        })
    }

    /// `q.get()`: the next item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As for [`get_timeout`](Self::get_timeout).
    pub fn get(&self) -> Result<T, ManagerError> {
        sliced(None, |slice| maybe(self.op(Op::Take(millis(slice)))?))?
            .ok_or_else(|| ManagerError::Refused("an unbounded get ended".into()))
    }

    /// `q.get_nowait()`: the next item if there is one.
    ///
    /// # Errors
    ///
    /// As for [`get_timeout`](Self::get_timeout).
    pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
        maybe(self.op(Op::Take(0))?)
    }

    /// `q.qsize()`.
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn len(&self) -> Result<usize, ManagerError> {
        count(self.op(Op::Len)?)
    }

    /// `q.empty()`.
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
}
