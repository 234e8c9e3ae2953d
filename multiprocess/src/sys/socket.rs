//! Unix stream sockets with descriptor passing: the transport under
//! [`Connection`](crate::Connection).
//!
//! Each function wraps one syscall through `rustix`, retries `EINTR` in
//! [`retry`] (the one place that does), and speaks `OwnedFd`/`BorrowedFd`.
//! Descriptors received with `SCM_RIGHTS` are close-on-exec
//! (`MSG_CMSG_CLOEXEC`), and a truncated control message (`MSG_CTRUNC`,
//! typically the receiver at its `RLIMIT_NOFILE`) is reported as an error
//! rather than silently dropping descriptors.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

pub(crate) use rustix::net::Shutdown;

/// Most descriptors one `sendmsg` may carry on Linux (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// Control-message space for [`MAX_FDS`] descriptors.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// The error [`recv_with_fds`] reports for `MSG_CTRUNC` (test with
/// [`is_fds_truncated`]).
#[derive(Debug)]
pub(crate) struct FdsTruncated;

impl std::fmt::Display for FdsTruncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "descriptors passed with a message were lost (MSG_CTRUNC): \
             is the process at its open-file limit (RLIMIT_NOFILE)?",
        )
    }
}

impl std::error::Error for FdsTruncated {}

/// Whether `e` is [`FdsTruncated`]: bytes were consumed and descriptors lost,
/// so the stream is out of sync.
pub(crate) fn is_fds_truncated(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<FdsTruncated>())
}

/// Whether a socket call may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Block until the call can make progress (unless the descriptor was made
    /// non-blocking by someone else, in which case `WouldBlock` is returned).
    Block,
    /// `MSG_DONTWAIT`: return `WouldBlock` at once if nothing can be done.
    NoWait,
}

/// Runs `f` until it does not fail with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// A connected pair of close-on-exec `AF_UNIX` `SOCK_STREAM` sockets.
///
/// # References
/// - [`socketpair(2)`](https://man7.org/linux/man-pages/man2/socketpair.2.html)
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    retry(|| {
        rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
    })
}

/// Sends the bytes of `iov` (possibly only a prefix: the count is returned)
/// with `fds` attached as `SCM_RIGHTS` to the first byte. `MSG_NOSIGNAL`: a
/// closed peer gives `EPIPE` (`BrokenPipe`), never `SIGPIPE`.
///
/// At most [`MAX_FDS`] descriptors; more is an `InvalidInput` error.
///
/// # References
/// - [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html)
/// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    wait: Wait,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message can carry at most {MAX_FDS} descriptors, this one has {}",
                fds.len()
            ),
        ));
    }
    let mut flags = SendFlags::NOSIGNAL;
    if wait == Wait::NoWait {
        flags |= SendFlags::DONTWAIT;
    }
    if fds.is_empty() {
        return retry(|| rustix::net::sendmsg(fd, iov, &mut SendAncillaryBuffer::default(), flags));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
    debug_assert!(pushed, "control buffer sized for MAX_FDS");
    retry(|| rustix::net::sendmsg(fd, iov, &mut control, flags))
}

/// Receives up to `buf.len()` bytes; descriptors that arrive with them are
/// appended to `fds` (close-on-exec). Returns the byte count; 0 means the peer
/// shut down its sending side (EOF). A truncated control message is an error
/// ([`FdsTruncated`]), and the bytes read by that call are lost, so the caller must
/// treat the stream as broken.
///
/// # References
/// - [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html)
/// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html) (`SCM_RIGHTS`)
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    wait: Wait,
) -> io::Result<usize> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if wait == Wait::NoWait {
        flags |= RecvFlags::DONTWAIT;
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = retry(|| rustix::net::recvmsg(fd, &mut iov, &mut control, flags))?;
    let before = fds.len();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        // Close whatever did arrive: the message they belong to is incomplete.
        fds.truncate(before);
        return Err(io::Error::other(FdsTruncated));
    }
    Ok(msg.bytes)
}

/// Receives up to `max` bytes into the spare capacity of `buf` (no
/// descriptors: use it only where the stream position guarantees none are
/// attached), extending its length. Returns the count; 0 is EOF.
///
/// # References
/// - [`recv(2)`](https://man7.org/linux/man-pages/man2/recv.2.html)
pub(crate) fn recv_into_spare(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    wait: Wait,
) -> io::Result<usize> {
    let flags = match wait {
        Wait::Block => RecvFlags::empty(),
        Wait::NoWait => RecvFlags::DONTWAIT,
    };
    let spare = buf.spare_capacity_mut();
    let take = spare.len().min(max);
    let spare = &mut spare[..take];
    let n = retry(|| rustix::net::recv(fd, &mut *spare, flags).map(|((init, _), _)| init.len()))?;
    let len = buf.len() + n;
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity
    // (it returned them as the initialised part), and `n <= take <= spare
    // capacity`, so `len <= capacity` and every byte below `len` is initialised.
    unsafe { buf.set_len(len) };
    Ok(n)
}

/// Shuts down one or both directions of the socket (for every process that
/// shares it, unlike `close`).
///
/// # References
/// - [`shutdown(2)`](https://man7.org/linux/man-pages/man2/shutdown.2.html)
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    retry(|| rustix::net::shutdown(fd, how))
}

/// Waits until `fd` is writable or hung up (only needed when someone made a
/// shared descriptor non-blocking). EINTR is retried.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut polls = [PollFd::new(&fd, PollFlags::OUT)];
    retry(|| rustix::event::poll(&mut polls, None)).map(drop)
}

/// Waits until `fd` is readable (data, end of stream or an error to read),
/// or `deadline` passes (`None`: no deadline; a past deadline checks once).
/// Returns whether it is readable. Unlike `fd::wait_readable` it allocates
/// nothing, for the per-message receive path. EINTR is retried with the
/// remaining time.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let mut polls = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = crate::sys::fd::timespec_until(deadline);
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the peer of a connected stream socket has closed its end
/// (`POLLHUP` or `POLLERR`, without waiting). A peer that only shut down its
/// sending side does not count.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn peer_closed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut polls = [PollFd::new(&fd, PollFlags::empty())];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    retry(|| rustix::event::poll(&mut polls, Some(&zero)))?;
    Ok(polls[0]
        .revents()
        .intersects(PollFlags::HUP | PollFlags::ERR))
}

/// Sends all of `bytes` (blocking), with `fds` attached to the first chunk.
pub(crate) fn send_all_with_fds(
    fd: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let fd = fd.as_fd();
    let mut sent = send_with_fds(fd, &[IoSlice::new(bytes)], fds, Wait::Block)?;
    while sent < bytes.len() {
        sent += send_with_fds(fd, &[IoSlice::new(&bytes[sent..])], &[], Wait::Block)?;
    }
    Ok(())
}

/// Fills `buf` completely (blocking), collecting descriptors into `fds`.
/// `UnexpectedEof` if the peer closes first.
pub(crate) fn recv_exact_with_fds(
    fd: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = recv_with_fds(fd.as_fd(), &mut buf[got..], fds, Wait::Block)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

/// The address of a Linux abstract Unix socket (`"\0name"` in Python): a
/// name in the kernel's namespace, with no file, gone with its last socket.
///
/// # References
/// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html) ("Abstract sockets")
pub(crate) fn abstract_addr(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// Accepts one pending connection on a non-blocking listening socket,
/// close-on-exec and blocking: `WouldBlock` if none is pending. EINTR is
/// retried.
///
/// # References
/// - [`accept4(2)`](https://man7.org/linux/man-pages/man2/accept4.2.html)
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    retry(|| rustix::net::accept_with(listener, SocketFlags::CLOEXEC))
}

/// Where [`listen`] binds.
pub(crate) enum ListenAddr<'a> {
    /// A TCP address.
    Tcp(&'a std::net::SocketAddr),
    /// A Unix socket at a path.
    Path(&'a std::path::Path),
    /// A Linux abstract Unix socket name (without the leading NUL).
    Abstract(&'a [u8]),
}

/// A close-on-exec, non-blocking stream socket bound to `addr` and
/// listening with the largest backlog the system allows. For TCP it sets
/// `SO_REUSEADDR` first, as `std::net::TcpListener::bind` does. std listens
/// with a backlog of 128, which a burst of clients overflows; here the
/// backlog asked for is `i32::MAX`, which Linux caps at
/// `/proc/sys/net/core/somaxconn` (4096 by default since 5.4).
///
/// # References
/// - [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html)
/// - [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html)
/// - [`listen(2)`](https://man7.org/linux/man-pages/man2/listen.2.html) (the `somaxconn` cap)
pub(crate) fn listen(addr: ListenAddr<'_>) -> io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = match addr {
        ListenAddr::Tcp(a) => {
            let family = if a.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
            rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, a)?;
            fd
        }
        ListenAddr::Path(p) => {
            let fd =
                rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
            rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(p)?)?;
            fd
        }
        ListenAddr::Abstract(name) => {
            let fd =
                rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
            rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new_abstract_name(name)?)?;
            fd
        }
    };
    rustix::net::listen(&fd, i32::MAX)?;
    Ok(fd)
}

/// Waits until at least one of `fds` is readable (data, end of stream, a
/// pending connection, or an error to read), or `deadline` passes (`None`: no
/// deadline; a past deadline checks once). On return `ready[i]` tells
/// whether `fds[i]` is; the result is whether any is. EINTR is retried with
/// the remaining time.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn poll_readable_many(
    fds: &[BorrowedFd<'_>],
    ready: &mut Vec<bool>,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    loop {
        let timeout = crate::sys::fd::timespec_until(deadline);
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ready.clear();
    ready.extend(polls.iter().map(|p| !p.revents().is_empty()));
    Ok(ready.iter().any(|&r| r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "socketpair with SCM_RIGHTS and poll; Miri does not emulate descriptor passing"
    )]
    fn bytes_and_fds_travel() {
        let (a, b) = socketpair().unwrap();
        let extra = std::fs::File::open("/dev/null").unwrap();
        let n = send_with_fds(
            a.as_fd(),
            &[IoSlice::new(b"hi "), IoSlice::new(b"there")],
            &[extra.as_fd()],
            Wait::Block,
        )
        .unwrap();
        assert_eq!(n, 8);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, Wait::Block).unwrap();
        assert_eq!(&buf[..n], b"hi there");
        assert_eq!(fds.len(), 1);
        let flags = rustix::io::fcntl_getfd(&fds[0]).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "socketpair with SCM_RIGHTS and poll; Miri does not emulate descriptor passing"
    )]
    fn closed_peer_is_epipe_and_eof() {
        let (a, b) = socketpair().unwrap();
        drop(b);
        let err = send_with_fds(a.as_fd(), &[IoSlice::new(b"x")], &[], Wait::Block).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let (a, b) = socketpair().unwrap();
        drop(a);
        let mut buf = [0u8; 4];
        assert_eq!(
            recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), Wait::Block).unwrap(),
            0
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "socketpair with SCM_RIGHTS and poll; Miri does not emulate descriptor passing"
    )]
    fn nowait_would_block_and_spare_capacity() {
        let (a, b) = socketpair().unwrap();
        let mut buf = [0u8; 4];
        let err = recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), Wait::NoWait).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        send_with_fds(a.as_fd(), &[IoSlice::new(b"abcdef")], &[], Wait::Block).unwrap();
        let mut v = Vec::with_capacity(10);
        assert_eq!(
            recv_into_spare(b.as_fd(), &mut v, 4, Wait::Block).unwrap(),
            4
        );
        assert_eq!(v, b"abcd");
        assert_eq!(
            recv_into_spare(b.as_fd(), &mut v, 100, Wait::Block).unwrap(),
            2
        );
        assert_eq!(v, b"abcdef");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "socketpair with SCM_RIGHTS and poll; Miri does not emulate descriptor passing"
    )]
    fn shutdown_write_gives_peer_eof() {
        let (a, b) = socketpair().unwrap();
        shutdown(a.as_fd(), Shutdown::Write).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new(), Wait::Block).unwrap(),
            0
        );
        let err = send_with_fds(a.as_fd(), &[IoSlice::new(b"x")], &[], Wait::Block).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
