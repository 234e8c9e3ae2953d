//! Signal dispositions across real processes: a child keeps exactly the
//! ignored signals of the parent that asked for it (as exec does), under
//! every start method and in a pool; `join` gives the true exit code even
//! with SIGCHLD ignored; a pool worker lost with its fork server says why.
//!
//! Each check runs in a *driver*: this binary re-executed (under
//! `env --ignore-signal=SIG`, or bash's `trap '' SIG`, when the driver must
//! ignore SIG) in a process
//! group of its own, so signals sent to the group never reach the test
//! process. A `harness = false` test on libtest-mimic, run on the main
//! thread, so the driver may use the Fork start method.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use multiprocess::{Pool, PoolError, Process, StartMethod, TaskError, get_context};

/// The environment variable naming the driver's scenario.
const DRIVER_ENV: &str = "MULTIPROCESS_SIGNALS_DRIVER";
/// Fork first: it needs a single-threaded driver (the pool adds threads).
const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::ForkServer,
];
const WAIT: Duration = Duration::from_secs(20);

fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
fn sleep_ms(ms: u64) -> u64 {
    sleeps(ms);
    ms
}
fn exits_with(code: i32) {
    std::process::exit(code);
}
fn square(x: u64) -> u64 {
    x * x
}

type Res = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Res {
    if ok { Ok(()) } else { Err(what()) }
}

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "CHLD" => 17,
        _ => panic!("unknown signal {name}"),
    }
}

/// Whether this process ignores signal `sig` (from `/proc/self/status`).
fn ignores(sig: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let set = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    set & (1 << (sig - 1)) != 0
}

/// Sends signal `name` to `target` (a pid, or `-pgid` for a process group).
fn kill(name: &str, target: &str) -> Res {
    let ok = Command::new("kill")
        .args(["-s", name, "--", target])
        .status()
        .map_err(|e| e.to_string())?
        .success();
    check(ok, || format!("kill -s {name} {target} failed"))
}

/// Kills and reaps what a scenario started, whatever happened.
fn cleanup(ps: &[(StartMethod, Process)]) {
    for (_, p) in ps {
        let _ = p.kill();
        let _ = p.join_timeout(WAIT);
    }
}

/// Driver, ignoring `sig`: children of every method and a pool's workers
/// survive `sig` sent to each child and to the whole process group (the fork
/// server included).
fn children_survive(sig: &str) -> Res {
    let num = signal_number(sig);
    check(ignores(num), || {
        format!("the driver does not ignore SIG{sig}")
    })?;
    let mut ps = Vec::new();
    for m in METHODS {
        let p = get_context(m).process(sleeps, (60_000,));
        p.start().map_err(|e| format!("{m:?}: {e}"))?;
        ps.push((m, p));
    }
    let result = (|| {
        let pool = Pool::new(2).map_err(|e| e.to_string())?;
        check(pool.map(square, 0..10).is_ok(), || "pool map failed".into())?;
        let workers = pool.worker_pids();
        for (_, p) in &ps {
            kill(sig, &p.pid().unwrap().to_string())?;
        }
        for pid in &workers {
            kill(sig, &pid.to_string())?;
        }
        kill(sig, &format!("-{}", std::process::id()))?;
        sleeps(500);
        for (m, p) in &ps {
            check(p.is_alive(), || {
                format!("{m:?} child died of SIG{sig}: exit code {:?}", p.exitcode())
            })?;
        }
        let got = pool.map(square, 0..10).map_err(|e| e.to_string())?;
        check(got[3] == 9, || format!("pool map gave {got:?}"))?;
        check(pool.worker_pids() == workers, || {
            format!(
                "pool workers {workers:?} died of SIG{sig}, replaced by {:?}",
                pool.worker_pids()
            )
        })?;
        pool.terminate();
        Ok(())
    })();
    cleanup(&ps);
    result
}

/// Driver, not ignoring `sig`: children of every method die of it (`-N`),
/// even ForkServer children, whose server itself ignores it; and a pool
/// worker killed by it is reported with that signal.
fn children_die(sig: &str) -> Res {
    let num = signal_number(sig);
    check(!ignores(num), || format!("the driver ignores SIG{sig}"))?;
    let mut ps = Vec::new();
    for m in METHODS {
        let p = get_context(m).process(sleeps, (60_000,));
        p.start().map_err(|e| format!("{m:?}: {e}"))?;
        ps.push((m, p));
    }
    let result = (|| {
        for (m, p) in &ps {
            kill(sig, &p.pid().unwrap().to_string())?;
            let code = p.join_timeout(WAIT).map_err(|e| format!("{m:?}: {e}"))?;
            check(code == Some(-num), || format!("{m:?}: exit code {code:?}"))?;
        }
        let pool = Pool::new(1).map_err(|e| e.to_string())?;
        let r = pool
            .apply_async(sleep_ms, (30_000,))
            .map_err(|e| e.to_string())?;
        sleeps(300);
        kill(sig, &pool.worker_pids()[0].to_string())?;
        match r.get_timeout(WAIT) {
            Err(PoolError::Task {
                error: TaskError::WorkerDied { signal, .. },
                ..
            }) => check(signal == Some(num), || format!("worker died of {signal:?}"))?,
            other => return Err(format!("task: {other:?}")),
        }
        pool.terminate();
        Ok(())
    })();
    cleanup(&ps);
    result
}

/// Driver, ignoring SIGCHLD (the kernel reaps children itself): `join`
/// still gives every child's true exit code, under every start method.
fn join_with_sigchld_ignored() -> Res {
    check(ignores(17), || "the driver does not ignore SIGCHLD".into())?;
    for m in METHODS {
        let p = get_context(m).process(exits_with, (7,));
        p.start().map_err(|e| format!("{m:?}: {e}"))?;
        let code = p.join_timeout(WAIT).map_err(|e| format!("{m:?}: {e}"))?;
        check(code == Some(7), || format!("{m:?}: exit code {code:?}"))?;
        let p = get_context(m).process(sleeps, (60_000,));
        p.start().map_err(|e| format!("{m:?}: {e}"))?;
        p.kill().map_err(|e| format!("{m:?}: {e}"))?;
        let code = p.join_timeout(WAIT).map_err(|e| format!("{m:?}: {e}"))?;
        check(code == Some(-9), || {
            format!("{m:?}: killed, exit code {code:?}")
        })?;
    }
    Ok(())
}

/// The pid of `pid`'s parent.
fn parent_of(pid: u32) -> Result<u32, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("cannot parse /proc/{pid}/stat"))
}

/// Driver: the fork server dies (SIGKILL) under a pool worker running a
/// task; the task's `WorkerDied` says what ended the worker.
fn worker_lost_with_fork_server() -> Res {
    let pool = Pool::new(1).map_err(|e| e.to_string())?;
    let r = pool
        .apply_async(sleep_ms, (30_000,))
        .map_err(|e| e.to_string())?;
    sleeps(300);
    let server = parent_of(pool.worker_pids()[0])?;
    check(server != std::process::id(), || {
        "the worker is not a fork-server child".into()
    })?;
    kill("KILL", &server.to_string())?;
    let result = match r.get_timeout(WAIT) {
        Err(PoolError::Task {
            error: TaskError::WorkerDied {
                signal, exitcode, ..
            },
            ..
        }) => check(signal == Some(9), || {
            format!("WorkerDied {{ signal: {signal:?}, exitcode: {exitcode:?} }}")
        }),
        other => Err(format!("task: {other:?}")),
    };
    pool.terminate();
    result
}

fn run_driver(scenario: &str) -> ! {
    let result = match scenario.split_once(':') {
        Some(("survive", sig)) => children_survive(sig),
        Some(("die", sig)) => children_die(sig),
        _ if scenario == "sigchld" => join_with_sigchld_ignored(),
        _ if scenario == "server" => worker_lost_with_fork_server(),
        _ => Err(format!("unknown scenario {scenario}")),
    };
    match result {
        Ok(()) => {
            println!("driver ok");
            std::process::exit(0)
        }
        Err(e) => {
            println!("driver failed: {e}");
            std::process::exit(1)
        }
    }
}

/// Whether `env` has `--ignore-signal` (GNU coreutils 9.0 and later).
fn env_ignores_signals() -> bool {
    Command::new("env")
        .args(["--ignore-signal=HUP", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a driver for `scenario` ignoring `ignore` (if any), in a process
/// group of its own, and fails with its output unless it succeeds in time.
fn drive(scenario: &'static str, ignore: Option<&'static str>) -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let mut cmd = match ignore {
        // GNU coreutils 9.0+; else bash, whose `trap ''` ignores even SIGCHLD
        // (dash's does not).
        Some(sig) if env_ignores_signals() => {
            let mut c = Command::new("env");
            c.arg(format!("--ignore-signal={sig}")).arg(exe);
            c
        }
        Some(sig) => {
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("trap '' {sig}; exec \"$0\""))
                .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = cmd
        .env(DRIVER_ENV, scenario)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // Read the output on a thread: the driver's children share the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("driver {scenario} timed out").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every process of the driver's group is gone once the pipe closes.
    let mut out = String::new();
    let read_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < read_deadline {
        if reader.is_finished() {
            out = reader.join().unwrap_or_default();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if status.success() && out.contains("driver ok") {
        Ok(())
    } else {
        Err(format!("driver {scenario} ({status}): {out}").into())
    }
}

fn main() {
    multiprocess::init();
    if let Ok(scenario) = std::env::var(DRIVER_ENV) {
        // Children the driver spawns inherit the variable but never get
        // here: `init` runs them and exits.
        run_driver(&scenario);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test("children_keep_an_ignored_sighup", || {
            drive("survive:HUP", Some("HUP"))
        }),
        Trial::test("children_keep_an_ignored_sigint", || {
            drive("survive:INT", Some("INT"))
        }),
        Trial::test("children_of_a_parent_not_ignoring_sighup_die_of_it", || {
            drive("die:HUP", None)
        }),
        Trial::test("children_of_a_parent_not_ignoring_sigint_die_of_it", || {
            drive("die:INT", None)
        }),
        Trial::test("join_gives_the_exit_code_with_sigchld_ignored", || {
            drive("sigchld", Some("CHLD"))
        }),
        Trial::test("a_worker_lost_with_its_fork_server_says_why", || {
            drive("server", None)
        }),
    ];
    libtest_mimic::run(&args, tests).exit();
}
