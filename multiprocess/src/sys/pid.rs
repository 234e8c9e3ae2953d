//! The current process and thread ids, cached. (Liveness is judged by
//! `liveness.rs`, not by pids.)
//!
//! [`current_tid`] is on the reentrant lock's fast path and needs the pid;
//! `getpid` is a real syscall on Linux, so the value is cached in an
//! atomic and refreshed in a forked child by a `pthread_atfork` child handler
//! registered on first use.
//!
//! # Caveats
//! A child created by a raw `clone`/`fork` syscall that bypasses libc's
//! `fork()` does not run the handler and would keep the parent's pid; every
//! start method of this crate goes through libc or `exec`.

// Under loom and Miri the OS liveness probe is not used.
#![cfg_attr(any(loom, miri), allow(dead_code))]

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The cached pid; 0 until first use.
static PID: AtomicU32 = AtomicU32::new(0);

fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Runs in the child right after `fork()`: only async-signal-safe work
/// (a raw `getpid` syscall and an atomic store).
extern "C" fn refresh_in_child() {
    PID.store(getpid(), Ordering::Relaxed);
}

/// The id of the calling process (cached; one relaxed load).
#[cfg(not(loom))]
#[inline]
pub(crate) fn current_pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => init(),
        pid => pid,
    }
}

#[cold]
fn init() -> u32 {
    static REGISTER: Once = Once::new();
    // Register before caching, so a fork racing with this first call either
    // sees PID == 0 (and initialises afresh) or runs the handler.
    REGISTER.call_once(|| {
        // SAFETY: `refresh_in_child` is an `extern "C" fn()` with no
        // preconditions that only makes async-signal-safe calls, as required
        // of a handler that runs in the child of a multi-threaded fork.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(refresh_in_child)) };
        // ENOMEM is the only documented failure; without the handler a forked
        // child would report the parent's pid, so fail loudly.
        assert_eq!(rc, 0, "pthread_atfork failed ({rc})");
    });
    let pid = getpid();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// The kernel id of the calling thread (`gettid`), cached per thread and
/// re-read after a fork (a forked child's thread has a new id). Used with the
/// pid to name the owner of a reentrant lock.
#[inline]
pub(crate) fn current_tid() -> u32 {
    use std::cell::Cell;
    thread_local! {
        /// (pid, tid) as of the last call on this thread.
        static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    }
    let pid = current_pid();
    TID.with(|c| {
        let (cached_pid, tid) = c.get();
        if cached_pid == pid {
            return tid;
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        c.set((pid, tid));
        tid
    })
}

/// The loom model's pid of the calling thread (see `sys/model.rs`).
#[cfg(loom)]
pub(crate) fn current_pid() -> u32 {
    super::model::current_pid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_cached_and_correct() {
        assert_eq!(current_pid(), std::process::id());
        assert_eq!(current_pid(), std::process::id());
    }
}
