//! Scheduler queries for the connection's spin policy: which CPU the calling
//! thread is on, and giving the CPU away.

/// The CPU the calling thread is running on now (through the vDSO, no
/// syscall on x86-64 and aarch64). It may change at any moment; callers use
/// it only as a hint.
///
/// # References
/// - [`sched_getcpu(3)`](https://man7.org/linux/man-pages/man3/sched_getcpu.3.html)
#[inline]
pub(crate) fn current_cpu() -> usize {
    // Models and Miri have no CPUs to report (Miri lacks sched_getcpu).
    #[cfg(any(loom, miri))]
    return 0;
    #[cfg(not(any(loom, miri)))]
    rustix::thread::sched_getcpu()
}

/// Lets another runnable thread on this CPU run first (returns at once when
/// there is none).
///
/// # References
/// - [`sched_yield(2)`](https://man7.org/linux/man-pages/man2/sched_yield.2.html)
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    rustix::thread::sched_yield();
}
