//! Every process the crate starts carries a name an operator can read in
//! `ps -o comm`, `top` and `pgrep` (`/proc/<pid>/comm`), not the `exe` of
//! the re-executed `/proc/self/exe`: children their process name (cut to
//! the kernel's 15 bytes), pool workers `PoolWorker-N`, and the helpers
//! `<program>:forksrv` and `<program>:tracker`.

mod common;

use std::time::Duration;

use common::{LIMIT, bounded};
use multiprocess::{Pool, Process, Queue, SharedMemory, StartMethod, get_context};

multiprocess::init_before_main!();

const WAIT: Duration = Duration::from_secs(30);

fn comm_of(pid: u32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    comm.trim_end_matches('\n').to_string()
}

/// What the kernel keeps of a name: its first 15 bytes.
fn cut(name: &str) -> &str {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Sends this process's comm and its parent's.
fn report(out: Queue<(String, String)>) {
    let parent = std::os::unix::process::parent_id();
    out.put((comm_of(std::process::id()), comm_of(parent)))
        .unwrap();
}

fn run_reporter(p: Process, out: &Queue<(String, String)>) -> (String, String) {
    p.start().unwrap();
    let got = out.get_timeout(WAIT).unwrap();
    assert_eq!(p.join_timeout(WAIT).unwrap(), Some(0));
    got
}

#[test]
fn spawn_and_fork_server_children_carry_their_process_name() {
    bounded(LIMIT, || {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let out = Queue::new().unwrap();
            let p = get_context(method).process(report, (out.clone(),));
            let name = p.name().to_string();
            let (comm, _) = run_reporter(p, &out);
            assert_eq!(comm, cut(&name), "{method:?} child");

            let long = "a-child-with-a-long-name";
            let p = Process::builder()
                .name(long)
                .start_method(method)
                .target(report, (out.clone(),));
            let (comm, _) = run_reporter(p, &out);
            assert_eq!(comm, cut(long), "{method:?} child");
        }
    });
}

#[test]
fn fork_server_is_named_after_the_program_and_its_role() {
    bounded(LIMIT, || {
        let out = Queue::new().unwrap();
        let p = get_context(StartMethod::ForkServer).process(report, (out.clone(),));
        let (_, server) = run_reporter(p, &out);
        assert!(server.ends_with(":forksrv"), "fork server comm {server:?}");
        let program = comm_of(std::process::id());
        let prefix = server.trim_end_matches(":forksrv");
        assert!(
            !prefix.is_empty() && program.starts_with(prefix),
            "fork server {server:?} is not named after the program {program:?}"
        );
    });
}

/// Runs in a Spawn child (single-threaded, so it may fork): starts a Fork
/// child, named and unnamed, and passes on what they report.
fn fork_driver(out: Queue<(String, String)>) {
    let inner = Queue::new().unwrap();
    let named = Process::builder()
        .name("forked-child")
        .start_method(StartMethod::Fork)
        .target(report, (inner.clone(),));
    out.put(run_reporter(named, &inner)).unwrap();
    let unnamed = get_context(StartMethod::Fork).process(report, (inner.clone(),));
    let name = unnamed.name().to_string();
    let (comm, parent) = run_reporter(unnamed, &inner);
    out.put((comm, parent)).unwrap();
    out.put((name, String::new())).unwrap();
}

#[test]
fn fork_children_carry_their_process_name() {
    bounded(LIMIT, || {
        let out = Queue::new().unwrap();
        let driver = Process::builder()
            .name("fork-driver")
            .start_method(StartMethod::Spawn)
            .target(fork_driver, (out.clone(),));
        driver.start().unwrap();
        let (named, parent) = out.get_timeout(WAIT).unwrap();
        let (unnamed, _) = out.get_timeout(WAIT).unwrap();
        let (unnamed_name, _) = out.get_timeout(WAIT).unwrap();
        assert_eq!(driver.join_timeout(WAIT).unwrap(), Some(0));
        assert_eq!(named, "forked-child");
        assert_eq!(parent, "fork-driver");
        assert!(unnamed_name.starts_with("Process-"), "{unnamed_name}");
        assert_eq!(unnamed, cut(&unnamed_name));
    });
}

fn own_comm() -> String {
    comm_of(std::process::id())
}

#[test]
fn pool_workers_are_named_pool_worker_n() {
    bounded(LIMIT, || {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let pool = Pool::builder()
                .processes(1)
                .start_method(method)
                .build()
                .unwrap();
            assert_eq!(pool.apply(own_comm, ()).unwrap(), "PoolWorker-1");
        }
    });
}

/// The pids of this process's children.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn tracker_is_named_after_the_program_and_its_role() {
    bounded(LIMIT, || {
        let segment = SharedMemory::create(None, 4096).unwrap();
        let names: Vec<String> = children().into_iter().map(comm_of).collect();
        assert!(
            names.iter().any(|n| n.ends_with(":tracker")),
            "no child named <program>:tracker among {names:?}"
        );
        segment.unlink().unwrap();
    });
}
