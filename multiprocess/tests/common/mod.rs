//! Shared test helpers: every test body runs under a watchdog, so a bug fails
//! a test instead of hanging CI, and children left behind are killed.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `body` on a thread; if it has not finished within `limit`, kills every
/// child process this test binary started and fails the test.
pub(crate) fn bounded<T: Send + 'static>(
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic here.
            match worker.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("sent nothing but finished"),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            for child in multiprocess::active_children() {
                let _ = child.kill();
            }
            panic!("test did not finish within {limit:?}; its children were killed");
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Whether process `pid` is gone (no /proc entry, or a zombie).
pub(crate) fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// A fresh temporary directory for one test.
pub(crate) fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "multiprocess-test-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// This process's resident memory (VmRSS), in KiB.
pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A shared-memory name no other test (or test process) uses.
pub(crate) fn unique_shm_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mp_test_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a named segment `name` exists under /dev/shm.
pub(crate) fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Asserts that `name` disappears from /dev/shm within `limit`.
pub(crate) fn assert_shm_gone_within(name: &str, limit: Duration) {
    assert!(
        eventually(limit, || !shm_exists(name)),
        "/dev/shm/{name} still exists after {limit:?}"
    );
}
