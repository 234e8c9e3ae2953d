//! Tutorial spirit, "Pool": a pool of worker processes squares numbers, in
//! order with `map`, lazily with `imap`, and one at a time with
//! `apply_async`; then a worker kills itself and the pool carries on (where
//! Python's Pool would hang).
//!
//! Prints:
//! ```text
//! map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//! imap: 0 1 4 9 16
//! apply_async: 144
//! item 3: worker died from signal 9 (the pool replaced it)
//! after the death: [0, 1, 4, 100, 16]
//! ```

use multiprocess::{Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

/// Squares, except that 3 makes the worker kill itself (as the OOM killer
/// would).
fn square_or_die(x: u64) -> u64 {
    if x == 3 {
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
    }
    x * x
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(2)?;

    println!("map: {:?}", pool.map(square, 0..10)?);

    let firsts: Vec<String> = pool
        .imap(square, 0..5)?
        .map(|r| r.map(|v| v.to_string()))
        .collect::<Result<_, _>>()?;
    println!("imap: {}", firsts.join(" "));

    let one = pool.apply_async(square, (12,))?;
    println!("apply_async: {}", one.get()?);

    let mut after = Vec::new();
    for (i, r) in pool.imap(square_or_die, 0..5)?.enumerate() {
        match r {
            Ok(v) => after.push(v),
            Err(TaskError::WorkerDied { signal, .. }) => {
                println!(
                    "item {i}: worker died from signal {} (the pool replaced it)",
                    signal.unwrap_or(0)
                );
                after.push(100);
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("after the death: {after:?}");
    pool.close();
    pool.join()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
