//! [`Listener`] and [`Client`]: connections between processes that did not
//! inherit a [`Pipe`](crate::Pipe), over TCP or a Unix socket, optionally
//! authenticated with a shared key (Python's
//! `multiprocessing.connection.Listener` and `Client`).
//!
//! A connection made here is socket-only: every message is a frame on the
//! socket (there is no shared memory to put rings in), with the same API
//! and errors as a [`Pipe`](crate::Pipe)'s. The handshake is in the
//! `auth` module.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AcceptError, ConnectError, Connection, auth};
use crate::deadline;
use crate::sys::socket;

/// How long an authentication handshake may take by default: 20 s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(multiprocess::DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs(20));
/// ```
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Converted from a string the way Python picks the family from the
/// address: `"\0name"` is a Linux abstract Unix socket, `"host:port"` (an
/// IP literal, or a name that resolves) is TCP, anything else — in
/// particular a string containing `/` — is the path of a Unix socket.
///
/// # Examples
///
/// ```
/// use multiprocess::Address;
///
/// assert!(matches!(Address::from("127.0.0.1:0"), Address::Tcp(_)));
/// assert!(matches!(Address::from("/tmp/sock"), Address::Unix(_)));
/// assert_eq!(Address::from("\0name"), Address::Abstract(b"name".to_vec()));
/// ```
///
/// An `Address` is serde-serializable, so it can be a child process's
/// argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address (`AF_INET`/`AF_INET6`). Handles cannot travel.
    Tcp(SocketAddr),
    /// A Unix socket at a path in the file system; the listener removes the
    /// file when it is closed or dropped.
    Unix(PathBuf),
    /// A Linux abstract Unix socket: a name with no file (Python's
    /// `"\0name"`), given here without the leading NUL.
    Abstract(Vec<u8>),
}

impl From<&str> for Address {
    fn from(s: &str) -> Self {
        if let Some(name) = s.strip_prefix('\0') {
            return Address::Abstract(name.as_bytes().to_vec());
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Address::Tcp(addr);
        }
        let looks_tcp = !s.contains('/')
            && s.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if looks_tcp && let Some(addr) = s.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            return Address::Tcp(addr);
        }
        Address::Unix(PathBuf::from(s))
    }
}

impl From<String> for Address {
    fn from(s: String) -> Self {
        Address::from(s.as_str())
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Address::Unix(path.to_path_buf())
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}

/// `ip:port`, the path, or `\0name` (with a literal backslash-zero) for an
/// abstract name.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "\\0{}", String::from_utf8_lossy(name)),
        }
    }
}

/// The listening socket.
enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}

/// Accepts connections from [`Client`]s (Python's
/// `multiprocessing.connection.Listener`). Each accepted connection sends
/// `S` and receives `R`; the client's end is a `Connection<R, S>`. The
/// types are checked at run time like a `Pipe`'s (a message of another type
/// is [`RecvError::WrongType`](crate::RecvError::WrongType)); a protocol
/// whose types change over time uses
/// [`Connection::retype`](crate::Connection::retype).
///
/// With an `authkey`, every connection is authenticated before
/// [`accept`](Listener::accept) returns it: an HMAC-SHA256
/// challenge–response in both directions, as in Python (see
/// [`AuthenticationError`](crate::AuthenticationError)). Without one there is
/// no handshake, as in Python with `authkey=None`: anyone who can reach the
/// address can send messages, so prefer a key, or a Unix socket in a
/// private directory, for anything but loopback tests.
///
/// # Examples
///
/// ```
/// use multiprocess::{Client, Listener};
///
/// let listener = Listener::<String, String>::bind("127.0.0.1:0", Some(b"secret"))?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || {
///     let conn = Client::connect::<String, String>(address, Some(b"secret")).unwrap();
///     conn.send("hello".to_string()).unwrap();
///     conn.recv().unwrap()
/// });
/// let conn = listener.accept().unwrap();
/// let text = conn.recv().unwrap();
/// conn.send(text.to_uppercase()).unwrap();
/// assert_eq!(client.join().unwrap(), "HELLO");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
///
/// - Messages carrying handles (a `Connection`, `Queue` or `Lock`) travel
///   over a Unix-socket listener's connections (descriptors are passed with
///   `SCM_RIGHTS`) but not over TCP, where `send` fails with
///   [`SendError::Encode`](crate::SendError::Encode) and hands the value back.
/// - `accept` drives the handshakes of all the clients that connected at
///   once, each bounded by its own handshake timeout
///   ([`set_handshake_timeout`](Listener::set_handshake_timeout)), and
///   returns the first that completes: a client that connects and says
///   nothing delays no one else (Python's `accept` runs them one at a
///   time). A handshake that fails is that call's error; one still under
///   way when `accept_timeout` gives up is kept for the next call. The
///   listening socket's backlog is the system's maximum (`somaxconn`), not
///   std's 128.
/// - Both ends must run the same binary (message type tags hash the Rust
///   type), as with a `Pipe`. The handshake follows Python's message for
///   message, but the framing is this crate's, so a Python `Client` cannot
///   talk to a `Listener` (nor the reverse).
/// - An accepted connection can be handed to a child process (it is a
///   process argument like any `Connection`).
pub struct Listener<S, R = S> {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    closed: AtomicBool,
    /// Connections accepted whose handshake is under way: an `accept` that
    /// returns before they finish leaves them here for the next one.
    handshaking: Mutex<Vec<Handshaking>>,
    handshake_ns: AtomicU64,
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> Listener<S, R> {
    /// Binds `address` and listens (Python's `Listener(address, authkey=...)`).
    /// A TCP port 0 picks a free port: [`address`](Listener::address) tells
    /// which. `authkey: None` means no authentication; `Some(b"")` is a
    /// valid (empty) key.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Address, Listener};
    ///
    /// let tcp = Listener::<u8>::bind("127.0.0.1:0", None)?;
    /// assert!(matches!(tcp.address(), Address::Tcp(a) if a.port() != 0));
    /// let abstract_unix = Listener::<u8>::bind("\0multiprocess-doc-bind", Some(b""))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If the address cannot be bound, notably `AddrInUse` when another
    /// socket listens there (Python's `OSError`).
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> io::Result<Self> {
        let address = address.into();
        let (socket, address) = match &address {
            Address::Tcp(a) => {
                let l = TcpListener::from(socket::listen(socket::ListenAddr::Tcp(a))?);
                let local = l.local_addr()?;
                (Socket::Tcp(l), Address::Tcp(local))
            }
            Address::Unix(p) => {
                let fd = socket::listen(socket::ListenAddr::Path(p))?;
                (Socket::Unix(UnixListener::from(fd)), address)
            }
            Address::Abstract(name) => {
                let fd = socket::listen(socket::ListenAddr::Abstract(name))?;
                (Socket::Unix(UnixListener::from(fd)), address)
            }
        };
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            closed: AtomicBool::new(false),
            handshaking: Mutex::new(Vec::new()),
            handshake_ns: AtomicU64::new(DEFAULT_HANDSHAKE_TIMEOUT.as_nanos() as u64),
            _types: PhantomData,
        })
    }

    /// The address clients connect to (for TCP port 0, the port picked).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{Address, Listener};
    ///
    /// let l = Listener::<u8>::bind("\0multiprocess-doc-address", None)?;
    /// assert_eq!(l.address(), &Address::Abstract(b"multiprocess-doc-address".to_vec()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sets how long the authentication handshake of one connection may
    /// take, in [`accept`](Listener::accept); the default is
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::Listener;
    ///
    /// let l = Listener::<u8>::bind("127.0.0.1:0", Some(b"k"))?;
    /// l.set_handshake_timeout(Duration::from_secs(2));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.handshake_ns.store(ns, Ordering::Relaxed);
    }

    /// Waits for a client and returns the connection to it, authenticated
    /// if this listener has a key (Python's `accept`).
    ///
    /// # Examples
    ///
    /// See [`Listener`].
    ///
    /// # Errors
    ///
    /// [`AcceptError::Authentication`] if the client fails the handshake
    /// (the listener stays usable), [`AcceptError::Closed`] after
    /// [`close`](Listener::close), [`AcceptError::Io`] for OS errors.
    pub fn accept(&self) -> Result<Connection<S, R>, AcceptError> {
        self.accept_until(None)
    }

    /// Like [`accept`](Listener::accept), giving up with
    /// [`AcceptError::Timeout`] if no client is connected (and, with a key,
    /// authenticated) within `timeout`. Each handshake also has its own
    /// timeout ([`set_handshake_timeout`](Listener::set_handshake_timeout));
    /// one still under way when this call gives up goes on in the next.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{AcceptError, Listener};
    ///
    /// let l = Listener::<u8>::bind("127.0.0.1:0", None)?;
    /// assert!(matches!(l.accept_timeout(Duration::ZERO), Err(AcceptError::Timeout)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`accept`](Listener::accept), plus [`AcceptError::Timeout`].
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection<S, R>, AcceptError> {
        self.accept_until(deadline::after(timeout))
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<Connection<S, R>, AcceptError> {
        // Work on this call's own set, so that concurrent accepts never wait
        // for each other; what is left goes back for the next call.
        let lock = || {
            self.handshaking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let mut pending = std::mem::take(&mut *lock());
        let result = self.drive(&mut pending, deadline);
        lock().append(&mut pending);
        result.map(Connection::retype)
    }

    /// Accepts every waiting client and drives all the handshakes under way
    /// at once (one `poll` over them and the listening socket, each with
    /// its own deadline) until one completes, fails, or `deadline` passes.
    /// Without a key a client is returned as soon as it is accepted.
    fn drive(
        &self,
        pending: &mut Vec<Handshaking>,
        deadline: Option<Instant>,
    ) -> Result<Connection<(), ()>, AcceptError> {
        let unix = matches!(self.socket, Socket::Unix(_));
        let mut ready = Vec::new();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(AcceptError::Closed);
            }
            loop {
                let fd = match socket::accept(self.socket.fd()) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A client that gave up before we accepted it: take the next.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                    Err(_) if self.closed.load(Ordering::Acquire) => {
                        return Err(AcceptError::Closed);
                    }
                    Err(e) => return Err(AcceptError::Io(e)),
                };
                let conn = stream_connection(fd, unix).map_err(AcceptError::Io)?;
                if self.authkey.is_none() {
                    return Ok(conn);
                }
                let timeout = Duration::from_nanos(self.handshake_ns.load(Ordering::Relaxed));
                let hs = auth::ServerHandshake::start(&conn, far_deadline(timeout))
                    .map_err(accept_error)?;
                pending.push(Handshaking { conn, hs });
            }
            let soonest = pending.iter().map(|p| p.hs.deadline()).min();
            let wake = match (deadline, soonest) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let fds: Vec<BorrowedFd<'_>> = std::iter::once(self.socket.fd())
                .chain(pending.iter().map(|p| p.conn.as_fd()))
                .collect();
            socket::poll_readable_many(&fds, &mut ready, wake).map_err(AcceptError::Io)?;
            drop(fds);
            let now = Instant::now();
            if let Some(key) = &self.authkey {
                for i in (0..pending.len()).rev() {
                    if !ready[i + 1] && now < pending[i].hs.deadline() {
                        continue;
                    }
                    let p = &mut pending[i];
                    match p.hs.advance(&p.conn, key) {
                        Ok(false) => {}
                        Ok(true) => return Ok(pending.swap_remove(i).conn),
                        Err(e) => {
                            // Dropped (closed) here; the failure is this
                            // call's result, the others stay for the next.
                            pending.swap_remove(i);
                            return Err(accept_error(e));
                        }
                    }
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(AcceptError::Timeout);
            }
        }
    }

    /// Stops listening (Python's `close`): later accepts fail with
    /// [`AcceptError::Closed`], an accept blocked in another thread returns
    /// with it, clients are refused, and a Unix socket's file is removed.
    /// Connections already accepted are not affected. Dropping the listener
    /// does the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::{AcceptError, Listener};
    ///
    /// let l = Listener::<u8>::bind("127.0.0.1:0", None)?;
    /// l.close();
    /// assert!(matches!(l.accept(), Err(AcceptError::Closed)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wakes a blocked accept (its poll sees the socket shut) and refuses
        // new clients; the descriptor itself is closed on drop, so no other
        // thread's accept can end up on a reused descriptor number.
        let _ = socket::shutdown(self.socket.fd(), socket::Shutdown::Both);
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl<S, R> Drop for Listener<S, R> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S, R> AsFd for Listener<S, R> {
    /// The listening socket: readable when a client is waiting to be
    /// accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }
}

impl<S, R> fmt::Debug for Listener<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// A connection accepted by a [`Listener`] with a key, mid-handshake.
struct Handshaking {
    conn: Connection<(), ()>,
    hs: auth::ServerHandshake,
}

fn accept_error(e: auth::HandshakeFailure) -> AcceptError {
    match e {
        auth::HandshakeFailure::Auth(e) => AcceptError::Authentication(e),
        auth::HandshakeFailure::Io(e) => AcceptError::Io(e),
    }
}

/// `now + timeout`, capped at about a century (a handshake deadline is
/// always finite).
fn far_deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A connected socket as a socket-only [`Connection`].
fn stream_connection<S, R>(fd: OwnedFd, unix: bool) -> io::Result<Connection<S, R>> {
    if !unix {
        TcpStream::from(fd.try_clone()?).set_nodelay(true)?;
    }
    Ok(Connection::from_stream(fd, unix))
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
///
/// `Client` has no values; it only holds [`connect`](Client::connect).
///
/// # Examples
///
/// ```
/// use multiprocess::{Client, Listener};
///
/// let listener = Listener::<u32, String>::bind("\0multiprocess-doc-client", None)?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || {
///     let conn = Client::connect::<String, u32>(address, None).unwrap();
///     conn.send("four".into()).unwrap();
///     conn.recv().unwrap()
/// });
/// let conn = listener.accept().unwrap();
/// let word = conn.recv().unwrap();
/// conn.send(word.len() as u32).unwrap();
/// assert_eq!(t.join().unwrap(), 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum Client {}

impl Client {
    /// Connects to the listener at `address`, and authenticates with
    /// `authkey` if given (it must then be the listener's key; `None` only
    /// works with a listener that has no key, and vice versa). The
    /// connection sends `S` and receives `R`: the reverse of the listener's
    /// types.
    ///
    /// The connect and the handshake are each bounded by
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// See [`Client`] and [`Listener`].
    ///
    /// # Errors
    ///
    /// [`ConnectError::Io`] if nothing listens at `address` (or another OS
    /// error), [`ConnectError::Authentication`] if the handshake fails.
    pub fn connect<S, R>(
        address: impl Into<Address>,
        authkey: Option<&[u8]>,
    ) -> Result<Connection<S, R>, ConnectError> {
        Self::connect_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// Like [`connect`](Client::connect), with the TCP connect and the
    /// handshake each bounded by `timeout` instead of
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiprocess::{AuthenticationError, Client, ConnectError, Listener};
    ///
    /// // A listener without a key never challenges: a client that expects
    /// // a challenge gives up after its timeout.
    /// let listener = Listener::<(), ()>::bind("127.0.0.1:0", None)?;
    /// let err = Client::connect_timeout::<(), ()>(
    ///     listener.address(),
    ///     Some(b"key"),
    ///     Duration::from_millis(50),
    /// )
    /// .unwrap_err();
    /// assert!(matches!(err, ConnectError::Authentication(AuthenticationError::Timeout)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect`](Client::connect); a handshake that takes too long is
    /// [`AuthenticationError::Timeout`](crate::AuthenticationError::Timeout).
    pub fn connect_timeout<S, R>(
        address: impl Into<Address>,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection<S, R>, ConnectError> {
        let address = address.into();
        let (fd, unix): (OwnedFd, bool) = match &address {
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout).map_err(ConnectError::Io)?;
                (s.into(), false)
            }
            Address::Unix(p) => (
                UnixStream::connect(p).map_err(ConnectError::Io)?.into(),
                true,
            ),
            Address::Abstract(name) => {
                let addr = socket::abstract_addr(name).map_err(ConnectError::Io)?;
                let s = UnixStream::connect_addr(&addr).map_err(ConnectError::Io)?;
                (s.into(), true)
            }
        };
        let conn = stream_connection(fd, unix).map_err(ConnectError::Io)?;
        if let Some(key) = authkey {
            let until = far_deadline(timeout);
            auth::client(&conn, key, until).map_err(|e| match e {
                auth::HandshakeFailure::Auth(e) => ConnectError::Authentication(e),
                auth::HandshakeFailure::Io(e) => ConnectError::Io(e),
            })?;
        }
        Ok(conn)
    }
}
