//! Signal dispositions for helper processes.
//!
//! # References
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)

/// Ignores `SIGINT`, `SIGTERM` and `SIGHUP` in this process, so a Ctrl-C or
/// a terminal hang-up sent to the whole process group leaves a cleanup helper
/// running to do its job (as CPython's resource tracker does).
pub(crate) fn ignore_termination_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing SIG_IGN with an empty mask has no memory-safety
        // preconditions; it only changes this process's disposition.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
