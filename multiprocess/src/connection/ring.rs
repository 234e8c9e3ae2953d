//! The shared-memory part of a connection pair: two single-producer,
//! single-consumer byte rings (one per direction) in one sealed memfd.
//!
//! # Why
//!
//! A socket message costs a `sendmsg` and a `recvmsg` (about 1 µs each on a
//! virtual machine) and, when the receiver sleeps, a wake-up (about 30 µs
//! across CPUs). Small messages instead go through a ring, so a receiver that
//! spins a little sees them with no syscall on either side; the socket stays
//! for descriptors (`SCM_RIGHTS`), large payloads, end-of-stream and peer
//! death, and as the wake-up channel of a receiver that sleeps.
//!
//! # Layout
//!
//! | offset            | contents                                               |
//! |-------------------|--------------------------------------------------------|
//! | `d * 512`         | direction `d` (sent by side `d`): producer words       |
//! | `d * 512 + 128`   | direction `d`: consumer words                          |
//! | 1024              | magic, ring length                                     |
//! | `1088 + s * 64`   | the CPU side `s` last ran on, plus one (0: unknown)    |
//! | `4096 + d * LEN`  | direction `d`'s ring of [`RING_LEN`] bytes             |
//!
//! Producer words: `tail` (bytes ever written, `u64`), `shut` (`u32`, set by
//! [`Pipe::simplex`](crate::Pipe::simplex) on the direction that carries
//! nothing). Consumer words: `head` (bytes ever consumed), `rx_sleep` (the
//! consumer is about to sleep on the socket), `tx_wait` (the producer waits
//! for space) and `space_seq` (the futex word the producer sleeps on).
//!
//! # Records
//!
//! A record is a 16-byte header — `len: u32`, `kind: u32`, `tag: u64`, little
//! endian — followed by `len` payload bytes, written at `tail` modulo the
//! ring length and wrapping around its end. [`INLINE`] records carry their
//! payload; a [`MARKER`] record (no payload) says "the next message is a
//! frame on the socket". Every message, inline or not, takes its place in the
//! ring, so order is kept between the two paths; a frame is written only
//! after its marker is published, so a full socket never waits on a reader
//! that has not yet seen the marker.
//!
//! # Publication and wake-ups
//!
//! The producer copies a whole record, then publishes it with one Release
//! store of `tail`: a producer killed mid-copy never publishes a torn record.
//! A consumer that wants to sleep sets `rx_sleep`, then re-checks `tail`; the
//! producer, after publishing, checks `rx_sleep` (a `SeqCst` fence on both
//! sides between the store and the load, Dekker style, so at least one of
//! them sees the other) and, if set, clears it and writes a doorbell frame on
//! the socket. A producer waiting for space does the same with `tx_wait`,
//! sleeping on the futex word `space_seq` in short slices so that it notices
//! a dead peer.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use crate::sys::atomic::fence;
use std::time::Instant;

use crate::sys::futex;
use crate::sys::shm::SharedRegion;

/// Bytes of each direction's ring.
pub(crate) const RING_LEN: usize = 256 << 10;

/// Payloads up to this size (and without descriptors) travel inline in the
/// ring; larger ones as socket frames behind a marker.
pub(crate) const INLINE_MAX: usize = 32 << 10;

/// Size of a record header.
pub(crate) const RECORD_HEADER: usize = 16;

/// Record kind: the payload follows in the ring.
pub(crate) const INLINE: u32 = 1;
/// Record kind: the message is the next frame on the socket.
pub(crate) const MARKER: u32 = 2;

const DIR_STRIDE: usize = 512;
const TAIL: usize = 0;
const SHUT: usize = 8;
const HEAD: usize = 128;
const RX_SLEEP: usize = 136;
const TX_WAIT: usize = 140;
const SPACE_SEQ: usize = 144;
const MAGIC_AT: usize = 1024;
const LEN_AT: usize = 1032;
const CPU_AT: usize = 1088;
const DATA: usize = 4096;
const TOTAL: usize = DATA + 2 * RING_LEN;
const MAGIC: u64 = u64::from_le_bytes(*b"mpconn01");

/// A record header read from the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// Payload length.
    pub len: usize,
    /// [`INLINE`] or [`MARKER`].
    pub kind: u32,
    /// The message's type tag (inline records).
    pub tag: u64,
}

/// One end's view of the shared rings: it produces into direction `side`
/// and consumes from direction `1 - side`.
#[derive(Debug)]
pub(crate) struct Rings {
    region: SharedRegion,
    side: usize,
}

impl Rings {
    /// A fresh pair of views, side 0 and side 1, on one new region.
    pub(crate) fn pair() -> io::Result<(Rings, Rings)> {
        let region = SharedRegion::create("multiprocess-pipe", TOTAL)?;
        region.atomic_u64(MAGIC_AT).store(MAGIC, Ordering::Relaxed);
        region
            .atomic_u64(LEN_AT)
            .store(RING_LEN as u64, Ordering::Relaxed);
        let other = SharedRegion::from_fd(region.fd().try_clone_to_owned()?, TOTAL)?;
        Ok((
            Rings { region, side: 0 },
            Rings {
                region: other,
                side: 1,
            },
        ))
    }

    /// Maps a region received from another process as `side`.
    pub(crate) fn from_fd(fd: OwnedFd, side: u8) -> io::Result<Rings> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if side > 1 {
            return Err(invalid("bad connection side"));
        }
        let region = SharedRegion::from_fd(fd, TOTAL)?;
        if region.atomic_u64(MAGIC_AT).load(Ordering::Relaxed) != MAGIC
            || region.atomic_u64(LEN_AT).load(Ordering::Relaxed) != RING_LEN as u64
        {
            return Err(invalid(
                "descriptor is not a multiprocess connection region",
            ));
        }
        Ok(Rings {
            region,
            side: side as usize,
        })
    }

    /// The memfd, to travel with a serialized connection.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// This end's side (0 or 1).
    pub(crate) fn side(&self) -> u8 {
        self.side as u8
    }

    fn out(&self, at: usize) -> usize {
        self.side * DIR_STRIDE + at
    }

    fn inc(&self, at: usize) -> usize {
        (1 - self.side) * DIR_STRIDE + at
    }

    /// Copies `bytes` into the ring of direction `dir` at stream position
    /// `pos`, wrapping around its end.
    fn write_at(&self, dir: usize, pos: u64, bytes: &[u8]) {
        let off = (pos % RING_LEN as u64) as usize;
        let first = bytes.len().min(RING_LEN - off);
        let base = DATA + dir * RING_LEN;
        self.region.write_bytes(base + off, &bytes[..first]);
        if first < bytes.len() {
            self.region.write_bytes(base, &bytes[first..]);
        }
    }

    /// Fills `dst` from direction `dir` at position `pos`, wrapping.
    fn read_at(&self, dir: usize, pos: u64, dst: &mut [u8]) {
        let off = (pos % RING_LEN as u64) as usize;
        let first = dst.len().min(RING_LEN - off);
        let base = DATA + dir * RING_LEN;
        let (a, b) = dst.split_at_mut(first);
        self.region.read_bytes(base + off, a);
        if !b.is_empty() {
            self.region.read_bytes(base, b);
        }
    }

    /// Appends `len` bytes of direction `dir` at position `pos` to `dst`.
    fn append_at(&self, dir: usize, pos: u64, len: usize, dst: &mut Vec<u8>) {
        let off = (pos % RING_LEN as u64) as usize;
        let first = len.min(RING_LEN - off);
        let base = DATA + dir * RING_LEN;
        self.region.append_to(base + off, first, dst);
        if first < len {
            self.region.append_to(base, len - first, dst);
        }
    }

    // ---- this end as the producer ----

    /// Whether this end's sending direction was shut (the reader of a
    /// simplex pipe).
    pub(crate) fn out_shut(&self) -> bool {
        self.region
            .atomic_u32(self.out(SHUT))
            .load(Ordering::Relaxed)
            != 0
    }

    /// Marks this end's sending direction as carrying nothing.
    pub(crate) fn shut_out(&self) {
        self.region
            .atomic_u32(self.out(SHUT))
            .store(1, Ordering::Relaxed);
    }

    /// Free bytes in the outgoing ring.
    pub(crate) fn free(&self) -> usize {
        let tail = self
            .region
            .atomic_u64(self.out(TAIL))
            .load(Ordering::Relaxed);
        let head = self
            .region
            .atomic_u64(self.out(HEAD))
            .load(Ordering::Acquire);
        RING_LEN.saturating_sub(tail.wrapping_sub(head) as usize)
    }

    /// Writes and publishes one record; the caller checked that
    /// `RECORD_HEADER + payload.len()` bytes are [`free`](Rings::free).
    pub(crate) fn push(&self, kind: u32, tag: u64, payload: &[u8]) {
        let tail = self.region.atomic_u64(self.out(TAIL));
        let pos = tail.load(Ordering::Relaxed);
        let mut head = [0u8; RECORD_HEADER];
        head[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&kind.to_le_bytes());
        head[8..16].copy_from_slice(&tag.to_le_bytes());
        self.write_at(self.side, pos, &head);
        self.write_at(self.side, pos + RECORD_HEADER as u64, payload);
        tail.store(
            pos + (RECORD_HEADER + payload.len()) as u64,
            Ordering::Release,
        );
    }

    /// After a [`push`](Rings::push): whether the consumer announced it is
    /// going to sleep on the socket. Clears the announcement, so each sleep
    /// gets at most one doorbell.
    pub(crate) fn take_sleeper(&self) -> bool {
        fence(Ordering::SeqCst);
        let flag = self.region.atomic_u32(self.out(RX_SLEEP));
        flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::Relaxed) != 0
    }

    /// Announces that the producer is about to sleep for space; returns the
    /// futex value to sleep on. The caller re-checks [`free`](Rings::free).
    pub(crate) fn announce_tx_wait(&self) -> u32 {
        self.region
            .atomic_u32(self.out(TX_WAIT))
            .store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.region
            .atomic_u32(self.out(SPACE_SEQ))
            .load(Ordering::Relaxed)
    }

    /// Sleeps until the consumer frees space (bumps `space_seq` from `seq`)
    /// or `deadline`.
    pub(crate) fn wait_space(&self, seq: u32, deadline: Instant) -> io::Result<()> {
        futex::wait(
            self.region.atomic_u32(self.out(SPACE_SEQ)),
            seq,
            Some(deadline),
        )
    }

    // ---- this end as the consumer ----

    /// Whether a record is waiting in the incoming ring.
    #[inline]
    pub(crate) fn has_record(&self) -> bool {
        let tail = self
            .region
            .atomic_u64(self.inc(TAIL))
            .load(Ordering::Acquire);
        tail != self
            .region
            .atomic_u64(self.inc(HEAD))
            .load(Ordering::Relaxed)
    }

    /// Whether the peer's sending direction was shut (this end is the writer
    /// of a simplex pipe).
    pub(crate) fn in_shut(&self) -> bool {
        self.region
            .atomic_u32(self.inc(SHUT))
            .load(Ordering::Relaxed)
            != 0
    }

    /// The next incoming record's header, if one is published. An
    /// impossible header (only a broken or hostile peer writes one) is an
    /// error.
    pub(crate) fn peek(&self) -> Result<Option<Record>, String> {
        let dir = 1 - self.side;
        let tail = self
            .region
            .atomic_u64(self.inc(TAIL))
            .load(Ordering::Acquire);
        let head = self
            .region
            .atomic_u64(self.inc(HEAD))
            .load(Ordering::Relaxed);
        let avail = tail.wrapping_sub(head);
        if avail == 0 {
            return Ok(None);
        }
        if avail < RECORD_HEADER as u64 || avail > RING_LEN as u64 {
            return Err(format!("corrupt shared ring: {avail} bytes published"));
        }
        let mut head_bytes = [0u8; RECORD_HEADER];
        self.read_at(dir, head, &mut head_bytes);
        let len = u32::from_le_bytes(head_bytes[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u32::from_le_bytes(head_bytes[4..8].try_into().expect("4 bytes"));
        let tag = u64::from_le_bytes(head_bytes[8..16].try_into().expect("8 bytes"));
        let ok = match kind {
            INLINE => (RECORD_HEADER + len) as u64 <= avail,
            MARKER => len == 0,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "corrupt shared ring record (kind {kind}, {len} bytes, {avail} published)"
            ));
        }
        Ok(Some(Record { len, kind, tag }))
    }

    /// Appends the payload of `rec` (just returned by [`peek`](Rings::peek))
    /// to `dst`.
    pub(crate) fn read_payload(&self, rec: &Record, dst: &mut Vec<u8>) {
        let dir = 1 - self.side;
        let head = self
            .region
            .atomic_u64(self.inc(HEAD))
            .load(Ordering::Relaxed);
        self.append_at(dir, head + RECORD_HEADER as u64, rec.len, dst);
    }

    /// Consumes `rec`, and wakes a producer waiting for space.
    pub(crate) fn advance(&self, rec: &Record) {
        let head = self.region.atomic_u64(self.inc(HEAD));
        let pos = head.load(Ordering::Relaxed) + (RECORD_HEADER + rec.len) as u64;
        head.store(pos, Ordering::Release);
        fence(Ordering::SeqCst);
        let waiting = self.region.atomic_u32(self.inc(TX_WAIT));
        if waiting.load(Ordering::Relaxed) != 0 {
            waiting.store(0, Ordering::Relaxed);
            let seq = self.region.atomic_u32(self.inc(SPACE_SEQ));
            seq.fetch_add(1, Ordering::Relaxed);
            futex::wake(seq, 1);
        }
    }

    /// Announces that the consumer is about to sleep on the socket; the
    /// caller must then re-check [`has_record`](Rings::has_record).
    pub(crate) fn set_sleeping(&self) {
        self.region
            .atomic_u32(self.inc(RX_SLEEP))
            .store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Withdraws [`set_sleeping`](Rings::set_sleeping).
    pub(crate) fn clear_sleeping(&self) {
        self.region
            .atomic_u32(self.inc(RX_SLEEP))
            .store(0, Ordering::Relaxed);
    }

    // ---- CPU hints ----

    /// Records the CPU this end runs on, for the peer's spin policy.
    #[inline]
    pub(crate) fn note_cpu(&self, cpu: usize) {
        let word = self.region.atomic_u32(CPU_AT + self.side * 64);
        let v = cpu as u32 + 1;
        if word.load(Ordering::Relaxed) != v {
            word.store(v, Ordering::Relaxed);
        }
    }

    /// Whether the peer last ran on `cpu`.
    #[inline]
    pub(crate) fn peer_on(&self, cpu: usize) -> bool {
        let word = self.region.atomic_u32(CPU_AT + (1 - self.side) * 64);
        word.load(Ordering::Relaxed) == cpu as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "the two sides map one memfd twice; Miri has no memfd or mmap"
    )]
    fn records_wrap_around_and_keep_order() {
        let (a, b) = Rings::pair().unwrap();
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let payload = vec![i as u8; (i as usize * 37) % 5000];
            while a.free() < RECORD_HEADER + payload.len() {
                let rec = b.peek().unwrap().unwrap();
                out.clear();
                b.read_payload(&rec, &mut out);
                b.advance(&rec);
            }
            a.push(INLINE, u64::from(i), &payload);
        }
        let rec = b.peek().unwrap().unwrap();
        assert_eq!(rec.kind, INLINE);
        assert!(rec.tag > 0);
        assert!(!a.has_record());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "the two sides map one memfd twice; Miri has no memfd or mmap"
    )]
    fn a_region_that_is_not_a_connection_is_refused() {
        let region = SharedRegion::create("x", TOTAL).unwrap();
        let err = Rings::from_fd(region.fd().try_clone_to_owned().unwrap(), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
