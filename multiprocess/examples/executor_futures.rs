//! Python's `concurrent.futures.ProcessPoolExecutor`, in Rust: submit a few
//! slow tasks to an [`Executor`], print their results as they complete
//! (`as_completed`), cancel one that has not started, map over inputs in
//! order, then see a worker killed mid-task break the executor
//! (`BrokenPool`) instead of hanging it.
//!
//! Prints (the three tasks take 300, 100 and 200 ms, so they complete in
//! this order):
//! ```text
//! submitted 3 tasks
//! cancelled a task before it started: true
//! completed: 2 squared is 4
//! completed: 3 squared is 9
//! completed: 1 squared is 1
//! map: [0, 1, 4, 9, 16]
//! a worker was killed: the executor is broken (signal 9)
//! submit after that: refused
//! ```

use std::time::Duration;

use multiprocess::{Executor, ExecutorError, as_completed};

/// Squares `x` after `ms` milliseconds.
fn slow_square(x: u64, ms: u64) -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(ms));
    (x, x * x)
}

fn square(x: u64) -> u64 {
    x * x
}

/// Kills its own worker, as the OOM killer would.
fn die(_x: u64) -> u64 {
    let me = rustix::process::getpid();
    let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(10));
    0
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let executor = Executor::new(3)?;
    let futures = vec![
        executor.submit(slow_square, (1, 300))?,
        executor.submit(slow_square, (2, 100))?,
        executor.submit(slow_square, (3, 200))?,
    ];
    println!("submitted {} tasks", futures.len());

    // Every worker is busy, so this one waits in the executor: cancellable.
    let extra = executor.submit(slow_square, (4, 100))?;
    println!("cancelled a task before it started: {}", extra.cancel());

    for future in as_completed(futures) {
        let (x, squared) = future?.result()?;
        println!("completed: {x} squared is {squared}");
    }

    let squares = executor.map(square, 0..5)?.collect::<Result<Vec<_>, _>>()?;
    println!("map: {squares:?}");

    match executor.submit(die, (0,))?.result() {
        Err(ExecutorError::BrokenPool { signal, .. }) => println!(
            "a worker was killed: the executor is broken (signal {})",
            signal.unwrap_or(0)
        ),
        other => return Err(format!("expected a broken executor, got {other:?}").into()),
    }
    match executor.submit(square, (5,)) {
        Err(ExecutorError::BrokenPool { .. }) => println!("submit after that: refused"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
