//! [`Pipe`] and [`Connection`]: typed, message-oriented, two-way channels
//! between processes, over a Unix stream socket pair plus a pair of
//! shared-memory rings (Python's `multiprocessing.Pipe` and `Connection`).
//!
//! A connection is one of two transports, one `match` per operation:
//! a [`Pipe`] end ([`pipe`]), where small messages travel in the rings
//! ([`ring`]) and the rest as socket frames ([`frame`]) announced in the
//! rings, or a socket-only connection ([`socket`]) made by [`Listener`] and
//! [`Client`] ([`listener`], with the handshake in [`auth`]), where every
//! message is a frame. Errors, one type per operation, are in [`error`];
//! [`fn@crate::wait`] waits for any of several objects.
//!
//! # Waiting
//!
//! A receive that finds nothing first spins for a short budget, then sleeps
//! in `poll(2)` on the socket (after announcing it in the ring, so the
//! sender rings a doorbell). The budget adapts: each end keeps a moving
//! average of how long its receives waited, capped at 8x the spin limit
//! ([`Connection::set_spin`], default 50 µs); it spins up to the
//! limit while that average is below twice the limit (messages have been
//! arriving about as fast as a wake-up costs, ~30 µs across CPUs), and not
//! at all on a connection that has been idle. While the peer last ran on the
//! same CPU, the spin gives the CPU away (`sched_yield`) instead of burning
//! it, so the peer can run and answer.

mod auth;
mod error;
pub(crate) mod frame;
mod listener;
mod pipe;
mod ring;
mod socket;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{
    AcceptError, AuthenticationError, ConnectError, RecvError, RecvIntoError, RecvTimeoutError,
    SendError, TryRecvError,
};
pub use listener::{Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, Listener};

use crate::EncodeError;
use crate::codec;
use crate::deadline;
use crate::sys;
use crate::sys::socket::{MAX_FDS, Shutdown};
use frame::{BYTES_TAG, FrameSpin, HANDLE_TAG, Header, Payload, Rx, RxError};
use pipe::PipeTransport;
use ring::{Record, Rings};
use socket::{Family, SocketTransport};

/// Default for [`Connection::max_message_size`]: 1 GiB.
///
/// # Examples
///
/// ```
/// assert_eq!(multiprocess::DEFAULT_MAX_MESSAGE_SIZE, 1 << 30);
/// ```
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// Default for [`Connection::set_spin`]: a receive spins up to 50 µs, about
/// twice what a cross-CPU wake-up costs, before it sleeps (when recent
/// messages arrived that fast; see [`Connection::set_spin`]).
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// How often a send asks the kernel whether the peer closed its end (a
/// `poll` syscall); in between, the answer is taken as unchanged.
const PEER_CHECK: Duration = Duration::from_micros(100);

/// How long a sender waiting for ring space sleeps before checking that the
/// peer is still there.
const SPACE_SLICE: Duration = Duration::from_millis(10);

/// Creates connected pairs of [`Connection`]s, like Python's
/// `multiprocessing.Pipe()`.
///
/// `Pipe` has no values; it only groups the two constructors.
///
/// # Examples
///
/// ```
/// use multiprocess::Pipe;
///
/// let (parent, child) = Pipe::new::<String, usize>()?;
/// std::thread::spawn(move || {
///     let text = child.recv().unwrap();
///     child.send(text.len()).unwrap();
/// });
/// parent.send("hello".to_string()).unwrap();
/// assert_eq!(parent.recv().unwrap(), 5);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum Pipe {}

impl Pipe {
    /// Two connected duplex ends: the first sends `S` and receives `R`, the
    /// second the other way round (Python's `Pipe()` / `Pipe(duplex=True)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<u32, String>()?;
    /// a.send(42).unwrap();
    /// assert_eq!(b.recv().unwrap(), 42);
    /// b.send("answer".into()).unwrap();
    /// assert_eq!(a.recv().unwrap(), "answer");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If the socket pair cannot be created (for example `EMFILE`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new<S, R>() -> io::Result<(Connection<S, R>, Connection<R, S>)> {
        let (a, b) = sys::socket::socketpair()?;
        let (ra, rb) = Rings::pair()?;
        Ok((Connection::from_parts(a, ra), Connection::from_parts(b, rb)))
    }

    /// A one-way pipe: `(reader, writer)`, like Python's `Pipe(duplex=False)`.
    ///
    /// The wrong direction does not compile for typed messages: the reader's
    /// send type and the writer's receive type are [`Infallible`], which is
    /// not serializable, so the reader has no `send` and the writer no
    /// `recv`. The raw-bytes methods are blocked by a socket `shutdown`:
    /// `send_bytes` on the reader and `recv_bytes` on the writer fail at once
    /// with `Disconnected`, and `poll` on the writer returns `true` at once
    /// (there is an end of stream to read).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, RecvError, SendError};
    ///
    /// let (reader, writer) = Pipe::simplex::<Vec<u8>>()?;
    /// writer.send(vec![1, 2]).unwrap();
    /// assert_eq!(reader.recv().unwrap(), [1, 2]);
    /// assert!(matches!(writer.recv_bytes(), Err(RecvError::Disconnected)));
    /// assert!(matches!(reader.send_bytes(b"up"), Err(SendError::Disconnected(()))));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The reader cannot send:
    ///
    /// ```compile_fail
    /// let (reader, _writer) = multiprocess::Pipe::simplex::<u8>()?;
    /// reader.send(1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// and the writer cannot receive:
    ///
    /// ```compile_fail
    /// let (_reader, writer) = multiprocess::Pipe::simplex::<u8>()?;
    /// writer.recv();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If the socket pair cannot be created or shut down.
    #[allow(clippy::type_complexity)]
    pub fn simplex<T>() -> io::Result<(Connection<Infallible, T>, Connection<T, Infallible>)> {
        let (reader, writer) = sys::socket::socketpair()?;
        let (rr, rw) = Rings::pair()?;
        // Shutting down the reader's sending side also ends the writer's
        // receiving side (the kernel mirrors it onto the peer); the ring of
        // that direction is shut likewise.
        sys::socket::shutdown(reader.as_fd(), Shutdown::Write)?;
        rr.shut_out();
        Ok((
            Connection::from_parts(reader, rr),
            Connection::from_parts(writer, rw),
        ))
    }
}

/// The state guarded by the send mutex.
#[derive(Default)]
struct Tx {
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// Reused table of descriptors duplicated while encoding.
    fds: Vec<OwnedFd>,
    /// An earlier send failed half-way, so the stream is torn.
    broken: bool,
    /// The peer was seen closed (sticky).
    peer_gone: bool,
    /// When the kernel was last asked whether the peer is closed.
    last_check: Option<Instant>,
}

impl Tx {
    /// Fails if an earlier send tore the stream.
    fn check_broken(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier send failed half-way through a message",
            ));
        }
        Ok(())
    }

    /// Fails if the peer has closed its end of socket `fd`, asking the
    /// kernel at most every [`PEER_CHECK`].
    fn check_peer(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if !self.peer_gone {
            let now = Instant::now();
            if self.last_check.is_none_or(|t| now - t >= PEER_CHECK) {
                self.last_check = Some(now);
                self.peer_gone = sys::socket::peer_closed(fd)?;
            }
        }
        if self.peer_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }
}

/// The frame header of a message, failing if it has more descriptors than
/// one message can carry.
fn frame_header(tag: u64, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<Header> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message can carry at most {MAX_FDS} descriptors, this one has {}",
                fds.len()
            ),
        ));
    }
    Ok(Header {
        len: payload.len() as u64,
        tag,
        nfds: fds.len() as u32,
    })
}

/// The state guarded by the receive mutex.
#[derive(Default)]
pub(crate) struct RxState {
    /// Socket frames, partial frames, received descriptors.
    rx: Rx,
    /// Markers taken from the ring whose frames are not yet received.
    pending: u32,
    /// End of stream seen on the socket.
    eof: bool,
    /// Reused buffer for inline payloads of typed messages.
    inline: Vec<u8>,
    /// Moving average of recent waits, in nanoseconds.
    avg_wait_ns: u64,
}

impl RxState {
    /// Nothing received that is not yet delivered.
    fn is_empty(&self) -> bool {
        self.pending == 0 && self.rx.is_empty()
    }

    /// Folds a receive's wait into the moving average.
    fn record_wait(&mut self, waited: Duration, cap: Duration) {
        let sample = u64::try_from(waited.as_nanos())
            .unwrap_or(u64::MAX)
            .min(8 * u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX / 8));
        self.avg_wait_ns = self.avg_wait_ns - self.avg_wait_ns / 4 + sample / 4;
    }

    /// How long the next wait may spin: the whole `cap` while recent waits
    /// averaged under twice it, otherwise nothing.
    fn spin_budget(&self, cap: Duration) -> Duration {
        if (self.avg_wait_ns as u128) < 2 * cap.as_nanos() {
            cap
        } else {
            Duration::ZERO
        }
    }
}

/// Where the next message is.
enum Next<'a> {
    /// The next socket frame.
    Frame,
    /// An inline record at the head of a [`Pipe`]'s ring.
    Ring(&'a Rings, Record),
}

/// How a connection's messages travel, dispatched in one `match` per
/// operation (as crossbeam-channel dispatches its flavours).
enum Transport {
    /// A [`Pipe`] end: small messages in shared-memory rings, the rest as
    /// socket frames ([`pipe`]).
    Pipe(PipeTransport),
    /// A [`Listener`]/[`Client`] connection: every message a socket frame
    /// ([`socket`]).
    Socket(SocketTransport),
}

impl Transport {
    /// The socket, which both transports have.
    #[inline]
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Pipe(p) => p.fd(),
            Transport::Socket(s) => s.fd(),
        }
    }

    /// Whether handles (descriptors) can travel: not over TCP.
    fn carries_fds(&self) -> bool {
        match self {
            Transport::Pipe(_) => true,
            Transport::Socket(s) => s.carries_fds(),
        }
    }

    /// Whether something received is waiting to be delivered.
    fn buffered(&self, st: &RxState) -> bool {
        match self {
            Transport::Pipe(p) => p.buffered(st),
            Transport::Socket(s) => s.buffered(st),
        }
    }
}

/// The encoding buffer is kept between sends only up to this capacity (the
/// same bound as the receive side's large-payload buffer), so steady traffic
/// of messages up to a few MiB does not allocate per message.
const KEEP_TX_BUF: usize = 8 << 20;

/// One end of a [`Pipe`], or of a connection made by a [`Listener`] and a
/// [`Client`]: sends values of type `S` and receives values of type `R`
/// (Python's `multiprocessing.connection.Connection`).
///
/// A `Pipe`'s ends share memory: small messages go through rings in it. A
/// `Listener`/`Client` connection is *socket-only*: every message is a frame
/// on the (TCP or Unix) socket. The API is the same; only handles differ,
/// which cannot travel over TCP.
///
/// Values travel through serde (postcard) and keep their message boundaries.
/// Each typed message carries a tag of its Rust type, so receiving a value
/// as the wrong type is an error naming the expected type, never garbage.
/// Handles inside a value (other `Connection`s, queues, locks) travel with
/// it: their descriptors are passed with `SCM_RIGHTS`.
/// A bare descriptor (a file, a socket) travels with
/// [`send_handle`](Connection::send_handle) and
/// [`recv_handle`](Connection::recv_handle), Python's
/// `reduction.send_handle`/`recv_handle`.
///
/// Methods take `&self`: one thread may send while another receives (put the
/// connection in an `Arc`). Sends are serialized by one mutex and receives by
/// another, so a message is never interleaved with another.
///
/// A `Connection` implements `Serialize`/`Deserialize`, so it can be a
/// process argument or travel inside a message.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::Pipe;
///
/// let (a, b) = Pipe::new::<(u32, String), ()>()?;
/// a.send((1, "one".into())).unwrap();
/// assert!(b.poll(Some(Duration::from_secs(5)))?);
/// assert_eq!(b.recv().unwrap(), (1, "one".to_string()));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
///
/// - Not `Clone`, and no `try_clone`: a copy would share the socket but not
///   the receive state, so two copies reading would split each other's
///   messages, and two writers sharing one end is the classic Python
///   `Pipe` bug. Share one end between threads with an `Arc` instead.
/// - Dropping (or [`close`](Connection::close)-ing) an end closes its
///   descriptor; the peer sees `Disconnected` once every copy is closed (a
///   copy held by a child process counts).
/// - `send` blocks while the socket buffer is full until the peer reads, as
///   in Python; there is no send timeout.
/// - One message carries at most 253 handles (Linux's `SCM_MAX_FD`) and at
///   most [`max_message_size`](Connection::max_message_size) bytes.
/// - On the wire each message is a 24-byte header (payload length, type tag,
///   handle count) followed by the payload; the descriptors travel with the
///   header's `sendmsg`. Both ends must run the same binary, since the type
///   tag hashes the Rust type.
pub struct Connection<S, R = S> {
    transport: Transport,
    tx: Mutex<Tx>,
    rx: Mutex<RxState>,
    max_message_size: AtomicUsize,
    /// Most nanoseconds a wait spins before sleeping.
    spin_ns: AtomicU64,
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> Connection<S, R> {
    /// Wraps a connected stream socket and this end's view of the rings.
    fn from_parts(fd: OwnedFd, rings: Rings) -> Self {
        Self::new(Transport::Pipe(PipeTransport::new(fd, rings)))
    }

    /// Wraps a connected stream socket with no rings (socket-only mode):
    /// every message is a frame. `unix` says whether descriptors can be
    /// attached (a Unix socket) or not (TCP).
    fn from_stream(fd: OwnedFd, unix: bool) -> Self {
        let family = if unix { Family::Unix } else { Family::Tcp };
        Self::new(Transport::Socket(SocketTransport::new(fd, family)))
    }

    fn new(transport: Transport) -> Self {
        Connection {
            transport,
            tx: Mutex::default(),
            rx: Mutex::default(),
            max_message_size: AtomicUsize::new(DEFAULT_MAX_MESSAGE_SIZE),
            spin_ns: AtomicU64::new(DEFAULT_SPIN.as_nanos() as u64),
            _types: PhantomData,
        }
    }

    fn lock_tx(&self) -> MutexGuard<'_, Tx> {
        // A panic while holding the lock cannot leave a torn frame behind:
        // the frame is written by `send_frame`, which does not panic, and a
        // torn write is recorded in `broken`.
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_rx(&self) -> MutexGuard<'_, RxState> {
        // A frame is taken out of the receive state before anything that can
        // panic (user `Deserialize` impls) runs, so the state stays valid.
        self.rx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest message, in payload bytes, this end sends or accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{DEFAULT_MAX_MESSAGE_SIZE, Pipe};
    ///
    /// let (a, _b) = Pipe::new::<(), ()>()?;
    /// assert_eq!(a.max_message_size(), DEFAULT_MAX_MESSAGE_SIZE);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_message_size(&self) -> usize {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// Sets the largest message, in payload bytes (the encoded value, not
    /// counting the 24-byte header), that this end sends or accepts. The
    /// default is [`DEFAULT_MAX_MESSAGE_SIZE`] (1 GiB). The setting belongs to
    /// this end only and is not carried when the connection is sent
    /// elsewhere.
    ///
    /// Sending a larger message fails with [`SendError::TooLarge`] (the value
    /// is handed back). Receiving a larger message fails with
    /// [`RecvError::TooLarge`] after its payload has been read and discarded
    /// without being stored, so the next message is received normally.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, SendError};
    ///
    /// let (a, _b) = Pipe::new::<Vec<u8>, ()>()?;
    /// a.set_max_message_size(16);
    /// let err = a.send(vec![0; 100]).unwrap_err();
    /// assert!(matches!(err, SendError::TooLarge { .. }));
    /// assert_eq!(err.into_inner().len(), 100);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_max_message_size(&self, bytes: usize) {
        self.max_message_size.store(bytes, Ordering::Relaxed);
    }

    /// Sets the most a waiting receive (or a send waiting for room) spins
    /// before it sleeps in the kernel; zero never spins. The default is
    /// 50 µs, about twice what a wake-up across CPUs costs.
    ///
    /// Spinning is what makes a round trip between processes on different
    /// CPUs cost about a microsecond instead of the ~60 µs of two cross-CPU
    /// wake-ups. It is adaptive: a receive spins (up to this limit) only
    /// while recent messages arrived within about twice the limit, so an
    /// idle connection sleeps at once, and while the peer runs on the same
    /// CPU the spin yields the CPU instead of burning it. A receive with a
    /// deadline stops spinning at the deadline. A socket-only connection
    /// ([`Listener`], [`Client`]) does not spin.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<u8, u8>()?;
    /// b.set_spin(Duration::from_micros(20));
    /// a.send(1).unwrap();
    /// assert_eq!(b.recv().unwrap(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_spin(&self, spin: Duration) {
        let ns = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        self.spin_ns.store(ns, Ordering::Relaxed);
    }

    fn spin_cap(&self) -> Duration {
        Duration::from_nanos(self.spin_ns.load(Ordering::Relaxed))
    }

    /// Sends `bytes` as one raw message (Python's `send_bytes`). The peer
    /// receives it with [`recv_bytes`](Connection::recv_bytes); a typed
    /// `recv` rejects it. Empty messages are messages too.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<(), ()>()?;
    /// a.send_bytes(b"abc").unwrap();
    /// a.send_bytes(b"").unwrap();
    /// assert_eq!(b.recv_bytes().unwrap(), b"abc");
    /// assert_eq!(b.recv_bytes().unwrap(), b"");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] if the peer is closed (or this is the
    /// reading end of a [`Pipe::simplex`]), [`SendError::TooLarge`] above
    /// [`max_message_size`](Connection::max_message_size), and
    /// [`SendError::Io`] for other OS errors.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError<()>> {
        let size = bytes.len() as u64;
        let max = self.max_message_size();
        if bytes.len() > max {
            return Err(SendError::TooLarge {
                value: (),
                size,
                max: max as u64,
            });
        }
        let mut tx = self.lock_tx();
        self.send_locked(&mut tx, BYTES_TAG, bytes, &[])
            .map_err(|e| send_error((), e))
    }

    /// Sends one message with the send lock held: on a [`Pipe`], inline in
    /// the ring when it is small and has no descriptors, otherwise as a
    /// socket frame behind a marker record; socket-only, as a frame.
    fn send_locked(
        &self,
        tx: &mut Tx,
        tag: u64,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        match &self.transport {
            Transport::Pipe(p) => p.send(tx, tag, payload, fds, self.spin_cap()),
            Transport::Socket(s) => s.send(tx, tag, payload, fds),
        }
    }

    /// Receives one raw message sent with
    /// [`send_bytes`](Connection::send_bytes), waiting as long as it takes.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<(), ()>()?;
    /// a.send_bytes(&[1, 2, 3]).unwrap();
    /// assert_eq!(b.recv_bytes().unwrap(), [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the peer is closed and everything it
    /// sent was received; [`RecvError::WrongType`] (message consumed) if the
    /// message was sent with a typed `send`; [`RecvError::TooLarge`] (message
    /// discarded); [`RecvError::Io`] for OS errors and a broken stream.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_until(None).map_err(|e| match e {
            RecvFailure::Recv(e) => e,
            RecvFailure::Timeout | RecvFailure::Aborted => {
                unreachable!("no deadline; aborts are retried")
            }
        })
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), giving up after
    /// `timeout`. A message that has only partly arrived is kept, and the
    /// next receive continues it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{Pipe, RecvTimeoutError};
    ///
    /// let (a, b) = Pipe::new::<(), ()>()?;
    /// let err = b.recv_bytes_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(err, RecvTimeoutError::Timeout));
    /// a.send_bytes(b"x").unwrap();
    /// assert_eq!(b.recv_bytes_timeout(Duration::from_secs(5)).unwrap(), b"x");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), plus
    /// [`RecvTimeoutError::Timeout`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.recv_bytes_until(deadline::after(timeout))
            .map_err(RecvFailure::into_timeout)
    }

    fn recv_bytes_until(&self, deadline: Option<Instant>) -> Result<Vec<u8>, RecvFailure> {
        loop {
            match self.recv_bytes_once(deadline) {
                Err(RecvFailure::Aborted) => continue,
                other => return other,
            }
        }
    }

    fn recv_bytes_once(&self, deadline: Option<Instant>) -> Result<Vec<u8>, RecvFailure> {
        let mut guard = self.lock_rx();
        let st = &mut *guard;
        match self.next(st, deadline)? {
            Next::Ring(rings, rec) => {
                let result = if rec.len > self.max_message_size() {
                    Err(RecvFailure::Recv(RecvError::TooLarge {
                        size: rec.len as u64,
                        max: self.max_message_size() as u64,
                    }))
                } else if rec.tag != BYTES_TAG {
                    Err(wrong_for_bytes(rec.tag))
                } else {
                    let mut bytes = Vec::with_capacity(rec.len);
                    rings.read_payload(&rec, &mut bytes);
                    Ok(bytes)
                };
                rings.advance(&rec);
                result
            }
            Next::Frame => {
                let msg = self.next_frame(st, deadline)?;
                if msg.tag != BYTES_TAG {
                    let tag = msg.tag;
                    if tag == HANDLE_TAG {
                        self.keep(st, msg);
                    }
                    return Err(wrong_for_bytes(tag));
                }
                Ok(match msg.payload {
                    Payload::Buffered(range) => st.rx.buffered(range).to_vec(),
                    Payload::Owned(bytes) => bytes,
                })
            }
        }
    }

    /// Receives one raw message sent with
    /// [`send_bytes`](Connection::send_bytes) into `buf`, returning its
    /// length (Python's `recv_bytes_into`). Bytes of `buf` past the message
    /// are left as they were.
    ///
    /// Python's `offset` argument is a slice here:
    /// `conn.recv_bytes_into(&mut buf[offset..])` (an offset past the end is
    /// Rust's slice-index panic, Python's `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, RecvIntoError};
    ///
    /// let (a, b) = Pipe::new::<(), ()>()?;
    /// let mut buf = [0u8; 8];
    /// a.send_bytes(b"abc").unwrap();
    /// assert_eq!(b.recv_bytes_into(&mut buf[2..]).unwrap(), 3);
    /// assert_eq!(&buf, b"\0\0abc\0\0\0");
    ///
    /// // Too long for the buffer: the whole message comes back in the error.
    /// a.send_bytes(b"far too long").unwrap();
    /// match b.recv_bytes_into(&mut buf) {
    ///     Err(RecvIntoError::BufferTooShort(message)) => assert_eq!(message, b"far too long"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvIntoError::BufferTooShort`] with the whole message (consumed,
    /// nothing lost) if it is longer than `buf` (Python's `BufferTooShort`);
    /// otherwise as [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvIntoError> {
        loop {
            match self.recv_bytes_into_once(buf) {
                Err(RecvFailure::Aborted) => continue,
                Err(RecvFailure::Timeout) => unreachable!("no deadline"),
                Err(RecvFailure::Recv(e)) => return Err(RecvIntoError::from_recv(e)),
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(message)) => return Err(RecvIntoError::BufferTooShort(message)),
            }
        }
    }

    /// One attempt of [`recv_bytes_into`](Connection::recv_bytes_into):
    /// `Ok(Err(message))` when the message does not fit.
    fn recv_bytes_into_once(&self, buf: &mut [u8]) -> Result<Result<usize, Vec<u8>>, RecvFailure> {
        let mut guard = self.lock_rx();
        let st = &mut *guard;
        match self.next(st, None)? {
            Next::Ring(rings, rec) => {
                let max = self.max_message_size();
                let result = if rec.len > max {
                    Err(RecvFailure::Recv(RecvError::TooLarge {
                        size: rec.len as u64,
                        max: max as u64,
                    }))
                } else if rec.tag != BYTES_TAG {
                    Err(wrong_for_bytes(rec.tag))
                } else if rec.len <= buf.len() {
                    st.inline.clear();
                    rings.read_payload(&rec, &mut st.inline);
                    buf[..rec.len].copy_from_slice(&st.inline);
                    Ok(Ok(rec.len))
                } else {
                    let mut message = Vec::with_capacity(rec.len);
                    rings.read_payload(&rec, &mut message);
                    Ok(Err(message))
                };
                rings.advance(&rec);
                result
            }
            Next::Frame => {
                let msg = self.next_frame(st, None)?;
                if msg.tag != BYTES_TAG {
                    let tag = msg.tag;
                    if tag == HANDLE_TAG {
                        self.keep(st, msg);
                    }
                    return Err(wrong_for_bytes(tag));
                }
                Ok(match msg.payload {
                    Payload::Buffered(range) => {
                        let bytes = st.rx.buffered(range);
                        if bytes.len() <= buf.len() {
                            buf[..bytes.len()].copy_from_slice(bytes);
                            Ok(bytes.len())
                        } else {
                            Err(bytes.to_vec())
                        }
                    }
                    Payload::Owned(bytes) if bytes.len() <= buf.len() => {
                        buf[..bytes.len()].copy_from_slice(&bytes);
                        let n = bytes.len();
                        st.rx.recycle(bytes);
                        Ok(n)
                    }
                    Payload::Owned(bytes) => Err(bytes),
                })
            }
        }
    }

    /// Sends a descriptor (a file, socket, pipe, memfd, …) to the other end,
    /// which receives its own copy with [`recv_handle`](Connection::recv_handle)
    /// (Python's `multiprocessing.reduction.send_handle`). The caller keeps
    /// `handle` open or not as it likes: the kernel passes a duplicate
    /// (`SCM_RIGHTS`), which shares the open file (offset, flags) with it.
    ///
    /// `handle` is anything [`AsFd`]: `&File`, `BorrowedFd`, an `OwnedFd`
    /// (closed after the send). No destination pid is needed, unlike Python's
    /// Windows form.
    ///
    /// A handle is a message of its own kind, in order with the others: a
    /// typed [`recv`](Connection::recv) or a [`recv_bytes`](Connection::recv_bytes)
    /// that finds it fails with `WrongType` and leaves it in place, for
    /// `recv_handle` to take (see [`recv_handle`](Connection::recv_handle)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<(), ()>()?;
    /// let mut file = tempfile_in_tmp()?;
    /// file.write_all(b"shared")?;
    /// a.send_handle(&file).unwrap();
    /// let mut copy = std::fs::File::from(b.recv_handle().unwrap());
    /// copy.rewind()?; // the copy shares the file offset
    /// let mut text = String::new();
    /// copy.read_to_string(&mut text)?;
    /// assert_eq!(text, "shared");
    /// # fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    /// #     let path = std::env::temp_dir().join(format!("send-handle-doc-{}", std::process::id()));
    /// #     let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    /// #     std::fs::remove_file(&path)?;
    /// #     Ok(f)
    /// # }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every error hands `handle` back. [`SendError::Io`] with
    /// `InvalidInput` on a TCP connection ([`Listener`]/[`Client`] over
    /// TCP): descriptors do not cross machines, and nothing is sent.
    /// [`SendError::Disconnected`] if the peer is closed (or this is the
    /// reading end of a [`Pipe::simplex`]), [`SendError::Io`] for other OS
    /// errors.
    pub fn send_handle<F: AsFd>(&self, handle: F) -> Result<(), SendError<F>> {
        if !self.transport.carries_fds() {
            return Err(SendError::Io(
                handle,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a handle (descriptor) cannot travel over a TCP connection: descriptors \
                     do not cross machines",
                ),
            ));
        }
        let mut tx = self.lock_tx();
        let sent = self.send_locked(&mut tx, HANDLE_TAG, &[], &[handle.as_fd()]);
        drop(tx);
        sent.map_err(|e| send_error(handle, e))
    }

    /// Receives a descriptor sent with [`send_handle`](Connection::send_handle),
    /// waiting as long as it takes (Python's
    /// `multiprocessing.reduction.recv_handle`). The descriptor is this
    /// process's own (close-on-exec), closed when the `OwnedFd` is dropped.
    ///
    /// Handles and other messages never swallow each other: if the next
    /// message is a value or raw bytes, this fails with
    /// [`RecvError::WrongType`] and leaves that message in place for
    /// [`recv`](Connection::recv) or [`recv_bytes`](Connection::recv_bytes);
    /// likewise those fail on a handle and leave it for `recv_handle`. So
    /// after a `WrongType` that names a handle (or names a handle as
    /// expected), the same message is still next: receive it with the right
    /// call (retrying the same call fails again).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, RecvError};
    ///
    /// let (a, b) = Pipe::new::<u32, u32>()?;
    /// let (r, w) = std::io::pipe()?;
    /// a.send(7).unwrap();
    /// a.send_handle(&w).unwrap();
    /// // The value is next: recv_handle leaves it for recv.
    /// assert!(matches!(b.recv_handle(), Err(RecvError::WrongType { .. })));
    /// assert_eq!(b.recv().unwrap(), 7);
    /// let w2 = std::io::PipeWriter::from(b.recv_handle().unwrap());
    /// drop((w, w2));
    /// let mut text = String::new();
    /// std::io::Read::read_to_string(&mut &r, &mut text)?; // both writers closed: EOF
    /// assert_eq!(text, "");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::WrongType`] (message kept, see above);
    /// [`RecvError::Disconnected`] once the peer is closed and everything it
    /// sent was received; [`RecvError::Io`] for OS errors, a broken stream,
    /// or a handle message that does not carry exactly one descriptor (only a
    /// foreign or hostile peer sends one; it is consumed and its descriptors
    /// closed).
    pub fn recv_handle(&self) -> Result<OwnedFd, RecvError> {
        self.recv_handle_until(None).map_err(|e| match e {
            RecvFailure::Recv(e) => e,
            RecvFailure::Timeout | RecvFailure::Aborted => {
                unreachable!("no deadline; aborts are retried")
            }
        })
    }

    /// Like [`recv_handle`](Connection::recv_handle), giving up after
    /// `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{Pipe, RecvTimeoutError};
    ///
    /// let (_a, b) = Pipe::new::<(), ()>()?;
    /// let err = b.recv_handle_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(err, RecvTimeoutError::Timeout));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv_handle`](Connection::recv_handle), plus
    /// [`RecvTimeoutError::Timeout`].
    pub fn recv_handle_timeout(&self, timeout: Duration) -> Result<OwnedFd, RecvTimeoutError> {
        self.recv_handle_until(deadline::after(timeout))
            .map_err(RecvFailure::into_timeout)
    }

    fn recv_handle_until(&self, deadline: Option<Instant>) -> Result<OwnedFd, RecvFailure> {
        loop {
            match self.recv_handle_once(deadline) {
                Err(RecvFailure::Aborted) => continue,
                other => return other,
            }
        }
    }

    fn recv_handle_once(&self, deadline: Option<Instant>) -> Result<OwnedFd, RecvFailure> {
        let mut guard = self.lock_rx();
        let st = &mut *guard;
        let wrong = |tag: u64| {
            RecvFailure::Recv(RecvError::WrongType {
                expected: "a handle (send_handle)",
                found: if tag == BYTES_TAG {
                    "raw bytes (send_bytes), left for recv_bytes"
                } else {
                    "a typed message, left for recv"
                },
            })
        };
        match self.next(st, deadline)? {
            // An inline record is never a handle; it stays in the ring.
            Next::Ring(_, rec) => Err(wrong(rec.tag)),
            Next::Frame => {
                let msg = self.next_frame(st, deadline)?;
                if msg.tag != HANDLE_TAG {
                    let tag = msg.tag;
                    self.keep(st, msg);
                    return Err(wrong(tag));
                }
                let empty = match &msg.payload {
                    Payload::Buffered(range) => range.is_empty(),
                    Payload::Owned(bytes) => bytes.is_empty(),
                };
                let mut fds = msg.fds;
                match fds.pop() {
                    Some(fd) if fds.is_empty() && empty => Ok(fd),
                    last => {
                        let n = fds.len() + usize::from(last.is_some());
                        Err(RecvFailure::Recv(RecvError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "a handle message must carry one descriptor and no data; \
                                 this one carried {n} descriptor(s)"
                            ),
                        ))))
                    }
                }
            }
        }
    }

    /// Puts back a frame that belongs to another kind of receive (a handle
    /// found by `recv`, a value found by `recv_handle`): the next receive
    /// finds it again. On a [`Pipe`] its marker counts as pending again.
    #[cold]
    fn keep(&self, st: &mut RxState, msg: frame::Message) {
        st.rx.keep(msg);
        if let Transport::Pipe(_) = &self.transport {
            st.pending += 1;
        }
    }

    /// Finds where the next message is, waiting for one until `deadline`.
    fn next(&self, st: &mut RxState, deadline: Option<Instant>) -> Result<Next<'_>, RecvFailure> {
        if let Some(why) = st.rx.broken() {
            return Err(RecvFailure::Recv(RecvError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connection is broken: {why}"),
            ))));
        }
        match &self.transport {
            Transport::Pipe(p) => p.next(st, self.spin_cap(), deadline),
            // Socket-only: every message is the next frame.
            Transport::Socket(_) => Ok(Next::Frame),
        }
    }

    /// Receives the socket frame of a marker already taken from the ring
    /// (or, socket-only, the next frame).
    fn next_frame(
        &self,
        st: &mut RxState,
        deadline: Option<Instant>,
    ) -> Result<frame::Message, RecvFailure> {
        // A socket-only connection sleeps in the kernel at once, and has no
        // markers to account for.
        let (spin, marked) = match &self.transport {
            Transport::Pipe(p) => (p.spin_now(self.spin_cap()), true),
            Transport::Socket(_) => (FrameSpin::default(), false),
        };
        // A frame taken off the socket takes its marker with it.
        let took_frame = |st: &mut RxState| {
            if marked {
                st.pending -= 1;
            }
        };
        match st
            .rx
            .next(self.transport.fd(), self.max_message_size(), deadline, spin)
        {
            Ok(msg) => {
                took_frame(st);
                Ok(msg)
            }
            Err(RxError::Aborted) => {
                took_frame(st);
                // The real next message is wherever the ring says.
                Err(RecvFailure::Aborted)
            }
            Err(e @ RxError::TooLarge { .. }) => {
                took_frame(st);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a message can be received without waiting, waiting up to
    /// `timeout` for one (`None`: as long as it takes; `Some(Duration::ZERO)`:
    /// not at all). Python's `poll`.
    ///
    /// Never consumes anything. Returns `true` when a whole message is
    /// buffered or the socket has data, and also when the peer is closed (the
    /// next receive then reports `Disconnected`); a message whose start has
    /// arrived but not its end also counts, and a receive then waits for the
    /// rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<u8, u8>()?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(1).unwrap();
    /// assert!(b.poll(None)?);
    /// assert!(b.poll(None)?); // still true: nothing was consumed
    /// assert_eq!(b.recv().unwrap(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If `poll(2)` fails.
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.and_then(deadline::after);
        let mut guard = self.lock_rx();
        let st = &mut *guard;
        if st.pending > 0 || st.rx.broken().is_some() || st.eof {
            return Ok(true);
        }
        match &self.transport {
            Transport::Pipe(p) => match p.next(st, self.spin_cap(), deadline) {
                Ok(_) => Ok(true),
                Err(RecvFailure::Timeout) => Ok(false),
                Err(RecvFailure::Recv(RecvError::Io(e))) => Err(e),
                Err(_) => Ok(true),
            },
            Transport::Socket(s) => s.poll(st, deadline),
        }
    }

    /// Closes this end (dropping it does the same). Python's `close`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, RecvError};
    ///
    /// let (a, b) = Pipe::new::<u8, u8>()?;
    /// a.close();
    /// assert!(matches!(b.recv(), Err(RecvError::Disconnected)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }

    /// Reinterprets this end as sending `S2` and receiving `R2`.
    ///
    /// This is the escape hatch for protocols whose message type changes
    /// over time (a handshake, then data). Type safety is kept at run time:
    /// a message received as a type other than the one it was sent as is
    /// still a [`RecvError::WrongType`]. Buffered data and settings carry
    /// over.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<u32, u32>()?;
    /// let a = a.retype::<String, String>();
    /// let b = b.retype::<String, String>();
    /// a.send("now strings".into()).unwrap();
    /// assert_eq!(b.recv().unwrap(), "now strings");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn retype<S2, R2>(self) -> Connection<S2, R2> {
        Connection {
            transport: self.transport,
            tx: self.tx,
            rx: self.rx,
            max_message_size: self.max_message_size,
            spin_ns: self.spin_ns,
            _types: PhantomData,
        }
    }
}

impl<S: Serialize + DeserializeOwned + 'static, R> Connection<S, R> {
    /// Sends `value` as one message (Python's `send`).
    ///
    /// Handles inside `value` (a `Connection`, a queue, a lock) are passed
    /// along: the receiver gets working copies. Because `value` is taken by
    /// value and dropped after a successful send, the sender's copies of
    /// those handles are closed then; sending a `Connection` moves it to the
    /// receiver.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Connection, Pipe};
    ///
    /// let (a, b) = Pipe::new::<Connection<u8>, Connection<u8>>()?;
    /// let (inner_a, inner_b) = Pipe::new::<u8, u8>()?;
    /// a.send(inner_a).unwrap(); // inner_a moves to the receiver
    /// let inner_a = b.recv().unwrap();
    /// inner_a.send(9).unwrap();
    /// assert_eq!(inner_b.recv().unwrap(), 9);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Every error hands `value` back:
    /// [`SendError::Disconnected`] if the peer is closed,
    /// [`SendError::Encode`] if serialization fails or the value would not
    /// decode as an `S` (serde attributes the encoding cannot round trip,
    /// such as `#[serde(untagged)]`: see [`EncodeError`]),
    /// [`SendError::TooLarge`] above [`max_message_size`](Connection::max_message_size),
    /// [`SendError::Io`] for OS errors (including more than 253 handles in
    /// one message).
    pub fn send(&self, value: S) -> Result<(), SendError<S>> {
        let mut guard = self.lock_tx();
        let tx = &mut *guard;
        tx.buf.clear();
        tx.fds.clear();
        let encoded = match codec::as_bytes(&value) {
            // `Vec<u8>` and `String`: postcard's bytes, in one copy.
            Some(bytes) => {
                let (prefix, n) = codec::varint(bytes.len());
                tx.buf.extend_from_slice(&prefix[..n]);
                tx.buf.extend_from_slice(bytes);
                Ok(())
            }
            // A value with handles is not checked: decoding it would take them.
            None => codec::encode_into(&value, &mut tx.buf, &mut tx.fds).and_then(|()| {
                if tx.fds.is_empty() {
                    codec::check_round_trip::<S>(&tx.buf)
                } else {
                    Ok(())
                }
            }),
        };
        if let Err(e) = encoded {
            tx.fds.clear();
            return Err(SendError::Encode(value, e));
        }
        if !tx.fds.is_empty() && !self.transport.carries_fds() {
            tx.fds.clear();
            let why = "a message with handles (a Connection, Queue or Lock) cannot travel over \
                       a TCP connection: descriptors do not cross machines";
            return Err(SendError::Encode(
                value,
                EncodeError::Serialize(why.to_string()),
            ));
        }
        let size = tx.buf.len();
        let max = self.max_message_size();
        let result = if size > max {
            Err(SendError::TooLarge {
                value,
                size: size as u64,
                max: max as u64,
            })
        } else {
            let tag = codec::type_tag::<S>();
            let buf = std::mem::take(&mut tx.buf);
            let owned = std::mem::take(&mut tx.fds);
            let borrowed: Vec<BorrowedFd<'_>>;
            let fds: &[BorrowedFd<'_>] = if owned.is_empty() {
                &[]
            } else {
                borrowed = owned.iter().map(|fd| fd.as_fd()).collect();
                &borrowed
            };
            let sent = self.send_locked(tx, tag, &buf, fds);
            tx.buf = buf;
            tx.fds = owned;
            match sent {
                Ok(()) => Ok(()),
                Err(e) => Err(send_error(value, e)),
            }
        };
        // Close our duplicates of the handles (the kernel holds its own
        // references for the peer) and do not keep a huge buffer around.
        tx.fds.clear();
        if tx.buf.capacity() > KEEP_TX_BUF {
            tx.buf = Vec::new();
        }
        result
    }
}

impl<S, R: DeserializeOwned + 'static> Connection<S, R> {
    /// Receives one message, waiting as long as it takes (Python's `recv`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<Option<String>, Option<String>>()?;
    /// a.send(Some("x".into())).unwrap();
    /// a.send(None).unwrap();
    /// assert_eq!(b.recv().unwrap(), Some("x".to_string()));
    /// assert_eq!(b.recv().unwrap(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the peer is closed and everything it
    /// sent was received (Python's `EOFError`). [`RecvError::WrongType`] if
    /// the message was sent as another type or as raw bytes, and
    /// [`RecvError::Decode`] if its bytes or handles do not decode as `R`; in
    /// both cases the error names `R`, the message is consumed and the next
    /// one can be received. [`RecvError::TooLarge`] (message discarded) and
    /// [`RecvError::Io`] as for [`recv_bytes`](Connection::recv_bytes).
    pub fn recv(&self) -> Result<R, RecvError> {
        self.recv_until(None).map_err(|e| match e {
            RecvFailure::Recv(e) => e,
            RecvFailure::Timeout | RecvFailure::Aborted => {
                unreachable!("no deadline; aborts are retried")
            }
        })
    }

    /// Like [`recv`](Connection::recv), giving up after `timeout`. A message
    /// that has only partly arrived is kept, and the next receive continues
    /// it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{Pipe, RecvTimeoutError};
    ///
    /// let (a, b) = Pipe::new::<u8, u8>()?;
    /// let err = b.recv_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(err, RecvTimeoutError::Timeout));
    /// a.send(3).unwrap();
    /// assert_eq!(b.recv_timeout(Duration::from_secs(5)).unwrap(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), plus [`RecvTimeoutError::Timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<R, RecvTimeoutError> {
        self.recv_until(deadline::after(timeout))
            .map_err(RecvFailure::into_timeout)
    }

    /// Receives a message if a whole one is available now, without waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Pipe, TryRecvError};
    ///
    /// let (a, b) = Pipe::new::<u8, u8>()?;
    /// assert!(matches!(b.try_recv(), Err(TryRecvError::Empty)));
    /// a.send(5).unwrap();
    /// assert_eq!(b.try_recv().unwrap(), 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), plus [`TryRecvError::Empty`].
    pub fn try_recv(&self) -> Result<R, TryRecvError> {
        self.recv_until(Some(Instant::now())).map_err(|e| match e {
            RecvFailure::Timeout => TryRecvError::Empty,
            RecvFailure::Aborted => unreachable!("retried by recv_until"),
            RecvFailure::Recv(e) => e.into(),
        })
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<R, RecvFailure> {
        loop {
            match self.recv_once(deadline) {
                Err(RecvFailure::Aborted) => continue,
                other => return other,
            }
        }
    }

    fn recv_once(&self, deadline: Option<Instant>) -> Result<R, RecvFailure> {
        let mut guard = self.lock_rx();
        let st = &mut *guard;
        let want = codec::type_tag::<R>();
        let wrong = |tag: u64| {
            RecvFailure::Recv(RecvError::WrongType {
                expected: std::any::type_name::<R>(),
                found: match tag {
                    BYTES_TAG => "raw bytes (send_bytes)",
                    HANDLE_TAG => "a handle (send_handle), left for recv_handle",
                    _ => "a message of another type",
                },
            })
        };
        let decoded = match self.next(st, deadline)? {
            Next::Ring(rings, rec) => {
                let max = self.max_message_size();
                let result = if rec.len > max {
                    Err(RecvFailure::Recv(RecvError::TooLarge {
                        size: rec.len as u64,
                        max: max as u64,
                    }))
                } else if rec.tag != want {
                    Err(wrong(rec.tag))
                } else {
                    st.inline.clear();
                    rings.read_payload(&rec, &mut st.inline);
                    Ok(())
                };
                rings.advance(&rec);
                result?;
                decode_message(&st.inline, Vec::new())
            }
            Next::Frame => {
                let msg = self.next_frame(st, deadline)?;
                if msg.tag != want {
                    let tag = msg.tag;
                    if tag == HANDLE_TAG {
                        self.keep(st, msg);
                    }
                    return Err(wrong(tag));
                }
                match msg.payload {
                    Payload::Buffered(range) => decode_message(st.rx.buffered(range), msg.fds),
                    Payload::Owned(bytes) => {
                        let value = decode_message(&bytes, msg.fds);
                        st.rx.recycle(bytes);
                        value
                    }
                }
            }
        };
        decoded.map_err(|e| RecvFailure::Recv(RecvError::Decode(e)))
    }
}

/// A receive failure before it is mapped to the caller's error type.
enum RecvFailure {
    Timeout,
    /// A marker's frame was aborted by the sender: look again.
    Aborted,
    Recv(RecvError),
}

impl RecvFailure {
    fn into_timeout(self) -> RecvTimeoutError {
        match self {
            RecvFailure::Timeout => RecvTimeoutError::Timeout,
            RecvFailure::Aborted => unreachable!("retried by the receive loop"),
            RecvFailure::Recv(e) => e.into(),
        }
    }
}

impl From<RxError> for RecvFailure {
    fn from(e: RxError) -> Self {
        match e {
            RxError::Timeout => RecvFailure::Timeout,
            RxError::Disconnected => RecvFailure::Recv(RecvError::Disconnected),
            RxError::TooLarge { size, max } => RecvFailure::Recv(RecvError::TooLarge { size, max }),
            RxError::Aborted => RecvFailure::Aborted,
            RxError::Io(e) => RecvFailure::Recv(RecvError::Io(e)),
        }
    }
}

/// What [`wait`](fn@crate::wait) needs of a connection: its receive lock,
/// whether a receive would block, and the ring's sleep announcement.
impl<S, R> Connection<S, R> {
    /// The receive lock, unless another thread holds it (a poisoned lock is
    /// taken, as in [`lock_rx`](Connection::lock_rx)).
    pub(crate) fn try_lock_rx(&self) -> Option<MutexGuard<'_, RxState>> {
        match self.rx.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// For [`wait`](fn@crate::wait), with the receive lock held (`st`):
    /// whether a receive would not block (a message, end of stream, or a
    /// broken stream to report). Reads what the socket holds, as a sleeping
    /// receive would (a doorbell is dropped); never delivers anything.
    pub(crate) fn ready_locked(&self, st: &mut RxState) -> io::Result<bool> {
        let fd = self.transport.fd();
        if st.eof || st.rx.broken().is_some() || self.transport.buffered(st) {
            return Ok(true);
        }
        if !sys::socket::poll_readable(fd, Some(Instant::now()))? {
            return Ok(false);
        }
        match st.rx.drain(fd) {
            Ok(true) => {
                st.eof = true;
                Ok(true)
            }
            Ok(false) => Ok(self.transport.buffered(st)),
            // The next receive reports it.
            Err(_) => Ok(true),
        }
    }

    /// For [`wait`](fn@crate::wait), with the receive lock held: announces
    /// that the receiver is about to sleep, so a [`Pipe`] sender rings the
    /// doorbell (the caller then checks [`ready_locked`] again before it
    /// sleeps). A socket-only connection has nothing to announce: every
    /// message wakes the socket.
    ///
    /// [`ready_locked`]: Connection::ready_locked
    pub(crate) fn set_sleeping(&self) {
        match &self.transport {
            Transport::Pipe(p) => p.set_sleeping(),
            Transport::Socket(_) => {}
        }
    }

    /// Withdraws [`set_sleeping`](Connection::set_sleeping).
    pub(crate) fn clear_sleeping(&self) {
        match &self.transport {
            Transport::Pipe(p) => p.clear_sleeping(),
            Transport::Socket(_) => {}
        }
    }
}

/// The `WrongType` of a raw-bytes receive that found a message with `tag`.
fn wrong_for_bytes(tag: u64) -> RecvFailure {
    RecvFailure::Recv(RecvError::WrongType {
        expected: "raw bytes (send_bytes)",
        found: if tag == HANDLE_TAG {
            "a handle (send_handle), left for recv_handle"
        } else {
            "a typed message"
        },
    })
}

/// Maps a send-side OS error, handing `value` back.
fn send_error<T>(value: T, e: io::Error) -> SendError<T> {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            SendError::Disconnected(value)
        }
        _ => SendError::Io(value, e),
    }
}

impl<S, R> fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.transport.fd().as_raw_fd())
            .field("sends", &std::any::type_name::<S>())
            .field("receives", &std::any::type_name::<R>())
            .finish()
    }
}

impl<S, R> AsFd for Connection<S, R> {
    /// The socket. Reading or writing it directly desynchronizes the stream.
    ///
    /// Its readiness is *not* a reliable sign of a message: small messages
    /// of a [`Pipe`] travel through shared memory and make the socket
    /// readable only when the receiver announced it sleeps. Use
    /// [`poll`](Connection::poll), or [`fn@crate::wait`] for several objects at once,
    /// to wait for a message; the socket does report the peer closing
    /// (`POLLHUP`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.transport.fd()
    }
}

/// Serializes as a handle: only `multiprocess` itself can serialize a
/// `Connection` (as a process argument or inside a message), any other
/// serializer gets an error.
///
/// Fails if this end has received data it has not yet delivered (a buffered
/// message, or part of one): that data lives in this process and would be
/// lost to the copy.
impl<S, R> Serialize for Connection<S, R> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let clean = self.try_lock_rx().is_some_and(|rx| rx.is_empty());
        if !clean {
            return Err(codec::handle_error(
                "a Connection that is receiving, or holds received data not yet delivered, \
                 cannot be sent"
                    .to_string(),
            ));
        }
        // The third field is the ring side (0, 1) of a Pipe connection, or
        // `SOCKET_FDS`/`SOCKET_NO_FDS` for a socket-only one.
        let (rings, side) = match &self.transport {
            Transport::Pipe(p) => (Some(FdHandle(p.rings().fd())), p.rings().side()),
            Transport::Socket(s) => match s.family() {
                Family::Unix => (None, SOCKET_FDS),
                Family::Tcp => (None, SOCKET_NO_FDS),
            },
        };
        (FdHandle(self.transport.fd()), rings, side).serialize(serializer)
    }
}

/// Serialized mode of a socket-only connection that may pass descriptors.
const SOCKET_FDS: u8 = 2;
/// Serialized mode of a socket-only connection over TCP.
const SOCKET_NO_FDS: u8 = 3;

/// A descriptor serialized as a handle (an index into the side table).
struct FdHandle<'a>(BorrowedFd<'a>);

impl Serialize for FdHandle<'_> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        codec::serialize_fd(self.0, "Connection", serializer)
    }
}

/// A descriptor deserialized from a handle.
struct OwnedHandle(OwnedFd);

impl<'de> Deserialize<'de> for OwnedHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::deserialize_fd("Connection", deserializer).map(OwnedHandle)
    }
}

/// Deserializes a handle written by the `Serialize` impl (the socket, the
/// shared rings and which end this is), taking ownership of its
/// descriptors. The maximum message size and spin are back to their
/// defaults.
impl<'de, S, R> Deserialize<'de> for Connection<S, R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (OwnedHandle(fd), mem, side) =
            <(OwnedHandle, Option<OwnedHandle>, u8)>::deserialize(deserializer)?;
        match (mem, side) {
            (Some(OwnedHandle(mem)), side) => {
                let rings = Rings::from_fd(mem, side).map_err(|e| {
                    codec::handle_de_error(format!("bad Connection shared memory: {e}"))
                })?;
                Ok(Connection::from_parts(fd, rings))
            }
            (None, SOCKET_FDS) => Ok(Connection::from_stream(fd, true)),
            (None, SOCKET_NO_FDS) => Ok(Connection::from_stream(fd, false)),
            (None, other) => Err(codec::handle_de_error(format!(
                "bad Connection handle: mode {other} without shared memory"
            ))),
        }
    }
}

/// Decodes a received message: `Vec<u8>` and `String` in one copy (serde
/// would take them one byte at a time), everything else through the codec.
fn decode_message<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, crate::DecodeError> {
    if fds.is_empty()
        && let Some(value) = codec::decode_bytes::<T>(bytes)
    {
        return value;
    }
    codec::decode(bytes, fds)
}

#[cfg(test)]
mod tests;
