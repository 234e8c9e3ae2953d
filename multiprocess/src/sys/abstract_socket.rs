//! Unix stream sockets in Linux's abstract namespace, and the process-tree
//! queries the shared-memory tracker uses to find its address.
//!
//! An abstract address is a name, not a file: nothing is left behind when
//! the listener dies, which suits a helper that must not leak. Anyone in the
//! network namespace can connect, so both ends check the peer's uid.
//!
//! # References
//! - [`unix(7)`, abstract sockets and `SO_PEERCRED`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

fn address(name: &str) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new_abstract_name(name.as_bytes())?)
}

fn stream_socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A listening socket bound to abstract name `name`; `AddrInUse` if taken.
pub(crate) fn listen(name: &str) -> io::Result<OwnedFd> {
    let fd = stream_socket()?;
    rustix::net::bind(&fd, &address(name)?)?;
    rustix::net::listen(&fd, 128)?;
    Ok(fd)
}

/// A socket connected to abstract name `name`; `ConnectionRefused` if no
/// one listens there.
pub(crate) fn connect(name: &str) -> io::Result<OwnedFd> {
    let fd = stream_socket()?;
    rustix::net::connect(&fd, &address(name)?)?;
    Ok(fd)
}

/// Accepts one pending connection (close-on-exec).
pub(crate) fn accept(listener: impl AsFd) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(&listener, SocketFlags::CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Accepts one pending connection if there is one, without waiting.
pub(crate) fn accept_nonblocking(listener: impl AsFd) -> io::Result<Option<OwnedFd>> {
    // Only called after poll reported the listener readable, or harmlessly
    // when it did not: a blocking listener would wait, so check first.
    match super::fd::wait_readable(&listener, Some(std::time::Instant::now()))? {
        super::fd::Ready::Readable => accept(listener).map(Some),
        _ => Ok(None),
    }
}

/// Reads what is available without waiting: `None` if nothing is, `Some(0)`
/// at end of stream.
pub(crate) fn read_nonblocking(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::net::recv(&sock, &mut *buf, RecvFlags::DONTWAIT) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Ok(None),
            r => return Ok(Some(r?.0)),
        }
    }
}

/// The uid of the process at the other end of `sock` (`SO_PEERCRED`).
pub(crate) fn peer_uid(sock: impl AsFd) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(sock)?.uid.as_raw())
}

/// This process's real uid.
pub(crate) fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Reads what is available (blocking until something is): 0 at end of stream.
pub(crate) fn read_some(sock: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(&sock, &mut *buf, RecvFlags::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?.0),
        }
    }
}

/// Writes all of `bytes` (`MSG_NOSIGNAL`: a closed peer is `BrokenPipe`, not
/// `SIGPIPE`).
pub(crate) fn send_all(sock: impl AsFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(&sock, bytes, SendFlags::NOSIGNAL) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
        }
    }
    Ok(())
}

/// The parent of process `pid` (from `/proc/<pid>/stat`), if readable.
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The (device, inode) of the executable process `pid` runs, if readable.
pub(crate) fn exe_of(pid: u32) -> Option<(u64, u64)> {
    let st = rustix::fs::stat(format!("/proc/{pid}/exe").as_str()).ok()?;
    Some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "abstract Unix sockets and SO_PEERCRED; Miri emulates neither"
    )]
    fn listen_connect_accept_and_credentials() {
        let name = format!("multiprocess-test-{}", std::process::id());
        let l = listen(&name).unwrap();
        assert_eq!(listen(&name).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        let c = connect(&name).unwrap();
        let s = accept(&l).unwrap();
        assert_eq!(peer_uid(&s).unwrap(), own_uid());
        send_all(&c, b"hi").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read_some(&s, &mut buf).unwrap(), 2);
        drop(l);
        assert_eq!(
            connect(&name).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "abstract Unix sockets and SO_PEERCRED; Miri emulates neither"
    )]
    fn process_tree_queries() {
        let me = std::process::id();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
        assert_eq!(exe_of(me), crate::sys::code::exe_identity().ok());
    }
}
