//! Message framing on a Unix stream socket.
//!
//! Since the shared-memory rings ([`ring`](super::ring)) carry small
//! messages, a frame goes on the socket only for a message with descriptors
//! or a payload above [`INLINE_MAX`](super::ring::INLINE_MAX), and always
//! behind a marker record in the ring, which the receiver reads first; the
//! socket also carries doorbells (below).
//!
//! # Wire format
//!
//! Every message is one frame: a fixed 24-byte header, then the payload.
//!
//! | bytes  | field    | meaning                                                   |
//! |--------|----------|-----------------------------------------------------------|
//! | 0..8   | `len`    | payload length in bytes, `u64` little-endian               |
//! | 8..16  | `tag`    | [`BYTES_TAG`] (0) raw bytes, [`HANDLE_TAG`] (1) a handle, else `type_tag::<T>()` |
//! | 16..20 | `nfds`   | number of descriptors attached, `u32` LE, ≤ 253            |
//! | 20..24 | `kind`   | 0 message; 1 doorbell; 2 aborted; else the stream is corrupt |
//!
//! A *doorbell* (kind 1, every other field zero, no payload) only wakes a
//! receiver that announced it sleeps on the socket, and is skipped. An
//! *aborted* frame (kind 2, likewise empty) stands in for a frame whose marker
//! was published but whose `sendmsg` failed before sending a byte, so the
//! receiver drops the marker instead of waiting forever.
//!
//! The sender writes header and payload with one `sendmsg` (an iovec of two
//! slices) and attaches the descriptors (`SCM_RIGHTS`) to that call, so they
//! ride on the header's first byte. Linux never delivers the descriptors of
//! two `sendmsg` calls in one `recvmsg`, and delivers them with the first byte
//! of their call, so the receiver keeps a FIFO of received descriptors and a
//! header takes its `nfds` from the front; descriptors always arrive no later
//! than the header that claims them, in a `recvmsg` whose bytes include the
//! header's first byte (and may begin with earlier frames, which announce
//! none: the kernel ends a read after the bytes that carry descriptors, not
//! before them). The receiver records the stream range of each
//! `recvmsg` that brought descriptors, so a header claims only descriptors
//! that came with it; any other (a hostile peer attaching descriptors to
//! bytes no header claims them for) is closed when the stream passes it,
//! rather than held until the connection is dropped.
//!
//! # Receive state
//!
//! [`Rx`] is a resumable state machine: bytes read but not yet delivered stay
//! in a reusable 64 KiB buffer (several small frames can arrive with one
//! `recvmsg`), a parsed header with its descriptors waits in
//! [`Rx::cur`](Rx) until its payload is complete, and a payload larger than the
//! buffer is read straight into its own `Vec` with reads bounded to the frame,
//! so nothing is copied twice; that buffer grows with the bytes received
//! (from 4 MiB, doubling), never to the announced length up front. A timeout anywhere leaves the state as it is
//! and the next receive continues from there: bytes are never lost or
//! reordered. A receive that finds a frame meant for another kind of call (a
//! handle for `recv`) hands it back with [`Rx::keep`], and the next receive
//! gets it first. A frame announcing more than the receiver's maximum is read and
//! discarded (its length is known, so the stream stays in sync).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::socket::{self, MAX_FDS, Wait};

/// Length of the frame header in bytes.
pub(crate) const HEADER_LEN: usize = 24;

/// The tag of a raw-bytes message ([`send_bytes`](crate::Connection::send_bytes)).
pub(crate) const BYTES_TAG: u64 = 0;

/// The tag of a handle message ([`send_handle`](crate::Connection::send_handle)):
/// no payload, one descriptor. (A type tag is a 64-bit hash; that one hashes
/// to 0 or 1 is as likely as any other collision of two types.)
pub(crate) const HANDLE_TAG: u64 = 1;

/// Size of the receive buffer; payloads up to this size are buffered,
/// larger ones are read into a buffer of their own.
const RX_BUF: usize = 64 * 1024;

/// A large-payload buffer is kept for reuse only up to this capacity.
const KEEP_SCRATCH: usize = 8 * 1024 * 1024;

/// The most a large payload's buffer reserves ahead of the bytes that have
/// arrived: it starts at this (or the recycled buffer's capacity) and
/// doubles as the payload comes in, so a header alone, announcing up to the
/// receiver's maximum, never makes the receiver allocate what no one sent.
const GROW_AHEAD: usize = 4 * 1024 * 1024;

/// Frame kind of a message.
const KIND_MESSAGE: u32 = 0;
/// Frame kind of a doorbell.
const KIND_DOORBELL: u32 = 1;
/// Frame kind of an aborted message.
const KIND_ABORTED: u32 = 2;

/// A control frame of `kind`: no payload, no descriptors.
const fn control(kind: u32) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    let k = kind.to_le_bytes();
    out[20] = k[0];
    out[21] = k[1];
    out[22] = k[2];
    out[23] = k[3];
    out
}

/// The doorbell frame.
pub(crate) const DOORBELL: [u8; HEADER_LEN] = control(KIND_DOORBELL);
/// The aborted-message frame.
pub(crate) const ABORTED: [u8; HEADER_LEN] = control(KIND_ABORTED);

/// The kind field of a frame header.
fn kind_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"))
}

/// How a wait for socket bytes may spin before it sleeps.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FrameSpin {
    /// How long to retry non-blocking reads.
    pub budget: Duration,
    /// Give the CPU away between retries (the peer runs on this CPU) instead
    /// of busy-waiting.
    pub yield_cpu: bool,
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Payload length in bytes.
    pub len: u64,
    /// [`BYTES_TAG`] or the sender's `type_tag`.
    pub tag: u64,
    /// Number of descriptors sent with the header.
    pub nfds: u32,
}

impl Header {
    /// The header's wire form.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out[16..20].copy_from_slice(&self.nfds.to_le_bytes());
        out
    }

    /// Parses a header, rejecting ones no sender writes.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, String> {
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let half = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let header = Header {
            len: word(0),
            tag: word(8),
            nfds: half(16),
        };
        if half(20) != 0 || header.nfds as usize > MAX_FDS {
            return Err(format!("corrupt message header {bytes:02x?}"));
        }
        Ok(header)
    }
}

/// Sends one frame: `header` (whose `len` and `nfds` must match) and
/// `payload`, with `fds` attached to the first `sendmsg`. Partial writes are
/// continued; an error after part of the frame went out sets `*broken`,
/// because the peer would read a torn frame.
pub(crate) fn send_frame(
    fd: BorrowedFd<'_>,
    header: &Header,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
    broken: &mut bool,
) -> io::Result<()> {
    debug_assert_eq!(header.len, payload.len() as u64);
    debug_assert_eq!(header.nfds as usize, fds.len());
    let head = header.encode();
    let total = HEADER_LEN + payload.len();
    let mut sent = 0;
    let mut fds = fds;
    while sent < total {
        let result = if sent < HEADER_LEN {
            let iov = [IoSlice::new(&head[sent..]), IoSlice::new(payload)];
            socket::send_with_fds(fd, &iov, fds, Wait::Block)
        } else {
            let iov = [IoSlice::new(&payload[sent - HEADER_LEN..])];
            socket::send_with_fds(fd, &iov, fds, Wait::Block)
        };
        match result {
            Ok(0) => {
                *broken = sent > 0;
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => {
                sent += n;
                fds = &[];
            }
            // Someone made the shared descriptor non-blocking.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket::wait_writable(fd)?,
            Err(e) => {
                *broken = sent > 0;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sends a control frame ([`DOORBELL`] or [`ABORTED`]) whole. A partial
/// write sets `*broken`.
pub(crate) fn send_control(
    fd: BorrowedFd<'_>,
    frame: &[u8; HEADER_LEN],
    broken: &mut bool,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < HEADER_LEN {
        match socket::send_with_fds(fd, &[IoSlice::new(&frame[sent..])], &[], Wait::Block) {
            Ok(0) => {
                *broken = sent > 0;
                return Err(io::ErrorKind::WriteZero.into());
            }
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket::wait_writable(fd)?,
            Err(e) => {
                *broken = sent > 0;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Why [`Rx::next`] returned without a message.
#[derive(Debug)]
pub(crate) enum RxError {
    /// The deadline passed; the partial state is kept.
    Timeout,
    /// End of stream (the peer closed, or shut down its sending side).
    Disconnected,
    /// The frame was larger than the receiver's maximum and was discarded.
    TooLarge {
        /// The announced size.
        size: u64,
        /// The receiver's maximum.
        max: u64,
    },
    /// The announced frame was aborted by the sender before any of it was
    /// sent; there is no message.
    Aborted,
    /// An OS error, or the stream is broken.
    Io(io::Error),
}

/// A received frame's payload: a range of the receive buffer (read it with
/// [`Rx::buffered`] before the next receive), or its own allocation for large
/// frames.
pub(crate) enum Payload {
    /// A payload of at most 64 KiB, inside the receive buffer.
    Buffered(std::ops::Range<usize>),
    /// A larger payload.
    Owned(Vec<u8>),
}

/// A complete received frame.
pub(crate) struct Message {
    /// The header's tag.
    pub tag: u64,
    /// The descriptors that came with it.
    pub fds: Vec<OwnedFd>,
    /// The payload.
    pub payload: Payload,
}

/// How the payload of the current frame is being collected.
enum Body {
    /// In the receive buffer (payload ≤ [`RX_BUF`]).
    Small,
    /// In its own buffer, grown as the payload arrives (see [`GROW_AHEAD`]).
    Large(Vec<u8>),
    /// Being discarded; this many bytes are still to skip.
    Discard(u64),
}

/// The descriptors one `recvmsg` brought: the stream range of its bytes
/// (`from..to`, counted from the start of the stream) and how many
/// descriptors (the front of [`Rx::fds`] in arrival order).
struct Batch {
    from: u64,
    to: u64,
    count: usize,
}

/// A frame whose header has been read.
struct Partial {
    header: Header,
    fds: Vec<OwnedFd>,
    body: Body,
}

/// The receive state of one connection end; see the module docs.
#[derive(Default)]
pub(crate) struct Rx {
    /// Receive buffer, allocated (and zeroed) on first use; `buf.len()` is
    /// its capacity in use.
    buf: Vec<u8>,
    /// Undelivered bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The stream offset of `buf[0]` (bytes received before it, including
    /// payload bytes read around the buffer).
    base: u64,
    /// Received descriptors not yet claimed by a header, in arrival order.
    fds: Vec<OwnedFd>,
    /// Where each group of `fds` arrived, in the same order.
    batches: std::collections::VecDeque<Batch>,
    /// The frame being received, once its header is parsed.
    cur: Option<Partial>,
    /// Set when the stream can no longer be trusted; every receive fails.
    broken: Option<String>,
    /// A recycled large-payload buffer.
    scratch: Vec<u8>,
    /// A whole frame handed back by [`Rx::keep`], delivered by the next
    /// [`Rx::next`] before anything else.
    held: Option<Message>,
}

impl Rx {
    /// Nothing is buffered: no bytes, no descriptors, no partial or kept
    /// frame.
    pub(crate) fn is_empty(&self) -> bool {
        self.cur.is_none() && self.start == self.end && self.fds.is_empty() && self.held.is_none()
    }

    /// Puts `msg`, just returned by [`Rx::next`], back: the next
    /// [`Rx::next`] returns it again. Used when a receive finds a message
    /// that belongs to another kind of call (a handle for `recv`, a value
    /// for `recv_handle`), so it is kept rather than lost. A buffered
    /// payload is copied out, since later reads may move the buffer.
    pub(crate) fn keep(&mut self, mut msg: Message) {
        debug_assert!(self.held.is_none(), "one message kept at a time");
        if let Payload::Buffered(range) = &msg.payload {
            msg.payload = Payload::Owned(self.buf[range.clone()].to_vec());
        }
        self.held = Some(msg);
    }

    /// Why the stream is broken, if it is.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// A buffered payload returned by [`Rx::next`].
    pub(crate) fn buffered(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Drops doorbells at the front of the buffer.
    fn skip_doorbells(&mut self) {
        while self.cur.is_none()
            && self.end - self.start >= HEADER_LEN
            && self.buf[self.start..self.start + HEADER_LEN] == DOORBELL
        {
            self.start += HEADER_LEN;
        }
        if self.start == self.end {
            self.rewind();
        }
    }

    /// Empties the buffer's indices (nothing is buffered).
    fn rewind(&mut self) {
        debug_assert_eq!(self.start, self.end);
        self.base += self.start as u64;
        self.start = 0;
        self.end = 0;
    }

    /// Records the descriptors a read of `n` bytes at `buf[at..]` brought
    /// (those past `before` in `fds`).
    fn note_fds(&mut self, at: usize, n: usize, before: usize) {
        if self.fds.len() > before {
            let from = self.base + at as u64;
            self.batches.push_back(Batch {
                from,
                to: from + n as u64,
                count: self.fds.len() - before,
            });
        }
    }

    /// Reads whatever the socket holds now, without waiting, and drops the
    /// doorbells at its front. Returns `true` at end of stream.
    pub(crate) fn drain(&mut self, fd: BorrowedFd<'_>) -> Result<bool, RxError> {
        self.make_room(HEADER_LEN);
        if self.end < self.buf.len() {
            let (at, before) = (self.end, self.fds.len());
            let (buf, fds) = (&mut self.buf[self.end..], &mut self.fds);
            match socket::recv_with_fds(fd, buf, fds, Wait::NoWait) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    self.note_fds(at, n, before);
                    self.end += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
                Err(e) if socket::is_fds_truncated(&e) => return Err(self.fail(e.to_string())),
                Err(e) => return Err(RxError::Io(e)),
            }
        }
        self.skip_doorbells();
        Ok(false)
    }

    /// Marks the stream broken because of something outside the socket
    /// (the shared ring).
    pub(crate) fn fail_with(&mut self, why: String) -> RxError {
        self.fail(why)
    }

    /// Gives a large payload buffer back for reuse.
    pub(crate) fn recycle(&mut self, mut v: Vec<u8>) {
        if v.capacity() <= KEEP_SCRATCH && v.capacity() > self.scratch.capacity() {
            v.clear();
            self.scratch = v;
        }
    }

    /// Marks the stream broken, for the caller's error and every later one.
    fn fail(&mut self, why: String) -> RxError {
        if let Some(old) = &self.broken {
            return RxError::Io(io::Error::new(io::ErrorKind::InvalidData, old.clone()));
        }
        let e = io::Error::new(io::ErrorKind::InvalidData, why.clone());
        self.broken = Some(why);
        RxError::Io(e)
    }

    /// Makes room for `need` (≤ [`RX_BUF`]) contiguous bytes from `start`.
    fn make_room(&mut self, need: usize) {
        if self.buf.is_empty() {
            self.buf = vec![0; RX_BUF];
        }
        if self.start == self.end {
            self.rewind();
        } else if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One read into `buf[end..end + max]` (greedy: may read past the current
    /// frame). Zero bytes read is end of stream.
    fn fill(
        &mut self,
        fd: BorrowedFd<'_>,
        max: usize,
        deadline: Option<Instant>,
        spin: FrameSpin,
    ) -> Result<(), RxError> {
        let limit = self.buf.len().min(self.end.saturating_add(max));
        let (at, before) = (self.end, self.fds.len());
        let (buf, fds) = (&mut self.buf[self.end..limit], &mut self.fds);
        debug_assert!(!buf.is_empty());
        let result = io_wait(fd, deadline, spin, |wait| {
            socket::recv_with_fds(fd, buf, fds, wait)
        });
        match result {
            Ok(0) => Err(RxError::Disconnected),
            Ok(n) => {
                self.note_fds(at, n, before);
                self.end += n;
                Ok(())
            }
            Err(RxError::Io(e)) if socket::is_fds_truncated(&e) => {
                // MSG_CTRUNC: bytes and descriptors were lost.
                Err(self.fail(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Receives the next frame, waiting until `deadline` (`None`: forever).
    /// `max` is the largest payload accepted; `spin` how to retry
    /// non-blocking reads before sleeping in the kernel. Doorbells are
    /// skipped; an aborted frame is [`RxError::Aborted`].
    pub(crate) fn next(
        &mut self,
        fd: BorrowedFd<'_>,
        max: usize,
        deadline: Option<Instant>,
        spin: FrameSpin,
    ) -> Result<Message, RxError> {
        if let Some(msg) = self.held.take() {
            return Ok(msg);
        }
        loop {
            if let Some(why) = &self.broken {
                return Err(RxError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("connection is broken: {why}"),
                )));
            }
            let avail = self.end - self.start;
            let Some(cur) = self.cur.as_mut() else {
                if avail < HEADER_LEN {
                    self.make_room(HEADER_LEN);
                    self.fill(fd, usize::MAX, deadline, spin)?;
                    continue;
                }
                let head = &self.buf[self.start..self.start + HEADER_LEN];
                match kind_of(head) {
                    KIND_DOORBELL if head == DOORBELL => self.start += HEADER_LEN,
                    KIND_ABORTED if head == ABORTED => {
                        self.start += HEADER_LEN;
                        self.skip_doorbells();
                        return Err(RxError::Aborted);
                    }
                    KIND_MESSAGE => self.start_frame(max)?,
                    _ => {
                        let why = format!("corrupt message header {head:02x?}");
                        return Err(self.fail(why));
                    }
                }
                continue;
            };
            let len = cur.header.len;
            match &mut cur.body {
                Body::Small => {
                    let len = len as usize;
                    if avail >= len {
                        let Partial { header, fds, .. } = self.cur.take().expect("current frame");
                        let range = self.start..self.start + len;
                        self.start += len;
                        return Ok(Message {
                            tag: header.tag,
                            fds,
                            payload: Payload::Buffered(range),
                        });
                    }
                    self.make_room(len);
                    self.fill(fd, usize::MAX, deadline, spin)?;
                }
                Body::Large(data) => {
                    let len = len as usize;
                    let take = (len - data.len()).min(avail);
                    data.extend_from_slice(&self.buf[self.start..self.start + take]);
                    self.start += take;
                    if data.len() == len {
                        let Partial { header, fds, body } = self.cur.take().expect("current frame");
                        let Body::Large(data) = body else {
                            unreachable!("matched Large above")
                        };
                        return Ok(Message {
                            tag: header.tag,
                            fds,
                            payload: Payload::Owned(data),
                        });
                    }
                    // The receive buffer is empty now; read only this frame's
                    // bytes, straight into its buffer (no descriptors can be
                    // attached to them: those ride on header bytes).
                    let left = len - data.len();
                    if data.len() == data.capacity() {
                        // Grow with what arrived (doubling), not to the
                        // announced length.
                        data.reserve_exact(left.min(data.len().max(GROW_AHEAD)));
                    }
                    match io_wait(fd, deadline, spin, |wait| {
                        socket::recv_into_spare(fd, data, left, wait)
                    })? {
                        0 => return Err(RxError::Disconnected),
                        // Stream bytes that bypassed the buffer.
                        n => self.base += n as u64,
                    }
                }
                Body::Discard(left) => {
                    let take = (*left).min(avail as u64);
                    *left -= take;
                    self.start += take as usize;
                    if *left == 0 {
                        let size = self.cur.take().expect("current frame").header.len;
                        return Err(RxError::TooLarge {
                            size,
                            max: max as u64,
                        });
                    }
                    let left = usize::try_from(*left).unwrap_or(usize::MAX);
                    self.make_room(1);
                    self.fill(fd, left, deadline, spin)?;
                }
            }
        }
    }

    /// Parses the buffered header and sets up [`Rx::cur`].
    fn start_frame(&mut self, max: usize) -> Result<(), RxError> {
        let head = self.buf[self.start..self.start + HEADER_LEN]
            .try_into()
            .expect("header length");
        let header = match Header::decode(head) {
            Ok(h) => h,
            Err(why) => return Err(self.fail(why)),
        };
        let at = self.base + self.start as u64;
        // Descriptors that came with bytes before this header: no header
        // claimed them (a hostile or broken sender). Close them.
        while let Some(b) = self.batches.front() {
            if b.to > at {
                break;
            }
            let count = b.count;
            self.batches.pop_front();
            self.fds.drain(..count);
        }
        // The descriptors of this header came with its first byte. One
        // `recvmsg` can also bring earlier frames of other `sendmsg` calls
        // (the kernel ends a read after the part that carries descriptors,
        // not before it), so a header that announces none leaves the batch
        // to the later header in its range, or to be closed once the stream
        // passes it.
        let nfds = header.nfds as usize;
        let with_header = match self.batches.front() {
            Some(b) if b.from <= at && nfds > 0 => b.count,
            _ => 0,
        };
        if nfds > with_header {
            return Err(self.fail(format!(
                "a message header announces {nfds} descriptor(s) but {with_header} arrived with it"
            )));
        }
        self.start += HEADER_LEN;
        let fds = if with_header > 0 {
            self.batches.pop_front();
            // Any beyond `nfds` were sent with the header but not announced:
            // closed here.
            let mut fds: Vec<OwnedFd> = self.fds.drain(..with_header).collect();
            fds.truncate(nfds);
            fds
        } else {
            Vec::new()
        };
        let body = match usize::try_from(header.len) {
            Ok(len) if len <= max && len <= RX_BUF => Body::Small,
            Ok(len) if len <= max => {
                let mut data = std::mem::take(&mut self.scratch);
                data.clear();
                // Only what a recycled buffer already holds, or
                // `GROW_AHEAD`: the header's length is the peer's word.
                data.reserve_exact(len.min(data.capacity().max(GROW_AHEAD)));
                Body::Large(data)
            }
            _ => Body::Discard(header.len),
        };
        self.cur = Some(Partial { header, fds, body });
        Ok(())
    }
}

/// Runs the non-blocking or blocking form of a receive `op` until it makes
/// progress: blocks in the call itself when there is no deadline (one
/// syscall), otherwise polls for readability until `deadline`. For
/// `spin.budget` after the first `WouldBlock` it keeps retrying without
/// sleeping.
fn io_wait<T>(
    fd: impl AsFd,
    deadline: Option<Instant>,
    spin: FrameSpin,
    mut op: impl FnMut(Wait) -> io::Result<T>,
) -> Result<T, RxError> {
    let mut spin_until: Option<Instant> = None;
    let mut spinning = !spin.budget.is_zero();
    loop {
        let wait = if spinning || deadline.is_some() {
            Wait::NoWait
        } else {
            Wait::Block
        };
        match op(wait) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if spinning {
                    let now = Instant::now();
                    let until = *spin_until.get_or_insert(now + spin.budget);
                    spinning = now < until && deadline.is_none_or(|d| now < d);
                    if spin.yield_cpu {
                        crate::sys::sched::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                if !socket::poll_readable(fd.as_fd(), deadline).map_err(RxError::Io)? {
                    return Err(RxError::Timeout);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(RxError::Disconnected);
            }
            Err(e) => return Err(RxError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = Header {
            len: 1 << 40,
            tag: 0xdead_beef_0bad_f00d,
            nfds: 3,
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[21] = 1;
        assert!(Header::decode(&bad).is_err());
        let too_many = Header { nfds: 254, ..h };
        assert!(Header::decode(&too_many.encode()).is_err());
    }

    /// Sends `header` and `body` on a fresh socket pair; returns the
    /// receiving end (the sending end stays open in `keep`).
    fn hostile(header: Header, body: &[u8], keep: &mut Vec<OwnedFd>) -> OwnedFd {
        let (tx, rx) = socket::socketpair().unwrap();
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(body);
        let n = socket::send_with_fds(tx.as_fd(), &[IoSlice::new(&bytes)], &[], Wait::Block);
        assert_eq!(n.unwrap(), bytes.len());
        keep.push(tx);
        rx
    }

    fn reserved(rx: &Rx) -> usize {
        match &rx.cur.as_ref().expect("a frame in progress").body {
            Body::Large(data) => data.capacity(),
            _ => panic!("expected a large body"),
        }
    }

    /// Regression (found by reading the code while writing the fuzz
    /// targets): a header alone made the receiver reserve the whole
    /// announced length, up to its maximum (1 GiB by default); with a
    /// maximum above what the allocator can give, `reserve_exact` aborted
    /// the process.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "uses a socketpair with SCM_RIGHTS; Miri has no sendmsg"
    )]
    fn a_declared_length_is_not_allocated_up_front() {
        let mut keep = Vec::new();
        for (max, len) in [(1usize << 30, 1u64 << 30), (usize::MAX, 1 << 62)] {
            let fd = hostile(
                Header {
                    len,
                    tag: 0,
                    nfds: 0,
                },
                &[7; 100],
                &mut keep,
            );
            let mut rx = Rx::default();
            let r = rx.next(fd.as_fd(), max, Some(Instant::now()), FrameSpin::default());
            assert!(matches!(r, Err(RxError::Timeout)), "{:?}", r.err());
            assert!(reserved(&rx) <= GROW_AHEAD, "reserved {}", reserved(&rx));
        }
    }

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Regression: descriptors attached to frames that do not announce them
    /// piled up in the receive FIFO until the connection was dropped, so a
    /// peer could exhaust the receiver's descriptor table; and a later
    /// header announcing descriptors claimed them.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "uses a socketpair with SCM_RIGHTS; Miri has no sendmsg"
    )]
    fn descriptors_no_header_claims_are_closed() {
        let (tx, rx_fd) = socket::socketpair().unwrap();
        let mut rx = Rx::default();
        let before = open_fds();
        let extra: Vec<OwnedFd> = (0..3).map(|_| devnull()).collect();
        let extra: Vec<BorrowedFd<'_>> = extra.iter().map(|f| f.as_fd()).collect();
        for i in 0..200u8 {
            // Stray descriptors with a header that announces none, then with
            // payload bytes, then one more than announced.
            let h = Header {
                len: 2,
                tag: u64::from(i),
                nfds: 0,
            }
            .encode();
            let mut frame = h.to_vec();
            frame.extend_from_slice(&[i, i]);
            socket::send_with_fds(tx.as_fd(), &[IoSlice::new(&frame)], &extra, Wait::Block)
                .unwrap();
            let h = Header {
                len: 4,
                tag: 1,
                nfds: 1,
            }
            .encode();
            socket::send_with_fds(tx.as_fd(), &[IoSlice::new(&h)], &extra[..2], Wait::Block)
                .unwrap();
            socket::send_with_fds(tx.as_fd(), &[IoSlice::new(b"abcd")], &extra, Wait::Block)
                .unwrap();
            let a = rx
                .next(rx_fd.as_fd(), 1 << 20, None, FrameSpin::default())
                .unwrap();
            assert_eq!((a.tag, a.fds.len()), (u64::from(i), 0));
            let b = rx
                .next(rx_fd.as_fd(), 1 << 20, None, FrameSpin::default())
                .unwrap();
            assert_eq!((b.tag, b.fds.len()), (1, 1));
        }
        assert!(rx.fds.len() <= 3, "{} descriptors held", rx.fds.len());
        assert!(open_fds() <= before + 4 + 3, "{} -> {}", before, open_fds());
        // A header announcing a descriptor that came with earlier bytes.
        let h = Header {
            len: 1,
            tag: 0,
            nfds: 0,
        }
        .encode();
        let mut frame = h.to_vec();
        frame.push(0);
        socket::send_with_fds(
            tx.as_fd(),
            &[IoSlice::new(&frame)],
            &extra[..1],
            Wait::Block,
        )
        .unwrap();
        let h = Header {
            len: 0,
            tag: 0,
            nfds: 1,
        }
        .encode();
        socket::send_with_fds(tx.as_fd(), &[IoSlice::new(&h)], &[], Wait::Block).unwrap();
        assert!(
            rx.next(rx_fd.as_fd(), 1 << 20, None, FrameSpin::default())
                .is_ok()
        );
        match rx.next(rx_fd.as_fd(), 1 << 20, None, FrameSpin::default()) {
            Err(RxError::Io(e)) => assert!(e.to_string().contains("0 arrived with it"), "{e}"),
            other => panic!("{:?}", other.err()),
        }
    }

    /// Regression: one `recvmsg` brings a frame without descriptors and
    /// then the frame whose `sendmsg` carried some; the first header took
    /// them (and closed them), the second then broke the stream.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "uses a socketpair with SCM_RIGHTS; Miri has no sendmsg"
    )]
    fn descriptors_after_a_frame_without_any_in_one_read_reach_their_header() {
        let (tx, rx_fd) = socket::socketpair().unwrap();
        let null = devnull();
        let mut broken = false;
        for (tag, fds) in [(5, &[][..]), (6, &[null.as_fd()][..]), (7, &[][..])] {
            let h = Header {
                len: 3,
                tag,
                nfds: fds.len() as u32,
            };
            send_frame(tx.as_fd(), &h, b"abc", fds, &mut broken).unwrap();
        }
        let mut rx = Rx::default();
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = rx
                .next(rx_fd.as_fd(), 1 << 20, None, FrameSpin::default())
                .unwrap();
            got.push((m.tag, m.fds.len()));
        }
        assert_eq!(got, [(5, 0), (6, 1), (7, 0)]);
        assert!(rx.fds.is_empty() && rx.batches.is_empty());
    }

    /// A kept frame comes back first, whole, even after more reads.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "uses a socketpair with SCM_RIGHTS; Miri has no sendmsg"
    )]
    fn a_kept_frame_is_delivered_again_first() {
        let (tx, rx_fd) = socket::socketpair().unwrap();
        let mut broken = false;
        for (tag, body) in [(5, &b"first"[..]), (6, &b"second"[..])] {
            let h = Header {
                len: body.len() as u64,
                tag,
                nfds: 0,
            };
            send_frame(tx.as_fd(), &h, body, &[], &mut broken).unwrap();
        }
        let mut rx = Rx::default();
        let spin = FrameSpin::default();
        let m = rx.next(rx_fd.as_fd(), 1 << 20, None, spin).unwrap();
        rx.keep(m);
        assert!(!rx.is_empty());
        // A read in between leaves the kept frame first.
        assert!(!rx.drain(rx_fd.as_fd()).unwrap());
        for (tag, body) in [(5, &b"first"[..]), (6, &b"second"[..])] {
            let m = rx.next(rx_fd.as_fd(), 1 << 20, None, spin).unwrap();
            let payload = match m.payload {
                Payload::Buffered(range) => rx.buffered(range).to_vec(),
                Payload::Owned(v) => v,
            };
            assert_eq!((m.tag, &payload[..]), (tag, body));
        }
        assert!(rx.is_empty());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "uses a socketpair with SCM_RIGHTS; Miri has no sendmsg"
    )]
    fn a_large_payload_grows_its_buffer_and_arrives_whole() {
        let (tx, rx_fd) = socket::socketpair().unwrap();
        let len = GROW_AHEAD * 2 + 12345;
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = std::thread::spawn(move || {
            let mut broken = false;
            let h = Header {
                len: sent.len() as u64,
                tag: 9,
                nfds: 0,
            };
            send_frame(tx.as_fd(), &h, &sent, &[], &mut broken).unwrap();
        });
        let mut rx = Rx::default();
        let msg = rx
            .next(rx_fd.as_fd(), usize::MAX, None, FrameSpin::default())
            .unwrap();
        writer.join().unwrap();
        assert_eq!(msg.tag, 9);
        match msg.payload {
            Payload::Owned(v) => assert!(v == payload, "payload differs"),
            Payload::Buffered(_) => panic!("a large payload is owned"),
        }
    }
}
