//! [`Pipe`] and [`Connection`]: typed, message-oriented, two-way channels
//! between processes, over a Unix stream socket pair plus a pair of
//! shared-memory rings (Python's `multiprocessing.Pipe` and `Connection`).
//!
//! Small messages travel in the rings ([`ring`]), the rest as socket frames
//! ([`frame`]) announced in the rings; errors, one type per operation, are in
//! [`error`]. [`Listener`] and [`Client`] ([`listener`], with the handshake
//! in [`auth`]) make socket-only connections, where every message is a
//! frame; [`fn@wait`] ([`mod@wait`]) waits for any of several objects.
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
mod ring;
mod wait;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{
    AcceptError, AuthenticationError, ConnectError, RecvError, RecvTimeoutError, SendError,
    TryRecvError,
};
pub use listener::{Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, Listener};
pub use wait::{Waitable, wait};

use crate::EncodeError;
use crate::deadline;
use crate::handle;
use crate::sys::sched;
use crate::sys::socket::{self, MAX_FDS, Shutdown};
use frame::{BYTES_TAG, FrameSpin, Header, Payload, Rx, RxError};
use ring::{INLINE, INLINE_MAX, MARKER, RECORD_HEADER, Record, Rings};

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
        let (a, b) = socket::socketpair()?;
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
        let (reader, writer) = socket::socketpair()?;
        let (rr, rw) = Rings::pair()?;
        // Shutting down the reader's sending side also ends the writer's
        // receiving side (the kernel mirrors it onto the peer); the ring of
        // that direction is shut likewise.
        socket::shutdown(reader.as_fd(), Shutdown::Write)?;
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

/// The state guarded by the receive mutex.
#[derive(Default)]
struct RxState {
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
enum Next {
    /// The next socket frame.
    Frame,
    /// An inline record at the ring's head.
    Ring(Record),
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
    fd: OwnedFd,
    /// The shared-memory rings of a [`Pipe`]; `None` for a connection over a
    /// network or named socket ([`Listener`], [`Client`]), where every
    /// message is a socket frame.
    rings: Option<Rings>,
    /// Whether handles (descriptors) may travel: not over TCP.
    fds_ok: bool,
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
        Self::new(fd, Some(rings), true)
    }

    /// Wraps a connected stream socket with no rings (socket-only mode):
    /// every message is a frame. `fds_ok` says whether descriptors can be
    /// attached (a Unix socket) or not (TCP).
    fn from_stream(fd: OwnedFd, fds_ok: bool) -> Self {
        Self::new(fd, None, fds_ok)
    }

    fn new(fd: OwnedFd, rings: Option<Rings>, fds_ok: bool) -> Self {
        Connection {
            fd,
            rings,
            fds_ok,
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

    /// The spin for a wait whose data is known to be on its way.
    fn spin_now(&self) -> FrameSpin {
        let Some(rings) = &self.rings else {
            // A socket-only connection sleeps in the kernel at once.
            return FrameSpin::default();
        };
        let cpu = sched::current_cpu();
        rings.note_cpu(cpu);
        FrameSpin {
            budget: self.spin_cap(),
            yield_cpu: rings.peer_on(cpu),
        }
    }

    /// The rings, on a path only a [`Pipe`] connection takes (a ring record
    /// was found, so there are rings).
    fn ring(&self) -> &Rings {
        self.rings
            .as_ref()
            .expect("ring records exist only on a Pipe connection")
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

    /// Sends one message with the send lock held: inline in the ring when
    /// it is small and has no descriptors, otherwise as a socket frame behind
    /// a marker record.
    fn send_locked(
        &self,
        tx: &mut Tx,
        tag: u64,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        if tx.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier send failed half-way through a message",
            ));
        }
        if self.rings.as_ref().is_some_and(Rings::out_shut) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.check_peer(tx)?;
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message can carry at most {MAX_FDS} descriptors, this one has {}",
                    fds.len()
                ),
            ));
        }
        let header = Header {
            len: payload.len() as u64,
            tag,
            nfds: fds.len() as u32,
        };
        let Some(rings) = &self.rings else {
            if !fds.is_empty() && !self.fds_ok {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "descriptors cannot travel over a TCP connection",
                ));
            }
            return frame::send_frame(self.fd.as_fd(), &header, payload, fds, &mut tx.broken);
        };
        rings.note_cpu(sched::current_cpu());
        if fds.is_empty() && payload.len() <= INLINE_MAX {
            self.wait_space(rings, tx, RECORD_HEADER + payload.len())?;
            rings.push(INLINE, tag, payload);
            if rings.take_sleeper() {
                frame::send_control(self.fd.as_fd(), &frame::DOORBELL, &mut tx.broken)?;
            }
            return Ok(());
        }
        self.wait_space(rings, tx, RECORD_HEADER)?;
        rings.push(MARKER, 0, &[]);
        // A sleeping receiver wakes on the frame itself.
        rings.take_sleeper();
        let result = frame::send_frame(self.fd.as_fd(), &header, payload, fds, &mut tx.broken);
        if result.is_err() && !tx.broken {
            // Nothing of the frame went out, but its marker is published:
            // tell the receiver there is no message behind it.
            let mut torn = false;
            if frame::send_control(self.fd.as_fd(), &frame::ABORTED, &mut torn).is_err() {
                tx.broken = true;
            }
        }
        result
    }

    /// Fails if the peer has closed its end, asking the kernel at most every
    /// [`PEER_CHECK`].
    fn check_peer(&self, tx: &mut Tx) -> io::Result<()> {
        if !tx.peer_gone {
            let now = Instant::now();
            if tx.last_check.is_none_or(|t| now - t >= PEER_CHECK) {
                tx.last_check = Some(now);
                tx.peer_gone = socket::peer_closed(self.fd.as_fd())?;
            }
        }
        if tx.peer_gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    /// Waits until the outgoing ring has `need` free bytes: spins, then
    /// sleeps on the ring's futex in slices, checking between them that the
    /// peer is still there.
    fn wait_space(&self, rings: &Rings, tx: &mut Tx, need: usize) -> io::Result<()> {
        if rings.free() >= need {
            return Ok(());
        }
        let spin = self.spin_now();
        let until = Instant::now() + spin.budget;
        while Instant::now() < until {
            if rings.free() >= need {
                return Ok(());
            }
            if spin.yield_cpu {
                sched::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        loop {
            let seq = rings.announce_tx_wait();
            if rings.free() >= need {
                return Ok(());
            }
            rings.wait_space(seq, Instant::now() + SPACE_SLICE)?;
            if rings.free() >= need {
                return Ok(());
            }
            tx.last_check = None;
            self.check_peer(tx)?;
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
            Next::Ring(rec) => {
                let result = if rec.len > self.max_message_size() {
                    Err(RecvFailure::Recv(RecvError::TooLarge {
                        size: rec.len as u64,
                        max: self.max_message_size() as u64,
                    }))
                } else if rec.tag != BYTES_TAG {
                    Err(RecvFailure::Recv(RecvError::WrongType {
                        expected: "raw bytes (send_bytes)",
                        found: "a typed message",
                    }))
                } else {
                    let mut bytes = Vec::with_capacity(rec.len);
                    self.ring().read_payload(&rec, &mut bytes);
                    Ok(bytes)
                };
                self.ring().advance(&rec);
                result
            }
            Next::Frame => {
                let msg = self.next_frame(st, deadline)?;
                if msg.tag != BYTES_TAG {
                    return Err(RecvFailure::Recv(RecvError::WrongType {
                        expected: "raw bytes (send_bytes)",
                        found: "a typed message",
                    }));
                }
                Ok(match msg.payload {
                    Payload::Buffered(range) => st.rx.buffered(range).to_vec(),
                    Payload::Owned(bytes) => bytes,
                })
            }
        }
    }

    /// Finds where the next message is, waiting for one until `deadline`.
    fn next(&self, st: &mut RxState, deadline: Option<Instant>) -> Result<Next, RecvFailure> {
        if let Some(why) = st.rx.broken() {
            return Err(RecvFailure::Recv(RecvError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connection is broken: {why}"),
            ))));
        }
        let Some(rings) = &self.rings else {
            // Socket-only: every message is the next frame.
            return Ok(Next::Frame);
        };
        let mut waited: Option<Instant> = None;
        let mut spun = false;
        loop {
            if st.pending > 0 {
                return Ok(Next::Frame);
            }
            match rings.peek() {
                Ok(Some(rec)) if rec.kind == MARKER => {
                    rings.advance(&rec);
                    st.pending += 1;
                    continue;
                }
                Ok(Some(rec)) => {
                    let waited = waited.map_or(Duration::ZERO, |t| t.elapsed());
                    st.record_wait(waited, self.spin_cap());
                    return Ok(Next::Ring(rec));
                }
                Ok(None) => {}
                Err(why) => return Err(st.rx.fail_with(why).into()),
            }
            if st.eof || rings.in_shut() {
                return Err(RecvFailure::Recv(RecvError::Disconnected));
            }
            let start = *waited.get_or_insert_with(Instant::now);
            if !spun {
                spun = true;
                if self.spin_for_record(st, start, deadline) {
                    continue;
                }
            }
            self.sleep_for_record(st, deadline)?;
        }
    }

    /// Spins (or yields, while the peer shares our CPU) until a record
    /// appears or the adaptive budget runs out; returns whether one appeared.
    fn spin_for_record(&self, st: &RxState, start: Instant, deadline: Option<Instant>) -> bool {
        let rings = self.ring();
        let budget = st.spin_budget(self.spin_cap());
        if budget.is_zero() {
            return false;
        }
        let mut until = start + budget;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let mut cpu = sched::current_cpu();
        rings.note_cpu(cpu);
        let mut i = 0u32;
        loop {
            if rings.has_record() {
                return true;
            }
            if rings.peer_on(cpu) {
                sched::yield_now();
                cpu = sched::current_cpu();
                rings.note_cpu(cpu);
                if Instant::now() >= until {
                    return false;
                }
            } else {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if i % 32 == 0 {
                    if Instant::now() >= until {
                        return false;
                    }
                    cpu = sched::current_cpu();
                    rings.note_cpu(cpu);
                }
            }
        }
    }

    /// Sleeps on the socket until the ring has a record, the socket has a
    /// frame or end of stream, or `deadline` passes.
    fn sleep_for_record(
        &self,
        st: &mut RxState,
        deadline: Option<Instant>,
    ) -> Result<(), RecvFailure> {
        let rings = self.ring();
        loop {
            rings.set_sleeping();
            if rings.has_record() {
                rings.clear_sleeping();
                return Ok(());
            }
            let readable = socket::poll_readable(self.fd.as_fd(), deadline);
            rings.clear_sleeping();
            if !readable.map_err(|e| RecvFailure::Recv(RecvError::Io(e)))? {
                return if rings.has_record() {
                    Ok(())
                } else {
                    Err(RecvFailure::Timeout)
                };
            }
            if st.rx.drain(self.fd.as_fd())? {
                st.eof = true;
                return Ok(());
            }
            if rings.has_record() {
                return Ok(());
            }
        }
    }

    /// Accounts for a frame taken off the socket: on a [`Pipe`] connection,
    /// its marker.
    fn took_frame(&self, st: &mut RxState) {
        if self.rings.is_some() {
            st.pending -= 1;
        }
    }

    /// Receives the socket frame of a marker already taken from the ring
    /// (or, socket-only, the next frame).
    fn next_frame(
        &self,
        st: &mut RxState,
        deadline: Option<Instant>,
    ) -> Result<frame::Message, RecvFailure> {
        let spin = self.spin_now();
        match st
            .rx
            .next(self.fd.as_fd(), self.max_message_size(), deadline, spin)
        {
            Ok(msg) => {
                self.took_frame(st);
                Ok(msg)
            }
            Err(RxError::Aborted) => {
                self.took_frame(st);
                // The real next message is wherever the ring says.
                Err(RecvFailure::Aborted)
            }
            Err(e @ RxError::TooLarge { .. }) => {
                self.took_frame(st);
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
        if self.rings.is_none() {
            // Socket-only: buffered bytes (a whole or partial frame), or a
            // readable socket.
            return Ok(!st.rx.is_empty() || socket::poll_readable(self.fd.as_fd(), deadline)?);
        }
        match self.next(st, deadline) {
            Ok(_) => Ok(true),
            Err(RecvFailure::Timeout) => Ok(false),
            Err(RecvFailure::Recv(RecvError::Io(e))) => Err(e),
            Err(_) => Ok(true),
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
            fd: self.fd,
            rings: self.rings,
            fds_ok: self.fds_ok,
            tx: self.tx,
            rx: self.rx,
            max_message_size: self.max_message_size,
            spin_ns: self.spin_ns,
            _types: PhantomData,
        }
    }
}

impl<S: Serialize + 'static, R> Connection<S, R> {
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
    /// [`SendError::Encode`] if serialization fails,
    /// [`SendError::TooLarge`] above [`max_message_size`](Connection::max_message_size),
    /// [`SendError::Io`] for OS errors (including more than 253 handles in
    /// one message).
    pub fn send(&self, value: S) -> Result<(), SendError<S>> {
        let mut guard = self.lock_tx();
        let tx = &mut *guard;
        tx.buf.clear();
        tx.fds.clear();
        let encoded = match handle::as_bytes(&value) {
            // `Vec<u8>` and `String`: postcard's bytes, in one copy.
            Some(bytes) => {
                let (prefix, n) = handle::varint(bytes.len());
                tx.buf.extend_from_slice(&prefix[..n]);
                tx.buf.extend_from_slice(bytes);
                Ok(())
            }
            None => handle::encode_into(&value, &mut tx.buf, &mut tx.fds),
        };
        if let Err(e) = encoded {
            tx.fds.clear();
            return Err(SendError::Encode(value, e));
        }
        if !tx.fds.is_empty() && !self.fds_ok {
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
            let tag = handle::type_tag::<S>();
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
        let want = handle::type_tag::<R>();
        let wrong = |tag: u64| {
            RecvFailure::Recv(RecvError::WrongType {
                expected: std::any::type_name::<R>(),
                found: if tag == BYTES_TAG {
                    "raw bytes (send_bytes)"
                } else {
                    "a message of another type"
                },
            })
        };
        let decoded = match self.next(st, deadline)? {
            Next::Ring(rec) => {
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
                    self.ring().read_payload(&rec, &mut st.inline);
                    Ok(())
                };
                self.ring().advance(&rec);
                result?;
                decode_message(&st.inline, Vec::new())
            }
            Next::Frame => {
                let msg = self.next_frame(st, deadline)?;
                if msg.tag != want {
                    return Err(wrong(msg.tag));
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
            .field("fd", &self.fd.as_raw_fd())
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
    /// [`poll`](Connection::poll), or [`fn@wait`] for several objects at once,
    /// to wait for a message; the socket does report the peer closing
    /// (`POLLHUP`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
        let clean = match self.rx.try_lock() {
            Ok(rx) => rx.is_empty(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().is_empty(),
            Err(std::sync::TryLockError::WouldBlock) => false,
        };
        if !clean {
            return Err(handle::handle_error(
                "a Connection that is receiving, or holds received data not yet delivered, \
                 cannot be sent"
                    .to_string(),
            ));
        }
        // The third field is the ring side (0, 1) of a Pipe connection, or
        // `SOCKET_FDS`/`SOCKET_NO_FDS` for a socket-only one.
        let (rings, side) = match &self.rings {
            Some(r) => (Some(FdHandle(r.fd())), r.side()),
            None if self.fds_ok => (None, SOCKET_FDS),
            None => (None, SOCKET_NO_FDS),
        };
        (FdHandle(self.fd.as_fd()), rings, side).serialize(serializer)
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
        handle::serialize_fd(self.0, "Connection", serializer)
    }
}

/// A descriptor deserialized from a handle.
struct OwnedHandle(OwnedFd);

impl<'de> Deserialize<'de> for OwnedHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        handle::deserialize_fd("Connection", deserializer).map(OwnedHandle)
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
                    handle::handle_de_error(format!("bad Connection shared memory: {e}"))
                })?;
                Ok(Connection::from_parts(fd, rings))
            }
            (None, SOCKET_FDS) => Ok(Connection::from_stream(fd, true)),
            (None, SOCKET_NO_FDS) => Ok(Connection::from_stream(fd, false)),
            (None, other) => Err(handle::handle_de_error(format!(
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
        && let Some(value) = handle::decode_bytes::<T>(bytes)
    {
        return value;
    }
    handle::decode(bytes, fds)
}

#[cfg(test)]
mod tests;
