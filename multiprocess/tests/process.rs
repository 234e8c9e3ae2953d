//! Process lifecycle across real processes, for the Spawn and ForkServer start
//! methods (Fork needs a single-threaded parent: see `fork_method.rs`).
//! Ports of CPython `_TestProcess` behaviours are named after the upstream test.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, eventually, pid_gone, temp_dir};
use multiprocess::{Process, ProcessError, StartError, StartMethod, get_context};

multiprocess::init_before_main!();

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

fn succeed() {}
fn panics() {
    panic!("deliberate panic in child");
}
fn returns_err() -> Result<(), String> {
    Err("deliberate error".into())
}
fn exits_with(code: i32) {
    std::process::exit(code);
}
fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
fn write_file(path: PathBuf, text: String) {
    std::fs::write(path, text).unwrap();
}
fn report_identity(path: PathBuf) {
    let me = multiprocess::current_process();
    let parent = multiprocess::parent_process().expect("a child has a parent");
    let text = format!(
        "{}\n{}\n{}\n{}\n{}",
        me.name,
        me.pid,
        parent.pid(),
        parent.name(),
        parent.is_alive()
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn exit_codes_follow_python() {
    // test_process / test_sys_exit / test_terminate / test_kill
    bounded(LIMIT, || {
        for m in METHODS {
            let ctx = get_context(m);
            let cases: Vec<(Process, i32)> = vec![
                (ctx.process(succeed, ()), 0),
                (ctx.process(panics, ()), 1),
                (ctx.process(returns_err, ()), 1),
                (ctx.process(exits_with, (7,)), 7),
                (ctx.process(exits_with, (0,)), 0),
            ];
            for (p, _) in &cases {
                p.start().unwrap();
            }
            for (p, want) in &cases {
                assert_eq!(p.join().unwrap(), *want, "{m:?} {p:?}");
                assert_eq!(p.exitcode(), Some(*want));
                assert!(!p.is_alive());
            }
        }
    });
}

#[test]
fn terminate_and_kill_give_negative_signal() {
    bounded(LIMIT, || {
        for m in METHODS {
            let ctx = get_context(m);
            let t = ctx.process(sleeps, (60_000,));
            let k = ctx.process(sleeps, (60_000,));
            t.start().unwrap();
            k.start().unwrap();
            assert!(t.is_alive() && k.is_alive());
            assert_eq!(t.exitcode(), None);
            t.terminate().unwrap();
            k.kill().unwrap();
            assert_eq!(t.join().unwrap(), -libc_sigterm());
            assert_eq!(k.join().unwrap(), -9);
            // Signalling an exited process is harmless.
            t.terminate().unwrap();
        }
    });
}

fn libc_sigterm() -> i32 {
    15
}

#[test]
fn state_before_during_after() {
    // test_process: exitcode None and not alive before start; alive while running.
    bounded(LIMIT, || {
        for m in METHODS {
            let p = get_context(m).process(sleeps, (300,));
            assert!(!p.is_alive());
            assert_eq!(p.exitcode(), None);
            assert_eq!(p.pid(), None);
            assert!(matches!(p.join(), Err(ProcessError::NotStarted)));
            assert!(matches!(p.kill(), Err(ProcessError::NotStarted)));
            p.start().unwrap();
            assert!(p.is_alive());
            assert!(p.pid().is_some());
            assert!(
                multiprocess::active_children()
                    .iter()
                    .any(|c| c.pid() == p.pid())
            );
            assert!(matches!(p.start(), Err(StartError::AlreadyStarted)));
            assert_eq!(p.join().unwrap(), 0);
            assert!(
                !multiprocess::active_children()
                    .iter()
                    .any(|c| c.pid() == p.pid())
            );
            assert!(p.pid().is_some(), "pid is kept after exit");
        }
    });
}

#[test]
fn join_with_zero_timeout_returns_at_once() {
    // _kill_process: join(0) returns immediately while the child runs.
    bounded(LIMIT, || {
        for m in METHODS {
            let p = get_context(m).process(sleeps, (60_000,));
            p.start().unwrap();
            let t = Instant::now();
            assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
            assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
            let waited = t.elapsed();
            assert!(waited >= Duration::from_millis(100), "{waited:?}");
            p.kill().unwrap();
            assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), Some(-9));
        }
    });
}

#[test]
fn names_pids_and_parent_reach_the_child() {
    bounded(LIMIT, || {
        let dir = temp_dir("identity");
        for m in METHODS {
            let path = dir.join(format!("{m:?}"));
            let p = Process::builder()
                .name("reporter")
                .start_method(m)
                .target(report_identity, (path.clone(),));
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "reporter");
            assert_eq!(lines[1], p.pid().unwrap().to_string());
            assert_eq!(lines[2], std::process::id().to_string());
            assert_eq!(lines[3], multiprocess::current_process().name);
            assert_eq!(lines[4], "true");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn default_names_count_up() {
    let a = Process::new(succeed, ());
    let b = Process::new(succeed, ());
    let na: u32 = a.name().strip_prefix("Process-").unwrap().parse().unwrap();
    let nb: u32 = b.name().strip_prefix("Process-").unwrap().parse().unwrap();
    assert!(nb > na);
}

#[test]
fn arguments_of_several_types_arrive() {
    fn many(a: u8, b: String, c: Vec<i64>, d: Option<(bool, char)>, e: f64, path: PathBuf) {
        std::fs::write(path, format!("{a} {b} {c:?} {d:?} {e}")).unwrap();
    }
    bounded(LIMIT, || {
        let dir = temp_dir("args");
        for m in METHODS {
            let path = dir.join(format!("{m:?}"));
            let p = get_context(m).process(
                many,
                (
                    7u8,
                    "héllo".to_string(),
                    vec![-1i64, 2],
                    Some((true, 'x')),
                    2.5f64,
                    path.clone(),
                ),
            );
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                "7 héllo [-1, 2] Some((true, 'x')) 2.5"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn many_processes_start_and_join() {
    // test_many_processes
    bounded(LIMIT, || {
        for m in METHODS {
            let ps: Vec<Process> = (0..40)
                .map(|_| get_context(m).process(succeed, ()))
                .collect();
            for p in &ps {
                p.start().unwrap();
            }
            for p in &ps {
                assert_eq!(p.join().unwrap(), 0);
            }
            let ps: Vec<Process> = (0..20)
                .map(|_| get_context(m).process(sleeps, (60_000,)))
                .collect();
            for p in &ps {
                p.start().unwrap();
            }
            for p in &ps {
                p.terminate().unwrap();
            }
            for p in &ps {
                assert_eq!(p.join().unwrap(), -15);
            }
        }
    });
}

fn start_daemon_grandchild(method: StartMethod, path: PathBuf) {
    let g = Process::builder()
        .daemon(true)
        .start_method(method)
        .target(sleeps, (60_000,));
    g.start().unwrap();
    std::fs::write(&path, g.pid().unwrap().to_string()).unwrap();
    // Leave without joining: the daemon must die with us.
}

#[test]
fn daemon_child_dies_with_its_parent() {
    bounded(LIMIT, || {
        let dir = temp_dir("daemon");
        for m in METHODS {
            let path = dir.join(format!("{m:?}"));
            let p = get_context(m).process(start_daemon_grandchild, (m, path.clone()));
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
            let pid: u32 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            assert!(
                eventually(Duration::from_secs(1), || pid_gone(pid)),
                "{m:?}: daemon grandchild {pid} outlived its parent by 1 s"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

fn count_fds(path: PathBuf) {
    let n = std::fs::read_dir("/proc/self/fd").unwrap().count();
    // read_dir itself holds one descriptor while listing.
    std::fs::write(path, (n - 1).to_string()).unwrap();
}

#[test]
fn children_inherit_no_unrelated_descriptors() {
    // TestCloseFds
    bounded(LIMIT, || {
        let dir = temp_dir("fds");
        // A descriptor that is deliberately inheritable.
        let leaky = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_setfd(&leaky, rustix::io::FdFlags::empty()).unwrap();
        for m in METHODS {
            let path = dir.join(format!("{m:?}"));
            let p = get_context(m).process(count_fds, (path.clone(),));
            p.start().unwrap();
            assert_eq!(p.join().unwrap(), 0);
            let n: usize = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            // Plus the process tree's liveness domain (see SECURITY.md), a
            // memfd every process of the tree shares.
            assert_eq!(
                n, 4,
                "{m:?}: the child should hold stdin, stdout, stderr and the liveness domain only"
            );
        }
        drop(leaky);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn dropped_running_process_leaves_no_zombie() {
    bounded(LIMIT, || {
        let p = get_context(StartMethod::Spawn).process(sleeps, (50,));
        p.start().unwrap();
        let pid = p.pid().unwrap();
        drop(p);
        // Reaping happens on the next start (or active_children()).
        assert!(eventually(Duration::from_secs(5), || {
            let _ = multiprocess::active_children();
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }));
    });
}

#[test]
fn fork_refuses_in_a_threaded_process() {
    // The test harness runs this on its own thread, so the process has several.
    let p = get_context(StartMethod::Fork).process(succeed, ());
    let err = p.start().unwrap_err();
    assert!(err.to_string().contains("multi-threaded"), "{err}");
}

#[test]
fn closures_need_fork() {
    let p = get_context(StartMethod::Spawn).process_closure(|| {});
    assert!(matches!(p.start(), Err(StartError::ClosureNeedsFork)));
}

#[test]
fn write_file_target_runs() {
    bounded(LIMIT, || {
        let dir = temp_dir("write");
        let path = dir.join("out");
        let p = Process::new(write_file, (path.clone(), "hello".to_string()));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn daemon_outlives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG is per thread; a daemon must die with the process,
    // not with a short-lived thread that happened to start it.
    bounded(LIMIT, || {
        for m in METHODS {
            let p = std::thread::spawn(move || {
                let p = Process::builder()
                    .daemon(true)
                    .start_method(m)
                    .target(sleeps, (60_000,));
                p.start().unwrap();
                p
            })
            .join()
            .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            assert!(p.is_alive(), "{m:?}: daemon died with its starting thread");
            p.kill().unwrap();
            assert_eq!(p.join().unwrap(), -9);
        }
    });
}

#[test]
fn children_keep_the_parents_ignored_signals() {
    // A parent that ignores SIGTERM (an embedding runtime, a shell trap)
    // makes children that ignore it too, as fork and exec do (and Python's
    // children): terminate() leaves them running, kill() still works. (Until
    // issue 10 children reset every signal; `tests/signals.rs` covers SIGHUP
    // and SIGINT, Fork and pools.)
    // Re-run this test binary under `trap '' TERM` and check from inside.
    bounded(LIMIT, || {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' TERM; exec \"$0\" \"$@\"")
            .arg(exe)
            .args(["--exact", "signal_dispositions_inner", "--nocapture"])
            .env("MULTIPROCESS_SIGNAL_TEST", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert!(stdout.contains("parent ignores SIGTERM: true"), "{stdout}");
    });
}

#[test]
fn signal_dispositions_inner() {
    if std::env::var_os("MULTIPROCESS_SIGNAL_TEST").is_none() {
        return; // only meaningful when started by the test above
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    println!("parent ignores SIGTERM: {}", ignored & (1 << (15 - 1)) != 0);
    for m in METHODS {
        let p = get_context(m).process(sleeps, (60_000,));
        p.start().unwrap();
        p.terminate().unwrap();
        let code = p.join_timeout(Duration::from_millis(500)).unwrap();
        p.kill().unwrap();
        assert_eq!(code, None, "{m:?}: child did not keep SIGTERM ignored");
        let code = p.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(code, Some(-9), "{m:?}");
    }
}
