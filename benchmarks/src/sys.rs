//! The bench crate's only `unsafe`: the counting allocator, bare `fork`,
//! process-shared memory, `getrusage`. Everything above this module is safe.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- allocator

/// Counts every allocation (and reallocation) made by this process.
pub(crate) struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations made so far by this process.
pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

// ---------------------------------------------------------------- processes

/// Forks; the child runs `f` and `_exit`s with 0 (101 if `f` panics).
/// Only called from the single-threaded worker process.
pub(crate) fn fork_run(f: impl FnOnce()) -> io::Result<i32> {
    assert_single_threaded()?;
    // SAFETY: the worker is single-threaded (checked above), so the child
    // inherits no lock held by another thread; it runs `f` and `_exit`s
    // without returning into the caller's frames or running atexit handlers.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
            // SAFETY: `_exit` is async-signal-safe and never returns.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) }
        }
        pid => Ok(pid),
    }
}

/// The floor of starting a process: `fork`, `_exit(0)` in the child,
/// `waitpid` in the parent.
pub(crate) fn fork_exit_wait() -> io::Result<()> {
    assert_single_threaded()?;
    // SAFETY: single-threaded (checked); the child only calls `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: `_exit` is async-signal-safe and never returns.
        0 => unsafe { libc::_exit(0) },
        pid => {
            // A blocking wait (the child only calls `_exit`, it cannot hang;
            // the runner's time limit covers the impossible).
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer; `pid` is our child.
            if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}

fn assert_single_threaded() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    if threads == Some(1) {
        Ok(())
    } else {
        Err(io::Error::other(
            "fork floor needs a single-threaded worker",
        ))
    }
}

/// Waits for child `pid` at most `timeout`; kills it and fails on timeout.
/// Returns the exit status (128+N for signal N).
pub(crate) fn wait_child(pid: i32, timeout: Duration) -> io::Result<i32> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(1);
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if Instant::now() > deadline {
            // SAFETY: plain syscalls on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("floor child {pid} hung and was killed"),
            ));
        }
        // Spin briefly first (the fork floor exits within microseconds),
        // then back off so a slow child does not cost a core.
        if pause < Duration::from_micros(50) {
            std::hint::spin_loop();
            pause += Duration::from_micros(1);
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// CPU time (user + system) this process has used.
pub(crate) fn cpu_time_self() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer for RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------- shared memory

/// A process-shared mapping: a memfd mapped `MAP_SHARED`. Forked children
/// inherit it.
pub(crate) struct Shm {
    ptr: NonNull<u8>,
    len: usize,
    /// The memfd, held for the mapping's life.
    _fd: OwnedFd,
}

/// Slots are a cache line apart so that two words never share one.
const SLOT: usize = 128;

impl Shm {
    /// A new zeroed mapping of `len` bytes.
    pub(crate) fn create(len: usize) -> io::Result<Shm> {
        let fd = rustix::fs::memfd_create("mpbench", rustix::fs::MemfdFlags::empty())?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Shm> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping of a file we hold, at an address the
        // kernel picks; it aliases no Rust object.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null mmap"))?;
        Ok(Shm { ptr, len, _fd: fd })
    }

    /// The `i`th 32-bit word, each in its own cache line at the start.
    pub(crate) fn u32(&self, i: usize) -> &AtomicU32 {
        assert!((i + 1) * SLOT <= self.len);
        // SAFETY: in bounds (checked), aligned (page-aligned base, SLOT
        // multiple), and only ever accessed atomically by every process.
        unsafe { &*self.ptr.as_ptr().add(i * SLOT).cast::<AtomicU32>() }
    }

    /// The `i`th 64-bit word (sharing slot `i` with [`Shm::u32`]).
    pub(crate) fn u64(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * SLOT <= self.len);
        // SAFETY: as for `u32`.
        unsafe { &*self.ptr.as_ptr().add(i * SLOT).cast::<AtomicU64>() }
    }

    /// Copies `src` into the mapping at `offset`. The caller's protocol
    /// (release/acquire on a word) must keep readers off these bytes
    /// meanwhile; a violation garbles the data, not Rust's memory.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len);
        // SAFETY: in bounds (checked); the mapping is not a Rust object, so
        // the copy aliases nothing Rust tracks.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Copies bytes at `offset` out of the mapping into `dst`.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= self.len);
        // SAFETY: as for `write`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; the references
        // handed out borrow `self`, so none outlives it.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
