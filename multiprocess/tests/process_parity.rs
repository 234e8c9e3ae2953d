//! Process behaviours that follow Python's (issue 12): a child runs under the
//! start method that started it, waits for its non-daemon children before it
//! exits (and the main program does at exit), inherits its creator's daemon
//! flag, `wait` agrees with `is_alive`, `close`, a settable authkey that
//! serves as a Listener/Client key, and a panic that names its process.
//!
//! `Fork` refuses in this multi-threaded test process, so its cases run in a
//! single-threaded `Spawn` child that forks. Cases that need a whole process
//! of their own (its exit, its stderr) re-run this binary on an `inner_*`
//! test, which does nothing unless [`INNER_ENV`] is set.

multiprocess::init_before_main!();

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{LIMIT, bounded, eventually, pid_gone, temp_dir};
use multiprocess::{
    Client, Event, Listener, Process, ProcessError, Queue, StartError, StartMethod,
    current_process, get_all_start_methods, get_context, get_start_method, wait,
};

const LONG: Duration = Duration::from_secs(30);
const INNER_ENV: &str = "MULTIPROCESS_PARITY_INNER";

fn succeed() {}

fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn join_ok(p: &Process) {
    let code = p
        .join_timeout(LONG)
        .expect("started")
        .expect("exited in time");
    assert_eq!(code, 0, "{p:?}");
}

/// Runs `target` in a child of `method`; for `Fork`, in a single-threaded
/// `Spawn` child that forks it (`fork_driver`).
fn run_under<A, F, D>(method: StartMethod, target: F, fork_driver: D, args: A)
where
    A: serde::Serialize + Send + 'static,
    F: multiprocess::Target<(A,)>,
    D: multiprocess::Target<(A,)>,
{
    let p = if method == StartMethod::Fork {
        get_context(StartMethod::Spawn).process(fork_driver, (args,))
    } else {
        get_context(method).process(target, (args,))
    };
    p.start().expect("start");
    join_ok(&p);
}

const ALL: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::ForkServer,
    StartMethod::Fork,
];

// ------------------------------------------- item 1: the child's method

fn report_grandchild_method(out: Queue<StartMethod>) {
    out.put(get_start_method()).unwrap();
}

fn report_methods(out: Queue<StartMethod>) {
    out.put(get_start_method()).unwrap();
    out.put(Process::new(succeed, ()).start_method()).unwrap();
    let g = Process::new(report_grandchild_method, (out,));
    g.start().unwrap();
    join_ok(&g);
}

fn fork_report_methods(out: Queue<StartMethod>) {
    let p = get_context(StartMethod::Fork).process(report_methods, (out,));
    p.start().unwrap();
    join_ok(&p);
}

/// Python forces a child's default start method to the one that started it:
/// the child reports it, its new processes use it, and its own children
/// (started by default) report it too.
#[test]
fn a_child_runs_under_the_method_that_started_it() {
    bounded(LIMIT, || {
        assert_eq!(get_start_method(), StartMethod::ForkServer);
        for method in ALL {
            let out = Queue::new().unwrap();
            run_under(method, report_methods, fork_report_methods, out.clone());
            let got: Vec<StartMethod> = (0..3).map(|_| out.get_timeout(LONG).unwrap()).collect();
            assert_eq!(got, [method; 3], "{method:?}");
        }
        // The parent's default did not change.
        assert_eq!(get_start_method(), StartMethod::ForkServer);
    });
}

// ---------------------------- item 2: children waited for at exit

fn set_after(event: Event, ms: u64) {
    sleeps(ms);
    event.set();
}

fn report_pid_and_sleep(out: Queue<u32>) {
    out.put(std::process::id()).unwrap();
    sleeps(120_000);
}

/// Starts a held and a dropped non-daemon child that set their events after
/// a while, and a daemon child that would sleep for minutes; returns at once.
fn leave_children(args: (Event, Event, Queue<u32>)) {
    let (held, dropped, out) = args;
    let a = Process::new(set_after, (held, 400));
    a.start().unwrap();
    let b = Process::new(set_after, (dropped, 400));
    b.start().unwrap();
    drop(b);
    let d = Process::builder()
        .daemon(true)
        .target(report_pid_and_sleep, (out.clone(),));
    d.start().unwrap();
    // The daemon's pid, once it runs.
    out.put(out.get_timeout(LONG).unwrap()).unwrap();
    std::mem::forget(a); // neither held nor dropped: still joined
}

fn fork_leave_children(args: (Event, Event, Queue<u32>)) {
    let p = get_context(StartMethod::Fork).process(leave_children, (args,));
    p.start().unwrap();
    join_ok(&p);
}

/// Python's exit handler in a child joins its non-daemon children (held by
/// the target or not) and terminates its daemon children: the child's exit
/// comes after its non-daemon children's work, and not after the daemon's
/// two minutes.
#[test]
fn a_child_joins_its_non_daemon_children_and_ends_its_daemons_before_exiting() {
    bounded(LIMIT, || {
        for method in ALL {
            let held = Event::new().unwrap();
            let dropped = Event::new().unwrap();
            let out = Queue::new().unwrap();
            run_under(
                method,
                leave_children,
                fork_leave_children,
                (held.clone(), dropped.clone(), out.clone()),
            );
            assert!(held.is_set(), "{method:?}: a held child was not joined");
            assert!(
                dropped.is_set(),
                "{method:?}: a dropped child was not joined"
            );
            let daemon = out.get_timeout(LONG).unwrap();
            assert!(
                eventually(Duration::from_secs(10), || pid_gone(daemon)),
                "{method:?}: the daemon grandchild {daemon} outlived its parent"
            );
        }
    });
}

/// Writes, after `ms`, whether its parent still runs then.
fn write_after(path: PathBuf, ms: u64) {
    sleeps(ms);
    let parent = multiprocess::parent_process().expect("a child has a parent");
    std::fs::write(path, parent.is_alive().to_string()).unwrap();
}

/// Run in a re-executed copy of this binary: leaves a non-daemon child that
/// writes a file after a while, and a daemon child that sleeps for minutes,
/// and lets `main` return.
#[test]
fn inner_main_leaves_children() {
    let Some(dir) = std::env::var_os(INNER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let p = Process::new(write_after, (dir.join("child"), 500));
    p.start().unwrap();
    let dropped = Process::new(write_after, (dir.join("dropped"), 500));
    dropped.start().unwrap();
    drop(dropped);
    let d = Process::builder().daemon(true).target(sleeps, (120_000,));
    d.start().unwrap();
    std::fs::write(dir.join("daemon"), d.pid().unwrap().to_string()).unwrap();
    std::mem::forget(p);
}

/// The main program joins its non-daemon children when `main` returns (an
/// `atexit` handler that `init` registers), as Python does at interpreter
/// exit; its daemon children do not hold it up.
#[test]
fn main_joins_its_non_daemon_children_at_exit() {
    bounded(LIMIT, || {
        let dir = temp_dir("exit-join");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "inner_main_leaves_children",
                "--test-threads",
                "1",
            ])
            .env(INNER_ENV, &dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // Written while the program still ran (joining them), not after.
        for name in ["child", "dropped"] {
            assert_eq!(
                std::fs::read_to_string(dir.join(name)).ok().as_deref(),
                Some("true"),
                "the {name} child was not joined at exit"
            );
        }
        let daemon: u32 = std::fs::read_to_string(dir.join("daemon"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || pid_gone(daemon)));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

// --------------------------- item 5 (issue): wait agrees with is_alive

/// `wait` reports a fork-server child ready only once its exit status has
/// arrived from the server, so `is_alive` and `exitcode` agree right after.
/// A race: many short children, each checked as soon as `wait` reports it.
#[test]
fn wait_never_reports_a_process_that_still_looks_alive() {
    bounded(Duration::from_secs(120), || {
        let q = Queue::<u8>::new().unwrap();
        for i in 0..200 {
            let p = get_context(StartMethod::ForkServer).process(succeed, ());
            p.start().unwrap();
            assert_eq!(wait(&[&q, &p], Some(LONG)).unwrap(), [1]);
            assert!(
                !p.is_alive(),
                "child {i}: ready for wait, alive for is_alive"
            );
            assert_eq!(p.exitcode(), Some(0), "child {i}");
        }
    });
}

// ------------------------------- item 6: the daemon flag is inherited

fn report_daemon_flags(out: Queue<(bool, bool, bool)>, depth: u32) {
    let me = current_process().daemon;
    let default = Process::new(succeed, ()).daemon();
    let overridden = Process::builder()
        .daemon(false)
        .target(succeed, ())
        .daemon();
    out.put((me, default, overridden)).unwrap();
    if me && depth == 0 {
        // A daemon's child is a daemon: it says so itself.
        let g = Process::new(report_daemon_flags, (out, 1));
        g.start().unwrap();
        join_ok(&g);
    }
}

#[test]
fn the_daemon_flag_defaults_to_the_creating_process() {
    bounded(LIMIT, || {
        assert!(!current_process().daemon);
        assert!(!Process::new(succeed, ()).daemon());
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let out = Queue::new().unwrap();
            let p = get_context(method).process(report_daemon_flags, (out.clone(), 0));
            p.start().unwrap();
            join_ok(&p);
            assert_eq!(out.get_timeout(LONG).unwrap(), (false, false, false));
            let out = Queue::new().unwrap();
            let p = Process::builder()
                .daemon(true)
                .start_method(method)
                .target(report_daemon_flags, (out.clone(), 0));
            p.start().unwrap();
            join_ok(&p);
            assert_eq!(out.get_timeout(LONG).unwrap(), (true, true, false));
            assert_eq!(out.get_timeout(LONG).unwrap(), (true, true, false));
        }
    });
}

// ------------------------------------------------------------- close

#[test]
fn close_releases_a_finished_process_and_refuses_a_running_one() {
    bounded(LIMIT, || {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let p = get_context(method).process(sleeps, (60_000,));
            p.start().unwrap();
            assert!(matches!(p.close(), Err(ProcessError::StillRunning)));
            assert!(p.is_alive(), "a refused close leaves the child alone");
            p.kill().unwrap();
            assert_eq!(p.join().unwrap(), -9);
            let pid = p.pid();
            p.close().unwrap();
            assert!(!p.is_alive());
            assert_eq!(p.exitcode(), Some(-9));
            assert_eq!(p.pid(), pid);
            assert!(matches!(p.join(), Err(ProcessError::Closed)));
            assert!(matches!(
                p.join_timeout(Duration::ZERO),
                Err(ProcessError::Closed)
            ));
            assert!(matches!(p.terminate(), Err(ProcessError::Closed)));
            assert!(matches!(p.kill(), Err(ProcessError::Closed)));
            assert!(matches!(p.start(), Err(StartError::Closed)));
            let e = wait(&[&p], Some(Duration::ZERO)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("closed"), "{e}");
            assert!(
                !multiprocess::active_children()
                    .iter()
                    .any(|c| c.pid() == pid)
            );
            p.close().unwrap();
            // Never started: closed too, and then cannot start.
            let q = get_context(method).process(succeed, ());
            q.close().unwrap();
            assert!(matches!(q.start(), Err(StartError::Closed)));
            assert!(!q.is_alive());
            assert_eq!(q.exitcode(), None);
        }
    });
}

#[test]
fn all_start_methods_default_first() {
    let all = get_all_start_methods();
    assert_eq!(all[0], StartMethod::ForkServer);
    assert_eq!(all.len(), 3);
    for m in ALL {
        assert!(all.contains(&m));
    }
}

// ----------------------------------------------------------- authkey

const NEW_KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

fn report_key(out: Queue<[u8; 32]>) {
    out.put(current_process().authkey()).unwrap();
}

/// In a `Spawn` child (so this test process keeps its key): sets a new key,
/// and children of every method started afterwards report it.
fn set_key_and_start_children(out: Queue<[u8; 32]>) {
    let old = current_process().authkey();
    current_process().set_authkey(NEW_KEY);
    assert_ne!(old, NEW_KEY);
    out.put(current_process().authkey()).unwrap();
    for method in ALL {
        let p = get_context(method).process(report_key, (out.clone(),));
        p.start().unwrap();
        join_ok(&p);
    }
}

#[test]
fn a_key_set_in_a_process_is_inherited_by_the_children_started_after() {
    bounded(LIMIT, || {
        let mine = current_process().authkey();
        let out = Queue::new().unwrap();
        let p = get_context(StartMethod::Spawn).process(set_key_and_start_children, (out.clone(),));
        p.start().unwrap();
        join_ok(&p);
        for who in ["the child", "Spawn", "ForkServer", "Fork"] {
            assert_eq!(out.get_timeout(LONG).unwrap(), NEW_KEY, "{who}");
        }
        assert_eq!(current_process().authkey(), mine);
    });
}

fn connect_with_inherited_key(address: multiprocess::Address) {
    let key = current_process().authkey();
    let conn = Client::connect::<String, String>(address, Some(&key)).unwrap();
    conn.send("hello".into()).unwrap();
}

/// Python's `Listener(authkey=current_process().authkey)` and a child's
/// `Client(address, authkey=current_process().authkey)`: the inherited key
/// passes the handshake.
#[test]
fn the_inherited_key_authenticates_a_child_client() {
    bounded(LIMIT, || {
        let key = current_process().authkey();
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let l = Listener::<String, String>::bind("127.0.0.1:0", Some(&key)).unwrap();
            let p = get_context(method).process(connect_with_inherited_key, (l.address().clone(),));
            p.start().unwrap();
            let conn = l.accept_timeout(LONG).unwrap();
            assert_eq!(conn.recv().unwrap(), "hello");
            join_ok(&p);
        }
    });
}

// ------------------------------------------ a panic names its process

fn panics_here() {
    panic!("deliberate panic for the header test");
}

fn returns_err_here() -> Result<(), String> {
    Err("deliberate error for the header test".into())
}

/// Run in a re-executed copy of this binary, whose stderr the test reads.
#[test]
fn inner_child_panics() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let p = Process::builder()
            .name(format!("Panicker-{method:?}"))
            .start_method(method)
            .target(panics_here, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 1);
        let p = Process::builder()
            .name(format!("Failer-{method:?}"))
            .start_method(method)
            .target(returns_err_here, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 1);
    }
}

/// As Python prints `Process Process-1:` above a child's traceback, a
/// child's panic message (and the `Err` its target returned) comes under
/// `Process <name>:` on stderr.
#[test]
fn a_childs_panic_message_names_the_process() {
    bounded(LIMIT, || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "inner_child_panics",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env(INNER_ENV, "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for method in ["Spawn", "ForkServer"] {
            let header = format!("Process Panicker-{method}:\n");
            let at = err
                .find(&header)
                .unwrap_or_else(|| panic!("no {header:?} in {err}"));
            let next = &err[at + header.len()..];
            assert!(next.contains("panicked"), "{next}");
            assert!(
                next.contains("deliberate panic for the header test"),
                "{next}"
            );
            let header = format!(
                "Process Failer-{method}:\nError: \"deliberate error for the header test\""
            );
            assert!(err.contains(&header), "no {header:?} in {err}");
        }
        // The main process's own panics are not prefixed.
        assert!(!err.contains("Process MainProcess:"), "{err}");
    });
}
