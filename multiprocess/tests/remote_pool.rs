//! The remote Pool and Executor against a real `redis-server` that each
//! test starts (`LocalServer`), with workers that re-execute this test
//! binary (`spawn_local_workers`).

use std::time::Duration;

use multiprocess::remote::{Cluster, LocalServer};
use multiprocess::{PoolError, TaskError};

multiprocess::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fail_on_three(x: u64) -> Result<u64, String> {
    if x == 3 { Err("three".into()) } else { Ok(x) }
}

fn not_registered(x: u64) -> u64 {
    x
}

multiprocess::remote_task!(square, add, fail_on_three);

fn cluster(server: &LocalServer) -> Cluster {
    Cluster::builder(server.url())
        .lease(Duration::from_millis(300))
        .connect()
        .unwrap()
}

#[test]
fn map_apply_starmap_and_imap_run_on_local_workers() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let pool = c.pool("basic").unwrap();
    pool.spawn_local_workers(2).unwrap();
    assert_eq!(pool.processes(), 2);
    assert_eq!(pool.map(square, 1..=4u64).unwrap(), [1, 4, 9, 16]);
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    let v: Vec<u64> = pool
        .imap(square, 0..100u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(v, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let mut u: Vec<u64> = pool
        .imap_unordered(square, 0..100u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    u.sort();
    assert_eq!(u, v);
    let big = pool.with_chunksize(1).map(square, 0..2000u64).unwrap();
    assert_eq!(big.len(), 2000);
    assert_eq!(big[1999], 1999 * 1999);
    match pool.map(fail_on_three, 0..6u64) {
        Err(PoolError::Task {
            index: 3,
            error: TaskError::Failed { message },
        }) => assert_eq!(message, "three"),
        other => panic!("{other:?}"),
    }
    match pool.map(not_registered, 0..6u64) {
        Err(PoolError::NotRegistered { short, .. }) => assert_eq!(short, "not_registered"),
        other => panic!("{other:?}"),
    }
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

multiprocess::remote_task!(nap);

#[test]
fn the_executor_submits_maps_cancels_and_times_out() {
    use multiprocess::{ExecutorError, as_completed};
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let ex = c.executor("exec").unwrap();
    ex.spawn_local_workers(1).unwrap();
    assert_eq!(ex.worker_pids().len(), 1);
    let f = ex.submit(square, (7u64,)).unwrap();
    assert_eq!(f.result_timeout(Duration::from_secs(30)).unwrap(), 49);
    let fs: Vec<_> = (0..5u64).map(|i| ex.submit(add, (i, 1)).unwrap()).collect();
    let mut got: Vec<u64> = as_completed(fs)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [1, 2, 3, 4, 5]);
    let v: Vec<u64> = ex
        .with_chunksize(10)
        .map(square, 0..50u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(v[49], 49 * 49);
    // The one worker is busy with a long task: a second is still waiting
    // in the stream, so it can be cancelled.
    let long = ex.submit(nap, (600u64,)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let waiting = ex.submit(nap, (1u64,)).unwrap();
    assert!(waiting.cancel());
    assert!(waiting.cancelled());
    assert!(!long.cancel(), "a running task cannot be cancelled");
    assert_eq!(long.result().unwrap(), 600);
    // A map's timeout ends it with Timeout.
    let mut r = ex
        .with_timeout(Duration::from_millis(300))
        .map(nap, [10u64, 2000])
        .unwrap();
    assert_eq!(r.next().unwrap().unwrap(), 10);
    assert!(matches!(r.next(), Some(Err(ExecutorError::Timeout))));
    ex.shutdown(true, false);
    assert!(matches!(
        ex.submit(square, (1u64,)),
        Err(ExecutorError::ShutDown)
    ));
}

#[test]
fn close_join_and_terminate_as_python() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let pool = c.pool("lifecycle").unwrap();
    pool.spawn_local_workers(2).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::NotClosed)));
    let pending = pool.map_async(nap, [50u64; 8]).unwrap();
    pool.close();
    assert!(matches!(
        pool.apply(square, (1u64,)),
        Err(PoolError::Closed)
    ));
    pool.join().unwrap();
    assert_eq!(pending.get().unwrap(), [50u64; 8]);
    assert_eq!(pool.processes(), 0, "join stops the local workers");

    let pool = c.pool("lifecycle2").unwrap();
    pool.spawn_local_workers(1).unwrap();
    let slow = pool.map_async(nap, [300u64; 6]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    pool.terminate();
    assert!(matches!(slow.get(), Err(PoolError::Terminated)));
    assert!(matches!(
        pool.apply(square, (1u64,)),
        Err(PoolError::Terminated)
    ));
}

#[test]
fn a_server_on_a_unix_socket_with_a_password_serves_a_pool() {
    let server = LocalServer::builder()
        .unix_socket(true)
        .password("pw")
        .start()
        .unwrap();
    assert!(
        server.url().starts_with("redis+unix://"),
        "{}",
        server.url()
    );
    let c = Cluster::connect(server.url()).unwrap();
    assert!(!c.url().contains("pw"), "{}", c.url());
    let pool = c.pool("unix").unwrap();
    pool.spawn_local_workers(1).unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    let w = pool.workers().unwrap();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].functions.iter().any(|f| f.ends_with("::square")),
        "{w:?}"
    );
    assert_eq!(w[0].build, multiprocess::remote::build_id().0);
}

/// The tour's remote example (built by `cargo test --features redis`)
/// prints its documented lines: it starts its own server and workers.
#[test]
fn the_remote_squares_example_prints_its_documented_lines() {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/remote_squares");
    assert!(path.exists(), "{} not built", path.display());
    let mut child = std::process::Command::new(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("remote_squares hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "workers: 2",
            "map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
            "imap_unordered (sorted): [0, 1, 4, 9, 16]",
            "apply: 144",
            "item 3: the task was lost with its worker 3 times (max_deliveries); giving up",
            "the others: [0, 1, 4, 16]",
            "queue: done",
            "lock: held with a fence, released",
        ]
    );
}
