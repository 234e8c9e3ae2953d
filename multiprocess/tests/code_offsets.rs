//! Code named by offset (`sys/code.rs`) runs under each start method a pool
//! accepts (a pool refuses `Fork`): its tasks, resolved per chunk in the
//! worker with the proof that its parent runs this executable, and its
//! initializer, resolved with the pool's executable identity.

multiprocess::init_before_main!();

mod common;

use common::{LIMIT, bounded};
use multiprocess::{Pool, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn ready() {}

/// Maps `square` on a pool of `method` workers (with an initializer) and
/// checks the results.
fn map_on(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .initializer(ready, ())
        .build()
        .unwrap_or_else(|e| panic!("{method:?} pool: {e}"));
    let got = pool.map(square, 0..50u64).expect("map");
    assert_eq!(
        got,
        (0..50u64).map(square).collect::<Vec<_>>(),
        "{method:?}"
    );
    pool.close();
    pool.join().unwrap();
}

#[test]
fn pool_tasks_and_initializer_run_under_forkserver_and_spawn() {
    bounded(LIMIT, || {
        map_on(StartMethod::ForkServer);
        map_on(StartMethod::Spawn);
    });
}
