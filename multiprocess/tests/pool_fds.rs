//! Descriptors a pool costs its parent: a `Pool` or `Executor` of 256
//! workers (`cpu_count()` on a 256-CPU host) starts and works under the
//! common `ulimit -n 1024`, holding about one descriptor per worker (the
//! pidfd, with the fork server too: it reports every exit code on one
//! channel), and a pool that does not fit the limit
//! fails with an error naming `RLIMIT_NOFILE`, leaving nothing behind.
//!
//! Each check runs in a child started for it, so the limit it sets does not
//! affect the other tests. The map gives each worker one call, so the check
//! takes about a second in a debug build. `POOL_FDS_WORKERS=N` sets the
//! width (default 256). Figures go to stderr (`--nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::bounded;
use multiprocess::{Executor, Pool, PoolError, Process, Queue, StartMethod};

multiprocess::init_before_main!();

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn set_soft_nofile(soft: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )
    .unwrap();
    assert_eq!(getrlimit(Resource::Nofile).current, Some(soft));
}

fn square(x: u64) -> u64 {
    x * x
}

/// Descriptors the parent may hold per worker: the pidfd, whatever the start
/// method (the fork server reports every exit code on one channel).
fn allowed_per_worker(_method: StartMethod) -> usize {
    1
}

/// Under `ulimit -n 1024`: a pool and an executor of `workers` work, and
/// each costs at most `allowed_per_worker` descriptors per worker (+16).
fn wide_pool(workers: usize, method: StartMethod, report: Queue<String>) {
    set_soft_nofile(1024);
    // Start the fork server (and the tracker, if any) first: they are not
    // per worker.
    let warm = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    assert_eq!(warm.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
    drop(warm);
    let base = fd_count();
    let t = Instant::now();
    let pool = Pool::builder()
        .processes(workers)
        .start_method(method)
        .build()
        .unwrap_or_else(|e| panic!("Pool of {workers} at ulimit -n 1024: {e}"));
    let started = t.elapsed();
    let with_pool = fd_count();
    let n = workers as u64;
    let out = pool.map(square, 0..n).unwrap();
    assert_eq!(out.len(), n as usize);
    assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
    assert_eq!(pool.worker_pids().len(), workers);
    let pool_fds = with_pool - base;
    let mapped = t.elapsed();
    drop(pool);
    let dropped = t.elapsed();
    let after_pool = fd_count();

    let executor = Executor::builder()
        .max_workers(workers)
        .start_method(method)
        .build()
        .unwrap_or_else(|e| panic!("Executor of {workers} at ulimit -n 1024: {e}"));
    let with_executor = fd_count();
    let sum: u64 = executor
        .map(square, 0..n)
        .unwrap()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(sum, (0..n).map(square).sum::<u64>());
    let executor_fds = with_executor - after_pool;
    drop(executor);
    let after = fd_count();
    report
        .put(format!(
            "{method:?}: {workers} workers started in {started:?} (mapped at {mapped:?}, \
             dropped at {dropped:?}, executor done at {:?}); the pool holds {pool_fds} \
             descriptors ({:.2} per worker), the executor {executor_fds}; {base} before, \
             {after} after",
            t.elapsed(),
            pool_fds as f64 / workers as f64
        ))
        .unwrap();
    let allowed = allowed_per_worker(method) * workers + 16;
    assert!(pool_fds <= allowed, "pool: {pool_fds} > {allowed}");
    assert!(
        executor_fds <= allowed,
        "executor: {executor_fds} > {allowed}"
    );
    assert!(
        after <= base + 2,
        "{} descriptors left behind",
        after - base
    );
}

/// Runs `$f(report)` in a child started for it and prints its report.
macro_rules! run_child {
    ($f:expr, $label:expr) => {{
        let report: Queue<String> = Queue::new().unwrap();
        let p = Process::new($f, (report.clone(),));
        p.start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(100)).unwrap(), Some(0));
        let line = report.get_timeout(Duration::from_secs(5)).unwrap();
        eprintln!("pool_fds[{}]: {line}", $label);
    }};
}

fn workers() -> usize {
    std::env::var("POOL_FDS_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

fn wide_forkserver(report: Queue<String>) {
    wide_pool(workers(), StartMethod::ForkServer, report);
}

fn wide_spawn(report: Queue<String>) {
    wide_pool(workers(), StartMethod::Spawn, report);
}

#[test]
fn pool_of_256_under_ulimit_1024_forkserver() {
    bounded(Duration::from_secs(120), || {
        run_child!(wide_forkserver, "forkserver")
    });
}

#[test]
fn pool_of_256_under_ulimit_1024_spawn() {
    bounded(Duration::from_secs(120), || run_child!(wide_spawn, "spawn"));
}

/// Under `ulimit -n 64`, pools of 100 workers fail with an error that names
/// the limit; nothing is left behind and a small pool works afterwards.
fn too_wide(report: Queue<String>) {
    set_soft_nofile(64);
    let warm = Pool::new(1).unwrap();
    drop(warm);
    let base = fd_count();
    let children = multiprocess::active_children().len();
    let t = Instant::now();
    let err = Pool::new(100).expect_err("a pool of 100 at ulimit -n 64");
    let text = err.to_string();
    assert!(
        matches!(err, PoolError::TooManyWorkers { .. }),
        "not TooManyWorkers: {err:?}"
    );
    assert!(text.contains("RLIMIT_NOFILE"), "{text}");
    assert!(text.contains("64"), "{text}");
    let eerr = Executor::new(100).expect_err("an executor of 100 at ulimit -n 64");
    let etext = eerr.to_string();
    assert!(
        etext.contains("RLIMIT_NOFILE") && etext.contains("64"),
        "{etext}"
    );
    // A pool that passes the up-front estimate (one per worker, and the two
    // the pool itself holds when it counts) but not
    // the descriptors a start takes for a moment: the limit is reached
    // while the workers start, and that EMFILE is reported the same way.
    let k = 64 - fd_count() - 2;
    let late = Pool::new(k).expect_err("a pool at the edge of the limit");
    let ltext = late.to_string();
    assert!(
        matches!(late, PoolError::TooManyWorkers { .. }),
        "not TooManyWorkers: {late:?}"
    );
    assert!(ltext.contains("RLIMIT_NOFILE is 64"), "{ltext}");
    let took = t.elapsed();
    // Nothing left behind: descriptors and children.
    assert!(
        common::eventually(Duration::from_secs(10), || fd_count() <= base),
        "{} descriptors left behind",
        fd_count() - base
    );
    assert!(
        common::eventually(Duration::from_secs(10), || {
            multiprocess::active_children().len() <= children
        }),
        "workers left behind"
    );
    let pool = Pool::new(4).unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    report
        .put(format!(
            "refused in {took:?}: {text} / {etext} / while starting {k}: {ltext}"
        ))
        .unwrap();
}

#[test]
fn pool_too_wide_for_the_limit_is_a_clear_error() {
    bounded(Duration::from_secs(120), || {
        run_child!(too_wide, "ulimit -n 64")
    });
}
