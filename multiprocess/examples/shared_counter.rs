//! Shared state: a counter in a `Value` incremented by four processes, each
//! adding 1000 under the value's lock (Python's `Value('i', 0)` with
//! `with counter.get_lock(): counter.value += 1`).
//!
//! Prints (the "done" lines in any order):
//! ```text
//! process 1 done
//! process 2 done
//! process 3 done
//! process 4 done
//! counter = 4000 (expected 4000)
//! ```

use multiprocess::{Process, Value};

/// Adds 1 to the counter `times` times, each under the lock.
fn add(id: u32, counter: Value<i32>, times: i32) {
    for _ in 0..times {
        *counter.lock() += 1;
    }
    println!("process {id} done");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let counter = Value::<i32>::new(0)?;
    let processes: Vec<Process> = (1..=4)
        .map(|id| Process::new(add, (id, counter.clone(), 1000)))
        .collect();
    for p in &processes {
        p.start()?;
    }
    for p in &processes {
        p.join()?;
    }
    println!("counter = {} (expected 4000)", counter.get());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
