//! Output a parent had buffered but not yet written when it forked must be
//! written once, not once by the parent and again by the child (Rust's
//! stdout is a `LineWriter`: `print!` without a newline stays in the
//! process's buffer, which a forked child inherits). Python flushes the
//! standard streams before every start for this reason.
//!
//! The Fork start method needs a single-threaded parent and the output has
//! to be captured outside this process, so the test re-runs this binary on
//! `driver_entry` with its stdout piped; that run starts the driver as a
//! Spawn child (single-threaded, writing straight to the pipe).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::LIMIT;
use multiprocess::{StartMethod, get_context};

multiprocess::init_before_main!();

/// Set in the re-run of this binary that hosts the driver.
const DRIVER_ENV: &str = "MULTIPROCESS_TEST_FORK_OUTPUT_DRIVER";
/// What the driver prints without a newline before forking.
const MARK: &str = "partial-output-mark";

fn quiet_child() {}

/// Prints the mark without a newline, forks a child that exits, joins it,
/// then ends the line.
fn driver() {
    print!("{MARK}");
    let p = get_context(StartMethod::Fork).process(quiet_child, ());
    p.start().expect("a single-threaded driver can fork");
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(0));
    println!();
}

/// Does nothing unless this binary was re-run by the test below.
#[test]
fn driver_entry() {
    if std::env::var_os(DRIVER_ENV).is_none() {
        return;
    }
    let p = get_context(StartMethod::Spawn).process(driver, ());
    p.start().unwrap();
    assert_eq!(p.join_timeout(LIMIT).unwrap(), Some(0));
}

#[test]
fn fork_child_does_not_repeat_unflushed_output() {
    let mut run = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "driver_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DRIVER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = run.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = run.kill();
            let _ = run.wait();
            panic!("the driver did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = reader.join().unwrap().unwrap();
    assert!(status.success(), "driver run failed ({status}):\n{text}");
    assert_eq!(
        text.matches(MARK).count(),
        1,
        "the mark must be written exactly once:\n{text}"
    );
    assert!(text.contains(&format!("{MARK}\n")), "{text}");
}
