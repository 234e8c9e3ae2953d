//! [`wait`]: block until any of several connections, processes, listeners
//! or queues is ready (Python's `multiprocessing.connection.wait`).
//!
//! # How a connection's readiness is seen
//!
//! A [`Pipe`](crate::Pipe)'s small messages travel through shared-memory
//! rings and do not make its socket readable. `wait` therefore uses the
//! ring's sleep protocol, as a receiving `recv` does: it takes the
//! connection's receive lock (so no other receiver can clear the flag),
//! checks the ring, announces in the ring that the receiver sleeps, checks
//! again (the announcement and the sender's publication are ordered by a
//! `SeqCst` fence on each side, so one of them sees the other), and sleeps
//! in `poll(2)` on all the sockets at once. A sender that publishes a
//! record and sees the announcement writes a doorbell frame on the socket,
//! which wakes the `poll`; large messages and end-of-stream arrive on the
//! socket anyway. A connection that another thread is receiving on (its
//! lock is taken) is re-checked every [`BUSY_RECHECK`] instead.
//!
//! A process is ready when its pidfd is readable (it has exited); a
//! listener when a client is waiting to be accepted. A [`Queue`] has no
//! descriptor: it is re-checked (`is_empty`) every [`QUEUE_RECHECK`], so a
//! queue's readiness is seen up to that late.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::RxState;
use crate::sys::{fd, socket};
use crate::{Connection, Listener, Process, Queue, deadline};

/// How often `wait` re-checks a queue (which has no descriptor to sleep on).
pub(crate) const QUEUE_RECHECK: Duration = Duration::from_millis(2);

/// How often `wait` re-checks a connection that another thread is receiving
/// on.
pub(crate) const BUSY_RECHECK: Duration = Duration::from_millis(10);

/// Something [`wait`] can wait for: a [`Connection`] (a message or end of
/// stream to receive), a [`Process`] (it has exited), a [`Listener`] (a
/// client to accept), a [`Queue`] (an item to get), or any descriptor as a
/// [`BorrowedFd`] (readable: Python's `wait` on a raw socket or `fileno()`).
///
/// Sealed: it is implemented by this crate's types (and `BorrowedFd`) only.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use multiprocess::{Pipe, Queue, Waitable, wait};
///
/// let (a, b) = Pipe::new::<u8, u8>()?;
/// let queue = Queue::<u8>::new()?;
/// let (reader, mut writer) = std::os::unix::net::UnixStream::pair()?;
/// let objects: [&dyn Waitable; 3] = [&b, &queue, &reader.as_fd()];
/// queue.put(1).unwrap();
/// std::io::Write::write_all(&mut writer, b"x")?;
/// assert_eq!(wait(&objects, Some(Duration::from_secs(5)))?, [1, 2]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Waitable: sealed::Sealed {}

mod sealed {
    /// The crate-private side of [`Waitable`](super::Waitable).
    pub trait Sealed {
        /// What `wait` checks and sleeps on for this object.
        fn entry(&self) -> Entry<'_>;
    }

    /// One object's part in a `wait`.
    pub struct Entry<'a>(pub(crate) Box<dyn super::Source + 'a>);
}

use sealed::Entry;

/// One waited-for object, as `wait` sees it.
pub(crate) trait Source {
    /// Whether the object is ready now, without blocking.
    fn ready(&mut self) -> io::Result<bool>;
    /// Announces that the waiter is about to sleep (the caller then checks
    /// [`ready`](Source::ready) again before sleeping).
    fn arm(&mut self) {}
    /// Withdraws [`arm`](Source::arm).
    fn disarm(&mut self) {}
    /// The descriptor whose readability wakes the waiter, if any.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// The longest the waiter may sleep before checking this object again
    /// (for objects that have no descriptor, or cannot use it now).
    fn recheck(&self) -> Option<Duration> {
        None
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes, and
/// returns the indices of the ready ones, in order (Python's
/// `multiprocessing.connection.wait`, which returns the objects).
///
/// `timeout: None` waits as long as it takes; a timeout returns an empty
/// list after at least `timeout`; `Some(Duration::ZERO)` only checks.
///
/// Ready means: for a [`Connection`], that a receive would not block (a
/// message, or end of stream: the peer closed); for a [`Process`], that it
/// has exited and its exit code is known, so [`Process::is_alive`] is false
/// and [`Process::exitcode`] set (Python's `sentinel`); for a [`Listener`], that a client is
/// waiting to be accepted; for a [`Queue`], that it holds an item (another
/// consumer may take it first); for a [`BorrowedFd`], that it is readable
/// (or hung up). Nothing is consumed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiprocess::{Pipe, wait};
///
/// let (a1, b1) = Pipe::new::<u8, u8>()?;
/// let (a2, b2) = Pipe::new::<String, String>()?;
/// assert!(wait(&[&b1, &b2], Some(Duration::ZERO))?.is_empty());
/// a2.send("ready".into()).unwrap();
/// assert_eq!(wait(&[&b1, &b2], None)?, [1]);
/// assert_eq!(b2.recv().unwrap(), "ready");
/// drop(a1); // end of stream counts as ready
/// assert_eq!(wait(&[&b1, &b2], Some(Duration::from_secs(5)))?, [0]);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// If `poll(2)` fails, or a [`Process`] in the list was never started
/// (`InvalidInput`, Python's `ValueError`).
///
/// # Caveats
///
/// - While `wait` runs it holds the receive lock of each connection it
///   checks, so a `recv` on one of them from another thread waits for `wait`
///   to return; a connection that was already receiving in another thread
///   is checked every 10 ms instead (its receiver may take the message).
/// - A [`Queue`] is checked every 2 ms: it has no
///   descriptor to sleep on.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let deadline = timeout.and_then(deadline::after);
    let mut entries: Vec<Entry<'_>> = objects.iter().map(|o| o.entry()).collect();
    loop {
        let ready = check(&mut entries)?;
        if !ready.is_empty() {
            return Ok(ready);
        }
        for Entry(e) in &mut entries {
            e.arm();
        }
        let result = sleep(&mut entries, deadline);
        for Entry(e) in &mut entries {
            e.disarm();
        }
        match result? {
            Slept::Ready(ready) => return Ok(ready),
            Slept::TimedOut => return Ok(Vec::new()),
            Slept::Woken => {}
        }
    }
}

enum Slept {
    Ready(Vec<usize>),
    TimedOut,
    Woken,
}

/// With every entry armed: checks once more, then sleeps on the
/// descriptors until one is readable, a re-check is due, or `deadline`.
fn sleep(entries: &mut [Entry<'_>], deadline: Option<Instant>) -> io::Result<Slept> {
    let ready = check(entries)?;
    if !ready.is_empty() {
        return Ok(Slept::Ready(ready));
    }
    let now = Instant::now();
    if deadline.is_some_and(|d| now >= d) {
        return Ok(Slept::TimedOut);
    }
    let recheck = entries.iter().filter_map(|Entry(e)| e.recheck()).min();
    let until = match (deadline, recheck.map(|r| now + r)) {
        (Some(d), Some(r)) => Some(d.min(r)),
        (d, r) => d.or(r),
    };
    let fds: Vec<BorrowedFd<'_>> = entries.iter().filter_map(|Entry(e)| e.fd()).collect();
    fd::wait_any_readable(&fds, until)?;
    Ok(Slept::Woken)
}

/// The indices of the entries that are ready now.
fn check(entries: &mut [Entry<'_>]) -> io::Result<Vec<usize>> {
    let mut ready = Vec::new();
    for (i, Entry(e)) in entries.iter_mut().enumerate() {
        if e.ready()? {
            ready.push(i);
        }
    }
    Ok(ready)
}

// ---- connections ----

struct ConnSource<'a, S, R> {
    conn: &'a Connection<S, R>,
    /// The receive lock, once taken (held until `wait` returns).
    guard: Option<MutexGuard<'a, RxState>>,
}

impl<S, R> Source for ConnSource<'_, S, R> {
    fn ready(&mut self) -> io::Result<bool> {
        if self.guard.is_none() {
            match self.conn.try_lock_rx() {
                Some(g) => self.guard = Some(g),
                None => return Ok(false),
            }
        }
        let st = self.guard.as_mut().expect("just taken");
        self.conn.ready_locked(st)
    }

    fn arm(&mut self) {
        if self.guard.is_some() {
            self.conn.set_sleeping();
        }
    }

    fn disarm(&mut self) {
        if self.guard.is_some() {
            self.conn.clear_sleeping();
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.guard.as_ref().map(|_| self.conn.as_fd())
    }

    fn recheck(&self) -> Option<Duration> {
        self.guard.is_none().then_some(BUSY_RECHECK)
    }
}

impl<S, R> sealed::Sealed for Connection<S, R> {
    fn entry(&self) -> Entry<'_> {
        Entry(Box::new(ConnSource {
            conn: self,
            guard: None,
        }))
    }
}

impl<S, R> Waitable for Connection<S, R> {}

// ---- processes ----

struct ProcessSource<'a> {
    process: &'a Process,
    pidfd: Option<Arc<OwnedFd>>,
    /// Set while the child has exited but its exit status has not arrived
    /// (a fork server reports it on its status channel, a moment after the
    /// pidfd turns readable): the descriptor to sleep on meanwhile.
    reporting: Option<Arc<dyn AsFd + Send + Sync>>,
}

impl Source for ProcessSource<'_> {
    fn ready(&mut self) -> io::Result<bool> {
        if self.process.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wait: the process object is closed",
            ));
        }
        if self.pidfd.is_none() {
            match self.process.sentinel() {
                Some(pidfd) => self.pidfd = Some(pidfd),
                // Started and no longer running: it has exited.
                None if self.process.pid().is_some() => return Ok(true),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "wait: a process that was not started has no sentinel",
                    ));
                }
            }
        }
        let pidfd = self.pidfd.as_ref().expect("just set");
        if fd::wait_readable(pidfd.as_ref(), Some(Instant::now()))? == fd::Ready::TimedOut {
            return Ok(false);
        }
        // Exited: ready once `is_alive` agrees (its exit status is known, or
        // known to be lost), so a caller never sees a ready process that
        // still looks alive.
        if !self.process.is_alive() {
            return Ok(true);
        }
        self.reporting = self.process.status_fd();
        Ok(self.reporting.is_none())
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.reporting {
            Some(channel) => Some(channel.as_fd()),
            None => self.pidfd.as_ref().map(|p| p.as_fd()),
        }
    }

    fn recheck(&self) -> Option<Duration> {
        // Another thread may take the report off the channel first (into
        // the table `is_alive` reads): look again soon.
        self.reporting.as_ref().map(|_| STATUS_RECHECK)
    }
}

/// How often `wait` re-checks a fork-server child that has exited while its
/// exit status is on the way.
const STATUS_RECHECK: Duration = Duration::from_millis(5);

impl sealed::Sealed for Process {
    fn entry(&self) -> Entry<'_> {
        Entry(Box::new(ProcessSource {
            process: self,
            pidfd: None,
            reporting: None,
        }))
    }
}

impl Waitable for Process {}

// ---- listeners and raw descriptors ----

struct FdSource<'a>(BorrowedFd<'a>);

impl Source for FdSource<'_> {
    fn ready(&mut self) -> io::Result<bool> {
        socket::poll_readable(self.0, Some(Instant::now()))
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0)
    }
}

impl<S, R> sealed::Sealed for Listener<S, R> {
    fn entry(&self) -> Entry<'_> {
        Entry(Box::new(FdSource(self.as_fd())))
    }
}

impl<S, R> Waitable for Listener<S, R> {}

impl sealed::Sealed for BorrowedFd<'_> {
    fn entry(&self) -> Entry<'_> {
        Entry(Box::new(FdSource(*self)))
    }
}

impl Waitable for BorrowedFd<'_> {}

// ---- queues ----

struct QueueSource<'a, T>(&'a Queue<T>);

impl<T> Source for QueueSource<'_, T> {
    fn ready(&mut self) -> io::Result<bool> {
        Ok(!self.0.is_empty())
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn recheck(&self) -> Option<Duration> {
        Some(QUEUE_RECHECK)
    }
}

impl<T> sealed::Sealed for Queue<T> {
    fn entry(&self) -> Entry<'_> {
        Entry(Box::new(QueueSource(self)))
    }
}

impl<T> Waitable for Queue<T> {}
