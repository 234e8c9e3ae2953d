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
