//! Tutorial, "The 4 Essential Parts", Example 03: Process, Queue, Pipe and
//! Lock together.
//!
//! Prints:
//! ```text
//! Task executed
//! Consumer received from queue: Done
//! Consumer received from pipe: Data from pipe worker
//! Done
//! ```
//!
//! Differences from the Python original: it imports `PipeConnection`, which
//! exists only on Windows (`multiprocessing.connection.Connection` elsewhere);
//! here the pipe ends are typed `Connection<S, R>`. And Python's parent must
//! remember that its copy of `child_conn` stays open; here moving `child_conn`
//! into the child's arguments closes the parent's copy.

use multiprocess::{Connection, Lock, Pipe, Process, Queue};

fn queue_worker(queue: Queue<String>, lock: Lock) {
    let _guard = lock.acquire();
    println!("Task executed");
    queue.put("Done".to_string()).expect("queue put");
}

fn pipe_worker(conn: Connection<String, ()>) {
    conn.send("Data from pipe worker".to_string())
        .expect("pipe send");
    // `conn` closes when dropped here (Python: `conn.close()`).
}

fn consumer(queue: Queue<String>, parent_conn: Connection<(), String>, lock: Lock) {
    let _guard = lock.acquire();
    println!(
        "Consumer received from queue: {}",
        queue.get().expect("queue get")
    );
    println!(
        "Consumer received from pipe: {}",
        parent_conn.recv().expect("pipe recv")
    );
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    // for exchanging data between processes safely
    let queue: Queue<String> = Queue::new()?;
    // for synchronization (only one process at a time)
    let lock = Lock::new()?;
    // a pipe for two-way communication between processes
    let (parent_conn, child_conn) = Pipe::new::<(), String>()?;

    let queue_process = Process::new(queue_worker, (queue.clone(), lock.clone()));
    let pipe_process = Process::new(pipe_worker, (child_conn,));
    let consumer_process = Process::new(consumer, (queue, parent_conn, lock));

    queue_process.start()?;
    pipe_process.start()?;

    // wait for both processes to finish
    queue_process.join()?;
    pipe_process.join()?;

    // start the consumer once the data is available
    consumer_process.start()?;
    consumer_process.join()?;

    println!("Done");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
