//! The child side of a start, and who this process is.
//!
//! A spawned or fork-server child receives a [`ChildSpec`]: which entry point
//! to run (as an offset, see `sys::code`), who it is, and its encoded
//! arguments, whose descriptors travel beside it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sys;

/// Environment variable naming the bootstrap socket of a spawned child.
pub(crate) const BOOTSTRAP_ENV: &str = "MULTIPROCESS_BOOTSTRAP_FD";

/// Largest spec frame we accept (the arguments travel inside it).
const MAX_SPEC: u32 = 1 << 30;

/// Everything a child needs to become the process the parent asked for.
#[derive(Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    /// Offset of the entry point (see `sys::code::Entry::offset`).
    pub entry: i64,
    /// Device and inode of the parent's executable.
    pub exe: (u64, u64),
    /// The child's identity.
    pub me: Identity,
    /// Whether the child is a daemon.
    pub daemon: bool,
    /// The encoded arguments; their descriptors travel beside the spec.
    pub args: Vec<u8>,
    /// The process tree's key (see `authkey.rs`).
    pub authkey: [u8; super::authkey::KEY_LEN],
    /// The signals the requesting parent ignores (see
    /// `sys::signal::ignored_set`): the child ignores exactly these, whatever
    /// the process that forks or execs it (the fork server) ignores.
    pub ignored_signals: u64,
    /// How many of the descriptors beside the spec, at the end, are the
    /// parent's liveness domains (`sys/liveness.rs`), which the child joins
    /// before it runs anything.
    pub domains: u32,
    /// The start method that started the child: its own default, as Python
    /// forces a child's default to the method that started it.
    pub start_method: super::StartMethod,
}

/// Name and position in the process tree (Python's `_identity`).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// The process name, `MainProcess` or `Process-1:2` style by default.
    pub name: String,
    /// Path from the main process: `[1, 2]` is the 2nd child of the 1st child.
    pub path: Vec<u32>,
    /// How many children this process has started.
    pub started: u32,
    /// Parent pid and name, if this process was started by multiprocess.
    pub parent: Option<(u32, String)>,
    /// Whether this process is a daemon: the default of its own children's
    /// flag, as in Python.
    pub daemon: bool,
}

pub(crate) static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

/// Runs `f` on this process's identity (initialised as the main process).
pub(crate) fn with_identity<R>(f: impl FnOnce(&mut Identity) -> R) -> R {
    let mut guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let id = guard.get_or_insert_with(|| Identity {
        name: "MainProcess".into(),
        path: Vec::new(),
        started: 0,
        parent: None,
        daemon: false,
    });
    f(id)
}

/// Writes a spec frame (`u32` length, postcard bytes) with `fds` attached.
pub(crate) fn send_spec(sock: impl AsFd, spec: &ChildSpec, fds: &[OwnedFd]) -> io::Result<()> {
    let body = postcard::to_stdvec(spec).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("arguments too large"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    sys::socket::send_all_with_fds(sock, &frame, &borrowed)
}

/// Reads a spec frame written by [`send_spec`]. `Ok(None)` on a clean EOF.
pub(crate) fn recv_spec(sock: impl AsFd) -> io::Result<Option<(ChildSpec, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    let mut len = [0u8; 4];
    let n = sys::socket::recv_with_fds(sock.as_fd(), &mut len, &mut fds, sys::socket::Wait::Block)?;
    if n == 0 {
        return Ok(None);
    }
    sys::socket::recv_exact_with_fds(sock.as_fd(), &mut len[n..], &mut fds)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_SPEC {
        return Err(io::Error::other("spec too large"));
    }
    let mut body = vec![0u8; len as usize];
    sys::socket::recv_exact_with_fds(sock.as_fd(), &mut body, &mut fds)?;
    let spec = postcard::from_bytes(&body).map_err(io::Error::other)?;
    Ok(Some((spec, fds)))
}

/// Becomes the child described by `spec` and runs its target; returns the
/// exit code.
pub(crate) fn run_spec(spec: ChildSpec, mut fds: Vec<OwnedFd>) -> i32 {
    sys::signal::apply_ignored_set(spec.ignored_signals);
    let Some(first) = fds.len().checked_sub(spec.domains as usize) else {
        eprintln!("multiprocess: the start request lacks its liveness domains");
        return 1;
    };
    for fd in fds.split_off(first) {
        if let Err(e) = sys::liveness::join(fd) {
            eprintln!("multiprocess: cannot join the parent's liveness domain: {e}");
            return 1;
        }
    }
    let entry = match sys::code::resolve::<super::target::ChildEntry>(spec.entry, spec.exe) {
        Ok(entry) => entry,
        Err(e) => {
            eprintln!("multiprocess: refusing to start the target: {e}");
            return 1;
        }
    };
    sys::code::note_parent_runs_this_exe();
    sys::process::set_name(&spec.me.name);
    super::header::set(&spec.me.name);
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(spec.me);
    super::authkey::inherit(spec.authkey);
    super::set_start_method(spec.start_method);
    let args = spec.args;
    run_guarded(move || entry.call((&args, fds)))
}

/// Runs a child's target body, turning a panic into exit code 1 (the panic
/// hook has already printed the message to stderr, under a `Process <name>:`
/// header), then does what Python's exit handler does before the child
/// exits: terminates its daemon children and joins the others.
pub(crate) fn run_guarded(body: impl FnOnce() -> i32) -> i32 {
    super::header::name_panics();
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(1);
    super::finish_children();
    code
}

/// The spawned child's side of `init()`: reads its spec from the bootstrap
/// socket and never returns.
pub(crate) fn run_spawned(bootstrap: OwnedFd) -> ! {
    let code = match recv_spec(&bootstrap) {
        Ok(Some((spec, fds))) => {
            drop(bootstrap);
            run_spec(spec, fds)
        }
        Ok(None) => {
            eprintln!("multiprocess: the parent closed the bootstrap channel before sending");
            1
        }
        Err(e) => {
            eprintln!("multiprocess: cannot read the process spec from the parent: {e}");
            1
        }
    };
    sys::process::exit_now(code)
}
