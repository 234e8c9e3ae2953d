//! The tour: every tutorial example, in the tutorial's order, each under a
//! heading. `cargo run --release --example tour`; set `SLEEP_SCALE=0.01` to
//! skip the simulated waiting.

// Each example file includes the scaled sleep itself, so that it also runs
// on its own; included together here, that module appears once per example.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "barrier_lockstep.rs"]
mod barrier_lockstep;
#[allow(dead_code)]
#[path = "cube_and_square.rs"]
mod cube_and_square;
#[allow(dead_code)]
#[path = "echo_authkey.rs"]
mod echo_authkey;
#[allow(dead_code)]
#[path = "executor_futures.rs"]
mod executor_futures;
#[allow(dead_code)]
#[path = "four_parts.rs"]
mod four_parts;
#[allow(dead_code)]
#[path = "joinable_queue_workers.rs"]
mod joinable_queue_workers;
#[allow(dead_code)]
#[path = "manager_dict.rs"]
mod manager_dict;
#[allow(dead_code)]
#[path = "pipe_ping_pong.rs"]
mod pipe_ping_pong;
#[allow(dead_code)]
#[path = "pool_squares.rs"]
mod pool_squares;
#[allow(dead_code)]
#[path = "process_ids.rs"]
mod process_ids;
#[allow(dead_code)]
#[path = "queue_square_list.rs"]
mod queue_square_list;
#[allow(dead_code)]
#[path = "queue_workers_with_lock.rs"]
mod queue_workers_with_lock;
#[allow(dead_code)]
#[path = "scrape_and_aggregate.rs"]
mod scrape_and_aggregate;
#[allow(dead_code)]
#[path = "shareable_list.rs"]
mod shareable_list;
#[allow(dead_code)]
#[path = "shared_counter.rs"]
mod shared_counter;

type Example = fn() -> Result<(), Box<dyn std::error::Error>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    let examples: [(&str, Example); 15] = [
        (
            "Example 01: cube and square (cube_and_square)",
            cube_and_square::run,
        ),
        ("Example 02: process ids (process_ids)", process_ids::run),
        (
            "Example 03: the 4 essential parts (four_parts)",
            four_parts::run,
        ),
        (
            "Example 04: scrape and aggregate (scrape_and_aggregate)",
            scrape_and_aggregate::run,
        ),
        (
            "Queue Example 01: without Lock (queue_square_list)",
            queue_square_list::run,
        ),
        (
            "Queue Example 02: with Lock (queue_workers_with_lock)",
            queue_workers_with_lock::run,
        ),
        (
            "Pipe: ping-pong over one duplex pipe (pipe_ping_pong)",
            pipe_ping_pong::run,
        ),
        (
            "Listener and Client: an echo with an authkey (echo_authkey)",
            echo_authkey::run,
        ),
        (
            "JoinableQueue: workers and task_done (joinable_queue_workers)",
            joinable_queue_workers::run,
        ),
        (
            "Shared state: a counter in a Value (shared_counter)",
            shared_counter::run,
        ),
        (
            "ShareableList: a mixed list shared by name (shareable_list)",
            shareable_list::run,
        ),
        (
            "Barrier: three workers in lock-step (barrier_lockstep)",
            barrier_lockstep::run,
        ),
        (
            "Pool: squares in worker processes (pool_squares)",
            pool_squares::run,
        ),
        (
            "Executor: futures as they complete (executor_futures)",
            executor_futures::run,
        ),
        (
            "Manager: a dict and a list in a server process (manager_dict)",
            manager_dict::run,
        ),
    ];
    for (i, (title, run)) in examples.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("=== {title} ===");
        run()?;
    }
    println!();
    println!("=== Across machines: squares on a Redis server (remote_squares) ===");
    remote_squares()
}

/// The remote example needs the `redis` feature and a `redis-server`
/// binary: it is built and run as its own example when the binary is here,
/// and skipped with one line when it is not.
fn remote_squares() -> Result<(), Box<dyn std::error::Error>> {
    use std::process::{Command, Stdio};
    // The test of the tour (tests/examples.rs) runs it under `cargo test`,
    // whose build lock a nested `cargo run` would wait on; the remote
    // example has its own tests.
    if std::env::var_os("TOUR_SKIP_REMOTE").is_some() {
        println!("skipped: TOUR_SKIP_REMOTE is set");
        return Ok(());
    }
    let have_server = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_server {
        println!(
            "skipped: no redis-server on this machine (Debian: apt-get install redis-server), \
             then: cargo run --release --features redis --example remote_squares"
        );
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let status = Command::new(cargo)
        .args(["run", "--quiet", "--release", "--features", "redis"])
        .args(["--manifest-path", manifest, "--example", "remote_squares"])
        .status()?;
    if !status.success() {
        return Err(format!("remote_squares failed: {status}").into());
    }
    Ok(())
}
