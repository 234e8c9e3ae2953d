//! The fork server: the default start method on Linux.
//!
//! One single-threaded server process, itself started by re-executing the
//! binary, forks a child for each request. Forking a single-threaded process
//! is safe (no lock can be held by a thread that does not exist in the
//! child), and it is fast: no exec, no dynamic loading, no `main` prologue.
//!
//! Protocol over the control socket (a Unix stream socketpair):
//! - request: a spec frame (see `child::send_spec`) whose descriptors are
//!   `[status, args…]`; `status` is one end of a socketpair on which the
//!   server later writes the child's exit code (`i32`, little endian,
//!   Python's convention) and closes;
//! - reply: the child's pid (`u32`, 0 if fork failed) with a pidfd attached.
//!
//! The server exits when the control socket reaches EOF, which happens when
//! the parent *process* is gone (not merely the thread that started the
//! server), after killing its daemon children. Daemon children also carry
//! `PR_SET_PDEATHSIG` towards the server, so they die if the server is
//! killed. If the server dies, the next request starts a new one. The
//! server ignores SIGINT, SIGTERM and SIGHUP (its lifetime follows the
//! parent's); a child ignores exactly what its requesting parent ignores.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use crate::process::child::{self, ChildSpec};
use crate::sys;
use crate::sys::socket::{recv_exact_with_fds, send_all_with_fds};

/// Environment variable naming the control socket of the fork server.
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROCESS_FORKSERVER_FD";

/// The client's connection to its server.
pub(crate) struct Client {
    control: OwnedFd,
    /// The process that started this server; a forked child must not reuse it.
    owner: u32,
}

/// This process's fork server, started on first use.
pub(crate) static SERVER: Mutex<Option<Client>> = Mutex::new(None);

/// A child started by the server.
pub(crate) struct Served {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub status: OwnedFd,
}

fn start_server() -> io::Result<Client> {
    let (ours, theirs) = sys::socket::socketpair()?;
    let _started = sys::process::spawn_self(&sys::process::SpawnRequest {
        fd_env: FORKSERVER_ENV,
        keep_fd: theirs.as_fd(),
        die_with_parent: false,
        null_stdin: true,
    })?;
    // The server is reaped by nobody in particular: it exits after we do, and
    // its parent (us, or init once we are gone) collects it. Dropping the
    // pidfd does not kill it.
    Ok(Client {
        control: ours,
        owner: std::process::id(),
    })
}

/// Asks the fork server (starting it if needed) to start a child.
pub(crate) fn start_child(spec: &ChildSpec, args_fds: Vec<OwnedFd>) -> io::Result<Served> {
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let mut fds = args_fds;
    for attempt in 0..2 {
        if server
            .as_ref()
            .is_some_and(|c| c.owner != std::process::id())
        {
            *server = None;
        }
        if server.is_none() {
            *server = Some(start_server()?);
        }
        let client = server.as_ref().expect("just set");
        let (status_ours, status_theirs) = sys::socket::socketpair()?;
        fds.insert(0, status_theirs);
        let result = exchange(client.control.as_fd(), spec, &fds);
        fds.remove(0);
        match result {
            Ok((pid, pidfd)) => {
                return Ok(Served {
                    pid,
                    pidfd,
                    status: status_ours,
                });
            }
            // The server is gone (killed, or crashed): start another once.
            Err(e) if attempt == 0 && is_disconnect(&e) => *server = None,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

fn exchange(
    control: BorrowedFd<'_>,
    spec: &ChildSpec,
    fds: &[OwnedFd],
) -> io::Result<(u32, OwnedFd)> {
    child::send_spec(control, spec, fds)?;
    let mut reply = [0u8; 4];
    let mut got = Vec::new();
    recv_exact_with_fds(control, &mut reply, &mut got)?;
    let pid = u32::from_le_bytes(reply);
    match (pid, got.pop()) {
        (0, _) => Err(io::Error::other("the fork server could not fork")),
        (pid, Some(pidfd)) => Ok((pid, pidfd)),
        (_, None) => Err(io::Error::other("the fork server sent no pidfd")),
    }
}

/// A child as the server tracks it.
struct Tracked {
    pidfd: OwnedFd,
    status: OwnedFd,
    daemon: bool,
}

/// The server's main loop; never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    sys::process::set_helper_name("forksrv");
    // The server lives exactly as long as its parent process (it exits at
    // EOF on the control socket), so it shrugs off a Ctrl-C or a hang-up
    // sent to the whole process group, as CPython's fork server ignores
    // SIGINT: children it loses that way could not report their exit codes.
    // It must reap its children, so SIGCHLD has its default disposition.
    // Each child takes its requesting parent's ignored set (`run_spec`).
    sys::signal::ignore_termination_signals();
    sys::signal::default_sigchld();
    let me = std::process::id();
    let mut children: Vec<Tracked> = Vec::new();
    loop {
        let mut watch: Vec<BorrowedFd<'_>> = vec![control.as_fd()];
        watch.extend(children.iter().map(|c| c.pidfd.as_fd()));
        let ready = match sys::fd::wait_any_readable(&watch, None) {
            Ok(r) => r,
            Err(_) => sys::process::exit_now(1),
        };
        drop(watch);
        if ready != Some(0) {
            // Reap whoever exited and report their exit codes.
            children.retain(|c| match sys::process::try_reap(&c.pidfd) {
                Ok(Some(code)) => {
                    let _ = send_all_with_fds(&c.status, &code.to_le_bytes(), &[]);
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
            continue;
        }
        let (spec, mut fds) = match child::recv_spec(&control) {
            Ok(Some(request)) => request,
            // The parent process is gone: take the daemons with us.
            Ok(None) | Err(_) => {
                for c in children.iter().filter(|c| c.daemon) {
                    let _ = sys::process::send_signal(&c.pidfd, libc::SIGKILL);
                }
                sys::process::exit_now(0);
            }
        };
        if fds.is_empty() {
            let _ = send_all_with_fds(&control, &0u32.to_le_bytes(), &[]);
            continue;
        }
        let status = fds.remove(0);
        let daemon = spec.daemon;
        // The child starts with the server's dispositions (INT, TERM and HUP
        // ignored): until it has its parent's, those signals wait blocked
        // rather than being lost (a `terminate()` right after `start()`).
        let mask = sys::signal::block_termination_signals();
        let forked = sys::process::fork();
        if !matches!(forked, Ok(sys::process::Forked::Child)) {
            sys::signal::restore_mask(&mask);
        }
        match forked {
            Ok(sys::process::Forked::Child) => {
                sys::signal::apply_ignored_set(spec.ignored_signals);
                sys::signal::restore_mask(&mask);
                // Keep nothing of the server's: its socket and its children.
                drop(control);
                drop(children);
                drop(status);
                if daemon && !sys::process::die_with_parent(me).unwrap_or(false) {
                    sys::process::exit_now(1);
                }
                sys::process::exit_now(child::run_spec(spec, fds));
            }
            Ok(sys::process::Forked::Parent(started)) => {
                drop(fds);
                let sent = send_all_with_fds(
                    &control,
                    &started.pid.to_le_bytes(),
                    &[started.pidfd.as_fd()],
                );
                if sent.is_err() {
                    sys::process::exit_now(0);
                }
                children.push(Tracked {
                    pidfd: started.pidfd,
                    status,
                    daemon,
                });
            }
            Err(_) => {
                let _ = send_all_with_fds(&control, &0u32.to_le_bytes(), &[]);
            }
        }
    }
}
