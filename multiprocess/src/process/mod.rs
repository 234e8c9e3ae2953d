//! Processes: [`Process`], start methods, and who-am-I functions.
//!
//! A [`Process`] runs a target function in a new OS process with its own
//! memory. How the process comes to be is its [`StartMethod`].
//!
//! Spawn and ForkServer children run a *fresh* copy of the binary (the fork
//! server itself is started by re-execution), so targets are plain `fn`s and
//! their arguments travel serialized; handles inside the arguments (queues,
//! connections, locks) travel as descriptors beside them.

pub(crate) mod authkey;
mod child;
mod forkserver;
mod header;
mod target;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

pub(crate) use child::{BOOTSTRAP_ENV, run_spawned};
pub(crate) use forkserver::{FORKSERVER_ENV, serve as serve_fork_requests};
pub(crate) use target::{ChildEntry, Entry, with_error_text};
pub use target::{Target, TargetResult};

use crate::codec::{self, EncodeError};
use crate::sys;
use child::{ChildSpec, Identity};

static INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Whether [`init`](fn@crate::init) has run in this process (so re-executing
/// the binary dispatches a helper instead of running `main`).
pub(crate) fn init_called() -> bool {
    INIT_CALLED.load(Ordering::SeqCst)
}

/// Records that [`init`](fn@crate::init) has run, and arranges for this
/// process to join its non-daemon children when it exits through `exit`
/// (`main` returning, or `std::process::exit`), as Python's exit handler does.
pub(crate) fn note_init_called() {
    if !INIT_CALLED.swap(true, Ordering::SeqCst) {
        sys::process::at_exit(finish_children_at_exit);
    }
}

extern "C" fn finish_children_at_exit() {
    // Nothing may unwind out of an `extern "C"` handler.
    let _ = std::panic::catch_unwind(finish_children);
}

/// What Python's exit handler (`util._exit_function`) does to the children
/// of a process that is about to exit: daemon children are terminated
/// (`SIGTERM`; a daemon that ignores it dies with this process anyway), and
/// non-daemon children, held or dropped, are joined.
pub(crate) fn finish_children() {
    let live: Vec<Arc<Shared>> = lock(&CHILDREN).iter().filter_map(Weak::upgrade).collect();
    let live: Vec<Process> = live.into_iter().map(|shared| Process { shared }).collect();
    let orphans = std::mem::take(&mut *lock(&ORPHANS));
    for p in live.iter().filter(|p| p.daemon()) {
        let _ = p.terminate();
    }
    for o in orphans.iter().filter(|o| o.daemon) {
        let _ = sys::process::send_signal(o.pidfd.as_ref(), libc::SIGTERM);
    }
    for p in live.iter().filter(|p| !p.daemon()) {
        let _ = p.join();
    }
    for o in orphans.iter().filter(|o| !o.daemon) {
        if sys::fd::wait_readable(o.pidfd.as_ref(), None).is_ok() && o.reap {
            let _ = sys::process::try_reap(o.pidfd.as_ref());
        }
    }
}

/// How a child process is created.
///
/// | method | how | cost | threads in the parent |
/// |---|---|---|---|
/// | [`ForkServer`](StartMethod::ForkServer) (default) | a single-threaded server forks each child | fork | safe |
/// | [`Spawn`](StartMethod::Spawn) | re-executes the binary; [`init`](fn@crate::init) dispatches the child | exec | safe |
/// | [`Fork`](StartMethod::Fork) | forks the caller | fork | refused (see [`StartMethod::Fork`]) |
///
/// Spawn and ForkServer children run a fresh copy of the binary (the fork
/// server itself is started by re-execution), so targets are plain `fn`s and
/// their arguments travel serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// Fork the calling process: the child is a copy of the parent at the
    /// moment of `start`, and runs the target directly.
    ///
    /// This is the only method that accepts a capturing closure
    /// ([`Context::process_closure`]) and the cheapest, but forking a
    /// multi-threaded parent is unsound: the child has only the thread that
    /// called `start`, and a lock held by any other thread at that moment (a
    /// logger, stdout, your own mutexes) stays locked forever in the child,
    /// while a structure another thread was updating stays half-updated.
    /// Python moved its default away from fork for this reason and warns;
    /// `start` refuses with an error when the process has more than one
    /// thread. Use it in single-threaded programs.
    Fork,
    /// Re-execute the running binary; [`init`](fn@crate::init) in the child's `main` runs the
    /// target. Safe with threads; costs an exec.
    Spawn,
    /// Ask a single-threaded fork server (started on first use by
    /// re-execution) to fork the child. Safe with threads, and nearly as fast
    /// as `Fork`. The default, as in Python 3.14 on Linux.
    ForkServer,
}

impl StartMethod {
    fn from_u8(v: u8) -> StartMethod {
        match v {
            0 => StartMethod::Fork,
            1 => StartMethod::Spawn,
            _ => StartMethod::ForkServer,
        }
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(StartMethod::ForkServer as u8);

/// Sets the start method used by [`Process::new`] from now on (Python's
/// `multiprocessing.set_start_method`).
///
/// A child starts with the method that started it as its own default,
/// whatever this process's default is (as Python forces it): a child of
/// `get_context(StartMethod::Spawn)` reports `Spawn` from
/// [`get_start_method`] and spawns its own children.
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method as u8, Ordering::SeqCst);
}

/// The start method [`Process::new`] uses: [`StartMethod::ForkServer`] in
/// the main process unless [`set_start_method`] changed it, and in a child
/// the method that started it.
pub fn get_start_method() -> StartMethod {
    StartMethod::from_u8(DEFAULT_METHOD.load(Ordering::SeqCst))
}

/// Every start method this platform supports, the platform's default first
/// (Python's `multiprocessing.get_all_start_methods()`).
///
/// # Examples
///
/// ```
/// use multiprocess::{StartMethod, get_all_start_methods};
///
/// assert_eq!(
///     get_all_start_methods(),
///     [StartMethod::ForkServer, StartMethod::Fork, StartMethod::Spawn]
/// );
/// ```
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::ForkServer,
        StartMethod::Fork,
        StartMethod::Spawn,
    ]
}

/// A start method to create processes with, without changing the global
/// default (Python's `multiprocessing.get_context(method)`).
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{get_context, StartMethod};
///
/// fn work(n: u32) {
///     println!("{n}");
/// }
///
/// multiprocess::init();
/// let ctx = get_context(StartMethod::Spawn);
/// let p = ctx.process(work, (7,));
/// p.start()?;
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// See [`get_context`].
#[derive(Debug, Clone, Copy)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// This context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `target(args…)` with this context's start method.
    pub fn process<F, A>(&self, target: F, args: A) -> Process
    where
        F: Target<A>,
        A: serde::Serialize + Send + 'static,
    {
        Process::builder()
            .start_method(self.method)
            .target(target, args)
    }

    /// A process that runs a closure, which may capture anything `Send`.
    ///
    /// Only the [`Fork`](StartMethod::Fork) method can run a closure (the
    /// child is a copy of this process, so the captures are already there);
    /// with another method, [`Process::start`] returns
    /// [`StartError::ClosureNeedsFork`].
    pub fn process_closure<C>(&self, closure: C) -> Process
    where
        C: FnOnce() + Send + 'static,
    {
        Process::builder()
            .start_method(self.method)
            .build(Box::new(ClosureLaunch(closure)))
    }
}

/// The work a process will do, before `start`.
trait Launch: Send {
    /// The entry point a re-executed child runs.
    fn entry(&self) -> Option<Entry>;
    /// The arguments as bytes plus descriptors.
    fn encode(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError>;
    /// Runs the target in a forked child; returns the exit code.
    fn run(self: Box<Self>) -> i32;
}

struct FnLaunch<F, A> {
    target: F,
    args: A,
}

impl<F, A> Launch for FnLaunch<F, A>
where
    F: Target<A>,
    A: serde::Serialize + Send + 'static,
{
    fn entry(&self) -> Option<Entry> {
        Some(self.target.entry())
    }
    fn encode(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError> {
        F::check_args(&self.args)?;
        codec::encode(&self.args)
    }
    fn run(self: Box<Self>) -> i32 {
        let this = *self;
        this.target.call(this.args)
    }
}

struct ClosureLaunch<C>(C);

impl<C: FnOnce() + Send + 'static> Launch for ClosureLaunch<C> {
    fn entry(&self) -> Option<Entry> {
        None
    }
    fn encode(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError> {
        Err(EncodeError::Serialize(
            "a closure cannot be serialized".into(),
        ))
    }
    fn run(self: Box<Self>) -> i32 {
        (self.0)();
        0
    }
}

/// Why [`Process::start`] failed. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was called before on this process.
    #[error("a process can only be started once")]
    AlreadyStarted,
    /// [`init`](fn@crate::init) was not called first in `main` (or this process is itself a
    /// child that skipped it), so a re-executed child could not find its
    /// target. Refusing prevents a fork bomb.
    #[error(
        "multiprocess::init() must be called first in main (or use init_before_main!) \
         before starting processes with the Spawn or ForkServer method"
    )]
    InitNotCalled,
    /// A closure target needs the Fork start method.
    #[error("a closure target can only be started with the Fork start method")]
    ClosureNeedsFork,
    /// The arguments could not be serialized.
    #[error("cannot send the process arguments: {0}")]
    Encode(#[from] EncodeError),
    /// The operating system refused (fork, exec, sockets).
    #[error("cannot start the process: {0}")]
    Io(#[from] io::Error),
    /// [`Process::close`] was called on this process.
    #[error("the process object is closed")]
    Closed,
}

/// Why waiting for or signalling a process failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The process was never started.
    #[error("the process has not been started")]
    NotStarted,
    /// The fork server that started this child died, and the child's exit
    /// status died with it. The child itself has exited.
    #[error("the exit status was lost with the fork server")]
    StatusLost,
    /// The operating system reported an error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// [`Process::close`] refused: the process still runs (join or terminate
    /// it first). Python's `ValueError`.
    #[error("cannot close a process while it is still running; join() or terminate() it first")]
    StillRunning,
    /// [`Process::close`] was called before: the process object no longer
    /// holds the child. Python's `ValueError: process object is closed`.
    #[error("the process object is closed")]
    Closed,
}

/// A process: Python's `multiprocessing.Process`.
///
/// Create it with [`Process::new`] (or [`Process::builder`] to set a name,
/// the daemon flag or the start method), then [`start`](Self::start) it and
/// [`join`](Self::join) it. Its exit code follows Python: `None` while
/// running, `0` on success, `1` if the target panicked or returned `Err`, `n`
/// after `std::process::exit(n)`, and `-N` after death by signal N.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::Process;
///
/// fn print_square(num: f64) {
///     println!("Square: {}", num * num);
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let p = Process::new(print_square, (10.0,));
///     p.start()?;
///     assert_eq!(p.join()?, 0);
///     Ok(())
/// }
/// ```
///
/// # Process names
///
/// A started child names itself after [`name`](Self::name) in the kernel
/// (its first 15 bytes: what `ps -o comm`, `top` and `pgrep` show), so
/// `Process-1`, `PoolWorker-2` or `worker-1` can be told apart. The crate's
/// helper processes show as `<program>:forksrv` (the fork server) and
/// `<program>:tracker` (the shared-memory tracker), the program's name cut
/// to fit. `ps -o args` still shows the program for all of them.
///
/// # Caveats
///
/// Dropping a running `Process` does not stop it: the child runs on and is
/// reaped in the background when it exits (no zombie is left while this
/// process runs).
///
/// # When the creating process exits
///
/// As Python's exit handler does, a process joins its non-daemon children,
/// held or dropped, before it exits, and terminates (`SIGTERM`) its daemon
/// children, which are killed anyway if they survive it. A child does this
/// when its target returns (or panics, or calls `std::process::exit`); the
/// main program when `main` returns or calls `std::process::exit`, through
/// an `atexit` handler that [`init`](fn@crate::init) registers. A process
/// that ends by signal, or by `std::process::abort`, waits for nothing, and
/// a non-daemon child that never ends keeps its parent from exiting (mark
/// it [`daemon`](ProcessBuilder::daemon), or join or terminate it).
pub struct Process {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    daemon: bool,
    method: StartMethod,
    /// This child's place in the process tree.
    path: Vec<u32>,
    /// The pid once started, 0 before.
    pid: AtomicU32,
    state: Mutex<State>,
}

enum State {
    NotStarted(Box<dyn Launch>),
    Starting,
    Running(Running),
    Exited(i32),
    /// A fork-server child that exited after its server died: the exit code
    /// is unknown.
    Lost,
    /// [`Process::close`] released the child; its exit code if it was known.
    Closed(Option<i32>),
}

struct Running {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    /// For fork-server children: the channel the server reports exit codes
    /// on, and this child's request id there. `None` for direct children,
    /// and once the server is found dead.
    status: Option<(Arc<forkserver::StatusChannel>, u64)>,
    /// The fork server that started this child died.
    server_died: bool,
}

/// Builder for a [`Process`] with a name, the daemon flag or a start method.
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{Process, StartMethod};
///
/// fn worker() {}
///
/// multiprocess::init();
/// let p = Process::builder()
///     .name("worker-1")
///     .daemon(true)
///     .start_method(StartMethod::Spawn)
///     .target(worker, ());
/// assert_eq!(p.name(), "worker-1");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
}

impl ProcessBuilder {
    /// The process name (default `Process-N`, with `:`-joined numbers for
    /// grandchildren, as in Python).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon process is killed when its parent exits, while a non-daemon
    /// child is waited for (see [`init`](fn@crate::init)). Default: the
    /// creating process's own daemon flag (false in the main process), as in
    /// Python.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// The start method (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// A process that runs `target` with `args` (a tuple).
    pub fn target<F, A>(self, target: F, args: A) -> Process
    where
        F: Target<A>,
        A: serde::Serialize + Send + 'static,
    {
        self.build(Box::new(FnLaunch { target, args }))
    }

    fn build(self, launch: Box<dyn Launch>) -> Process {
        let (path, default_name, my_daemon) = child::with_identity(|me| {
            me.started += 1;
            let mut path = me.path.clone();
            path.push(me.started);
            let digits: Vec<String> = path.iter().map(u32::to_string).collect();
            (path, format!("Process-{}", digits.join(":")), me.daemon)
        });
        Process {
            shared: Arc::new(Shared {
                name: self.name.unwrap_or(default_name),
                daemon: self.daemon.unwrap_or(my_daemon),
                method: self.method.unwrap_or_else(get_start_method),
                path,
                pid: AtomicU32::new(0),
                state: Mutex::new(State::NotStarted(launch)),
            }),
        }
    }
}

/// Every started process of ours that may still run, for [`active_children`].
static CHILDREN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// Dropped, still running children: reaped later (direct children), and
/// waited for or terminated when this process exits ([`finish_children`]).
static ORPHANS: Mutex<Vec<Orphan>> = Mutex::new(Vec::new());

struct Orphan {
    pidfd: Arc<OwnedFd>,
    /// A direct child, which this process must reap (a fork-server child is
    /// the server's to reap).
    reap: bool,
    daemon: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn reap_orphans() {
    lock(&ORPHANS).retain(|o| {
        if o.reap {
            matches!(sys::process::try_reap(o.pidfd.as_ref()), Ok(None))
        } else {
            matches!(
                sys::fd::wait_readable(o.pidfd.as_ref(), Some(Instant::now())),
                Ok(sys::fd::Ready::TimedOut)
            )
        }
    });
}

impl Process {
    /// A process that will run `target(args…)`, with default name, daemon
    /// flag and start method. `args` is a tuple matching the target's
    /// parameters: `()`, `(x,)`, `(x, y)`…
    pub fn new<F, A>(target: F, args: A) -> Process
    where
        F: Target<A>,
        A: serde::Serialize + Send + 'static,
    {
        ProcessBuilder::default().target(target, args)
    }

    /// A builder to set the name, daemon flag or start method.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// Starts the process. The arguments are sent to it (and dropped here,
    /// which closes this process's copy of any Connection among them).
    ///
    /// # Errors
    ///
    /// See [`StartError`]. On error nothing is left running.
    pub fn start(&self) -> Result<(), StartError> {
        let mut state = lock(&self.shared.state);
        let launch = match std::mem::replace(&mut *state, State::Starting) {
            State::NotStarted(launch) => launch,
            closed @ State::Closed(_) => {
                *state = closed;
                return Err(StartError::Closed);
            }
            other => {
                *state = other;
                return Err(StartError::AlreadyStarted);
            }
        };
        reap_orphans();
        let result = match self.shared.method {
            StartMethod::Fork => self.start_fork(launch),
            method => self.start_exec(method, launch),
        };
        match result {
            Ok(running) => {
                self.shared.pid.store(running.pid, Ordering::Relaxed);
                *state = State::Running(running);
                drop(state);
                let mut children = lock(&CHILDREN);
                children.retain(|c| c.strong_count() > 0);
                children.push(Arc::downgrade(&self.shared));
                Ok(())
            }
            Err((e, launch)) => {
                *state = match launch {
                    Some(launch) => State::NotStarted(launch),
                    None => State::Exited(1),
                };
                Err(e)
            }
        }
    }

    fn start_exec(
        &self,
        method: StartMethod,
        launch: Box<dyn Launch>,
    ) -> Result<Running, (StartError, Option<Box<dyn Launch>>)> {
        let fail = |e: StartError, launch| Err((e, Some(launch)));
        if !INIT_CALLED.load(Ordering::SeqCst) || std::env::var_os(child::BOOTSTRAP_ENV).is_some() {
            return fail(StartError::InitNotCalled, launch);
        }
        let Some(entry) = launch.entry() else {
            return fail(StartError::ClosureNeedsFork, launch);
        };
        let (args, mut fds) = match launch.encode() {
            Ok(encoded) => encoded,
            Err(e) => return fail(e.into(), launch),
        };
        // The child joins our liveness domains, so each can judge the other.
        let domains = match sys::liveness::domain_fds() {
            Ok(domains) => domains,
            Err(e) => return fail(e.into(), launch),
        };
        let domain_count = domains.len() as u32;
        fds.extend(domains);
        let exe = match sys::code::exe_identity() {
            Ok(exe) => exe,
            Err(e) => return fail(e.into(), launch),
        };
        let authkey = match authkey::get() {
            Ok(key) => key,
            Err(e) => return fail(e.into(), launch),
        };
        let spec = ChildSpec {
            entry: entry.offset(),
            exe,
            me: Identity {
                name: self.shared.name.clone(),
                path: self.shared.path.clone(),
                started: 0,
                parent: Some((std::process::id(), current_process().name)),
                daemon: self.shared.daemon,
            },
            daemon: self.shared.daemon,
            args,
            authkey,
            ignored_signals: sys::signal::ignored_set(),
            domains: domain_count,
            start_method: method,
        };
        let started = match method {
            StartMethod::ForkServer => forkserver::start_child(&spec, fds).map(|s| Running {
                pid: s.pid,
                pidfd: Arc::new(s.pidfd),
                status: Some((s.status, s.id)),
                server_died: false,
            }),
            _ => spawn(&spec, fds, self.shared.daemon),
        };
        match started {
            // The launch (and with it the arguments) is dropped here: the
            // child has its own copies of every handle.
            Ok(running) => Ok(running),
            Err(e) => fail(e.into(), launch),
        }
    }

    fn start_fork(
        &self,
        launch: Box<dyn Launch>,
    ) -> Result<Running, (StartError, Option<Box<dyn Launch>>)> {
        let me = Identity {
            name: self.shared.name.clone(),
            path: self.shared.path.clone(),
            started: 0,
            parent: Some((std::process::id(), current_process().name)),
            daemon: self.shared.daemon,
        };
        let parent_pid = std::process::id();
        let daemon = self.shared.daemon;
        // The child inherits the key and the liveness domain with our
        // memory: make them first.
        if let Err(e) = authkey::get() {
            return Err((e.into(), Some(launch)));
        }
        if let Err(e) = sys::liveness::ensure_domain() {
            return Err((e.into(), Some(launch)));
        }
        // Hold our own locks across the fork so that no other thread of ours
        // holds them at that moment; the child then resets them.
        let server = lock(&forkserver::SERVER);
        let children = lock(&CHILDREN);
        let orphans = lock(&ORPHANS);
        let identity = lock(&child::IDENTITY);
        // `fork` refuses in a multi-threaded process.
        match sys::process::fork() {
            Ok(sys::process::Forked::Child) => {
                let mut server = server;
                let mut children = children;
                let mut orphans = orphans;
                let mut identity = identity;
                // The parent's children and fork server are not ours.
                server.take();
                children.clear();
                // Forget (do not close) nothing: the pidfds are copies.
                orphans.clear();
                sys::process::set_name(&me.name);
                header::set(&me.name);
                *identity = Some(me);
                drop((server, children, orphans, identity));
                // A forked copy runs its parent's executable.
                sys::code::note_parent_runs_this_exe();
                // Its own children are forked too by default, as in Python.
                set_start_method(StartMethod::Fork);
                if daemon && !sys::process::die_with_parent(parent_pid).unwrap_or(false) {
                    sys::process::exit_now(1);
                }
                let code = child::run_guarded(move || launch.run());
                sys::process::exit_now(code)
            }
            Ok(sys::process::Forked::Parent(started)) => {
                drop((server, children, orphans, identity));
                Ok(Running {
                    pid: started.pid,
                    pidfd: Arc::new(started.pidfd),
                    status: None,
                    server_died: false,
                })
            }
            Err(e) => Err((e.into(), Some(launch))),
        }
    }

    /// Waits until the process exits and returns its exit code.
    ///
    /// # Errors
    ///
    /// [`ProcessError::NotStarted`] before [`start`](Self::start).
    pub fn join(&self) -> Result<i32, ProcessError> {
        match self.wait(None)? {
            Some(code) => Ok(code),
            None => unreachable!("an unbounded wait returns only on exit"),
        }
    }

    /// Waits at most `timeout` for the process to exit: `Some(exit code)` if
    /// it did, `None` if it is still running. A zero timeout just checks.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        self.wait(crate::deadline::after(timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<Option<i32>, ProcessError> {
        loop {
            // Check under the lock, wait without it (so `is_alive`, `kill`
            // and other joiners are never blocked by a waiting joiner).
            let (pidfd, status) = {
                let mut state = lock(&self.shared.state);
                if let State::Closed(_) = &*state {
                    return Err(ProcessError::Closed);
                }
                if let Some(code) = poll_state(&mut state)? {
                    return Ok(Some(code));
                }
                match &*state {
                    State::Running(r) => (r.pidfd.clone(), r.status.clone()),
                    State::Closed(_) => return Err(ProcessError::Closed),
                    _ => return Err(ProcessError::NotStarted),
                }
            };
            if sys::fd::wait_readable(pidfd.as_ref(), deadline)? == sys::fd::Ready::TimedOut {
                return Ok(None);
            }
            if let Some((channel, _)) = status {
                // The child has exited; its report follows once the server
                // reaps it. Another joiner may take the channel's bytes
                // into the table first, so look again every few ms.
                let slice = Instant::now() + Duration::from_millis(5);
                let until = deadline.map_or(slice, |d| d.min(slice));
                if channel.wait_readable(until)? == sys::fd::Ready::TimedOut
                    && deadline.is_some_and(|d| d <= until)
                {
                    return poll_state(&mut lock(&self.shared.state));
                }
            }
        }
    }

    /// The child's pidfd while it runs (readable once it has exited), for
    /// callers that wait on many processes at once (the pool's monitor).
    pub(crate) fn sentinel(&self) -> Option<Arc<OwnedFd>> {
        match &*lock(&self.shared.state) {
            State::Running(r) => Some(r.pidfd.clone()),
            _ => None,
        }
    }

    /// For [`wait`](crate::wait): the descriptor on which this child's exit
    /// status arrives once its pidfd says it has exited, if that status
    /// comes from elsewhere (a fork server's status channel); `None` for a
    /// child this process reaps itself.
    pub(crate) fn status_fd(&self) -> Option<Arc<dyn std::os::fd::AsFd + Send + Sync>> {
        match &*lock(&self.shared.state) {
            State::Running(Running {
                status: Some((channel, _)),
                ..
            }) => Some(channel.clone()),
            _ => None,
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(&*lock(&self.shared.state), State::Closed(_))
    }

    /// The exit code, or `None` while the process runs (or before start).
    pub fn exitcode(&self) -> Option<i32> {
        poll_state(&mut lock(&self.shared.state)).ok().flatten()
    }

    /// Whether the process has started and not yet exited. False once
    /// [`close`](Self::close)d (where Python raises `ValueError`).
    pub fn is_alive(&self) -> bool {
        let mut state = lock(&self.shared.state);
        matches!(poll_state(&mut state), Ok(None)) && matches!(&*state, State::Running(_))
    }

    /// Releases the process's resources: its pidfd and its place in
    /// [`active_children`] (Python 3.7's `Process.close()`). Afterwards
    /// [`join`](Self::join), [`terminate`](Self::terminate),
    /// [`kill`](Self::kill) and [`wait`](crate::wait) fail with
    /// [`ProcessError::Closed`], [`start`](Self::start) with
    /// [`StartError::Closed`], and [`is_alive`](Self::is_alive) is false; the
    /// name, pid and [`exitcode`](Self::exitcode) stay. Closing again does
    /// nothing. Dropping a `Process` releases the same resources.
    ///
    /// # Errors
    ///
    /// [`ProcessError::StillRunning`] while the child runs: join or
    /// terminate it first. Nothing is released then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiprocess::{Process, ProcessError};
    ///
    /// fn work() {}
    ///
    /// multiprocess::init();
    /// let p = Process::new(work, ());
    /// p.start()?;
    /// p.join()?;
    /// p.close()?;
    /// assert!(matches!(p.join(), Err(ProcessError::Closed)));
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<(), ProcessError> {
        let mut state = lock(&self.shared.state);
        let code = match poll_state(&mut state) {
            Ok(Some(code)) => Some(code),
            Err(ProcessError::StatusLost) => None,
            Err(e) => return Err(e),
            Ok(None) => match &*state {
                State::Running(_) => return Err(ProcessError::StillRunning),
                _ => None,
            },
        };
        // Dropping the old state closes the pidfd (the child is reaped).
        *state = State::Closed(code);
        drop(state);
        let me = Arc::as_ptr(&self.shared);
        lock(&CHILDREN).retain(|c| c.as_ptr() != me && c.strong_count() > 0);
        Ok(())
    }

    /// The process id, once started (kept after it exits).
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The process name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether this is a daemon process.
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// The start method this process uses.
    pub fn start_method(&self) -> StartMethod {
        self.shared.method
    }

    /// Sends SIGTERM (Python's `terminate()`); the exit code becomes `-15`
    /// unless the child handles or ignores the signal (a child ignores what
    /// its parent ignored when starting it, as with fork and exec). Does
    /// nothing once exited.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`); the exit code becomes `-9`.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        match &*lock(&self.shared.state) {
            State::Running(r) => Ok(sys::process::send_signal(r.pidfd.as_ref(), sig)?),
            State::Exited(_) | State::Lost => Ok(()),
            State::Closed(_) => Err(ProcessError::Closed),
            _ => Err(ProcessError::NotStarted),
        }
    }
}

/// Updates `state` if the child has exited; returns its exit code if known.
fn poll_state(state: &mut State) -> Result<Option<i32>, ProcessError> {
    let code = match state {
        State::Exited(code) => return Ok(Some(*code)),
        State::Running(r) if r.server_died => {
            let now = Some(Instant::now());
            if sys::fd::wait_readable(r.pidfd.as_ref(), now)? == sys::fd::Ready::TimedOut {
                return Ok(None);
            }
            *state = State::Lost;
            return Err(ProcessError::StatusLost);
        }
        State::Lost => return Err(ProcessError::StatusLost),
        State::Closed(code) => return Ok(*code),
        State::Running(r) => match &r.status {
            None => sys::process::try_reap(r.pidfd.as_ref())?,
            Some((channel, id)) => match channel.status(*id)? {
                forkserver::Status::Exited(code) => Some(code),
                forkserver::Status::Pending => return Ok(None),
                forkserver::Status::Lost => {
                    // The server died: from now on watch the child's
                    // pidfd, and report the loss once it has exited.
                    r.status = None;
                    r.server_died = true;
                    return poll_state(state);
                }
            },
        },
        _ => return Ok(None),
    };
    if let Some(code) = code {
        *state = State::Exited(code);
    }
    Ok(code)
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.state.get_mut().unwrap_or_else(|e| e.into_inner()),
            State::Starting,
        );
        // Whoever dropped exited children before releases them now.
        reap_orphans();
        let State::Running(r) = state else { return };
        let running = if let Some((channel, id)) = &r.status {
            // The server reaps it; its report is of no use now.
            channel.forget(*id);
            matches!(
                sys::fd::wait_readable(r.pidfd.as_ref(), Some(Instant::now())),
                Ok(sys::fd::Ready::TimedOut)
            )
        } else if r.server_died {
            false
        } else {
            matches!(sys::process::try_reap(r.pidfd.as_ref()), Ok(None))
        };
        if running {
            // Kept to be reaped, and joined or terminated when this process
            // exits (`finish_children`).
            lock(&ORPHANS).push(Orphan {
                pidfd: r.pidfd,
                reap: r.status.is_none(),
                daemon: self.daemon,
            });
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*lock(&self.shared.state) {
            State::NotStarted(_) | State::Starting => "initial".to_string(),
            State::Running(r) => format!("started pid={}", r.pid),
            State::Exited(code) => format!("stopped exitcode={code}"),
            State::Lost => "stopped exitcode=unknown".to_string(),
            State::Closed(_) => "closed".to_string(),
        };
        write!(f, "<Process name='{}' {state}", self.shared.name)?;
        if self.shared.daemon {
            write!(f, " daemon")?;
        }
        write!(f, ">")
    }
}

/// Starts a child by re-executing the binary and sends it its spec.
fn spawn(spec: &ChildSpec, fds: Vec<OwnedFd>, daemon: bool) -> io::Result<Running> {
    let (ours, theirs) = sys::socket::socketpair()?;
    let started = if daemon {
        spawn_from_keeper(theirs)?
    } else {
        spawn_self_with(&theirs, false)?
    };
    // If the child died before reading, its exit code will tell; a failed
    // send is not a failed start.
    let _ = child::send_spec(&ours, spec, &fds);
    Ok(Running {
        pid: started.pid,
        pidfd: Arc::new(started.pidfd),
        status: None,
        server_died: false,
    })
}

fn spawn_self_with(bootstrap: &OwnedFd, daemon: bool) -> io::Result<sys::process::Started> {
    sys::process::spawn_self(&sys::process::SpawnRequest {
        fd_env: child::BOOTSTRAP_ENV,
        keep_fd: std::os::fd::AsFd::as_fd(bootstrap),
        die_with_parent: daemon,
        null_stdin: true,
    })
}

/// Spawns a daemon child from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process: a daemon spawned from a short-lived thread would die
/// with that thread. Spawning every daemon from one keeper thread ties it to
/// the process instead.
fn spawn_from_keeper(bootstrap: OwnedFd) -> io::Result<sys::process::Started> {
    type Request = (
        OwnedFd,
        std::sync::mpsc::Sender<io::Result<sys::process::Started>>,
    );
    static KEEPER: Mutex<Option<(u32, std::sync::mpsc::Sender<Request>)>> = Mutex::new(None);
    let mut keeper = lock(&KEEPER);
    // A forked child inherits the sender but not the thread: start its own.
    if keeper
        .as_ref()
        .is_none_or(|(pid, _)| *pid != std::process::id())
    {
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("multiprocess-daemon-spawner".into())
            .spawn(move || {
                for (bootstrap, reply) in rx {
                    let _ = reply.send(spawn_self_with(&bootstrap, true));
                }
            })?;
        *keeper = Some((std::process::id(), tx));
    }
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let (_, tx) = keeper.as_ref().expect("just set");
    tx.send((bootstrap, reply_tx))
        .map_err(|_| io::Error::other("the daemon spawner thread is gone"))?;
    drop(keeper);
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the daemon spawner thread is gone"))?
}

/// The running process's name and pid (Python's `current_process()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The name: `MainProcess`, `Process-1`, or the one given to the builder.
    pub name: String,
    /// The process id.
    pub pid: u32,
    /// Whether this process is a daemon (false in the main process): the
    /// default daemon flag of the processes it creates.
    pub daemon: bool,
}

/// This process's name and pid.
///
/// # Examples
///
/// ```
/// let me = multiprocess::current_process();
/// assert_eq!(me.pid, std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    let (name, daemon) = child::with_identity(|me| (me.name.clone(), me.daemon));
    ProcessInfo {
        name,
        pid: std::process::id(),
        daemon,
    }
}

impl ProcessInfo {
    /// The process tree's authentication key (Python's
    /// `current_process().authkey`): 32 random bytes made by the tree's
    /// first process and inherited by every process it starts, whatever the
    /// start method. The same in every process of the tree, whichever
    /// `ProcessInfo` it is asked through.
    ///
    /// The crate uses it to authenticate what the tree stores where any
    /// holder of a handle could write it: a [`Barrier`](crate::Barrier)'s
    /// action. Keep it secret as you would any key; a process outside the
    /// tree that learns it can forge those.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = multiprocess::current_process().authkey();
    /// assert_eq!(key.len(), 32);
    /// assert_eq!(key, multiprocess::current_process().authkey());
    /// ```
    ///
    /// # Panics
    /// If the kernel's random source fails when the key is first made.
    pub fn authkey(&self) -> [u8; 32] {
        authkey::get().expect("cannot read random bytes for the process tree's key")
    }

    /// Replaces this process's authentication key (Python's
    /// `current_process().authkey = key`): [`authkey`](Self::authkey)
    /// returns it from now on, and the children started after inherit it
    /// (whatever the start method). Children already running keep the key
    /// they have. Objects that check signatures under the key (a
    /// [`Barrier`](crate::Barrier)'s action) must then be made after the
    /// change, by processes that agree on the key.
    ///
    /// # Examples
    ///
    /// ```
    /// let me = multiprocess::current_process();
    /// me.set_authkey(*b"a key of exactly thirty-two byte");
    /// assert_eq!(&me.authkey(), b"a key of exactly thirty-two byte");
    /// ```
    pub fn set_authkey(&self, key: [u8; 32]) {
        authkey::inherit(key);
    }
}

/// The process that started this one, if multiprocess started it (Python's
/// `parent_process()`).
pub fn parent_process() -> Option<ParentProcess> {
    let (pid, name) = child::with_identity(|me| me.parent.clone())?;
    Some(ParentProcess {
        info: ProcessInfo {
            name,
            pid,
            daemon: false,
        },
        pidfd: sys::process::pidfd_open(pid).ok(),
    })
}

/// The parent of this process; see [`parent_process`].
#[derive(Debug)]
pub struct ParentProcess {
    info: ProcessInfo,
    pidfd: Option<OwnedFd>,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Whether the parent still runs.
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                sys::fd::wait_readable(fd, Some(Instant::now())).ok()
                    == Some(sys::fd::Ready::TimedOut)
            }
            None => false,
        }
    }

    /// Waits at most `timeout` for the parent to exit; true if it did.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        match &self.pidfd {
            Some(fd) => Ok(sys::fd::wait_readable(fd, crate::deadline::after(timeout))?
                == sys::fd::Ready::Readable),
            None => Ok(true),
        }
    }
}

/// The children of this process that are still running (Python's
/// `active_children()`); finished ones are reaped as a side effect.
pub fn active_children() -> Vec<Process> {
    reap_orphans();
    let live: Vec<Arc<Shared>> = lock(&CHILDREN).iter().filter_map(Weak::upgrade).collect();
    live.into_iter()
        .map(|shared| Process { shared })
        .filter(Process::is_alive)
        .collect()
}

/// The number of CPUs in the system (Python's `cpu_count()`).
pub fn cpu_count() -> usize {
    sys::process::cpu_count()
}
