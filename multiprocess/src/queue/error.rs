//! Errors of [`Queue`](super::Queue) operations: one type per operation, the
//! put errors handing the item back (as in `crossbeam-channel`).

use std::fmt;

use crate::codec::{DecodeError, EncodeError};

const HANDLE_MSG: &str = "the item contains an OS handle (a Connection, Lock or Queue), \
     which cannot pass through a queue's shared memory; send it over a Connection or as a \
     process argument";

macro_rules! put_error_common {
    ($name:ident, $($extra:ident => $msg:literal),*) => {
        impl<T> $name<T> {
            /// Gives back the item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$extra(value) => value,)*
                    $name::Encode { value, .. } => value,
                    $name::ContainsHandle(value) => value,
                    #[cfg(feature = "redis")]
                    $name::Backend { value, .. } => value,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$extra(_) => f.write_str(concat!(stringify!($extra), "(..)")),)*
                    $name::Encode { error, .. } => {
                        f.debug_struct("Encode").field("error", error).finish_non_exhaustive()
                    }
                    $name::ContainsHandle(_) => f.write_str("ContainsHandle(..)"),
                    #[cfg(feature = "redis")]
                    $name::Backend { error, .. } => {
                        f.debug_struct("Backend").field("error", error).finish_non_exhaustive()
                    }
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$extra(_) => f.write_str($msg),)*
                    $name::Encode { error, .. } => write!(f, "cannot put the item: {error}"),
                    $name::ContainsHandle(_) => f.write_str(HANDLE_MSG),
                    #[cfg(feature = "redis")]
                    $name::Backend { error, .. } => write!(f, "cannot put the item: {error}"),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Encode { error, .. } => Some(error),
                    #[cfg(feature = "redis")]
                    $name::Backend { error, .. } => Some(error),
                    _ => None,
                }
            }
        }
    };
}

/// Error of [`Queue::put`](super::Queue::put); gives the item back.
///
/// # Examples
///
/// ```
/// use multiprocess::{Lock, Queue};
///
/// let q: Queue<Lock> = Queue::new()?;
/// let err = q.put(Lock::new()?).unwrap_err();
/// let lock: Lock = err.into_inner(); // not lost
/// # drop(lock);
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
pub enum PutError<T> {
    /// The item could not be serialized.
    Encode {
        /// The item.
        value: T,
        /// What the serializer said.
        error: EncodeError,
    },
    /// The item holds an OS handle, which cannot travel through shared memory.
    ContainsHandle(T),
    /// The queue was shut down ([`Queue::shutdown`](super::Queue::shutdown),
    /// Python's `queue.ShutDown`); the item is handed back.
    ShutDown(T),
    /// The Redis server could not take the item ([`remote`](crate::remote)
    /// queues only): unreachable, out of memory, the item over
    /// `max_payload`...
    #[cfg(feature = "redis")]
    Backend {
        /// The item.
        value: T,
        /// What went wrong.
        error: crate::backend::BackendError,
    },
}
put_error_common!(PutError, ShutDown => "the queue is shut down");

/// Error of [`Queue::try_put`](super::Queue::try_put); gives the item back.
///
/// # Examples
///
/// ```
/// use multiprocess::{Queue, TryPutError};
///
/// let q = Queue::bounded(1)?;
/// q.try_put(1u32).unwrap();
/// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
pub enum TryPutError<T> {
    /// The queue is full (Python's `queue.Full`).
    Full(T),
    /// The item could not be serialized.
    Encode {
        /// The item.
        value: T,
        /// What the serializer said.
        error: EncodeError,
    },
    /// The item holds an OS handle, which cannot travel through shared memory.
    ContainsHandle(T),
    /// The queue was shut down ([`Queue::shutdown`](super::Queue::shutdown),
    /// Python's `queue.ShutDown`); the item is handed back.
    ShutDown(T),
    /// The Redis server could not take the item ([`remote`](crate::remote)
    /// queues only): unreachable, out of memory, the item over
    /// `max_payload`...
    #[cfg(feature = "redis")]
    Backend {
        /// The item.
        value: T,
        /// What went wrong.
        error: crate::backend::BackendError,
    },
}
put_error_common!(TryPutError, Full => "queue is full", ShutDown => "the queue is shut down");

/// Error of [`Queue::put_timeout`](super::Queue::put_timeout); gives the item
/// back.
///
/// # Examples
///
/// ```
/// use multiprocess::{PutTimeoutError, Queue};
/// use std::time::Duration;
///
/// let q = Queue::bounded(1)?;
/// q.put(1u32).unwrap();
/// let err = q.put_timeout(2, Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, PutTimeoutError::Timeout(2)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
pub enum PutTimeoutError<T> {
    /// The queue stayed full until the timeout (Python's `queue.Full` after
    /// `put(x, timeout=t)`).
    Timeout(T),
    /// The item could not be serialized.
    Encode {
        /// The item.
        value: T,
        /// What the serializer said.
        error: EncodeError,
    },
    /// The item holds an OS handle, which cannot travel through shared memory.
    ContainsHandle(T),
    /// The queue was shut down ([`Queue::shutdown`](super::Queue::shutdown),
    /// Python's `queue.ShutDown`); the item is handed back.
    ShutDown(T),
    /// The Redis server could not take the item ([`remote`](crate::remote)
    /// queues only): unreachable, out of memory, the item over
    /// `max_payload`...
    #[cfg(feature = "redis")]
    Backend {
        /// The item.
        value: T,
        /// What went wrong.
        error: crate::backend::BackendError,
    },
}
put_error_common!(
    PutTimeoutError,
    Timeout => "timed out waiting for room in the queue",
    ShutDown => "the queue is shut down"
);

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Encode { value, error } => TryPutError::Encode { value, error },
            PutError::ContainsHandle(v) => TryPutError::ContainsHandle(v),
            PutError::ShutDown(v) => TryPutError::ShutDown(v),
            #[cfg(feature = "redis")]
            PutError::Backend { value, error } => TryPutError::Backend { value, error },
        }
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Encode { value, error } => PutTimeoutError::Encode { value, error },
            PutError::ContainsHandle(v) => PutTimeoutError::ContainsHandle(v),
            PutError::ShutDown(v) => PutTimeoutError::ShutDown(v),
            #[cfg(feature = "redis")]
            PutError::Backend { value, error } => PutTimeoutError::Backend { value, error },
        }
    }
}

/// Error of [`Queue::get`](super::Queue::get).
///
/// # Examples
///
/// ```
/// let q = multiprocess::Queue::new()?;
/// q.put(5u8).unwrap();
/// assert_eq!(q.get().unwrap(), 5);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The item taken did not decode (it is dropped; the queue keeps working).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The queue was shut down and (unless immediately) is empty
    /// ([`Queue::shutdown`](super::Queue::shutdown), Python's
    /// `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// The Redis server failed ([`remote`](crate::remote) queues only);
    /// no item was taken.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(crate::backend::BackendError),
}

/// Error of [`Queue::try_get`](super::Queue::try_get).
///
/// # Examples
///
/// ```
/// use multiprocess::{Queue, TryGetError};
///
/// let q: Queue<u8> = Queue::new()?;
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// The queue is empty (Python's `queue.Empty`).
    #[error("queue is empty")]
    Empty,
    /// The item taken did not decode (it is dropped; the queue keeps working).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The queue was shut down and (unless immediately) is empty
    /// ([`Queue::shutdown`](super::Queue::shutdown), Python's
    /// `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// The Redis server failed ([`remote`](crate::remote) queues only);
    /// no item was taken.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(crate::backend::BackendError),
}

/// Error of [`Queue::get_timeout`](super::Queue::get_timeout).
///
/// # Examples
///
/// ```
/// use multiprocess::{GetTimeoutError, Queue};
/// use std::time::Duration;
///
/// let q: Queue<u8> = Queue::new()?;
/// let err = q.get_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, GetTimeoutError::Timeout));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// No item arrived before the timeout (Python's `queue.Empty` after
    /// `get(timeout=t)`).
    #[error("timed out waiting for an item")]
    Timeout,
    /// The item taken did not decode (it is dropped; the queue keeps working).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The queue was shut down and (unless immediately) is empty
    /// ([`Queue::shutdown`](super::Queue::shutdown), Python's
    /// `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// The Redis server failed ([`remote`](crate::remote) queues only);
    /// no item was taken.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(crate::backend::BackendError),
}

/// Error of [`JoinableQueue::task_done`](super::JoinableQueue::task_done).
///
/// # Examples
///
/// ```
/// use multiprocess::{JoinableQueue, TaskDoneError};
///
/// let q: JoinableQueue<u8> = JoinableQueue::new()?;
/// assert!(matches!(q.task_done(), Err(TaskDoneError::TooManyCalls)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskDoneError {
    /// Every item taken from the queue is already marked done (Python's
    /// `ValueError: task_done() called too many times`).
    #[error("task_done() called more times than items were taken from the queue")]
    TooManyCalls,
    /// The Redis server failed ([`remote`](crate::remote) queues only);
    /// the task may or may not have been marked done.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(crate::backend::BackendError),
}

/// Error of [`JoinableQueue::join_timeout`](super::JoinableQueue::join_timeout).
///
/// # Examples
///
/// ```
/// use multiprocess::{JoinTimeoutError, JoinableQueue};
/// use std::time::Duration;
///
/// let q = JoinableQueue::new()?;
/// q.put(1u8).unwrap();
/// let err = q.join_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, JoinTimeoutError::Timeout { unfinished: 1 }));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinTimeoutError {
    /// Some tasks were still unfinished when the timeout passed.
    #[error("timed out with {unfinished} unfinished task(s)")]
    Timeout {
        /// The unfinished tasks counted at the timeout (a snapshot).
        unfinished: u64,
    },
    /// The Redis server failed ([`remote`](crate::remote) queues only).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Backend(crate::backend::BackendError),
}
