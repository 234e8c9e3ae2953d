//! The [`Pipe`](super::Pipe) transport: a Unix stream socket plus a sealed
//! memfd holding two single-producer/single-consumer rings, one per
//! direction ([`ring`](super::ring)).
//!
//! Implements, for [`Connection`](super::Connection):
//!
//! - **send**: a message up to [`INLINE_MAX`] bytes without descriptors is
//!   one record in the ring, published with one store; anything else puts a
//!   *marker* record in the ring and then a socket frame
//!   ([`frame`], descriptors attached as `SCM_RIGHTS`), so
//!   order holds across the two paths. A sender that finds the receiver's
//!   sleeping flag set writes a doorbell frame; one that finds the ring full
//!   spins, then sleeps on the ring's futex in slices, checking that the
//!   peer is still there.
//! - **finding the next message**: a ring record, or (behind a marker) the
//!   next frame. A receive that finds nothing spins adaptively (see the
//!   module docs of [`connection`](super)), then sets the sleeping flag,
//!   re-checks the ring and sleeps in `poll` on the socket.
//!
//! Descriptors travel (on frames). End of stream and peer death come from
//! the socket.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::frame::{self, FrameSpin};
use super::ring::{INLINE, INLINE_MAX, MARKER, RECORD_HEADER, Rings};
use super::{Next, RecvError, RecvFailure, RxState, SPACE_SLICE, Tx, frame_header};
use crate::sys::sched;
use crate::sys::socket;

/// One end of a [`Pipe`](super::Pipe): the socket and this end's view of
/// the shared rings.
///
/// The methods on the path of every message are `#[inline]`, so they can
/// still be inlined into the caller's instance of the generic `Connection`
/// methods that held this code before.
pub(super) struct PipeTransport {
    fd: OwnedFd,
    rings: Rings,
}

impl PipeTransport {
    pub(super) fn new(fd: OwnedFd, rings: Rings) -> Self {
        PipeTransport { fd, rings }
    }

    /// The socket.
    #[inline]
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// This end's view of the rings.
    pub(super) fn rings(&self) -> &Rings {
        &self.rings
    }

    /// The spin for a wait whose data is known to be on its way.
    #[inline]
    pub(super) fn spin_now(&self, cap: Duration) -> FrameSpin {
        let cpu = sched::current_cpu();
        self.rings.note_cpu(cpu);
        FrameSpin {
            budget: cap,
            yield_cpu: self.rings.peer_on(cpu),
        }
    }

    /// Sends one message with the send lock held: inline in the ring when
    /// it is small and has no descriptors, otherwise as a socket frame behind
    /// a marker record.
    #[inline]
    pub(super) fn send(
        &self,
        tx: &mut Tx,
        tag: u64,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
        spin_cap: Duration,
    ) -> io::Result<()> {
        tx.check_broken()?;
        let rings = &self.rings;
        if rings.out_shut() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        tx.check_peer(self.fd())?;
        let header = frame_header(tag, payload, fds)?;
        rings.note_cpu(sched::current_cpu());
        if fds.is_empty() && payload.len() <= INLINE_MAX {
            self.wait_space(tx, RECORD_HEADER + payload.len(), spin_cap)?;
            rings.push(INLINE, tag, payload);
            if rings.take_sleeper() {
                frame::send_control(self.fd(), &frame::DOORBELL, &mut tx.broken)?;
            }
            return Ok(());
        }
        self.wait_space(tx, RECORD_HEADER, spin_cap)?;
        rings.push(MARKER, 0, &[]);
        // A sleeping receiver wakes on the frame itself.
        rings.take_sleeper();
        let result = frame::send_frame(self.fd(), &header, payload, fds, &mut tx.broken);
        if result.is_err() && !tx.broken {
            // Nothing of the frame went out, but its marker is published:
            // tell the receiver there is no message behind it.
            let mut torn = false;
            if frame::send_control(self.fd(), &frame::ABORTED, &mut torn).is_err() {
                tx.broken = true;
            }
        }
        result
    }

    /// Waits until the outgoing ring has `need` free bytes: spins, then
    /// sleeps on the ring's futex in slices, checking between them that the
    /// peer is still there.
    fn wait_space(&self, tx: &mut Tx, need: usize, spin_cap: Duration) -> io::Result<()> {
        let rings = &self.rings;
        if rings.free() >= need {
            return Ok(());
        }
        let spin = self.spin_now(spin_cap);
        let until = Instant::now() + spin.budget;
        while Instant::now() < until {
            if rings.free() >= need {
                return Ok(());
            }
            if spin.yield_cpu {
                sched::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        loop {
            let seq = rings.announce_tx_wait();
            if rings.free() >= need {
                return Ok(());
            }
            rings.wait_space(seq, Instant::now() + SPACE_SLICE)?;
            if rings.free() >= need {
                return Ok(());
            }
            tx.last_check = None;
            tx.check_peer(self.fd())?;
        }
    }

    /// Finds where the next message is, waiting for one until `deadline`
    /// (the caller has checked that the stream is not broken).
    #[inline]
    pub(super) fn next(
        &self,
        st: &mut RxState,
        spin_cap: Duration,
        deadline: Option<Instant>,
    ) -> Result<Next<'_>, RecvFailure> {
        let rings = &self.rings;
        let mut waited: Option<Instant> = None;
        let mut spun = false;
        loop {
            if st.pending > 0 {
                return Ok(Next::Frame);
            }
            match rings.peek() {
                Ok(Some(rec)) if rec.kind == MARKER => {
                    rings.advance(&rec);
                    st.pending += 1;
                    continue;
                }
                Ok(Some(rec)) => {
                    let waited = waited.map_or(Duration::ZERO, |t| t.elapsed());
                    st.record_wait(waited, spin_cap);
                    return Ok(Next::Ring(rings, rec));
                }
                Ok(None) => {}
                Err(why) => return Err(st.rx.fail_with(why).into()),
            }
            if st.eof || rings.in_shut() {
                return Err(RecvFailure::Recv(RecvError::Disconnected));
            }
            let start = *waited.get_or_insert_with(Instant::now);
            if !spun {
                spun = true;
                if self.spin_for_record(st, spin_cap, start, deadline) {
                    continue;
                }
            }
            self.sleep_for_record(st, deadline)?;
        }
    }

    /// Spins (or yields, while the peer shares our CPU) until a record
    /// appears or the adaptive budget runs out; returns whether one appeared.
    fn spin_for_record(
        &self,
        st: &RxState,
        spin_cap: Duration,
        start: Instant,
        deadline: Option<Instant>,
    ) -> bool {
        let rings = &self.rings;
        let budget = st.spin_budget(spin_cap);
        if budget.is_zero() {
            return false;
        }
        let mut until = start + budget;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let mut cpu = sched::current_cpu();
        rings.note_cpu(cpu);
        let mut i = 0u32;
        loop {
            if rings.has_record() {
                return true;
            }
            if rings.peer_on(cpu) {
                sched::yield_now();
                cpu = sched::current_cpu();
                rings.note_cpu(cpu);
                if Instant::now() >= until {
                    return false;
                }
            } else {
                std::hint::spin_loop();
                i = i.wrapping_add(1);
                if i.is_multiple_of(32) {
                    if Instant::now() >= until {
                        return false;
                    }
                    cpu = sched::current_cpu();
                    rings.note_cpu(cpu);
                }
            }
        }
    }

    /// Sleeps on the socket until the ring has a record, the socket has a
    /// frame or end of stream, or `deadline` passes.
    fn sleep_for_record(
        &self,
        st: &mut RxState,
        deadline: Option<Instant>,
    ) -> Result<(), RecvFailure> {
        let rings = &self.rings;
        loop {
            rings.set_sleeping();
            if rings.has_record() {
                rings.clear_sleeping();
                return Ok(());
            }
            let readable = socket::poll_readable(self.fd(), deadline);
            rings.clear_sleeping();
            if !readable.map_err(|e| RecvFailure::Recv(RecvError::Io(e)))? {
                return if rings.has_record() {
                    Ok(())
                } else {
                    Err(RecvFailure::Timeout)
                };
            }
            if st.rx.drain(self.fd())? {
                st.eof = true;
                return Ok(());
            }
            if rings.has_record() {
                return Ok(());
            }
        }
    }

    /// Whether something received is waiting to be delivered: a marker
    /// taken, a record in the ring, or the peer's side of the ring shut.
    pub(super) fn buffered(&self, st: &RxState) -> bool {
        st.pending > 0 || self.rings.has_record() || self.rings.in_shut()
    }

    /// Announces in the ring that the receiver is about to sleep, so a
    /// sender rings the doorbell.
    pub(super) fn set_sleeping(&self) {
        self.rings.set_sleeping();
    }

    /// Withdraws [`set_sleeping`](PipeTransport::set_sleeping).
    pub(super) fn clear_sleeping(&self) {
        self.rings.clear_sleeping();
    }
}
