//! JoinableQueue: four worker processes drain a queue of jobs, marking each
//! one done; the main process waits on the queue itself (`join`), not on the
//! workers, then stops them with one `None` each (Python's
//! `JoinableQueue` / `task_done()` / `join()` pattern).
//!
//! Prints (the worker lines interleave in any order):
//! ```text
//! worker 2 finished job 0
//! worker 1 finished job 1
//! ...
//! worker 3 finished job 9
//! all 10 jobs done
//! workers stopped
//! ```

#[path = "support/scale.rs"]
mod scale;

use multiprocess::{JoinableQueue, Process};

/// Takes jobs until it gets `None`; each job "takes" a little while.
fn worker(id: u32, jobs: JoinableQueue<Option<u32>>) {
    while let Some(job) = jobs.get().expect("queue get") {
        scale::sleep(0.1);
        println!("worker {id} finished job {job}");
        jobs.task_done().expect("task_done");
    }
    jobs.task_done().expect("task_done");
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = JoinableQueue::new()?;
    let workers: Vec<Process> = (1..=4)
        .map(|id| Process::new(worker, (id, jobs.clone())))
        .collect();
    for w in &workers {
        w.start()?;
    }
    for job in 0..10 {
        jobs.put(Some(job)).expect("queue put");
    }
    jobs.join(); // returns once every job is marked done
    println!("all 10 jobs done");
    for _ in &workers {
        jobs.put(None).expect("queue put");
    }
    for w in &workers {
        w.join()?;
    }
    println!("workers stopped");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
