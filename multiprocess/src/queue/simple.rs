//! [`SimpleQueue`]: Python's minimal `multiprocessing.SimpleQueue`, a thin
//! type over the same ring as [`Queue`].

use std::fmt;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GetError, PutError, Queue};

/// A minimal FIFO queue shared by processes, like Python's
/// `multiprocessing.SimpleQueue`: `put`, `get`, `is_empty` and `close`.
///
/// It is a [`Queue`] (unbounded, same shared-memory ring and crash
/// guarantees) with only those methods. Cloning gives another handle to the
/// same queue; so does passing it to a child process.
///
/// # Examples
///
/// ```
/// use multiprocess::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// q.put(vec![1, 2]).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get().unwrap(), [1, 2]);
/// assert!(q.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// Creates an empty queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::SimpleQueue<u8> = multiprocess::SimpleQueue::new()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn new() -> io::Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts an item (Python's `q.put(x)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::SimpleQueue::new()?;
    /// q.put('a').unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.queue.put(value)
    }

    /// Takes the oldest item, waiting as long as the queue is empty
    /// (Python's `q.get()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::SimpleQueue::new()?;
    /// q.put(1u8).unwrap();
    /// assert_eq!(q.get().unwrap(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue holds no items (Python's `q.empty()`); a snapshot,
    /// valid across processes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(multiprocess::SimpleQueue::<u8>::new()?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes this handle (Python's `q.close()`); other handles keep the
    /// queue. Taking `self` makes a second close, or use after close, a
    /// compile error rather than Python's `OSError`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) {}
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("is_empty", &self.is_empty())
            .finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + 'static> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::deserialize(deserializer).map(|queue| SimpleQueue { queue })
    }
}
