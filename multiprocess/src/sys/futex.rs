//! Process-shared futex wait/wake on a 32-bit word.
//!
//! The word lives in memory mapped `MAP_SHARED` by several processes, so these
//! calls never use `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the
//! (process, virtual address) pair and would never see a waker in another
//! process. A shared futex is keyed by the underlying page and offset.
//!
//! Both calls are thin: every caller re-checks its condition in a loop, so
//! [`wait`] reports success for a wake, a value mismatch, a signal and a
//! timeout alike.
//!
//! # References
//! - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
//! - Ulrich Drepper, "Futexes Are Tricky" (2011)

use std::io;
use std::time::Instant;

#[cfg(not(loom))]
use rustix::thread::futex::{self, Flags};

use super::atomic::AtomicU32;

/// Sleeps while `*word == expected`, until woken, interrupted, or `deadline`
/// passes (`None`: no deadline).
///
/// Returns `Ok(())` on a wake, when the word no longer holds `expected`
/// (`EAGAIN`), on `EINTR` and on timeout: the caller re-checks its condition
/// and the deadline. Returns immediately if `deadline` has already passed.
///
/// # Errors
/// Only errors the kernel should never give for a valid, mapped, aligned word
/// (`EFAULT`, `EINVAL`, `ENOSYS`).
#[cfg(not(loom))]
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> io::Result<()> {
    let timeout = match crate::deadline::remaining(deadline) {
        None => None,
        Some(left) if left.is_zero() => return Ok(()),
        Some(left) => Some(futex::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }),
    };
    // Flags::empty(): a shared futex (see the module docs). FUTEX_WAIT takes
    // a relative CLOCK_MONOTONIC timeout.
    match futex::wait(word, Flags::empty(), expected, timeout.as_ref()) {
        Ok(())
        | Err(rustix::io::Errno::AGAIN)
        | Err(rustix::io::Errno::INTR)
        | Err(rustix::io::Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `n` waiters sleeping on `word` in any process; returns how many
/// were woken. A kernel error (impossible for a valid word) counts as zero.
#[cfg(not(loom))]
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    futex::wake(word, Flags::empty(), n).unwrap_or(0)
}

/// The loom model of [`wait`] (see `sys/model.rs`): the deadline is ignored,
/// since time does not pass in a model.
#[cfg(loom)]
pub(crate) fn wait(word: &AtomicU32, expected: u32, _deadline: Option<Instant>) -> io::Result<()> {
    word.futex().wait(word, expected);
    Ok(())
}

/// The loom model of [`wake`].
#[cfg(loom)]
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    word.futex().wake(word, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn mismatch_returns_at_once() {
        let w = AtomicU32::new(1);
        let t = Instant::now();
        wait(&w, 0, None).unwrap();
        assert!(t.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn timeout_returns_after_deadline() {
        let w = AtomicU32::new(0);
        let t = Instant::now();
        wait(&w, 0, Some(t + Duration::from_millis(50))).unwrap();
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(45) && e < Duration::from_secs(2),
            "{e:?}"
        );
    }

    #[test]
    fn wake_wakes_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let h = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while w2.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                wait(&w2, 0, Some(deadline)).unwrap();
            }
            Instant::now() < deadline
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::Release);
        wake(&w, 1);
        assert!(h.join().unwrap());
    }
}
