//! One error type per [`Connection`](crate::Connection) operation, in the
//! style of crossbeam-channel: sends hand the value back, receives say what
//! went wrong, and the variants are named after Python's exceptions where they
//! mean the same thing (`Disconnected` is Python's `EOFError`).

use std::fmt;
use std::io;

use crate::codec::{DecodeError, EncodeError};

/// Error from [`Connection::send`](crate::Connection::send) and
/// [`Connection::send_bytes`](crate::Connection::send_bytes). Every variant
/// carries the value that was not sent; get it back with
/// [`into_inner`](SendError::into_inner).
///
/// # Examples
///
/// ```
/// use multiprocess::{Pipe, SendError};
///
/// let (a, b) = Pipe::new::<String, String>()?;
/// drop(b);
/// match a.send("hello".to_string()) {
///     Err(SendError::Disconnected(value)) => assert_eq!(value, "hello"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The other end of the connection is closed (or its process died).
    #[error("sending on a connection whose other end is closed")]
    Disconnected(T),
    /// The value could not be serialized.
    #[error("cannot send: {1}")]
    Encode(T, EncodeError),
    /// The encoded message is larger than
    /// [`max_message_size`](crate::Connection::max_message_size).
    #[error("message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The value that was not sent.
        value: T,
        /// Size of the encoded message in bytes.
        size: u64,
        /// The sending end's limit in bytes.
        max: u64,
    },
    /// The operating system refused the send (for example the message
    /// carries more descriptors than one `sendmsg` allows), or an earlier
    /// failed send left the stream unusable.
    #[error("cannot send: {1}")]
    Io(T, io::Error),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiprocess::Pipe;
    ///
    /// let (a, b) = Pipe::new::<Vec<u32>, Vec<u32>>()?;
    /// drop(b);
    /// let err = a.send(vec![1, 2, 3]).unwrap_err();
    /// assert_eq!(err.into_inner(), [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(value)
            | SendError::Encode(value, _)
            | SendError::TooLarge { value, .. }
            | SendError::Io(value, _) => value,
        }
    }
}

// Written by hand so that `SendError<T>` is `Debug` (and so an `Error`) for
// every `T`, not only `T: Debug`.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
            SendError::TooLarge { size, max, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("max", max)
                .finish_non_exhaustive(),
            SendError::Io(_, e) => f.debug_tuple("Io").field(&"..").field(e).finish(),
        }
    }
}

/// Error from [`Connection::recv`](crate::Connection::recv) and
/// [`Connection::recv_bytes`](crate::Connection::recv_bytes).
///
/// After `WrongType`, `Decode` and `TooLarge` the offending message has been
/// consumed and the connection stays usable (except that a `WrongType`
/// involving a handle keeps the message in place: see
/// [`Connection::recv_handle`](crate::Connection::recv_handle)); `Disconnected` is final, and so
/// is an `Io` error that reports a broken stream.
///
/// # Examples
///
/// ```
/// use multiprocess::{Pipe, RecvError};
///
/// let (a, b) = Pipe::new::<u32, u32>()?;
/// a.send(7).unwrap();
/// drop(a);
/// assert_eq!(b.recv()?, 7);
/// assert!(matches!(b.recv(), Err(RecvError::Disconnected)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end is closed (or its process died) and every message it
    /// sent has been received: Python's `EOFError`.
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// The message was sent as a different type (or as raw bytes).
    #[error("expected a message of type {expected}, received {found}")]
    WrongType {
        /// The Rust type the receiver asked for.
        expected: &'static str,
        /// What arrived instead.
        found: &'static str,
    },
    /// The message is tagged with the right type but its bytes (or handles)
    /// do not decode as that type.
    #[error(transparent)]
    Decode(DecodeError),
    /// The incoming message is larger than this end's
    /// [`max_message_size`](crate::Connection::max_message_size); it was read
    /// and discarded.
    #[error("incoming message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The size the message header announced.
        size: u64,
        /// This end's limit in bytes.
        max: u64,
    },
    /// The operating system reported an error, or the stream is broken
    /// (descriptors lost to `RLIMIT_NOFILE`, a corrupt header).
    #[error("cannot receive: {0}")]
    Io(io::Error),
}

/// Error from [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into):
/// the [`RecvError`] cases that apply to raw bytes, plus `BufferTooShort`.
///
/// # Examples
///
/// ```
/// use multiprocess::{Pipe, RecvIntoError};
///
/// let (a, b) = Pipe::new::<(), ()>()?;
/// a.send_bytes(b"twelve bytes").unwrap();
/// let mut small = [0u8; 4];
/// match b.recv_bytes_into(&mut small) {
///     // Python: `except BufferTooShort as e: e.args[0]`
///     Err(RecvIntoError::BufferTooShort(message)) => assert_eq!(message, b"twelve bytes"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvIntoError {
    /// The message is longer than the buffer (Python's
    /// `multiprocessing.BufferTooShort`). It has been consumed and is here,
    /// whole; the buffer is untouched.
    #[error("a message of {} bytes does not fit the buffer", .0.len())]
    BufferTooShort(Vec<u8>),
    /// See [`RecvError::Disconnected`].
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// See [`RecvError::WrongType`]: the message was sent with `send` (it
    /// is consumed) or `send_handle` (it is kept).
    #[error("expected a message of type {expected}, received {found}")]
    WrongType {
        /// What the receiver asked for: raw bytes.
        expected: &'static str,
        /// What arrived instead.
        found: &'static str,
    },
    /// See [`RecvError::TooLarge`].
    #[error("incoming message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The size the message header announced.
        size: u64,
        /// This end's limit in bytes.
        max: u64,
    },
    /// See [`RecvError::Io`].
    #[error("cannot receive: {0}")]
    Io(io::Error),
}

impl RecvIntoError {
    /// The same failure of a raw-bytes receive (which never decodes, so a
    /// `Decode` cannot occur; it would be reported as `Io`).
    pub(crate) fn from_recv(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::WrongType { expected, found } => Self::WrongType { expected, found },
            RecvError::TooLarge { size, max } => Self::TooLarge { size, max },
            RecvError::Io(e) => Self::Io(e),
            RecvError::Decode(e) => Self::Io(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Error from [`Connection::recv_timeout`](crate::Connection::recv_timeout)
/// and [`Connection::recv_bytes_timeout`](crate::Connection::recv_bytes_timeout):
/// the [`RecvError`] cases plus `Timeout`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::{Pipe, RecvTimeoutError};
///
/// let (_a, b) = Pipe::new::<u32, u32>()?;
/// let err = b.recv_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, RecvTimeoutError::Timeout));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No whole message arrived in time. A partly received message is kept
    /// and the next receive continues it.
    #[error("timed out waiting on a connection")]
    Timeout,
    /// See [`RecvError::Disconnected`].
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// See [`RecvError::WrongType`].
    #[error("expected a message of type {expected}, received {found}")]
    WrongType {
        /// The Rust type the receiver asked for.
        expected: &'static str,
        /// What arrived instead.
        found: &'static str,
    },
    /// See [`RecvError::Decode`].
    #[error(transparent)]
    Decode(DecodeError),
    /// See [`RecvError::TooLarge`].
    #[error("incoming message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The size the message header announced.
        size: u64,
        /// This end's limit in bytes.
        max: u64,
    },
    /// See [`RecvError::Io`].
    #[error("cannot receive: {0}")]
    Io(io::Error),
}

/// Error from [`Connection::try_recv`](crate::Connection::try_recv): the
/// [`RecvError`] cases plus `Empty`.
///
/// # Examples
///
/// ```
/// use multiprocess::{Pipe, TryRecvError};
///
/// let (a, b) = Pipe::new::<u32, u32>()?;
/// assert!(matches!(b.try_recv(), Err(TryRecvError::Empty)));
/// a.send(1).unwrap();
/// assert_eq!(b.try_recv().unwrap(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No whole message is available right now. A partly received message is
    /// kept and the next receive continues it.
    #[error("receiving on an empty connection")]
    Empty,
    /// See [`RecvError::Disconnected`].
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// See [`RecvError::WrongType`].
    #[error("expected a message of type {expected}, received {found}")]
    WrongType {
        /// The Rust type the receiver asked for.
        expected: &'static str,
        /// What arrived instead.
        found: &'static str,
    },
    /// See [`RecvError::Decode`].
    #[error(transparent)]
    Decode(DecodeError),
    /// See [`RecvError::TooLarge`].
    #[error("incoming message of {size} bytes exceeds the maximum message size of {max} bytes")]
    TooLarge {
        /// The size the message header announced.
        size: u64,
        /// This end's limit in bytes.
        max: u64,
    },
    /// See [`RecvError::Io`].
    #[error("cannot receive: {0}")]
    Io(io::Error),
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::WrongType { expected, found } => Self::WrongType { expected, found },
            RecvError::Decode(e) => Self::Decode(e),
            RecvError::TooLarge { size, max } => Self::TooLarge { size, max },
            RecvError::Io(e) => Self::Io(e),
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => Self::Disconnected,
            RecvError::WrongType { expected, found } => Self::WrongType { expected, found },
            RecvError::Decode(e) => Self::Decode(e),
            RecvError::TooLarge { size, max } => Self::TooLarge { size, max },
            RecvError::Io(e) => Self::Io(e),
        }
    }
}

/// The authentication handshake of a [`Listener`](crate::Listener) and
/// [`Client`](crate::Client) failed (Python's
/// `multiprocessing.AuthenticationError`).
///
/// # Examples
///
/// ```
/// use multiprocess::{AcceptError, AuthenticationError, Client, ConnectError, Listener};
///
/// let listener = Listener::<(), ()>::bind("127.0.0.1:0", Some(b"right"))?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || Client::connect::<(), ()>(address, Some(b"wrong")));
/// assert!(matches!(
///     listener.accept(),
///     Err(AcceptError::Authentication(AuthenticationError::WrongDigest))
/// ));
/// assert!(matches!(
///     client.join().unwrap(),
///     Err(ConnectError::Authentication(AuthenticationError::Rejected))
/// ));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthenticationError {
    /// The peer answered our challenge with the wrong digest: its key is
    /// not ours (or it replayed an answer to another challenge).
    #[error("digest received was wrong")]
    WrongDigest,
    /// The peer rejected the digest we sent: our key is not its key.
    #[error("digest sent was rejected")]
    Rejected,
    /// The peer sent something that is not part of the handshake.
    #[error("authentication protocol error: {0}")]
    Protocol(String),
    /// The peer said nothing for longer than the handshake timeout.
    #[error("timed out waiting for the peer's authentication message")]
    Timeout,
    /// The peer closed the connection during the handshake.
    #[error("the peer closed the connection during authentication")]
    Disconnected,
}

/// Error from [`Listener::accept`](crate::Listener::accept) and
/// [`Listener::accept_timeout`](crate::Listener::accept_timeout).
///
/// After `Authentication` (and `Timeout`) the listener stays usable; the
/// failed connection is closed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::{AcceptError, Listener};
///
/// let listener = Listener::<(), ()>::bind("127.0.0.1:0", None)?;
/// let err = listener.accept_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(matches!(err, AcceptError::Timeout));
/// listener.close();
/// assert!(matches!(listener.accept(), Err(AcceptError::Closed)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// No client connected in time.
    #[error("timed out waiting for a connection")]
    Timeout,
    /// The listener was closed (Python's `OSError` on a closed listener).
    #[error("the listener is closed")]
    Closed,
    /// A client connected but failed the authentication handshake.
    #[error(transparent)]
    Authentication(AuthenticationError),
    /// The operating system reported an error.
    #[error("cannot accept: {0}")]
    Io(io::Error),
}

/// Error from [`Client::connect`](crate::Client::connect).
///
/// # Examples
///
/// ```
/// use multiprocess::{Client, ConnectError};
///
/// // Nothing listens on this abstract name.
/// let err = Client::connect::<(), ()>("\0multiprocess-doc-nobody", None).unwrap_err();
/// assert!(matches!(err, ConnectError::Io(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The listener was reached but the authentication handshake failed.
    #[error(transparent)]
    Authentication(AuthenticationError),
    /// The address cannot be reached (nothing listens there, refused, …) or
    /// another OS error.
    #[error("cannot connect: {0}")]
    Io(io::Error),
}
