//! Beyond the tutorial, in its style: a Barrier. Three workers step through three phases in
//! lock-step. Each simulates some work of random length, then waits at the
//! barrier; the barrier's action prints a line once per phase, before anyone
//! is released, so no worker starts phase 2 before all finished phase 1.
//!
//! Prints (worker order within a phase varies):
//! ```text
//! Worker 2 finished phase 1
//! Worker 0 finished phase 1
//! Worker 1 finished phase 1
//! --- all workers reached the barrier ---
//! Worker 1 finished phase 2
//! Worker 2 finished phase 2
//! Worker 0 finished phase 2
//! --- all workers reached the barrier ---
//! Worker 0 finished phase 3
//! Worker 1 finished phase 3
//! Worker 2 finished phase 3
//! --- all workers reached the barrier ---
//! Done
//! ```

#[path = "support/scale.rs"]
mod scale;

use multiprocess::{Barrier, Process};

/// The barrier's action: runs once per pass, in the last worker to arrive.
fn all_arrived() {
    println!("--- all workers reached the barrier ---");
}

/// A worker: three phases of simulated work, a barrier wait after each.
fn worker(n: u32, barrier: Barrier) {
    for phase in 1..=3 {
        scale::sleep(0.5 + fastrand::f64());
        println!("Worker {n} finished phase {phase}");
        barrier.wait().expect("barrier broken");
    }
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let barrier = Barrier::builder(3).action(all_arrived).build()?;
    let workers: Vec<Process> = (0..3)
        .map(|n| Process::new(worker, (n, barrier.clone())))
        .collect();
    for w in &workers {
        w.start()?;
    }
    for w in &workers {
        w.join()?;
    }
    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
