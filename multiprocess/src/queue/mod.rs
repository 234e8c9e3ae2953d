//! [`Queue`]: a multi-producer multi-consumer FIFO between processes, in
//! shared memory.
//!
//! Items are serialized with postcard into a byte ring in a memfd mapped by
//! every process holding the queue; producers serialize on a put lock,
//! consumers on a get lock, both robust to the holder's death, and blocking
//! uses a futex with no syscall while nobody sleeps. Items larger than the
//! free space stream through in chunks. The algorithm, its sources and its
//! crash-recovery rules are described at the top of `ring.rs`.

mod error;
mod joinable;
mod ring;
mod simple;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{
    GetError, GetTimeoutError, JoinTimeoutError, PutError, PutTimeoutError, TaskDoneError,
    TryGetError, TryPutError,
};
pub use joinable::JoinableQueue;
use ring::{Incomplete, Msg, Ring};
pub use simple::SimpleQueue;

use crate::codec::{self, DecodeError};
use crate::deadline;

/// The default ring size: 16 MiB, so "put everything, join the producer, then
/// read" works for realistic amounts of data. Pages are only backed once
/// touched.
pub const DEFAULT_CAPACITY: usize = 16 << 20;

/// How long the non-blocking calls wait for the put/get lock, which other
/// callers hold only while copying an item.
const TRY_LOCK_WAIT: Duration = Duration::from_millis(2);

/// Encoding buffers larger than this are released after use.
const KEEP_BUFFER: usize = 4 << 20;

/// Items whose encoding fits this many bytes are encoded on the stack.
const STACK_ENCODE: usize = 128;

/// A FIFO queue shared by processes, like Python's `multiprocessing.Queue`.
///
/// Any number of processes (and threads) may put and get. Cloning a `Queue`
/// gives another handle to the same queue; so does passing it to a child
/// process (it implements `Serialize`/`Deserialize` for that). Items are any
/// `T: Serialize + DeserializeOwned`, copied through shared memory: there is no
/// feeder thread, and a put has completed once it returns.
///
/// Items from one producer come out in the order they were put; a process
/// that dies mid-operation never wedges the queue (see `ring.rs`).
///
/// # Examples
///
/// ```
/// use multiprocess::Queue;
///
/// let q = Queue::new()?;
/// q.put("hello".to_string()).unwrap();
/// q.put("world".to_string()).unwrap();
/// assert_eq!(q.qsize(), 2);
/// assert_eq!(q.get().unwrap(), "hello");
/// assert_eq!(q.get().unwrap(), "world");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// With a child process (the `Process` API lands separately):
///
/// ```no_run
/// # use multiprocess::Queue;
/// # fn spawn<A: serde::Serialize>(_f: fn(A), _a: A) {}
/// fn worker(q: Queue<u64>) {
///     for i in 0..10 {
///         q.put(i * i).unwrap();
///     }
/// }
/// let q = Queue::new()?;
/// spawn(worker, q.clone()); // the queue travels as a process argument
/// for _ in 0..10 {
///     println!("{}", q.get().unwrap());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
/// - Items may not contain OS handles (a `Connection`, `Lock` or `Queue`):
///   shared memory cannot carry descriptors, so such a put is refused with
///   [`PutError::ContainsHandle`]. Send them over a `Connection` or as a
///   process argument.
/// - An item bigger than the free space is streamed in chunks while the
///   producer holds the put lock; a get that has taken the first chunk of an
///   item waits for the rest even past its timeout (the producer either
///   finishes, gives up with an abort marker, or is found dead within ~100 ms).
/// - A consumer killed after taking the first chunk of an item loses that
///   item, as a killed Python consumer loses the item it was reading.
pub struct Queue<T> {
    ring: Arc<Ring>,
    _items: PhantomData<fn(T) -> T>,
}

/// Options for a new [`Queue`]: ring size and item limit.
///
/// # Examples
///
/// ```
/// use multiprocess::{Queue, QueueBuilder};
///
/// let q: Queue<Vec<u8>> = QueueBuilder::new()
///     .capacity_bytes(1 << 20)
///     .maxsize(100)
///     .build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    capacity: usize,
    maxsize: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            capacity: DEFAULT_CAPACITY,
            maxsize: 0,
        }
    }
}

impl QueueBuilder {
    /// Default options: a [`DEFAULT_CAPACITY`] ring, no item limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::Queue<u8> = multiprocess::QueueBuilder::new().build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring size in bytes: a power of two from 1 KiB to 1 GiB. Items
    /// larger than the ring still pass, streamed in chunks.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::Queue<u8> =
    ///     multiprocess::QueueBuilder::new().capacity_bytes(64 * 1024).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The most items the queue holds before `put` waits (Python's
    /// `maxsize`); 0 means no limit but the ring's size.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::Queue<u8> = multiprocess::QueueBuilder::new().maxsize(6).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn maxsize(mut self, items: usize) -> Self {
        self.maxsize = items;
        self
    }

    /// Creates the queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::QueueBuilder::new().build::<String>()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a capacity that is not a power of two in range;
    /// otherwise if the memfd cannot be created or mapped.
    pub fn build<T: Serialize + DeserializeOwned + 'static>(self) -> io::Result<Queue<T>> {
        let ring = Ring::create(
            self.capacity,
            self.maxsize,
            codec::type_tag::<T>(),
            ring::KIND_PLAIN,
        )?;
        Ok(Queue::from_ring(ring))
    }
}

thread_local! {
    /// The encoding/decoding buffer of this thread, reused across calls and
    /// queues (so a put or get of a fixed-size item allocates nothing).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable buffer (cleared), or a fresh one if
/// it is in use further up the stack (a `Serialize` impl that puts) or the
/// thread is being torn down.
fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut f = Some(f);
    let reused = BUFFER.try_with(|b| {
        let mut v = b.try_borrow_mut().ok()?;
        v.clear();
        let r = (f.take()?)(&mut v);
        if v.capacity() > KEEP_BUFFER {
            *v = Vec::new();
        }
        Some(r)
    });
    match (reused, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => f(&mut Vec::new()),
        // `f` ran and gave `Some`.
        (_, None) => unreachable!("buffer closure ran without a result"),
    }
}

enum PutFail<T> {
    Deadline(T),
    Unsendable(PutError<T>),
}

enum GetFail {
    Deadline,
    ShutDown,
    Decode(DecodeError),
}

impl<T> PutFail<T> {
    fn from_ring(e: Incomplete, value: T) -> Self {
        match e {
            Incomplete::ShutDown => PutFail::Unsendable(PutError::ShutDown(value)),
            _ => PutFail::Deadline(value),
        }
    }
}

impl GetFail {
    fn from_ring(e: Incomplete) -> Self {
        match e {
            Incomplete::ShutDown => GetFail::ShutDown,
            _ => GetFail::Deadline,
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// Creates an empty, unbounded queue with a [`DEFAULT_CAPACITY`] ring.
    ///
    /// # Examples
    ///
    /// ```
    /// let q: multiprocess::Queue<u64> = multiprocess::Queue::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn new() -> io::Result<Queue<T>> {
        QueueBuilder::new().build()
    }

    /// Creates an empty queue holding at most `maxsize` items (Python's
    /// `Queue(maxsize)`); 0 means unbounded.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::bounded(2)?;
    /// q.put(1u8).unwrap();
    /// q.put(2u8).unwrap();
    /// assert!(q.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped.
    pub fn bounded(maxsize: usize) -> io::Result<Queue<T>> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    fn from_ring(ring: Ring) -> Queue<T> {
        Queue {
            ring: Arc::new(ring),
            _items: PhantomData,
        }
    }

    /// Maps a queue received as a descriptor, checking it carries `T`.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Queue<T>> {
        let ring = Ring::open(
            fd,
            codec::type_tag::<T>(),
            std::any::type_name::<T>(),
            ring::KIND_PLAIN,
        )?;
        Ok(Queue::from_ring(ring))
    }

    fn put_impl(
        &self,
        value: T,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), PutFail<T>> {
        // Byte buffers: prefix and bytes go to the ring as they are.
        if let Some(bytes) = codec::as_bytes(&value) {
            let (prefix, n) = codec::varint(bytes.len());
            let msg = Msg {
                head: &prefix[..n],
                body: bytes,
            };
            let result = self.ring.put(msg, lock_deadline, deadline);
            return result.map_err(|e| PutFail::from_ring(e, value));
        }
        // Small items: encoded on the stack.
        let mut stack = [0u8; STACK_ENCODE];
        if let Some(n) = codec::encode_plain_to_slice(&value, &mut stack) {
            if let Err(error) = codec::check_round_trip::<T>(&stack[..n]) {
                return Err(PutFail::Unsendable(PutError::Encode { value, error }));
            }
            let result = self
                .ring
                .put(Msg::whole(&stack[..n]), lock_deadline, deadline);
            return result.map_err(|e| PutFail::from_ring(e, value));
        }
        with_buffer(|buf| {
            if !codec::encode_plain_into(&value, buf) {
                // A handle, an error, or a nested encode: the side-table path
                // tells which.
                buf.clear();
                let mut fds = Vec::new();
                if let Err(error) = codec::encode_into(&value, buf, &mut fds) {
                    return Err(PutFail::Unsendable(PutError::Encode { value, error }));
                }
                if !fds.is_empty() {
                    return Err(PutFail::Unsendable(PutError::ContainsHandle(value)));
                }
            }
            if let Err(error) = codec::check_round_trip::<T>(buf) {
                return Err(PutFail::Unsendable(PutError::Encode { value, error }));
            }
            match self.ring.put(Msg::whole(buf), lock_deadline, deadline) {
                Ok(()) => Ok(()),
                Err(e) => Err(PutFail::from_ring(e, value)),
            }
        })
    }

    fn get_impl(
        &self,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
        slot: Option<usize>,
    ) -> Result<T, GetFail> {
        if codec::is_bytes::<T>() {
            // Straight from the ring into the item's own buffer.
            let mut out = Vec::new();
            let announced = self
                .ring
                .get_counted(&mut out, true, lock_deadline, deadline, slot)
                .map_err(GetFail::from_ring)?;
            return match announced {
                Some(n) if n == out.len() as u64 => codec::from_bytes(out).map_err(GetFail::Decode),
                Some(n) => Err(GetFail::Decode(codec::malformed::<T>(format!(
                    "the length prefix says {n} bytes, the item holds {}",
                    out.len()
                )))),
                // Not a valid prefix: let postcard describe the bytes.
                None => codec::decode(&out, Vec::new()).map_err(GetFail::Decode),
            };
        }
        with_buffer(|buf| {
            if let Err(e) = self
                .ring
                .get_counted(buf, false, lock_deadline, deadline, slot)
            {
                return Err(GetFail::from_ring(e));
            }
            codec::decode_plain(buf).map_err(GetFail::Decode)
        })
    }

    /// Puts an item, waiting as long as the queue is full (Python's
    /// `q.put(x)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::new()?;
    /// q.put(vec![1, 2, 3]).unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// The item cannot be serialized, would not decode as a `T` (serde
    /// attributes the encoding cannot round trip, such as
    /// `#[serde(untagged)]`: see [`EncodeError`](crate::EncodeError)), or
    /// holds an OS handle; the error gives it back ([`PutError::into_inner`]).
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        match self.put_impl(value, None, None) {
            Ok(()) => Ok(()),
            Err(PutFail::Unsendable(e)) => Err(e),
            // No deadline was given.
            Err(PutFail::Deadline(_)) => unreachable!("put without a deadline timed out"),
        }
    }

    /// Puts an item, waiting at most `timeout` for room (Python's
    /// `q.put(x, timeout=t)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::Queue::bounded(1)?;
    /// q.put_timeout(1u8, Duration::from_millis(10)).unwrap();
    /// assert!(q.put_timeout(2u8, Duration::from_millis(10)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`] if the queue stayed full; the other
    /// variants as for [`put`](Queue::put). All give the item back.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        let d = deadline::after(timeout);
        match self.put_impl(value, d, d) {
            Ok(()) => Ok(()),
            Err(PutFail::Deadline(v)) => Err(PutTimeoutError::Timeout(v)),
            Err(PutFail::Unsendable(e)) => Err(e.into()),
        }
    }

    /// Puts an item only if it fits now (Python's `q.put_nowait(x)`); a full
    /// queue gives it back at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::bounded(1)?;
    /// q.try_put('a').unwrap();
    /// assert_eq!(q.try_put('b').unwrap_err().into_inner(), 'b');
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TryPutError::Full`] if the item limit is reached, the item does not
    /// fit the ring's free space whole, or another producer is streaming a
    /// large item; the other variants as for [`put`](Queue::put).
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        let now = Instant::now();
        match self.put_impl(value, Some(now + TRY_LOCK_WAIT), Some(now)) {
            Ok(()) => Ok(()),
            Err(PutFail::Deadline(v)) => Err(TryPutError::Full(v)),
            Err(PutFail::Unsendable(e)) => Err(e.into()),
        }
    }

    /// Takes the oldest item, waiting as long as the queue is empty (Python's
    /// `q.get()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::new()?;
    /// q.put(1.5f64).unwrap();
    /// assert_eq!(q.get().unwrap(), 1.5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`GetError::Decode`] if the item taken does not decode as `T`.
    pub fn get(&self) -> Result<T, GetError> {
        match self.get_impl(None, None, None) {
            Ok(v) => Ok(v),
            Err(GetFail::Decode(e)) => Err(GetError::Decode(e)),
            Err(GetFail::ShutDown) => Err(GetError::ShutDown),
            Err(GetFail::Deadline) => unreachable!("get without a deadline timed out"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout` (Python's
    /// `q.get(timeout=t)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiprocess::Queue::<u8>::new()?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] if no item came in time;
    /// [`GetTimeoutError::Decode`] as for [`get`](Queue::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let d = deadline::after(timeout);
        match self.get_impl(d, d, None) {
            Ok(v) => Ok(v),
            Err(GetFail::Deadline) => Err(GetTimeoutError::Timeout),
            Err(GetFail::Decode(e)) => Err(GetTimeoutError::Decode(e)),
            Err(GetFail::ShutDown) => Err(GetTimeoutError::ShutDown),
        }
    }

    /// Takes the oldest item if there is one (Python's `q.get_nowait()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::new()?;
    /// assert!(q.try_get().is_err());
    /// q.put(3i32).unwrap();
    /// assert_eq!(q.try_get().unwrap(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TryGetError::Empty`] at once if no item is waiting (or another
    /// consumer is busy taking one); [`TryGetError::Decode`] as for
    /// [`get`](Queue::get).
    pub fn try_get(&self) -> Result<T, TryGetError> {
        let now = Instant::now();
        match self.get_impl(Some(now + TRY_LOCK_WAIT), Some(now), None) {
            Ok(v) => Ok(v),
            Err(GetFail::Deadline) => Err(TryGetError::Empty),
            Err(GetFail::Decode(e)) => Err(TryGetError::Decode(e)),
            Err(GetFail::ShutDown) => Err(TryGetError::ShutDown),
        }
    }
}

impl<T> Queue<T> {
    /// Puts an item already encoded as `head` followed by `body` (the
    /// bytes of a `T` whose last field is a byte string, split before that
    /// string's bytes): the pool's task and result messages put their
    /// payload this way, straight into the ring. `lock_deadline` and
    /// `deadline` are as for the ring's put (`Some(now)` tries once).
    /// Returns `false` if the deadline passed first.
    pub(crate) fn put_encoded(
        &self,
        head: &[u8],
        body: &[u8],
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
    ) -> bool {
        self.ring
            .put(Msg { head, body }, lock_deadline, deadline)
            .is_ok()
    }

    /// Takes one item's encoded bytes into `buf` (cleared first), for the
    /// caller to decode a borrowed view of it; waits at most until
    /// `deadline`. Returns `false` if the deadline passed first.
    pub(crate) fn get_encoded(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> bool {
        self.ring
            .get_counted(buf, false, deadline, deadline, None)
            .is_ok()
    }

    /// The number of items in the queue (Python's `q.qsize()`); a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::new()?;
    /// q.put(()).unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue holds no items (Python's `q.empty()`); a snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue holds `maxsize` items (Python's `q.full()`);
    /// always `false` for an unbounded queue. A snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::bounded(1)?;
    /// q.put(0u8).unwrap();
    /// assert!(q.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        let max = self.ring.maxsize();
        max != 0 && self.ring.len() >= max
    }

    /// The item limit given at creation, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(multiprocess::Queue::<u8>::bounded(3)?.maxsize(), Some(3));
    /// assert_eq!(multiprocess::Queue::<u8>::new()?.maxsize(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        match self.ring.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// Closes this handle (Python's `q.close()`): this process will put no
    /// more items through it. Other handles and processes keep the queue; its
    /// memory is freed when the last handle in any process is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::<u8>::new()?;
    /// let other = q.clone();
    /// q.close();
    /// other.put(1).unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) {}

    /// Shuts the queue down for every process (Python 3.13's
    /// `queue.Queue.shutdown(immediate)`): from then on `put` fails with
    /// `ShutDown`, handing the item back; `get` returns what is left and
    /// then fails with `ShutDown`. With `immediate`, what is left is
    /// discarded and `get` fails at once. Getters and putters blocked in any
    /// process wake up and fail promptly. There is no way back.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{GetError, PutError, Queue};
    ///
    /// let q = Queue::<u8>::new()?;
    /// q.put(1).unwrap();
    /// q.shutdown(false);
    /// assert!(matches!(q.put(2), Err(PutError::ShutDown(2))));
    /// assert_eq!(q.get().unwrap(), 1); // drained first
    /// assert!(matches!(q.get(), Err(GetError::ShutDown)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        self.ring.shutdown(immediate);
    }

    /// Whether [`shutdown`](Queue::shutdown) was called, by any process.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = multiprocess::Queue::<u8>::new()?;
    /// assert!(!q.is_shutdown());
    /// q.shutdown(true);
    /// assert!(q.is_shutdown());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.ring.is_shutdown()
    }

    /// Closes this process's descriptor of the queue's memory, keeping the
    /// mapping, if this is the process's only handle (no clone shares it);
    /// returns whether it did. For a queue this process never passes on
    /// again (the pool's per-worker task queue once the worker has its
    /// copy), so it costs no descriptor; passing it on afterwards panics.
    pub(crate) fn release_descriptor(&mut self) -> bool {
        match Arc::get_mut(&mut self.ring) {
            Some(ring) => {
                ring.release_fd();
                true
            }
            None => false,
        }
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.ring.len())
            .field("maxsize", &self.ring.maxsize())
            .field("capacity_bytes", &self.ring.capacity())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.ring.fd(), "Queue", serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + 'static> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fd = codec::deserialize_fd("Queue", deserializer)?;
        Queue::from_fd(fd).map_err(|e| crate::codec::handle_de_error(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
