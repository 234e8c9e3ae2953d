//! The C allocator's settings for pool worker processes.
//!
//! - [`mallopt(3)`](https://man7.org/linux/man-pages/man3/mallopt.3.html)

/// Lets the allocator of this process (a pool worker) keep freed memory for
/// reuse instead of returning it to the kernel at once: a worker frees and
/// reallocates the same chunk-sized buffers for every chunk, and glibc's
/// default (return anything above 128 KiB at the top of the heap, map any
/// block of 128 KiB or more afresh) makes each of them fault in page by
/// page again. glibc raises these limits itself after the first large free;
/// this sets them from the start. Up to 64 MiB of freed memory stays with
/// the worker. Elsewhere than glibc, a no-op.
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator tuning parameters; it is
    // safe to call at any time, from any thread, with any values (invalid
    // ones are rejected with a 0 return, which is ignored: the defaults
    // stay).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
