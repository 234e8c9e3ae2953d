//! Signal dispositions for helper processes and children.
//!
//! A child of ours keeps exactly the *ignored* signals of the parent that
//! asked for it, as POSIX `exec` does (ignored dispositions survive exec,
//! handled ones become the default): a program under `nohup` or started in
//! the background by a shell (SIGHUP, or SIGINT and SIGQUIT, ignored) gets
//! children that survive those signals too.
//!
//! # References
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html)
//! - [`execve(2)`](https://man7.org/linux/man-pages/man2/execve.2.html)
//!   ("the dispositions of ignored signals are left unchanged")

/// Ignores `SIGINT`, `SIGTERM` and `SIGHUP` in this process, so a Ctrl-C or
/// a terminal hang-up sent to the whole process group leaves a cleanup helper
/// running to do its job (as CPython's resource tracker does).
pub(crate) fn ignore_termination_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        set_disposition(sig, libc::SIG_IGN);
    }
}

/// The signal mask as it was before [`block_termination_signals`].
pub(crate) struct SavedMask(libc::sigset_t);

/// Blocks `SIGINT`, `SIGTERM` and `SIGHUP` in the calling thread until
/// [`restore_mask`]. The fork server forks with them blocked: its child
/// starts with the server's dispositions (these three ignored), and a
/// signal sent to the new child before it has taken its parent's
/// dispositions must wait, not be lost. Linux keeps a *blocked* signal
/// pending even when its disposition is to ignore it.
pub(crate) fn block_termination_signals() -> SavedMask {
    // SAFETY: sigemptyset/sigaddset fill a sigset_t we own; pthread_sigmask
    // only changes the calling thread's mask and writes the old one into
    // another sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        SavedMask(old)
    }
}

/// Puts back the mask [`block_termination_signals`] saved; a signal that
/// arrived in between is delivered now, under the current dispositions.
pub(crate) fn restore_mask(saved: &SavedMask) {
    // SAFETY: pthread_sigmask reads a valid sigset_t we own and only changes
    // the calling thread's mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved.0, std::ptr::null_mut());
    }
}

/// Gives SIGCHLD its default disposition, so this process's exited children
/// stay waitable (with SIGCHLD ignored the kernel reaps them at once and
/// their exit status is lost).
pub(crate) fn default_sigchld() {
    set_disposition(libc::SIGCHLD, libc::SIG_DFL);
}

/// Whether SIGCHLD is ignored here (or carries `SA_NOCLDWAIT`): then the
/// kernel reaps our exited children itself and `wait` finds nothing.
pub(crate) fn children_auto_reaped() -> bool {
    match disposition(libc::SIGCHLD) {
        Some(act) => act.sa_sigaction == libc::SIG_IGN || act.sa_flags & libc::SA_NOCLDWAIT != 0,
        None => false,
    }
}

/// SIGCHLD's disposition, saved by [`keep_children_unreaped`] while it is
/// the default, and put back on drop.
pub(crate) struct SavedSigchld(Option<libc::sigaction>);

/// If the kernel reaps this process's children itself (SIGCHLD ignored, or
/// `SA_NOCLDWAIT`), switches to the default disposition until the returned
/// value drops, so a child that exits at once stays a zombie long enough for
/// `pidfd_open`. Only for a single-threaded process (the `Fork` start
/// method): the disposition is process-wide. A zombie made meanwhile stays
/// after the disposition is put back, for `waitid` on its pidfd.
pub(crate) fn keep_children_unreaped() -> SavedSigchld {
    if !children_auto_reaped() {
        return SavedSigchld(None);
    }
    let saved = disposition(libc::SIGCHLD);
    default_sigchld();
    SavedSigchld(saved)
}

impl Drop for SavedSigchld {
    fn drop(&mut self) {
        if let Some(act) = self.0.take() {
            // SAFETY: `act` is the disposition `sigaction` reported for
            // SIGCHLD (SIG_IGN or a flagged default/handler) a moment ago;
            // reinstalling it has no memory-safety preconditions.
            unsafe {
                libc::sigaction(libc::SIGCHLD, &act, std::ptr::null_mut());
            }
        }
    }
}

/// The set of signals this process ignores: bit `N - 1` for signal `N`.
pub(crate) fn ignored_set() -> u64 {
    let mut set = 0u64;
    for sig in changeable_signals() {
        if disposition(sig).is_some_and(|act| act.sa_sigaction == libc::SIG_IGN) {
            set |= 1 << (sig - 1);
        }
    }
    set
}

/// Makes this process ignore exactly the signals in `set` (as from
/// [`ignored_set`]): a signal in it becomes ignored, an ignored signal not
/// in it gets the default disposition, and handled signals not in it keep
/// their handler.
pub(crate) fn apply_ignored_set(set: u64) {
    for sig in changeable_signals() {
        let want = set & (1 << (sig - 1)) != 0;
        let Some(act) = disposition(sig) else {
            continue;
        };
        let is = act.sa_sigaction == libc::SIG_IGN;
        if want && !is {
            set_disposition(sig, libc::SIG_IGN);
        } else if is && !want {
            set_disposition(sig, libc::SIG_DFL);
        }
    }
}

/// Every signal whose disposition can be changed and fits in a `u64` set.
fn changeable_signals() -> impl Iterator<Item = i32> {
    (1..=libc::SIGRTMAX().min(64)).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

fn disposition(sig: i32) -> Option<libc::sigaction> {
    // SAFETY: sigaction with a null new action only reports the current one
    // into the zeroed struct we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(sig, std::ptr::null(), &mut old) == 0).then_some(old)
    }
}

fn set_disposition(sig: i32, handler: libc::sighandler_t) {
    // SAFETY: installing SIG_IGN or SIG_DFL with an empty mask has no
    // memory-safety preconditions; it only changes this process's
    // disposition (failures for signals that cannot change are ignored).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}
