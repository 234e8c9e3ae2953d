//! The current process id, cached, and a liveness probe for other processes.
//!
//! Lock words store their owner's pid, so [`current_pid`] is on the lock fast
//! path; `getpid` is a real syscall on Linux, so the value is cached in an
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

/// The bits of a `u32` that hold a pid: Linux caps pids at 2^22
/// (`PID_MAX_LIMIT`), so a lock word keeps its pid here and flags above.
pub(crate) const PID_MASK: u32 = (1 << 22) - 1;

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

/// Whether a process with id `pid` exists and has not exited.
///
/// `kill(pid, 0)`: `ESRCH` means gone, `EPERM` means alive (owned by another
/// user). A zombie (exited, not yet reaped by its parent) still answers
/// `kill`, so an exited-but-unreaped child would look alive forever to its own
/// parent; `/proc/<pid>/stat` is consulted to count state `Z`/`X` as dead.
/// Called only on slow paths (a lock held for a whole wait slice).
///
/// # Caveats
/// Pids are reused: once a dead owner's pid is given to a new process, that
/// process looks like the owner. Linux hands out pids in increasing order up
/// to `pid_max` before wrapping, so this needs the pid space to wrap during
/// the wait.
#[cfg(not(any(loom, miri)))]
pub(crate) fn is_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Err(rustix::io::Errno::SRCH) => false,
        Ok(()) | Err(_) => !is_zombie(pid),
    }
}

/// The loom model's pid of the calling thread (see `sys/model.rs`).
#[cfg(loom)]
pub(crate) fn current_pid() -> u32 {
    super::model::current_pid()
}

/// The loom model's liveness of a fake pid (see `sys/model.rs`).
#[cfg(loom)]
pub(crate) fn is_alive(pid: u32) -> bool {
    super::model::is_alive(pid)
}

/// Under Miri, which has no `kill(2)` and cannot start processes, every pid
/// a test can meet is a live one (the tests with dead pids are ignored).
#[cfg(miri)]
pub(crate) fn is_alive(pid: u32) -> bool {
    pid != 0
}

/// Reads the state letter from `/proc/<pid>/stat` (the field after the last
/// `)`, since the command name may contain spaces and parentheses).
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        // No procfs: trust kill(2).
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    matches!(stat.get(close + 2), Some(b'Z' | b'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_cached_and_correct() {
        assert_eq!(current_pid(), std::process::id());
        assert_eq!(current_pid(), std::process::id());
    }

    #[test]
    #[cfg_attr(miri, ignore = "spawns a child process; Miri has no posix_spawn")]
    fn liveness() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(0));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but unreaped: a zombie counts as dead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_alive(pid), "zombie seen as alive");
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}
