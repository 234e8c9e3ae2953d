//! Runs every tutorial example (and the tour) at `SLEEP_SCALE=0.01` and checks
//! the lines it prints against the Python original's, order-independent where
//! processes race. The example binaries are built by `cargo test` beside the
//! test binaries (target/<profile>/examples).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example_path(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(name)
}

/// Runs an example with a time limit; returns its stdout lines.
fn run_example(name: &str) -> Vec<String> {
    let path = example_path(name);
    assert!(
        path.exists(),
        "{} not built (run through cargo test)",
        path.display()
    );
    let mut child = Command::new(&path)
        .env("SLEEP_SCALE", "0.01")
        .env("TOUR_SKIP_REMOTE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let limit = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("example {name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let out = reader.join().unwrap();
    assert!(
        status.success(),
        "example {name} failed: {status}\n{out}\n{stderr}"
    );
    out.lines().map(str::to_owned).collect()
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

fn check_cube_and_square(out: &[String]) {
    assert_eq!(
        sorted(out),
        sorted(&owned(&[
            "Simulate some work for cube",
            "Simulate some work for square",
            "Cube: 2197",
            "Square: 100",
            "Done",
        ]))
    );
    assert_eq!(out.last().unwrap(), "Done");
    assert!(
        out[..2].iter().all(|l| l.starts_with("Simulate")),
        "{out:?}"
    );
}

fn check_process_ids(out: &[String]) {
    assert_eq!(out.len(), 12, "{out:?}");
    let main_pid: u32 = out[0]
        .strip_prefix("ID of main process: ")
        .unwrap()
        .parse()
        .unwrap();
    // The parent's lines keep their order; the children's race with them (a
    // fork-server child starts fast enough to print before the parent's next
    // line, which Python's slower start hides).
    let (parent, workers): (Vec<String>, Vec<String>) = out[1..9]
        .iter()
        .cloned()
        .partition(|l| l.starts_with("ID of process") || l.starts_with("Process p"));
    assert_eq!(parent.len(), 4, "{out:?}");
    let p1: u32 = parent[0]
        .strip_prefix("ID of process p1: ")
        .unwrap()
        .parse()
        .unwrap();
    let p2: u32 = parent[1]
        .strip_prefix("ID of process p2: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(main_pid != p1 && p1 != p2 && main_pid != p2);
    assert_eq!(
        &parent[2..],
        owned(&["Process p1 alive: True", "Process p2 alive: True"])
    );
    assert_eq!(
        sorted(&workers),
        sorted(&[
            format!("Simulate some work for worker01. {p1}"),
            format!("Simulate some work for worker02. {p2}"),
            "Done worker01".to_string(),
            "Done worker02".to_string(),
        ])
    );
    assert_eq!(
        &out[9..],
        owned(&["Done", "Process p1 alive: False", "Process p2 alive: False"])
    );
}

fn check_four_parts(out: &[String]) {
    assert_eq!(
        out,
        owned(&[
            "Task executed",
            "Consumer received from queue: Done",
            "Consumer received from pipe: Data from pipe worker",
            "Done",
        ])
    );
}

fn check_scrape_and_aggregate(out: &[String]) {
    let sites = ["google.com", "facebook.com", "x.com", "github.com"];
    assert_eq!(out.len(), 4 + 4 + 1 + 4 + 4 + 1, "{out:?}");
    assert_eq!(
        sorted(&out[..4]),
        sorted(
            &sites
                .iter()
                .map(|s| format!("Scraping {s}"))
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        sorted(&out[4..8]),
        sorted(
            &sites
                .iter()
                .map(|s| format!("Scraped {s}"))
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(out[8], "---Aggregated result---");
    for i in 0..4 {
        let result = &out[9 + i];
        let time = &out[13 + i];
        let (url, data) = result.split_once(": ").unwrap();
        assert!(sites.contains(&url), "{result}");
        let secs: u32 = data
            .strip_prefix("Scraped data in ")
            .and_then(|d| d.strip_suffix(" seconds"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=10).contains(&secs));
        // The pipe report of the same site, in the same order, with the
        // original's doubled "seconds".
        assert_eq!(time, &format!("{url}: {data} seconds"));
    }
    assert_eq!(out.last().unwrap(), "Done");
}

fn check_queue_square_list(out: &[String]) {
    assert_eq!(
        out,
        owned(&[
            "1",
            "16",
            "25",
            "36",
            "49",
            "16",
            "Queue is now empty",
            "All Done"
        ])
    );
}

fn check_queue_workers_with_lock(out: &[String]) {
    assert_eq!(out.len(), 7, "{out:?}");
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut final_line = None;
    for line in out {
        if let Some(n) = line
            .strip_prefix("Worker ")
            .and_then(|r| r.strip_suffix(" sent data to the queue."))
        {
            sent.push(n.parse::<u32>().unwrap());
        } else if let Some(n) = line
            .strip_prefix("Aggregator received ")
            .and_then(|r| r.strip_suffix(" from the queue."))
        {
            assert!(
                final_line.is_none(),
                "received after the final line: {out:?}"
            );
            received.push(n.parse::<u32>().unwrap());
        } else if let Some(list) = line.strip_prefix("Final aggregated results from Queue: ") {
            // Printed outside the lock, as in Python: it may race with the
            // last worker's line, never with the aggregator's own.
            final_line = Some(list.to_string());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    assert_eq!(final_line.unwrap(), format!("{received:?}"));
    sent.sort();
    received.sort();
    assert_eq!(sent, received);
    assert!(sent.iter().all(|n| (1..=100).contains(n)));
}

fn check_pipe_ping_pong(out: &[String]) {
    let mut want = Vec::new();
    for i in 1..=3 {
        want.push(format!("Pinger sends: ping {i}"));
        want.push(format!("Ponger received: ping {i}"));
        want.push(format!("Ponger sends: pong {i}"));
        want.push(format!("Pinger received: pong {i}"));
    }
    want.push("Ponger says goodbye".into());
    want.push("Done".into());
    assert_eq!(out, want);
}

fn check_echo_authkey(out: &[String]) {
    assert_eq!(
        out,
        owned(&[
            "Server listening on loopback TCP with an authkey",
            "Client sends: hello",
            "Server received: hello",
            "Client received: echo: hello",
            "Client sends: world",
            "Server received: world",
            "Client received: echo: world",
            "Client with the wrong key: digest sent was rejected",
            "Server refused it: digest received was wrong",
            "Done",
        ])
    );
}

fn check_pool_squares(out: &[String]) {
    assert_eq!(
        out,
        owned(&[
            "map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
            "imap: 0 1 4 9 16",
            "apply_async: 144",
            "item 3: worker died from signal 9 (the pool replaced it)",
            "after the death: [0, 1, 4, 100, 16]",
        ])
    );
}

fn check_joinable_queue_workers(out: &[String]) {
    assert_eq!(out.len(), 12, "{out:?}");
    let mut jobs: Vec<u32> = out[..10]
        .iter()
        .map(|line| {
            let (worker, job) = line
                .strip_prefix("worker ")
                .and_then(|r| r.split_once(" finished job "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            assert!((1..=4).contains(&worker.parse::<u32>().unwrap()), "{line}");
            job.parse().unwrap()
        })
        .collect();
    jobs.sort_unstable();
    assert_eq!(jobs, (0..10).collect::<Vec<_>>());
    // join() returned only after every job line was printed.
    assert_eq!(out[10], "all 10 jobs done");
    assert_eq!(out[11], "workers stopped");
}

fn check_shared_counter(out: &[String]) {
    assert_eq!(
        sorted(&out[..4]),
        owned(&[
            "process 1 done",
            "process 2 done",
            "process 3 done",
            "process 4 done"
        ])
    );
    assert_eq!(out[4..], owned(&["counter = 4000 (expected 4000)"]));
}

fn check_barrier_lockstep(out: &[String]) {
    assert_eq!(out.len(), 3 * 4 + 1, "{out:?}");
    for phase in 1..=3 {
        let block = &out[(phase - 1) * 4..phase * 4];
        // The action's line comes after the three workers of its phase,
        // before any line of the next phase.
        assert_eq!(
            sorted(&block[..3]),
            (0..3)
                .map(|n| format!("Worker {n} finished phase {phase}"))
                .collect::<Vec<_>>(),
            "{out:?}"
        );
        assert_eq!(block[3], "--- all workers reached the barrier ---");
    }
    assert_eq!(out.last().unwrap(), "Done");
}

fn check_executor_futures(out: &[String]) {
    assert_eq!(
        out,
        owned(&[
            "submitted 3 tasks",
            "cancelled a task before it started: true",
            "completed: 2 squared is 4",
            "completed: 3 squared is 9",
            "completed: 1 squared is 1",
            "map: [0, 1, 4, 9, 16]",
            "a worker was killed: the executor is broken (signal 9)",
            "submit after that: refused",
        ])
    );
}

fn check_shareable_list(out: &[String]) {
    // Python's documentation example prints exactly these lines.
    assert_eq!(
        out,
        owned(&[
            "['str', 'bytes', 'float', 'int', 'NoneType', 'bool', 'int']",
            "-273.154",
            "['howdy', b'HoWdY', 'dry ice', 101, None, True, -999]",
            "ValueError: bytes/str item exceeds available storage",
            "dry ice",
            "7",
            "6",
            "0",
            "1",
        ])
    );
}

fn check_manager_dict(out: &[String]) {
    // Python's documentation example prints exactly these lines.
    assert_eq!(
        out,
        owned(&[
            "{1: '1', '2': 2, 0.25: None}",
            "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"
        ])
    );
}

type Check = fn(&[String]);

/// The tutorial's examples, which `each_example_prints_the_tutorial_lines`
/// runs one by one.
const TUTORIAL: usize = 7;

/// Everything in the tour, in its order.
const EXAMPLES: [(&str, Check); 15] = [
    ("cube_and_square", check_cube_and_square),
    ("process_ids", check_process_ids),
    ("four_parts", check_four_parts),
    ("scrape_and_aggregate", check_scrape_and_aggregate),
    ("queue_square_list", check_queue_square_list),
    ("queue_workers_with_lock", check_queue_workers_with_lock),
    ("pipe_ping_pong", check_pipe_ping_pong),
    ("echo_authkey", check_echo_authkey),
    ("joinable_queue_workers", check_joinable_queue_workers),
    ("shared_counter", check_shared_counter),
    ("shareable_list", check_shareable_list),
    ("barrier_lockstep", check_barrier_lockstep),
    ("pool_squares", check_pool_squares),
    ("executor_futures", check_executor_futures),
    ("manager_dict", check_manager_dict),
];

#[test]
fn each_example_prints_the_tutorial_lines() {
    for (name, check) in &EXAMPLES[..TUTORIAL] {
        let out = run_example(name);
        check(&out);
    }
}

#[test]
fn the_tour_runs_every_example_under_a_heading() {
    let out = run_example("tour");
    let sections: Vec<Vec<String>> = out
        .split(|l| l.starts_with("=== "))
        .skip(1)
        .map(|s| s.iter().filter(|l| !l.is_empty()).cloned().collect())
        .collect();
    // Every example, then the remote one (skipped here: it needs the
    // `redis` feature and its own build; tests/remote_pool.rs covers it).
    assert_eq!(sections.len(), EXAMPLES.len() + 1, "{out:?}");
    for ((_, check), section) in EXAMPLES.iter().zip(&sections) {
        check(section);
    }
    assert_eq!(
        sections[EXAMPLES.len()],
        ["skipped: TOUR_SKIP_REMOTE is set"],
        "{out:?}"
    );
}

#[test]
fn the_pool_example_prints_its_documented_lines() {
    check_pool_squares(&run_example("pool_squares"));
}

#[test]
fn the_shareable_list_example_prints_what_python_prints() {
    check_shareable_list(&run_example("shareable_list"));
}

#[test]
fn the_manager_example_prints_what_python_prints() {
    check_manager_dict(&run_example("manager_dict"));
}

#[test]
fn the_executor_example_prints_its_documented_lines() {
    check_executor_futures(&run_example("executor_futures"));
}
