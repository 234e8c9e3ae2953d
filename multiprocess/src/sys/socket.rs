//! Unix stream sockets with descriptor passing (`SCM_RIGHTS`).
//!
//! (Interim version used by the process bootstrap; the connection work
//! replaces it with the full set.)

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// Most descriptors one message may carry.
pub(crate) const MAX_FDS: usize = 253;

/// A connected pair of `AF_UNIX` stream sockets, close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends `bufs` with `fds` attached (`MSG_NOSIGNAL`). Returns bytes sent,
/// which may be fewer than asked for.
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors in one message"));
    }
    loop {
        match rustix::net::sendmsg(fd, bufs, &mut control, SendFlags::NOSIGNAL) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Receives into `buf`, appending received descriptors to `fds`
/// (`MSG_CMSG_CLOEXEC`). Returns 0 at EOF.
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            fd,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::other("descriptors were truncated in transit"));
    }
    Ok(msg.bytes)
}

/// Sends all of `bytes` with `fds` attached to the first chunk.
pub(crate) fn send_all_with_fds(
    fd: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let fd = fd.as_fd();
    let mut sent = send_with_fds(fd, &[IoSlice::new(bytes)], fds)?;
    while sent < bytes.len() {
        sent += send_with_fds(fd, &[IoSlice::new(&bytes[sent..])], &[])?;
    }
    Ok(())
}

/// Fills `buf` completely, collecting descriptors. `UnexpectedEof` if the
/// peer closes first.
pub(crate) fn recv_exact_with_fds(
    fd: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = recv_with_fds(fd.as_fd(), &mut buf[got..], fds)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}
