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
