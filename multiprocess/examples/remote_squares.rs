//! Across machines: the `pool_squares` calls on a Redis server, with two
//! workers that are this program re-executed (on other machines, the same
//! binary started with `MULTIPROCESS_WORKER=redis://…` and
//! `MULTIPROCESS_WORKER_POOL=squares`). Starts its own `redis-server`
//! (needs the binary: Debian's `redis-server` package).
//!
//! `cargo run --release --features redis --example remote_squares`
//!
//! Prints:
//! ```text
//! workers: 2
//! map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//! imap_unordered (sorted): [0, 1, 4, 9, 16]
//! apply: 144
//! item 3: the task was lost with its worker 3 times (max_deliveries); giving up
//! the others: [0, 1, 4, 16]
//! queue: done
//! lock: held with a fence, released
//! ```

use std::time::Duration;

use multiprocess::TaskError;
use multiprocess::remote::{Cluster, LocalServer};

fn square(x: u64) -> u64 {
    x * x
}

/// Squares, except that 3 kills the worker running it (as the OOM killer
/// would): the task goes to another worker, three times, then is given up;
/// the other items are not affected.
fn square_or_die(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x * x
}

multiprocess::remote_task!(square, square_or_die);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In a worker (MULTIPROCESS_WORKER set), this serves tasks and never
    // returns.
    multiprocess::init();
    let server = LocalServer::start()?;
    let cluster = Cluster::builder(server.url())
        .lease(Duration::from_millis(500))
        .connect()?;
    let pool = cluster.pool("squares")?;
    pool.spawn_local_workers(2)?;
    println!("workers: {}", pool.processes());

    println!("map: {:?}", pool.map(square, 0..10u64)?);

    let mut some: Vec<u64> = pool
        .imap_unordered(square, 0..5u64)?
        .collect::<Result<_, _>>()?;
    some.sort();
    println!("imap_unordered (sorted): {some:?}");

    println!("apply: {}", pool.apply(square, (12u64,))?);

    let mut others = Vec::new();
    for (i, r) in pool.imap(square_or_die, 0..5u64)?.enumerate() {
        match r {
            Ok(v) => others.push(v),
            Err(e @ TaskError::WorkerLost { .. }) => println!("item {i}: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    println!("the others: {others:?}");

    // The same server carries queues and locks too.
    let q = cluster.queue::<String>("log")?;
    q.put("done".into()).map_err(|e| e.to_string())?;
    println!("queue: {}", q.get()?);
    let lock = cluster.lock("db")?;
    let guard = lock.acquire()?;
    let fenced = guard.fence() > 0 && guard.is_owned();
    guard.release()?;
    println!(
        "lock: {}, released",
        if fenced {
            "held with a fence"
        } else {
            "not held"
        }
    );
    Ok(())
}
