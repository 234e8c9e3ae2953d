//! The fork server: the default start method on Linux.
//!
//! One single-threaded server process, itself started by re-executing the
//! binary, forks a child for each request. Forking a single-threaded process
//! is safe (no lock can be held by a thread that does not exist in the
//! child), and it is fast: no exec, no dynamic loading, no `main` prologue.
//!
//! Protocol over the control socket (a Unix stream socketpair):
//! - hello, once, right after the server starts: 4 bytes (`HELLO`) with one
//!   end of a second socketpair attached, the *status channel*; the server
//!   writes every child's exit report there (no reply: no round trip);
//! - request: a spec frame (see `child::send_spec`) whose descriptors are
//!   the arguments' (`args…`);
//! - reply: the child's pid (`u32`, 0 if fork failed) and the request id the
//!   server gave it (`u64`, counting from 1), with a pidfd attached.
//!
//! On the status channel, as the server reaps its children: one record per
//! child, its request id (`u64`) and exit code (`i32`, Python's convention),
//! little endian. One channel serves every child of a parent process, so a
//! running child costs the parent one descriptor (its pidfd); whoever needs
//! an exit code drains the channel into a table ([`StatusChannel`]). If the
//! channel hangs up with a child's record missing, the server died and the
//! status is lost.
//!
//! The server exits when the control socket reaches EOF, which happens when
//! the parent *process* is gone (not merely the thread that started the
//! server), after killing its daemon children. Daemon children also carry
//! `PR_SET_PDEATHSIG` towards the server, so they die if the server is
//! killed. If the server dies, the next request starts a new one. The
//! server ignores SIGINT, SIGTERM and SIGHUP (its lifetime follows the
//! parent's); a child ignores exactly what its requesting parent ignores.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::process::child::{self, ChildSpec};
use crate::sys;
use crate::sys::socket::{recv_exact_with_fds, send_all_with_fds};

/// Environment variable naming the control socket of the fork server.
pub(crate) const FORKSERVER_ENV: &str = "MULTIPROCESS_FORKSERVER_FD";

/// The first message on a new server's control socket; the status
/// channel's far end rides with it.
const HELLO: [u8; 4] = *b"stat";

/// One exit report on the status channel: request id, then exit code.
const RECORD: usize = 12;

/// The client's connection to its server.
pub(crate) struct Client {
    control: OwnedFd,
    status: Arc<StatusChannel>,
    /// The process that started this server; a forked child must not reuse it.
    owner: u32,
}

/// This process's fork server, started on first use.
pub(crate) static SERVER: Mutex<Option<Client>> = Mutex::new(None);

/// A child started by the server.
pub(crate) struct Served {
    pub pid: u32,
    pub pidfd: OwnedFd,
    /// Where its exit code will come, under `id`.
    pub status: Arc<StatusChannel>,
    pub id: u64,
}

/// The channel on which one server reports its children's exit codes, and
/// the codes read from it that their processes have not yet asked for.
pub(crate) struct StatusChannel {
    fd: OwnedFd,
    /// The process that started the server; no other reads the channel (a
    /// forked copy of the parent must not take its reports).
    owner: u32,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    codes: HashMap<u64, i32>,
    /// Children dropped before their report came: it is discarded.
    forgotten: HashSet<u64>,
    /// The server closed the channel: it died (or this is a forked copy).
    hung_up: bool,
}

impl AsFd for StatusChannel {
    /// Readable when a report (or the server's hang-up) is waiting.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the status channel says of one child.
pub(crate) enum Status {
    Exited(i32),
    /// No report yet: the child runs, or its server has not reaped it yet.
    Pending,
    /// No report will come: the server died.
    Lost,
}

impl StatusChannel {
    fn new(fd: OwnedFd) -> Self {
        Self {
            fd,
            owner: std::process::id(),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every report already on the channel (never blocks on an empty
    /// channel; a record is written at once, so a started one completes).
    fn drain(&self, table: &mut Table) -> io::Result<()> {
        while !table.hung_up
            && sys::fd::wait_readable(&self.fd, Some(Instant::now()))? == sys::fd::Ready::Readable
        {
            let mut record = [0u8; RECORD];
            match recv_exact_with_fds(&self.fd, &mut record, &mut Vec::new()) {
                Ok(()) => {
                    let (id, code) = record.split_at(8);
                    let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
                    let code = i32::from_le_bytes(code.try_into().expect("4 bytes"));
                    if !table.forgotten.remove(&id) {
                        table.codes.insert(id, code);
                    }
                }
                Err(e) if is_disconnect(&e) => table.hung_up = true,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The exit status of the child started as request `id`; takes it out
    /// of the table when there.
    pub(crate) fn status(&self, id: u64) -> io::Result<Status> {
        if self.owner != std::process::id() {
            return Ok(Status::Lost);
        }
        let mut table = self.lock();
        if let Some(code) = table.codes.remove(&id) {
            return Ok(Status::Exited(code));
        }
        self.drain(&mut table)?;
        Ok(match table.codes.remove(&id) {
            Some(code) => Status::Exited(code),
            None if table.hung_up => Status::Lost,
            None => Status::Pending,
        })
    }

    /// Forgets request `id` (its process is dropped): its report, come or
    /// to come, is discarded, so the table does not grow.
    pub(crate) fn forget(&self, id: u64) {
        if self.owner != std::process::id() {
            return;
        }
        let mut table = self.lock();
        if table.codes.remove(&id).is_none() && !table.hung_up {
            table.forgotten.insert(id);
        }
    }

    /// Waits until the channel has something to read, or `deadline`.
    pub(crate) fn wait_readable(&self, deadline: Instant) -> io::Result<sys::fd::Ready> {
        sys::fd::wait_readable(&self.fd, Some(deadline))
    }
}

fn start_server() -> io::Result<Client> {
    let (ours, theirs) = sys::socket::socketpair()?;
    let (status_ours, status_theirs) = sys::socket::socketpair()?;
    let _started = sys::process::spawn_self(&sys::process::SpawnRequest {
        fd_env: FORKSERVER_ENV,
        keep_fd: theirs.as_fd(),
        die_with_parent: false,
        null_stdin: true,
    })?;
    // The server is reaped by nobody in particular: it exits after we do, and
    // its parent (us, or init once we are gone) collects it. Dropping the
    // pidfd does not kill it.
    // The status channel's far end goes with the first bytes the server
    // reads; nothing to wait for.
    send_all_with_fds(&ours, &HELLO, &[status_theirs.as_fd()])?;
    Ok(Client {
        control: ours,
        status: Arc::new(StatusChannel::new(status_ours)),
        owner: std::process::id(),
    })
}

/// Asks the fork server (starting it if needed) to start a child.
pub(crate) fn start_child(spec: &ChildSpec, args_fds: Vec<OwnedFd>) -> io::Result<Served> {
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let fds = args_fds;
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
        match exchange(client, spec, &fds) {
            Ok((pid, id, pidfd)) => {
                return Ok(Served {
                    pid,
                    pidfd,
                    status: client.status.clone(),
                    id,
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

fn exchange(client: &Client, spec: &ChildSpec, fds: &[OwnedFd]) -> io::Result<(u32, u64, OwnedFd)> {
    let control = client.control.as_fd();
    child::send_spec(control, spec, fds)?;
    // While we wait for the reply, take the exit reports the server writes:
    // with nobody reading them, a full channel would stall the server.
    let status = client.status.fd.as_fd();
    while sys::fd::wait_any_readable(&[control, status], None)? == Some(1) {
        let mut table = client.status.lock();
        client.status.drain(&mut table)?;
        if table.hung_up {
            // The server died: the control socket tells.
            drop(table);
            sys::fd::wait_readable(control, None)?;
            break;
        }
    }
    let mut reply = [0u8; 12];
    let mut got = Vec::new();
    recv_exact_with_fds(control, &mut reply, &mut got)?;
    let (pid, id) = reply.split_at(4);
    let pid = u32::from_le_bytes(pid.try_into().expect("4 bytes"));
    let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
    match (pid, got.pop()) {
        (0, _) => Err(io::Error::other("the fork server could not fork")),
        (pid, Some(pidfd)) => Ok((pid, id, pidfd)),
        (_, None) => Err(io::Error::other("the fork server sent no pidfd")),
    }
}

/// A child as the server tracks it.
struct Tracked {
    pidfd: OwnedFd,
    id: u64,
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
    let mut hello = [0u8; 4];
    let mut got = Vec::new();
    let status = match recv_exact_with_fds(&control, &mut hello, &mut got) {
        Ok(()) if hello == HELLO && got.len() == 1 => got.remove(0),
        _ => sys::process::exit_now(1),
    };
    let mut next_id: u64 = 0;
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
                    let mut record = [0u8; RECORD];
                    record[..8].copy_from_slice(&c.id.to_le_bytes());
                    record[8..].copy_from_slice(&code.to_le_bytes());
                    // A parent that is gone reads no more: nothing to do.
                    let _ = send_all_with_fds(&status, &record, &[]);
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
            continue;
        }
        let (spec, fds) = match child::recv_spec(&control) {
            Ok(Some(request)) => request,
            // The parent process is gone: take the daemons with us.
            Ok(None) | Err(_) => {
                for c in children.iter().filter(|c| c.daemon) {
                    let _ = sys::process::send_signal(&c.pidfd, libc::SIGKILL);
                }
                sys::process::exit_now(0);
            }
        };
        next_id += 1;
        let id = next_id;
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
                let mut reply = [0u8; 12];
                reply[..4].copy_from_slice(&started.pid.to_le_bytes());
                reply[4..].copy_from_slice(&id.to_le_bytes());
                let sent = send_all_with_fds(&control, &reply, &[started.pidfd.as_fd()]);
                if sent.is_err() {
                    sys::process::exit_now(0);
                }
                children.push(Tracked {
                    pidfd: started.pidfd,
                    id,
                    daemon,
                });
            }
            Err(_) => {
                let _ = send_all_with_fds(&control, &[0u8; 12], &[]);
            }
        }
    }
}
