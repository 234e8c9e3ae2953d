//! The shared-memory byte ring under [`Queue`](super::Queue).
//!
//! # Algorithm
//!
//! One memfd holds a header page and a power-of-two byte ring. Two 64-bit
//! words, `tail` (written by producers) and `head` (written by consumers),
//! each pack a monotonic byte position (low [`POS_BITS`] bits, compared
//! modulo 2^36) and a count of message starts (high 28 bits), so one atomic
//! store both publishes bytes and counts items, and a process dying between
//! two stores cannot skew `qsize`.
//!
//! Records are `[header: u64][payload]`, padded to 8 bytes; the payload may
//! wrap around the end of the ring. The header holds the payload length (u32),
//! flags (`FIRST`, `LAST`, `ABORT`) and the writer's liveness id.
//!
//! - Producers serialize on the *put lock*, consumers on the *get lock*
//!   (both [`RawLock`]s, robust to owner death), so a producer and a consumer
//!   run in parallel, like a single-producer single-consumer ring (Lamport
//!   1983; the head/tail layout of the Linux `kfifo` and LMAX Disruptor).
//! - Cached positions (as crossbeam's `ArrayQueue` and the Disruptor do):
//!   producers keep `head_seen`, a copy of `head` on their own cache line,
//!   and re-read `head` only when `head_seen` shows too little room;
//!   consumers keep `tail_seen` likewise and re-read `tail` only when it
//!   shows no whole record. `head` and `tail` only move forward, so a stale
//!   copy understates room or data and is never unsafe; a copy is written
//!   only with a value just read from the real word, so it stays within one
//!   ring length of it (positions compare modulo 2^36). The copy is shared
//!   between the processes on that side and handed over with the lock, so
//!   the Acquire that read the real word still orders the bytes it covers.
//! - put: copy the record past `tail`, then publish it with one store to
//!   `tail`. An item that does not fit the free space (after re-reading
//!   `head`) is split into chunks (`FIRST`, …, `LAST`), each published as
//!   soon as it is written, so an item larger than the whole ring streams
//!   through while a consumer drains it. A non-final chunk is only written if
//!   8 bytes stay free afterwards, so a producer whose deadline passes
//!   mid-item can always publish an `ABORT` record telling consumers to drop
//!   the partial item. The item's bytes may come in two slices (a length
//!   prefix and a byte buffer), so a `Vec<u8>` is copied once, caller to ring.
//! - get: copy the record out, then advance `head` with one store; chunks are
//!   appended to the caller's buffer until `LAST`. For byte buffers the
//!   caller asks to strip the postcard length prefix, so the bytes are copied
//!   once, ring to the item's own allocation, reserved up front.
//! - Adaptive first pause: a waiter's first re-check comes after a pause
//!   that this process adapts per direction (data, room): doubled, up to
//!   2 µs, whenever the awaited change had already happened by the re-check
//!   (the other side is streaming), halved down to nothing whenever it had
//!   not (sparse traffic, where the handoff latency matters). A streaming
//!   consumer therefore leaves the producer a couple of µs to publish many
//!   records before it takes the `tail` and data cache lines back, and reads
//!   them as a batch through `tail_seen`; re-checking after every record
//!   instead costs a few cross-CPU cache-line transfers per item (measured:
//!   ~4 M msg/s against ~17 M on a 2-vCPU VM). Request/response traffic
//!   decays the pause to zero within a few round trips.
//! - Blocking (eventcount, as in Vyukov's and `folly::EventCount`): a waiter
//!   then spins a few µs, then increments a waiter count, reads an epoch word,
//!   re-checks its condition and futex-waits on the epoch. A waker stores its
//!   position (SeqCst), and only if the waiter count is non-zero bumps the
//!   epoch and wakes: no syscall on the fast path. Only lock holders wait on
//!   the epochs, so a lock taken over from a dead holder resets its count.
//!   Why no wake is lost: the waiter's increment and re-check and the
//!   waker's position store and count load are all SeqCst, so in the single
//!   order of SeqCst operations either the waker's store precedes the
//!   waiter's re-check (which then sees the new position and does not
//!   sleep), or the waiter's increment precedes the waker's count load
//!   (which then sees a waiter and wakes; the epoch bump makes the futex
//!   wait return at once if it had not started). The position store must be
//!   SeqCst, not Release: a Release store would not be ordered before the
//!   waker's later count load (a store-load reordering, allowed on x86 too),
//!   and both could miss. On x86 the SeqCst store is one `xchg`, the same
//!   cost as a Release store plus the fence it would need.

//! # Crash recovery
//!
//! - A producer dying before publishing leaves nothing visible; the next
//!   producer takes the put lock over and, if room allows, publishes an
//!   `ABORT` so a consumer waiting for the rest of a dead item stops waiting.
//! - A consumer that meets a continuation chunk where an item should start
//!   drops it (a consumer died mid-item); one that meets `FIRST` or `ABORT`
//!   mid-item drops the partial item (its producer died or gave up).
//! - A consumer waiting for a continuation probes the writer's liveness id every
//!   100 ms and drops the partial item when the writer is gone.
//! - A consumer dying before it advances `head` leaves the item in place;
//!   one dying after advancing it but before waking the producers asleep
//!   for room is covered by the next consumer, which wakes them when it
//!   takes the get lock over.
//! - Header bytes that cannot be valid (length past `tail`) discard every
//!   published byte rather than read out of bounds.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::sync::park::my_id;
use crate::sync::park::{self, Poll, SleepOn, Spin, Wait, owner_alive};
use crate::sync::raw_lock::{Acquired, RawLock, SPIN_BUDGET};
use crate::sys::atomic::AtomicU64;
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

// Header page layout. Producer- and consumer-written words sit on separate
// cache lines.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const TYPE_TAG_AT: usize = 16;
const CAPACITY_AT: usize = 24;
const MAXSIZE_AT: usize = 32;
/// [`OPEN`], [`SHUT_DOWN`] or [`SHUT_DOWN_NOW`] (`Queue::shutdown`); set once,
/// SeqCst, then both epochs are bumped so every sleeper re-checks it.
const SHUTDOWN_AT: usize = 40;
const OPEN: u32 = 0;
/// Puts fail; gets drain what is left, then fail.
const SHUT_DOWN: u32 = 1;
/// Puts and gets fail; what was left has been discarded.
const SHUT_DOWN_NOW: u32 = 2;
const PUT_LOCK_AT: usize = 128;
const TAIL_AT: usize = 136;
/// The producers' cached copy of `head` (see the module docs).
const HEAD_SEEN_AT: usize = 144;
const GET_LOCK_AT: usize = 192;
const HEAD_AT: usize = 200;
/// The consumers' cached copy of `tail`.
const TAIL_SEEN_AT: usize = 208;
const DATA_EPOCH_AT: usize = 256;
const DATA_WAITERS_AT: usize = 260;
const SPACE_EPOCH_AT: usize = 320;
const SPACE_WAITERS_AT: usize = 324;
/// What kind of queue the ring serves ([`KIND_PLAIN`] or [`KIND_JOINABLE`]),
/// so a descriptor is never opened as the wrong kind.
const KIND_AT: usize = 12;
/// A [`Queue`](super::Queue) or [`SimpleQueue`](super::SimpleQueue).
pub(crate) const KIND_PLAIN: u32 = 0;
/// A [`JoinableQueue`](super::JoinableQueue): the header also holds its
/// task accounting from [`JOIN_EPOCH_AT`] on (see `joinable.rs`).
pub(crate) const KIND_JOINABLE: u32 = 1;
/// JoinableQueue: the futex word `join()` sleeps on.
pub(crate) const JOIN_EPOCH_AT: usize = 384;
/// JoinableQueue: how many processes sleep in `join()`.
pub(crate) const JOIN_WAITERS_AT: usize = 388;
/// JoinableQueue: tasks released from dead consumers, in total.
pub(crate) const ABANDONED_AT: usize = 392;
/// JoinableQueue: the per-process slots of taken-but-not-done counts, one
/// `u64` each (pid in the high half, count in the low half), to the end of
/// the header page.
pub(crate) const SLOTS_AT: usize = 512;
/// Where the ring starts.
pub(crate) const HEADER_LEN: usize = 4096;

const MAGIC: u64 = u64::from_le_bytes(*b"mpQueue\0");
const VERSION: u32 = 2;

/// Bits of a packed word holding the byte position.
pub(crate) const POS_BITS: u32 = 36;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const CNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// Smallest and largest ring capacities (bytes). The largest keeps positions
/// unambiguous modulo 2^36 and item counts (≤ capacity / 8) below 2^28.
#[cfg(not(loom))]
pub(crate) const MIN_CAPACITY: usize = 1024;
/// Under loom, tiny rings, so a few items wrap around and fill them.
#[cfg(loom)]
pub(crate) const MIN_CAPACITY: usize = 64;
/// See [`MIN_CAPACITY`].
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// Bounds of a waiter's adaptive first pause (see the module docs).
const MIN_PAUSE_NS: u32 = 64;
/// See [`MIN_PAUSE_NS`].
const MAX_PAUSE_NS: u32 = 2000;

const REC_HDR: u64 = 8;
/// Payloads up to this size are written together with their header.
const SMALL: usize = 56;
/// The most a consumer reserves ahead for an announced byte length (the
/// prefix comes from another process, so it is not trusted further).
const MAX_RESERVE: u64 = 1 << 30;
const FIRST: u8 = 1;
const LAST: u8 = 2;
const ABORT: u8 = 4;

fn pos(w: u64) -> u64 {
    w & POS_MASK
}
fn cnt(w: u64) -> u64 {
    w >> POS_BITS
}
fn pack(pos: u64, cnt: u64) -> u64 {
    (pos & POS_MASK) | ((cnt & CNT_MASK) << POS_BITS)
}
fn pad8(n: u64) -> u64 {
    (n + 7) & !7
}

/// An item's bytes as written to the ring: `head` then `body`, back to back
/// (so a byte buffer goes in after its length prefix without first being
/// copied behind it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Msg<'a> {
    /// The first bytes (a length prefix, or the whole item).
    pub(crate) head: &'a [u8],
    /// The rest.
    pub(crate) body: &'a [u8],
}

impl<'a> Msg<'a> {
    const EMPTY: Msg<'static> = Msg {
        head: &[],
        body: &[],
    };

    /// An item that is one slice.
    pub(crate) fn whole(bytes: &'a [u8]) -> Self {
        Msg {
            head: bytes,
            body: &[],
        }
    }

    fn len(&self) -> u64 {
        (self.head.len() + self.body.len()) as u64
    }
}

/// Why a ring operation did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incomplete {
    /// The deadline passed (immediately, for a try).
    Deadline,
    /// The queue was shut down (`Queue::shutdown`).
    ShutDown,
    /// Test hook: the operation "died" halfway on purpose.
    #[cfg(test)]
    Crashed,
}

/// What a waiter waits for: data (`tail` to move) or room (`head` to move).
#[derive(Clone, Copy)]
enum Side {
    Data,
    Space,
}

/// Test hooks to stop an operation halfway as if its process had died.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Hooks {
    /// After publishing this many chunks of an item, leave the put lock word
    /// set to `dead_id` and return `Incomplete::Crashed` (0: off).
    pub(crate) crash_put_after: std::sync::atomic::AtomicUsize,
    /// Same for a consumer, counting chunks taken of an unfinished item.
    pub(crate) crash_get_after: std::sync::atomic::AtomicUsize,
    pub(crate) dead_id: AtomicU32,
    /// Pid to record in chunk headers instead of ours (0: off).
    pub(crate) header_pid: AtomicU32,
}

/// A mapped queue ring (see the module docs).
pub(crate) struct Ring {
    region: SharedRegion,
    cap: u64,
    mask: u64,
    maxsize: u64,
    min_chunk: u64,
    /// This process's adaptive first pause (ns) when waiting for data and
    /// for room (see the module docs).
    data_pause: AtomicU32,
    space_pause: AtomicU32,
    #[cfg(test)]
    pub(crate) hooks: Hooks,
}

impl Ring {
    /// Creates a ring of `capacity` bytes (a power of two within
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`]) for items with `type_tag`;
    /// `maxsize` limits the item count (0: unlimited).
    pub(crate) fn create(
        capacity: usize,
        maxsize: usize,
        type_tag: u64,
        kind: u32,
    ) -> io::Result<Ring> {
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "queue capacity must be a power of two between {MIN_CAPACITY} and \
                     {MAX_CAPACITY} bytes, not {capacity}"
                ),
            ));
        }
        // Take a liveness id now (a writer records it), so a shortage of
        // descriptors is this constructor's error, not a panic in `put`.
        crate::sys::liveness::register()?;
        let region = SharedRegion::create("multiprocess-queue", HEADER_LEN + capacity)?;
        region
            .atomic_u64(TYPE_TAG_AT)
            .store(type_tag, Ordering::Relaxed);
        region
            .atomic_u64(CAPACITY_AT)
            .store(capacity as u64, Ordering::Relaxed);
        region
            .atomic_u64(MAXSIZE_AT)
            .store(maxsize as u64, Ordering::Relaxed);
        region
            .atomic_u32(VERSION_AT)
            .store(VERSION, Ordering::Relaxed);
        region.atomic_u32(KIND_AT).store(kind, Ordering::Relaxed);
        region.atomic_u64(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(Ring::with(region, capacity as u64, maxsize as u64))
    }

    /// Maps a ring received as a descriptor, checking magic, layout version,
    /// geometry and that it carries items of the type `type_name`.
    pub(crate) fn open(fd: OwnedFd, type_tag: u64, type_name: &str, kind: u32) -> io::Result<Ring> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        crate::sys::liveness::register()?;
        let region = SharedRegion::from_fd(fd, HEADER_LEN)?;
        if region.atomic_u64(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(bad("descriptor is not a multiprocess Queue".into()));
        }
        let version = region.atomic_u32(VERSION_AT).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(bad(format!(
                "queue layout version {version} is not the supported version {VERSION}"
            )));
        }
        if region.atomic_u64(TYPE_TAG_AT).load(Ordering::Relaxed) != type_tag {
            return Err(bad(format!(
                "the queue does not carry items of type {type_name} \
                 (it was created as a Queue of another type)"
            )));
        }
        let found = region.atomic_u32(KIND_AT).load(Ordering::Relaxed);
        if found != kind {
            let name = |k| match k {
                KIND_JOINABLE => "a JoinableQueue",
                _ => "a Queue or SimpleQueue",
            };
            return Err(bad(format!(
                "descriptor is {}, not {}",
                name(found),
                name(kind)
            )));
        }
        let cap = region.atomic_u64(CAPACITY_AT).load(Ordering::Relaxed);
        let maxsize = region.atomic_u64(MAXSIZE_AT).load(Ordering::Relaxed);
        let cap_ok = usize::try_from(cap).is_ok_and(|c| {
            c.is_power_of_two()
                && (MIN_CAPACITY..=MAX_CAPACITY).contains(&c)
                && HEADER_LEN + c <= region.len()
        });
        if !cap_ok {
            return Err(bad(format!("queue header has an invalid capacity {cap}")));
        }
        Ok(Ring::with(region, cap, maxsize))
    }

    fn with(region: SharedRegion, cap: u64, maxsize: u64) -> Ring {
        Ring {
            region,
            cap,
            mask: cap - 1,
            maxsize,
            min_chunk: (cap / 4).min(64 * 1024),
            data_pause: AtomicU32::new(0),
            space_pause: AtomicU32::new(0),
            #[cfg(test)]
            hooks: Hooks::default(),
        }
    }

    /// The memfd, for passing the queue to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// The mapping (JoinableQueue reads its header words through it).
    pub(crate) fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Closes this process's descriptor, keeping the mapping (see
    /// `SharedRegion::release_fd`).
    pub(crate) fn release_fd(&mut self) {
        self.region.release_fd();
    }

    /// The item limit (0: none).
    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    /// Ring capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    fn put_lock(&self) -> RawLock<'_> {
        RawLock::new(self.region.atomic_u32(PUT_LOCK_AT))
    }
    fn get_lock(&self) -> RawLock<'_> {
        RawLock::new(self.region.atomic_u32(GET_LOCK_AT))
    }
    fn tail(&self) -> &AtomicU64 {
        self.region.atomic_u64(TAIL_AT)
    }
    fn head(&self) -> &AtomicU64 {
        self.region.atomic_u64(HEAD_AT)
    }
    fn head_seen(&self) -> &AtomicU64 {
        self.region.atomic_u64(HEAD_SEEN_AT)
    }
    fn tail_seen(&self) -> &AtomicU64 {
        self.region.atomic_u64(TAIL_SEEN_AT)
    }

    /// Items put and not yet taken (a snapshot). Counts an item from the
    /// moment its first chunk is published until its first chunk is taken.
    pub(crate) fn len(&self) -> u64 {
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        cnt(tail).wrapping_sub(cnt(head)) & CNT_MASK
    }

    /// Bytes in use between `head` and `tail`, or `None` if the words are
    /// inconsistent (corrupted by a hostile peer).
    fn used(&self, tail: u64, head: u64) -> Option<u64> {
        let used = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
        (used <= self.cap).then_some(used)
    }

    // ---- waiting -------------------------------------------------------

    /// Waits until `tail` (for [`Side::Data`]) or `head` (for
    /// [`Side::Space`]) no longer reads `seen`, or until
    /// `until`; with `writer`, the pid of a partial item's producer, also
    /// until that producer is found dead, probed after each [`park::SLICE`]
    /// without change, and then returns `true`. See the module docs for the
    /// eventcount protocol and for the adaptive first pause (`data_pause`,
    /// `space_pause`).
    fn wait_change(
        &self,
        side: Side,
        seen: u64,
        until: Option<Instant>,
        writer: Option<u32>,
    ) -> bool {
        // The rest of a started item is awaited even after a shutdown (its
        // producer finishes it or aborts it).
        let stop = writer.is_none();
        let shut = self.region.atomic_u32(SHUTDOWN_AT);
        let (word, epoch_at, waiters_at, pause) = match side {
            Side::Data => (
                self.tail(),
                DATA_EPOCH_AT,
                DATA_WAITERS_AT,
                &self.data_pause,
            ),
            Side::Space => (
                self.head(),
                SPACE_EPOCH_AT,
                SPACE_WAITERS_AT,
                &self.space_pause,
            ),
        };
        let policy = park::Policy {
            spin: Spin::Paused {
                pause,
                min_ns: MIN_PAUSE_NS,
                max_ns: MAX_PAUSE_NS,
                budget: SPIN_BUDGET,
            },
            slice: writer.map(|_| park::SLICE),
            probe_at_deadline: false,
            what: "queue epoch",
        };
        let epoch = self.region.atomic_u32(epoch_at);
        park::park(
            &policy,
            until,
            Wait {
                sleepers: Some(self.region.atomic_u32(waiters_at)),
                poll: |_| {
                    Poll::ready_if(
                        word.load(Ordering::Acquire) != seen
                            || (stop && shut.load(Ordering::Acquire) != OPEN),
                        false,
                    )
                },
                sleep: || {
                    let e = epoch.load(Ordering::SeqCst);
                    (word.load(Ordering::SeqCst) == seen
                        && !(stop && shut.load(Ordering::SeqCst) != OPEN))
                        .then_some(SleepOn {
                            word: epoch,
                            expected: e,
                        })
                },
                probe: || writer.is_some_and(|w| !owner_alive(w)).then_some(true),
                timed_out: || Some(false),
            },
        )
    }

    /// The shutdown state ([`OPEN`], [`SHUT_DOWN`], [`SHUT_DOWN_NOW`]).
    fn shutdown_state(&self) -> u32 {
        self.region.atomic_u32(SHUTDOWN_AT).load(Ordering::SeqCst)
    }

    /// Whether [`shutdown`](Ring::shutdown) was called (by any process).
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown_state() != OPEN
    }

    /// Shuts the queue down: later and blocked puts fail; gets drain what is
    /// left and then fail, or, `immediate`, fail at once, what is left being
    /// discarded (returns how many items were). Wakes every sleeper: the
    /// flag's SeqCst store precedes the epoch bumps, and a sleeper re-checks
    /// the flag after reading the epoch, so none sleeps past it.
    pub(crate) fn shutdown(&self, immediate: bool) -> u64 {
        let flag = self.region.atomic_u32(SHUTDOWN_AT);
        let _ = flag.compare_exchange(OPEN, SHUT_DOWN, Ordering::SeqCst, Ordering::SeqCst);
        if immediate {
            flag.store(SHUT_DOWN_NOW, Ordering::SeqCst);
        }
        for epoch_at in [DATA_EPOCH_AT, SPACE_EPOCH_AT] {
            let epoch = self.region.atomic_u32(epoch_at);
            epoch.fetch_add(1, Ordering::SeqCst);
            futex::wake(epoch, u32::MAX);
        }
        if !immediate {
            return 0;
        }
        // Getters leave at once now, so the get lock comes free.
        let lock = self.get_lock();
        let _ = lock.lock(None);
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.refresh_tail();
        let dropped = cnt(tail).wrapping_sub(cnt(head)) & CNT_MASK;
        self.head()
            .store(pack(pos(tail), cnt(tail)), Ordering::SeqCst);
        self.notify(SPACE_EPOCH_AT, SPACE_WAITERS_AT);
        lock.unlock();
        dropped
    }

    /// Wakes whoever waits on the epoch, if anyone does. Must follow a SeqCst
    /// store of the position the waiter watches.
    #[inline]
    fn notify(&self, epoch_at: usize, waiters_at: usize) {
        if self.region.atomic_u32(waiters_at).load(Ordering::SeqCst) != 0 {
            let epoch = self.region.atomic_u32(epoch_at);
            epoch.fetch_add(1, Ordering::SeqCst);
            futex::wake(epoch, u32::MAX);
        }
    }

    // ---- records -------------------------------------------------------

    /// Copies `bytes` to ring position `at`, wrapping at the end.
    fn write_wrapped(&self, at: u64, bytes: &[u8]) {
        let start = (at & self.mask) as usize;
        let first = bytes.len().min(self.cap as usize - start);
        self.region.write_bytes(HEADER_LEN + start, &bytes[..first]);
        if first < bytes.len() {
            self.region.write_bytes(HEADER_LEN, &bytes[first..]);
        }
    }

    /// Copies ring bytes at position `at` into `dst`, wrapping at the end.
    fn read_wrapped(&self, at: u64, dst: &mut [u8]) {
        let start = (at & self.mask) as usize;
        let first = dst.len().min(self.cap as usize - start);
        let (a, b) = dst.split_at_mut(first);
        self.region.read_bytes(HEADER_LEN + start, a);
        if !b.is_empty() {
            self.region.read_bytes(HEADER_LEN, b);
        }
    }

    /// Writes a record at `at` whose payload is bytes `from..from + len` of
    /// `msg`; returns the record's size in the ring.
    fn write_record(
        &self,
        at: u64,
        flags: u8,
        pid: u32,
        msg: Msg<'_>,
        from: usize,
        len: usize,
    ) -> u64 {
        let header = (len as u64 & 0xffff_ffff)
            | (u64::from(flags) << 32)
            | (u64::from(pid & 0xff_ffff) << 40);
        let start = (at & self.mask) as usize;
        // Records start 8-aligned and the capacity is a multiple of 8, so the
        // header never wraps. A small payload that does not wrap either goes
        // out with its header in one copy.
        let body = start + REC_HDR as usize;
        if len <= SMALL && from == 0 && len as u64 == msg.len() && body + len <= self.cap as usize {
            let mut rec = [0u8; REC_HDR as usize + SMALL];
            rec[..8].copy_from_slice(&header.to_le_bytes());
            rec[8..8 + msg.head.len()].copy_from_slice(msg.head);
            rec[8 + msg.head.len()..8 + len].copy_from_slice(msg.body);
            self.region.write_bytes(HEADER_LEN + start, &rec[..8 + len]);
            return REC_HDR + pad8(len as u64);
        }
        self.region
            .write_bytes(HEADER_LEN + start, &header.to_le_bytes());
        let mut to = at + REC_HDR;
        let end = from + len;
        let mut off = 0;
        for part in [msg.head, msg.body] {
            let (lo, hi) = (from.max(off), end.min(off + part.len()));
            if lo < hi {
                self.write_wrapped(to, &part[lo - off..hi - off]);
                to += (hi - lo) as u64;
            }
            off += part.len();
        }
        REC_HDR + pad8(len as u64)
    }

    fn read_header(&self, at: u64) -> (u64, u8, u32) {
        let mut h = [0u8; 8];
        self.region
            .read_bytes(HEADER_LEN + (at & self.mask) as usize, &mut h);
        let h = u64::from_le_bytes(h);
        (
            h & 0xffff_ffff,
            (h >> 32) as u8,
            ((h >> 40) & 0xff_ffff) as u32,
        )
    }

    /// Appends payload bytes `skip..len` of the record at `at` to `out`.
    fn append_payload(&self, at: u64, skip: u64, len: u64, out: &mut Vec<u8>) {
        if skip >= len {
            return;
        }
        let body = ((at + REC_HDR + skip) & self.mask) as usize;
        let len = (len - skip) as usize;
        let first = len.min(self.cap as usize - body);
        self.region.append_to(HEADER_LEN + body, first, out);
        if first < len {
            self.region.append_to(HEADER_LEN, len - first, out);
        }
    }

    /// Reads the LEB128 varint (postcard's length prefix) at the start of the
    /// `len`-byte payload of the record at `at`: `(value, bytes)`, or `None`
    /// if no valid varint ends within the payload's first 10 bytes.
    fn peek_varint(&self, at: u64, len: u64) -> Option<(u64, u64)> {
        let mut buf = [0u8; 10];
        let n = (len as usize).min(buf.len());
        self.read_wrapped(at + REC_HDR, &mut buf[..n]);
        let mut value = 0u64;
        for (i, b) in buf[..n].iter().enumerate() {
            if i == 9 && *b > 1 {
                return None; // more than 64 bits
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some((value, i as u64 + 1));
            }
        }
        None
    }

    fn header_pid(&self) -> u32 {
        #[cfg(test)]
        {
            let p = self.hooks.header_pid.load(Ordering::Relaxed);
            if p != 0 {
                return p;
            }
        }
        my_id()
    }

    #[cfg(test)]
    fn crash_now(
        &self,
        hook: &std::sync::atomic::AtomicUsize,
        chunks: usize,
        lock: RawLock<'_>,
    ) -> bool {
        let n = hook.load(Ordering::Relaxed);
        if n != 0 && chunks >= n {
            lock.force_word(self.hooks.dead_id.load(Ordering::Relaxed));
            return true;
        }
        false
    }

    // ---- put -----------------------------------------------------------

    /// Appends one item whose bytes are `msg`. `lock_deadline` bounds the
    /// wait for the put lock, `deadline` the wait for room; a `deadline`
    /// already passed makes this a try (the item must fit whole, now).
    pub(crate) fn put(
        &self,
        msg: Msg<'_>,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), Incomplete> {
        let lock = self.put_lock();
        let how = lock.lock(lock_deadline).ok_or(Incomplete::Deadline)?;
        if how == Acquired::OwnerDied {
            self.recover_put();
        }
        if self.is_shutdown() {
            lock.unlock();
            return Err(Incomplete::ShutDown);
        }
        let result = self.put_locked(msg, deadline, lock);
        #[cfg(test)]
        if result == Err(Incomplete::Crashed) {
            return result;
        }
        lock.unlock();
        result
    }

    /// After taking the put lock from a dead producer: nobody sleeps on the
    /// space epoch any more, and a consumer may wait for the rest of an item
    /// the dead producer started: tell it to drop that item.
    fn recover_put(&self) {
        self.region
            .atomic_u32(SPACE_WAITERS_AT)
            .store(0, Ordering::SeqCst);
        let tail = self.tail().load(Ordering::Acquire);
        let head = self.head().load(Ordering::Acquire);
        self.head_seen().store(head, Ordering::Relaxed);
        if let Some(used) = self.used(tail, head)
            && self.cap - used >= REC_HDR
        {
            let rec = self.write_record(pos(tail), ABORT, self.header_pid(), Msg::EMPTY, 0, 0);
            self.tail()
                .store(pack(pos(tail) + rec, cnt(tail)), Ordering::SeqCst);
            self.notify(DATA_EPOCH_AT, DATA_WAITERS_AT);
        }
    }

    /// Reads `head` afresh and caches it for the next producer.
    fn refresh_head(&self) -> u64 {
        let head = self.head().load(Ordering::Acquire);
        self.head_seen().store(head, Ordering::Relaxed);
        head
    }

    fn put_locked(
        &self,
        msg: Msg<'_>,
        deadline: Option<Instant>,
        _lock: RawLock<'_>,
    ) -> Result<(), Incomplete> {
        let pid = self.header_pid();
        let tail_word = self.tail();
        // Only producers write `tail`, and we hold the put lock.
        let mut tail = tail_word.load(Ordering::Relaxed);
        // A lower bound of `head` (see the module docs): re-read only when
        // it shows too little room.
        let mut head = self.head_seen().load(Ordering::Relaxed);
        let mut fresh = false;
        let total = msg.len();
        let mut done = 0u64;
        let mut chunks = 0usize;
        // Room for the item count first (bounded queues).
        if self.maxsize != 0 {
            loop {
                let ok = cnt(tail).wrapping_sub(cnt(head)) & CNT_MASK < self.maxsize
                    && (fresh || self.used(tail, head).is_some());
                if ok {
                    break;
                }
                if !fresh {
                    head = self.refresh_head();
                    fresh = true;
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Incomplete::Deadline);
                }
                if self.is_shutdown() {
                    return Err(Incomplete::ShutDown);
                }
                self.wait_change(Side::Space, head, deadline, None);
                head = self.refresh_head();
            }
        }
        loop {
            let free = match self.used(tail, head) {
                Some(used) => self.cap - used,
                None => 0, // corrupted words: wait for a consumer to resync
            };
            let first = done == 0;
            let remaining = total - done;
            let whole = REC_HDR + pad8(remaining);
            if whole > free && !fresh {
                head = self.refresh_head();
                fresh = true;
                continue;
            }
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            // A try never starts an item it cannot finish now.
            let chunk = if whole <= free {
                Some((remaining, LAST))
            } else if !(first && expired) && free >= 2 * REC_HDR + self.min_chunk {
                // Leave REC_HDR free for a possible ABORT record.
                Some(((free - 2 * REC_HDR) & !7, 0))
            } else {
                None
            };
            if let Some((len, last)) = chunk {
                let flags = last | if first { FIRST } else { 0 };
                let rec =
                    self.write_record(pos(tail), flags, pid, msg, done as usize, len as usize);
                tail = pack(pos(tail) + rec, cnt(tail) + u64::from(first));
                tail_word.store(tail, Ordering::SeqCst);
                self.notify(DATA_EPOCH_AT, DATA_WAITERS_AT);
                done += len;
                chunks += 1;
                if last != 0 {
                    return Ok(());
                }
                #[cfg(test)]
                if self.crash_now(&self.hooks.crash_put_after, chunks, _lock) {
                    return Err(Incomplete::Crashed);
                }
                continue;
            }
            let shut = self.is_shutdown();
            if expired || shut {
                if !first {
                    // Mid-item: the reserve guarantees room for this.
                    let rec = self.write_record(pos(tail), ABORT, pid, Msg::EMPTY, 0, 0);
                    tail = pack(pos(tail) + rec, cnt(tail));
                    tail_word.store(tail, Ordering::SeqCst);
                    self.notify(DATA_EPOCH_AT, DATA_WAITERS_AT);
                }
                return Err(if shut {
                    Incomplete::ShutDown
                } else {
                    Incomplete::Deadline
                });
            }
            let _ = chunks;
            self.wait_change(Side::Space, head, deadline, None);
            head = self.refresh_head();
        }
    }

    // ---- get -----------------------------------------------------------

    /// Takes one item into `out` (cleared first). `lock_deadline` bounds the
    /// wait for the get lock, `deadline` the wait for an item to start.
    ///
    /// With `strip`, the item is expected to start with a postcard length
    /// prefix (a `Vec<u8>` or `String`): the prefix is not copied to `out`,
    /// `out` is reserved to the announced length up front, and the result
    /// is `Some(announced length)`; `None` if the prefix was not a valid
    /// varint (then `out` holds the whole item). Without `strip`, `None`.
    ///
    /// Once an item's first chunk is taken, the rest is awaited past
    /// `deadline` (its producer is streaming it, or gives up with an `ABORT`,
    /// or is found dead within ~100 ms).
    #[cfg(test)]
    pub(crate) fn get(
        &self,
        out: &mut Vec<u8>,
        strip: bool,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<Option<u64>, Incomplete> {
        self.get_counted(out, strip, lock_deadline, deadline, None)
    }

    /// [`get`](Ring::get), counting the item in the `u64` at offset `slot`
    /// of the header (a JoinableQueue slot): incremented *before* the `head`
    /// store that takes the item's first record, so at every instant the
    /// item is counted by `len()`, by the slot, or by both; decremented again
    /// if the partial item is dropped.
    pub(crate) fn get_counted(
        &self,
        out: &mut Vec<u8>,
        strip: bool,
        lock_deadline: Option<Instant>,
        deadline: Option<Instant>,
        slot: Option<usize>,
    ) -> Result<Option<u64>, Incomplete> {
        let lock = self.get_lock();
        let how = lock.lock(lock_deadline).ok_or(Incomplete::Deadline)?;
        if how == Acquired::OwnerDied {
            // The dead consumer may have been asleep on the data epoch.
            self.region
                .atomic_u32(DATA_WAITERS_AT)
                .store(0, Ordering::SeqCst);
            self.refresh_tail();
            // It may also have died between storing a new `head` and waking
            // the producers asleep for room: wake them now, or a producer
            // sleeps on while the ring has room and this consumer waits for
            // its data.
            self.notify(SPACE_EPOCH_AT, SPACE_WAITERS_AT);
        }
        let result = self.get_locked(out, strip, deadline, lock, slot);
        #[cfg(test)]
        if result == Err(Incomplete::Crashed) {
            return result;
        }
        lock.unlock();
        result
    }

    /// Reads `tail` afresh and caches it for the next consumer.
    fn refresh_tail(&self) -> u64 {
        let tail = self.tail().load(Ordering::Acquire);
        self.tail_seen().store(tail, Ordering::Relaxed);
        tail
    }

    /// Whether the record at `head` lies wholly before `tail`.
    fn whole_record_before(&self, tail: u64, head: u64) -> bool {
        self.used(tail, head).is_some_and(|used| {
            used >= REC_HDR && REC_HDR + pad8(self.read_header(pos(head)).0) <= used
        })
    }

    fn get_locked(
        &self,
        out: &mut Vec<u8>,
        strip: bool,
        deadline: Option<Instant>,
        _lock: RawLock<'_>,
        slot: Option<usize>,
    ) -> Result<Option<u64>, Incomplete> {
        out.clear();
        // A taken item leaves the slot count when it is dropped half-read.
        let untake = |partial: &mut Option<u32>| {
            if partial.take().is_some()
                && let Some(at) = slot
            {
                self.region.atomic_u64(at).fetch_sub(1, Ordering::SeqCst);
            }
        };
        let head_word = self.head();
        // Only consumers write `head`, and we hold the get lock.
        let mut head = head_word.load(Ordering::Relaxed);
        // A lower bound of `tail` (see the module docs).
        let mut tail = self.tail_seen().load(Ordering::Relaxed);
        // The writer pid of the item being assembled, if any.
        let mut partial: Option<u32> = None;
        // The length announced by the item's prefix (with `strip`).
        let mut announced = None;
        let mut chunks = 0usize;
        loop {
            if partial.is_none() && self.shutdown_state() == SHUT_DOWN_NOW {
                return Err(Incomplete::ShutDown);
            }
            if !self.whole_record_before(tail, head) {
                tail = self.refresh_tail();
            }
            let Some(used) = self.used(tail, head) else {
                // Inconsistent words: drop everything published.
                head = pack(pos(tail), cnt(tail));
                head_word.store(head, Ordering::SeqCst);
                untake(&mut partial);
                out.clear();
                continue;
            };
            if used == 0 {
                match partial {
                    None => {
                        if self.is_shutdown() {
                            return Err(Incomplete::ShutDown);
                        }
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(Incomplete::Deadline);
                        }
                        self.wait_change(Side::Data, tail, deadline, None);
                    }
                    Some(writer) => {
                        // The rest of a started item: no deadline, but
                        // its producer may have died.
                        if self.wait_change(Side::Data, tail, None, Some(writer)) {
                            untake(&mut partial);
                            out.clear();
                        }
                    }
                }
                continue;
            }
            let (len, flags, writer) = self.read_header(pos(head));
            let rec = REC_HDR + pad8(len);
            if rec > used {
                // A length no producer could have written: resync at tail.
                head = pack(pos(tail), cnt(tail));
                head_word.store(head, Ordering::SeqCst);
                self.notify(SPACE_EPOCH_AT, SPACE_WAITERS_AT);
                untake(&mut partial);
                out.clear();
                continue;
            }
            let starts = flags & FIRST != 0;
            let mut complete = false;
            if starts {
                untake(&mut partial);
                if let Some(at) = slot {
                    self.region.atomic_u64(at).fetch_add(1, Ordering::SeqCst);
                }
                out.clear();
                announced = None;
                let mut skip = 0;
                if strip && let Some((n, k)) = self.peek_varint(pos(head), len) {
                    announced = Some(n);
                    skip = k;
                    out.reserve_exact(n.min(MAX_RESERVE) as usize);
                }
                self.append_payload(pos(head), skip, len, out);
                partial = Some(writer);
                complete = flags & LAST != 0;
            } else if flags & ABORT != 0 {
                untake(&mut partial);
                out.clear();
            } else if partial == Some(writer) {
                self.append_payload(pos(head), 0, len, out);
                complete = flags & LAST != 0;
            }
            // else: a continuation of an item nobody here started; drop it.
            head = pack(pos(head) + rec, cnt(head) + u64::from(starts));
            head_word.store(head, Ordering::SeqCst);
            self.notify(SPACE_EPOCH_AT, SPACE_WAITERS_AT);
            if complete {
                return Ok(announced);
            }
            chunks += 1;
            #[cfg(test)]
            if partial.is_some() && self.crash_now(&self.hooks.crash_get_after, chunks, _lock) {
                return Err(Incomplete::Crashed);
            }
            let _ = chunks;
        }
    }
}

/// Loom models of the ring (`scripts/loom.sh`): the real [`Ring`] with
/// threads as processes (see `sys/model.rs`). loom explores every
/// interleaving of the put/get locks, the `tail`/`head` publication and the
/// eventcount, checks each byte copy against a racing copy of the same bytes,
/// and reports a sleeper nobody wakes as a deadlock.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sys::model;
    use loom::sync::Arc;

    /// An item naming its producer and its sequence number, `len` bytes.
    fn item(producer: u8, seq: u8, len: usize) -> Vec<u8> {
        let mut v = vec![producer.wrapping_mul(16).wrapping_add(seq); len];
        v[0] = producer;
        v[len - 1] = seq;
        v
    }

    fn put(ring: &Ring, bytes: &[u8]) {
        ring.put(Msg::whole(bytes), None, None).unwrap();
    }

    fn get(ring: &Ring) -> Vec<u8> {
        let mut out = Vec::new();
        ring.get(&mut out, false, None, None).unwrap();
        out
    }

    fn ring(capacity: usize, maxsize: usize) -> Arc<Ring> {
        Arc::new(Ring::create(capacity, maxsize, 0, KIND_PLAIN).unwrap())
    }

    /// Two producers, one consumer: every item arrives exactly once, each
    /// producer's items in order, intact.
    #[test]
    fn two_producers_one_consumer_exactly_once_in_order() {
        model::check(2, || {
            let ring = ring(MIN_CAPACITY, 0);
            let producers: Vec<_> = [2u8, 3]
                .into_iter()
                .map(|p| {
                    let ring = ring.clone();
                    model::spawn(u32::from(p), move || {
                        put(&ring, &item(p, 0, 5));
                        put(&ring, &item(p, 1, 5));
                    })
                })
                .collect();
            let mut next = [0u8; 2];
            for _ in 0..4 {
                let got = get(&ring);
                let p = got[0];
                assert!(p == 2 || p == 3, "{got:?}");
                let seq = next[usize::from(p - 2)];
                assert_eq!(got, item(p, seq, 5), "producer {p} out of order");
                next[usize::from(p - 2)] += 1;
            }
            for t in producers {
                t.join().unwrap();
            }
            assert_eq!(next, [2, 2]);
            assert_eq!(ring.len(), 0);
        });
    }

    /// A 64-byte ring and records of 16 and 32 bytes: positions wrap, and a
    /// payload is split across the end of the ring.
    #[test]
    fn wraparound_in_a_tiny_ring() {
        model::check(2, || {
            let ring = ring(MIN_CAPACITY, 0);
            let lens = [8usize, 20, 8, 20, 20];
            let producer = {
                let ring = ring.clone();
                model::spawn(2, move || {
                    for (seq, len) in lens.into_iter().enumerate() {
                        put(&ring, &item(2, seq as u8, len));
                    }
                })
            };
            for (seq, len) in lens.into_iter().enumerate() {
                assert_eq!(get(&ring), item(2, seq as u8, len));
            }
            producer.join().unwrap();
        });
    }

    /// An item larger than the whole ring streams through in chunks while
    /// the consumer drains it: producer and consumer each wait for the
    /// other, in turn, and neither wake-up may be lost.
    #[test]
    fn item_larger_than_the_ring_streams_through() {
        model::check(2, || {
            let ring = ring(MIN_CAPACITY, 0);
            let big = item(2, 7, 150);
            let producer = {
                let (ring, big) = (ring.clone(), big.clone());
                model::spawn(2, move || put(&ring, &big))
            };
            assert_eq!(get(&ring), big);
            producer.join().unwrap();
        });
    }

    /// `maxsize` 1: the producer blocks while the queue is full, the
    /// consumer while it is empty; each side's progress must wake the other.
    #[test]
    fn full_and_empty_block_and_wake() {
        model::check(3, || {
            let ring = ring(MIN_CAPACITY, 1);
            let producer = {
                let ring = ring.clone();
                model::spawn(2, move || {
                    for seq in 0..3 {
                        put(&ring, &item(2, seq, 3));
                    }
                })
            };
            for seq in 0..3 {
                assert_eq!(get(&ring), item(2, seq, 3));
            }
            producer.join().unwrap();
        });
    }

    /// Two consumers, one producer: each item goes to exactly one consumer.
    #[test]
    fn two_consumers_take_each_item_once() {
        model::check(2, || {
            let ring = ring(MIN_CAPACITY, 0);
            let consumers: Vec<_> = [3u32, 4]
                .into_iter()
                .map(|pid| {
                    let ring = ring.clone();
                    model::spawn(pid, move || get(&ring))
                })
                .collect();
            let producer = {
                let ring = ring.clone();
                model::spawn(2, move || {
                    put(&ring, &item(2, 0, 4));
                    put(&ring, &item(2, 1, 4));
                })
            };
            producer.join().unwrap();
            let mut got: Vec<_> = consumers.into_iter().map(|t| t.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, [item(2, 0, 4), item(2, 1, 4)]);
        });
    }
}
