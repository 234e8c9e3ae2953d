//! Tutorial, "Advance section", Queue Example 02 (with a Lock): three workers
//! send random results to an aggregator through a Queue; a Lock keeps their
//! console lines whole.
//!
//! Prints (numbers are random; lines of different processes interleave):
//! ```text
//! Worker 38 sent data to the queue.
//! Aggregator received 38 from the queue.
//! Worker 38 sent data to the queue.
//! Aggregator received 38 from the queue.
//! Worker 77 sent data to the queue.
//! Aggregator received 77 from the queue.
//! Final aggregated results from Queue: [38, 38, 77]
//! ```

#[path = "support/scale.rs"]
mod scale;

use multiprocess::{Lock, Process, Queue};

/// A worker: simulates some work, then sends its result.
fn worker_with_queue(queue: Queue<u32>, lock: Lock) {
    let result = fastrand::u32(1..=100);
    scale::sleep(f64::from(fastrand::u32(1..=3)));
    queue.put(result).expect("queue put");
    let _guard = lock.acquire();
    println!("Worker {result} sent data to the queue.");
}

/// The aggregator: collects one result per worker.
fn aggregator_with_queue(queue: Queue<u32>, lock: Lock, num_workers: usize) {
    let mut results = Vec::new();
    for _ in 0..num_workers {
        let result = queue.get().expect("queue get");
        results.push(result);
        let _guard = lock.acquire();
        println!("Aggregator received {result} from the queue.");
    }
    println!("Final aggregated results from Queue: {results:?}");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let queue: Queue<u32> = Queue::new()?; // process-safe: no Lock needed for it
    let lock = Lock::new()?; // protects console output
    let num_workers = 3;
    let processes: Vec<Process> = (0..num_workers)
        .map(|_| Process::new(worker_with_queue, (queue.clone(), lock.clone())))
        .collect();
    for p in &processes {
        p.start()?;
    }
    let aggregator = Process::new(aggregator_with_queue, (queue, lock, num_workers));
    aggregator.start()?;

    for p in &processes {
        p.join()?;
    }
    aggregator.join()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
