//! Starting, signalling and reaping processes.
//!
//! Children are tracked by pidfd (`pidfd_open(2)`) from the moment they start,
//! so signals never hit a recycled pid and `waitid(P_PIDFD)` reaps exactly our
//! child, never another test's.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// What [`spawn_self`] needs to re-execute the running binary.
pub(crate) struct SpawnRequest<'a> {
    /// The environment variable that tells the child which descriptor is its
    /// bootstrap socket; its value is set to that descriptor's number.
    pub fd_env: &'a str,
    /// The one descriptor the child inherits besides stdio.
    pub keep_fd: BorrowedFd<'a>,
    /// Kill the child with SIGKILL when this (spawning) thread's process dies.
    pub die_with_parent: bool,
    /// Replace stdin with /dev/null, as Python does for children.
    pub null_stdin: bool,
}

/// A started child process.
pub(crate) struct Started {
    /// Its process id.
    pub pid: u32,
    /// A pidfd referring to it, for signals, polling and reaping.
    pub pidfd: OwnedFd,
}

/// Re-executes `/proc/self/exe` (the same image, even if the file on disk was
/// replaced since) with no inherited descriptors but stdio and `keep_fd`,
/// and optionally a parent-death signal. Signal dispositions follow exec's
/// rule: ignored signals stay ignored, handled ones become the default.
///
/// # References
/// - [`execve(2)`](https://man7.org/linux/man-pages/man2/execve.2.html),
///   [`close_range(2)`](https://man7.org/linux/man-pages/man2/close_range.2.html),
///   [`PR_SET_PDEATHSIG`](https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html)
pub(crate) fn spawn_self(req: &SpawnRequest<'_>) -> io::Result<Started> {
    let keep: RawFd = req.keep_fd.as_raw_fd();
    let parent = rustix::process::getpid();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| OsString::from("multiprocess-child")),
    );
    cmd.env(req.fd_env, keep.to_string());
    if req.null_stdin {
        cmd.stdin(Stdio::null());
    }
    let die_with_parent = req.die_with_parent;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (close_range, fcntl, prctl,
    // getppid, getpid, kill); it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            prepare_exec_child(keep, die_with_parent, parent)?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    let pidfd = pidfd_open(pid)?;
    Ok(Started { pid, pidfd })
}

/// Runs in the child between fork and exec: see [`spawn_self`].
fn prepare_exec_child(keep: RawFd, die_with_parent: bool, parent: Pid) -> io::Result<()> {
    // Mark every descriptor above stdio close-on-exec, then let `keep` through.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes flags; it
    // closes nothing that Rust code could still be using.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // Older kernels: descriptors opened by Rust are close-on-exec anyway.
    }
    // SAFETY: `keep` is a descriptor the parent keeps open across this spawn
    // (it is borrowed for the duration of `spawn_self`), and the child is a
    // copy of the parent's descriptor table.
    let keep = unsafe { BorrowedFd::borrow_raw(keep) };
    rustix::io::fcntl_setfd(keep, rustix::io::FdFlags::empty())?;
    if die_with_parent {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The parent may have died before the call above took effect: die
        // as the death signal would have made us. (Returning an error would
        // make std report it through the exec-status pipe, whose reader is
        // gone, and abort with "fatal runtime error" on stderr.)
        if rustix::process::getppid() != Some(parent) {
            let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
            return Err(io::Error::other("parent exited during spawn"));
        }
    }
    Ok(())
}

/// Reads environment variable `name` and removes it, so this process's
/// children do not see it. Called from `init()` only (see below).
#[cfg(feature = "redis")]
pub(crate) fn take_env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    // SAFETY: `init()` runs first in `main` (or before it, from a
    // constructor), before the program starts other threads that could read
    // the environment concurrently.
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Takes ownership of the descriptor whose number is in environment variable
/// `name` (set by [`spawn_self`]), removes the variable so grandchildren do not
/// see it, and marks the descriptor close-on-exec again. `None` when the
/// variable is absent: this process was not started by us in that role.
pub(crate) fn take_inherited_fd(name: &str) -> Option<io::Result<OwnedFd>> {
    let value = std::env::var_os(name)?;
    // SAFETY: `init()` runs first in `main` (or before it, from a
    // constructor), before the program starts other threads that could read
    // the environment concurrently.
    unsafe { std::env::remove_var(name) };
    let raw: RawFd = match value.to_str().and_then(|s| s.parse().ok()) {
        Some(fd) if fd >= 3 => fd,
        _ => {
            return Some(Err(io::Error::other(format!(
                "{name} is not a descriptor number"
            ))));
        }
    };
    // Check that the descriptor is open before claiming it.
    // SAFETY: fcntl(F_GETFD) on any integer is harmless; it only reports.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Some(Err(io::Error::other(format!(
            "{name}={raw} is not an open descriptor"
        ))));
    }
    // SAFETY: the parent put exactly this descriptor here for us and nothing
    // else in this process owns it (it was inherited across exec, and `init`
    // takes it once because the variable is removed above).
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Some(super::fd::set_cloexec(&fd, true).map(|()| fd))
}

/// The number of threads in this process.
pub(crate) fn thread_count() -> io::Result<usize> {
    // procfs gives /proc/self/task one link per thread plus `.` and `..`:
    // one stat call, where reading /proc/self/stat costs several.
    if let Ok(st) = rustix::fs::stat("/proc/self/task")
        && st.st_nlink > 2
    {
        return Ok(st.st_nlink as usize - 2);
    }
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name start at field 3 (state);
    // num_threads is field 20.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("cannot parse /proc/self/stat"))
}

/// Error kind-message for a fork refused because of threads.
pub(crate) const FORK_WITH_THREADS: &str =
    "refusing to fork a multi-threaded process (use the ForkServer or Spawn start method)";

/// The outcome of [`fork`].
pub(crate) enum Forked {
    /// In the new child process.
    Child,
    /// In the parent: the child that was made.
    Parent(Started),
}

/// Forks the calling process.
///
/// Refuses (with an error whose message is [`FORK_WITH_THREADS`]) when the
/// process has more than one thread: the child of a threaded parent has only
/// the calling thread, and whatever another thread was in the middle of
/// (a lock held, a lock-free structure half updated) stays that way forever
/// in the child. A single-threaded process forks into a complete copy, which
/// is safe. Children should leave through [`exit_now`] so they do not run
/// the parent's exit handlers.
///
/// Flushes stdout and stderr first, as Python's `Process.start` does: output
/// still in the process's buffer (a `print!` without a newline) would
/// otherwise be written twice, by the parent and by the child's copy.
pub(crate) fn fork() -> io::Result<Forked> {
    if thread_count()? > 1 {
        return Err(io::Error::other(FORK_WITH_THREADS));
    }
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // With SIGCHLD ignored the kernel would reap a child that exits at once
    // before `pidfd_open` finds it (ESRCH): keep it a zombie until then. The
    // child gets the parent's disposition back as it starts (the guard
    // drops in both).
    let unreaped = super::signal::keep_children_unreaped();
    // SAFETY: the process is single-threaded (checked just above; no other
    // thread can appear in between, since this is the only thread), so the
    // child is a complete and consistent copy of the parent.
    let forked = match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            let pid = pid as u32;
            pidfd_open(pid).map(|pidfd| Forked::Parent(Started { pid, pidfd }))
        }
    };
    drop(unreaped);
    forked
}

/// Registers `handler` to run when this process exits through `exit(3)`:
/// `main` returning or `std::process::exit`, not [`exit_now`] and not a
/// signal. Handlers registered by the parent stay registered in a forked
/// child. A failure (out of memory for the registration) is ignored: the
/// handler then does not run.
///
/// # References
/// - [`atexit(3)`](https://man7.org/linux/man-pages/man3/atexit.3.html)
pub(crate) fn at_exit(handler: extern "C" fn()) {
    // SAFETY: `handler` is a plain `extern "C" fn()` that lives for the
    // whole program; atexit only stores the pointer.
    let _ = unsafe { libc::atexit(handler) };
}

/// Flushes stdout and stderr and ends the process at once with `code`,
/// running no destructors and no `atexit` handlers of the parent's.
pub(crate) fn exit_now(code: i32) -> ! {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: `_exit` is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// The longest name the kernel keeps for a process (`comm`: 16 bytes with
/// the terminating NUL).
const NAME_MAX: usize = 15;

/// Names this process as `ps -o comm`, `top` and `pgrep` show it
/// (`/proc/<pid>/comm`): the first 15 bytes of `name`, cut at a character
/// boundary (and at a NUL, which cannot be part of it). Call it from the
/// process's only thread: it names the calling thread, and the main
/// thread's name is the process's. A failure is ignored; a name is only
/// for people reading `ps`.
///
/// # References
/// - [`PR_SET_NAME`](https://man7.org/linux/man-pages/man2/PR_SET_NAME.2const.html)
pub(crate) fn set_name(name: &str) {
    let name = name.split('\0').next().unwrap_or_default();
    let name = prefix(name, NAME_MAX);
    if let Ok(name) = std::ffi::CString::new(name) {
        let _ = rustix::thread::set_name(&name);
    }
}

/// Names a helper process `<program>:<role>` with [`set_name`], the
/// program's name (the file name of `argv[0]`, which [`spawn_self`] passes
/// on) cut so that the role fits in the 15 bytes.
pub(crate) fn set_helper_name(role: &str) {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let program = std::path::Path::new(&arg0)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let room = NAME_MAX.saturating_sub(role.len() + 1);
    let program = prefix(&program, room);
    set_name(&format!("{program}:{role}"));
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Opens a pidfd for `pid`.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends `signal` (a signal number) through a pidfd.
pub(crate) fn send_signal(pidfd: impl AsFd, signal: i32) -> io::Result<()> {
    let sig = Signal::from_named_raw(signal).ok_or_else(|| io::Error::other("bad signal"))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        // Already exited (but not yet reaped): nothing to signal.
        Err(rustix::io::Errno::SRCH) => Ok(()),
        r => Ok(r?),
    }
}

/// Reaps our child behind `pidfd` if it has exited, giving its exit code in
/// Python's convention: the exit status, or `-N` for death by signal N.
pub(crate) fn try_reap(pidfd: impl AsFd) -> io::Result<Option<i32>> {
    loop {
        match rustix::process::waitid(
            WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(None) => return Ok(None),
            Ok(Some(status)) => return Ok(Some(python_exit_code(&status))),
            Err(rustix::io::Errno::INTR) => continue,
            // Already reaped: by the kernel itself when SIGCHLD is ignored.
            Err(rustix::io::Errno::CHILD) => {
                if let Some(code) = exit_code_of_reaped(pidfd.as_fd()) {
                    return Ok(Some(code));
                }
                if super::signal::children_auto_reaped() {
                    return Err(io::Error::other(STATUS_LOST_SIGCHLD));
                }
                return Err(io::Error::from_raw_os_error(libc::ECHILD));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Error message of [`try_reap`] when the exit status cannot be had.
const STATUS_LOST_SIGCHLD: &str = "SIGCHLD is ignored in this process, so the kernel \
     reaped the child and its exit status is lost (this kernel cannot report it through the pidfd)";

/// The exit status `struct pidfd_info` (`linux/pidfd.h`) up to `exit_code`:
/// the size the kernel calls `PIDFD_INFO_SIZE_VER0`.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)`, 64 bytes.
const PIDFD_GET_INFO: libc::c_ulong = 0xC040_FF0B;
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// The exit code (Python's convention) of an exited process that someone
/// else already reaped (the kernel, with SIGCHLD ignored; or init, for an
/// orphan), as the pidfd keeps it since Linux 6.15. `None` if the kernel is
/// older, or the process is not reaped yet.
///
/// # References
/// - [`PIDFD_GET_INFO`](https://man7.org/linux/man-pages/man2/PIDFD_GET_INFO.2const.html)
fn exit_code_of_reaped(pidfd: impl AsFd) -> Option<i32> {
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl writes at most size_of::<PidfdInfo>() (encoded in
    // the request number, 64) bytes into `info`, a plain C struct we own.
    let r = unsafe { libc::ioctl(pidfd.as_fd().as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
    if r != 0 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    let status = info.exit_code;
    Some(if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    })
}

fn python_exit_code(status: &rustix::process::WaitIdStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        code
    } else if let Some(sig) = status.terminating_signal() {
        -sig
    } else {
        -1
    }
}

/// Makes the calling process receive SIGKILL when its parent dies; returns
/// false if the parent (expected to be `parent_pid`) is already gone.
pub(crate) fn die_with_parent(parent_pid: u32) -> io::Result<bool> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    Ok(rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) == Some(parent_pid))
}

/// The number of CPUs in the system (Python's `os.cpu_count()`).
pub(crate) fn cpu_count() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(prefix("Process-1", NAME_MAX), "Process-1");
        assert_eq!(
            prefix("a-child-with-a-long-name", NAME_MAX),
            "a-child-with-a-"
        );
        // "é" is two bytes: a cut through it keeps neither.
        assert_eq!(prefix("ééééééééé", NAME_MAX), "ééééééé");
        assert_eq!(prefix("abc", 0), "");
    }
}
