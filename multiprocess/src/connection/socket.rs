//! The socket-only transport of a connection made by a
//! [`Listener`](super::Listener) and a [`Client`](super::Client): a
//! connected TCP or Unix stream socket and nothing else (there is no shared
//! memory to put rings in).
//!
//! Implements, for [`Connection`](super::Connection): every message is one
//! socket frame ([`frame`]), sent whole under the send lock
//! and received as the next frame on the socket; a receive does not spin,
//! it sleeps in `poll` at once. Descriptors ride the frames as
//! `SCM_RIGHTS` over a Unix socket; over TCP they cannot travel, and a
//! message carrying any is refused.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::frame;
use super::{RxState, Tx, frame_header};
use crate::sys::socket;

/// What kind of socket a socket-only connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// A Unix socket: descriptors travel.
    Unix,
    /// A TCP socket: descriptors do not cross machines.
    Tcp,
}

/// One end of a socket-only connection.
pub(super) struct SocketTransport {
    fd: OwnedFd,
    family: Family,
}

impl SocketTransport {
    pub(super) fn new(fd: OwnedFd, family: Family) -> Self {
        SocketTransport { fd, family }
    }

    /// The socket.
    #[inline]
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The socket's family.
    pub(super) fn family(&self) -> Family {
        self.family
    }

    /// Whether descriptors can travel: over a Unix socket, not over TCP.
    pub(super) fn carries_fds(&self) -> bool {
        self.family == Family::Unix
    }

    /// Sends one message as one frame, with the send lock held.
    pub(super) fn send(
        &self,
        tx: &mut Tx,
        tag: u64,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        tx.check_broken()?;
        tx.check_peer(self.fd())?;
        let header = frame_header(tag, payload, fds)?;
        if !fds.is_empty() && !self.carries_fds() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptors cannot travel over a TCP connection",
            ));
        }
        frame::send_frame(self.fd(), &header, payload, fds, &mut tx.broken)
    }

    /// Whether something received is waiting to be delivered: buffered
    /// bytes (a whole or partial frame).
    pub(super) fn buffered(&self, st: &RxState) -> bool {
        !st.rx.is_empty()
    }

    /// Whether a message can be received without waiting (see
    /// [`Connection::poll`](super::Connection::poll)), waiting until
    /// `deadline`: buffered bytes, or a readable socket.
    pub(super) fn poll(&self, st: &RxState, deadline: Option<Instant>) -> io::Result<bool> {
        Ok(self.buffered(st) || socket::poll_readable(self.fd(), deadline)?)
    }
}
