//! Descriptor utilities shared by the other `sys` modules: close-on-exec
//! control, waiting for readiness with a deadline, and the open-file count
//! and limit.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

/// Readiness that [`wait_readable`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// Data (or EOF, or an error to read) is waiting.
    Readable,
    /// The deadline passed first.
    TimedOut,
}

/// Converts an optional deadline into a poll timeout (`None` blocks).
pub(crate) fn timespec_until(deadline: Option<Instant>) -> Option<Timespec> {
    deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    })
}

/// Waits until one of `fds` is readable (or hung up), or `deadline` passes.
/// Returns the index of a ready descriptor. EINTR is retried with the
/// remaining time.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn wait_any_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Option<usize>> {
    loop {
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let timeout = timespec_until(deadline);
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
            }
            Ok(_) => {
                return Ok(polls.iter().position(|p| !p.revents().is_empty()));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `fd` is readable (or hung up), or `deadline` passes.
pub(crate) fn wait_readable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<Ready> {
    Ok(match wait_any_readable(&[fd.as_fd()], deadline)? {
        Some(_) => Ready::Readable,
        None => Ready::TimedOut,
    })
}

/// Sets or clears close-on-exec on `fd`.
pub(crate) fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let mut flags = rustix::io::fcntl_getfd(&fd)?;
    flags.set(rustix::io::FdFlags::CLOEXEC, on);
    rustix::io::fcntl_setfd(&fd, flags)?;
    Ok(())
}

/// A non-blocking, close-on-exec pipe `(read, write)` used to wake a thread
/// that polls its read end beside other descriptors ([`poke`] writes to it).
pub(crate) fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )?)
}

/// Makes a [`wake_pipe`]'s read end readable; a full pipe is already
/// readable, so a failed write is fine.
pub(crate) fn poke(write_end: impl AsFd) {
    let _ = rustix::io::write(write_end, &[1]);
}

/// Empties a [`wake_pipe`]'s read end (it is non-blocking), so that it is
/// readable again only after the next [`poke`].
pub(crate) fn drain(read_end: impl AsFd) {
    let mut buf = [0u8; 64];
    while matches!(rustix::io::read(&read_end, &mut buf[..]), Ok(n) if n > 0) {}
}

/// How many descriptors this process has open (the entries of
/// `/proc/self/fd`, less the one the listing itself uses).
pub(crate) fn open_count() -> io::Result<u64> {
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

/// This process's `RLIMIT_NOFILE`: `(soft, hard)`, `None` for unlimited.
pub(crate) fn open_limit() -> (Option<u64>, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (limit.current, limit.maximum)
}
