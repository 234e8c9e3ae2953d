//! Tutorial, "Multiprocessing in Python", Example 02: each process has its own
//! id; `pid()` in the parent matches what the child sees.
//!
//! Prints (ids differ from run to run; the worker lines race):
//! ```text
//! ID of main process: 25392
//! ID of process p1: 17192
//! ID of process p2: 24004
//! Process p1 alive: True
//! Process p2 alive: True
//! Simulate some work for worker01. 17192
//! Simulate some work for worker02. 24004
//! Done worker01
//! Done worker02
//! Done
//! Process p1 alive: False
//! Process p2 alive: False
//! ```

#[path = "support/scale.rs"]
mod scale;

use multiprocess::Process;

/// Python's spelling of a bool, to print the tutorial's exact lines.
fn py(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn worker01() {
    println!("Simulate some work for worker01. {}", std::process::id());
    scale::sleep(10.0);
    println!("Done worker01");
}

fn worker02() {
    println!("Simulate some work for worker02. {}", std::process::id());
    scale::sleep(10.0);
    println!("Done worker02");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("ID of main process: {}", std::process::id());

    let p1 = Process::new(worker01, ());
    let p2 = Process::new(worker02, ());
    p1.start()?;
    p2.start()?;

    // `pid()` is `None` only before `start`.
    println!("ID of process p1: {}", p1.pid().unwrap_or_default());
    println!("ID of process p2: {}", p2.pid().unwrap_or_default());

    println!("Process p1 alive: {}", py(p1.is_alive()));
    println!("Process p2 alive: {}", py(p2.is_alive()));

    p1.join()?;
    p2.join()?;
    println!("Done");

    println!("Process p1 alive: {}", py(p1.is_alive()));
    println!("Process p2 alive: {}", py(p2.is_alive()));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
