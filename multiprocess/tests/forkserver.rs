//! The fork server's failure modes: killed between requests (a new one takes
//! over), killed while its children run (their joins end with `StatusLost`
//! instead of hanging). Its own test binary, since it kills the server that
//! every ForkServer test of a binary shares; the tests here take turns.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{LIMIT, bounded, eventually, pid_gone};
use multiprocess::{ProcessError, StartMethod, get_context};

multiprocess::init_before_main!();

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn succeed() {}
fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Our children that are fork servers (their environment names the control
/// descriptor; `init` removes the variable from the live environment, but
/// /proc/<pid>/environ shows the one the process started with).
fn fork_servers() -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if env
                .split(|&b| b == 0)
                .any(|var| var.starts_with(b"MULTIPROCESS_FORKSERVER_FD="))
                && !pid_gone(pid)
            {
                found.push(pid);
            }
        }
    }
    found
}

/// Waits (at most 60 s) for `go` to exist, then exits with `code`.
fn waits_then_exits(go: String, code: i32) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&go).exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Exit in an order unlike the start order and the join order below.
    std::thread::sleep(Duration::from_millis((code as u64 * 37) % 300));
    std::process::exit(code);
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
}

#[test]
fn a_killed_server_is_replaced_on_the_next_start() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    bounded(LIMIT, || {
        let ctx = get_context(StartMethod::ForkServer);
        let p = ctx.process(succeed, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        let servers = fork_servers();
        assert_eq!(servers.len(), 1, "{servers:?}");
        kill(servers[0]);
        assert!(eventually(Duration::from_secs(5), || pid_gone(servers[0])));
        // The next start notices and starts a new server.
        let p = ctx.process(succeed, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        let now = fork_servers();
        assert_eq!(now.len(), 1, "{now:?}");
        assert_ne!(now[0], servers[0]);
    });
}

#[test]
fn children_of_a_killed_server_end_with_status_lost() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    bounded(LIMIT, || {
        let p = get_context(StartMethod::ForkServer).process(sleeps, (60_000,));
        p.start().unwrap();
        let servers = fork_servers();
        assert_eq!(servers.len(), 1, "{servers:?}");
        kill(servers[0]);
        // The child outlives its server (it is not a daemon) ...
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.is_alive());
        assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
        // ... and once it is gone, join reports the lost status, promptly.
        p.kill().unwrap();
        assert!(matches!(
            p.join_timeout(Duration::from_secs(10)),
            Err(ProcessError::StatusLost)
        ));
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), None);
    });
}

/// 200 fork-server children running at once cost the parent one descriptor
/// each (the pidfd; the server reports every exit code on one channel), and
/// each one's exit code comes right, joined in an order unlike their exit
/// order, with some dropped unjoined (their reports must not be taken for
/// another's).
#[test]
fn two_hundred_children_cost_one_descriptor_each_and_report_their_own_codes() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    bounded(Duration::from_secs(120), || {
        const N: usize = 200;
        let ctx = get_context(StartMethod::ForkServer);
        // Make sure the server runs before counting.
        let p = ctx.process(succeed, ());
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        drop(p);
        let go = std::env::temp_dir().join(format!("mp-fs-go-{}", std::process::id()));
        let _ = std::fs::remove_file(&go);
        let go_name = go.to_str().unwrap().to_string();
        let base = fd_count();
        let children: Vec<_> = (0..N)
            .map(|i| {
                let p = ctx.process(waits_then_exits, (go_name.clone(), (i % 256) as i32));
                p.start().unwrap();
                p
            })
            .collect();
        let running = fd_count();
        eprintln!(
            "{N} fork-server children: {} descriptors ({:.2} each), {base} before",
            running - base,
            (running - base) as f64 / N as f64
        );
        assert!(
            running <= base + N + 8,
            "{N} children hold {} descriptors",
            running - base
        );
        assert!(children.iter().all(|p| p.is_alive()));
        std::fs::write(&go, b"").unwrap();
        // Drop every fifth unjoined, some at once and some after they exit.
        let mut kept = Vec::new();
        let mut late = Vec::new();
        for (i, p) in children.into_iter().enumerate() {
            match i % 10 {
                0 => drop(p),
                5 => late.push(p),
                _ => kept.push((i, p)),
            }
        }
        std::thread::sleep(Duration::from_millis(150));
        drop(late);
        // Join from the last started: not the exit order.
        for (i, p) in kept.iter().rev() {
            assert_eq!(
                p.join_timeout(LIMIT).unwrap(),
                Some((i % 256) as i32),
                "child {i}"
            );
        }
        // Reports come once each: a second look agrees.
        for (i, p) in &kept {
            assert_eq!(p.exitcode(), Some((i % 256) as i32));
            assert!(!p.is_alive());
        }
        drop(kept);
        let _ = std::fs::remove_file(&go);
        assert!(fd_count() <= base + 2, "{} left", fd_count() - base);
    });
}
