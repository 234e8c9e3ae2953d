//! Throughput of `Queue` between real processes, and the cost of an
//! uncontended `Lock`, against a bare futex-style lock word.
//!
//! ```text
//! cargo run --release --example queue_throughput [scale]
//! ```
//!
//! Prints one line per workload:
//! - `queue 1p1c u64`: one producer process → the parent, `u64` items;
//! - `queue 2p2c u64`: two producer processes → two consumer processes;
//! - `queue 1p1c 1KiB`: `Vec<u8>` of 1024 bytes;
//! - `queue 1p1c 1MiB`: `Vec<u8>` of 1 MiB (also in MB/s);
//! - `lock uncontended` / `bare futex lock`: acquire + release, ns per pair.
//!
//! Every producer and consumer is a separate process. The clock starts once
//! all of them are running and waiting on a start lock held by the parent, and
//! stops when the last consumer has taken its last item. `scale` (default 1)
//! multiplies the item counts.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiprocess::{Lock, Process, Queue};

/// Tells the parent this child is running, then waits for the start signal.
fn ready_then_wait(ready: &Queue<u8>, go: &Lock) {
    ready.put(1).unwrap();
    drop(go.acquire());
}

fn produce_u64(q: Queue<u64>, count: u64, stops: u64, ready: Queue<u8>, go: Lock) {
    ready_then_wait(&ready, &go);
    for i in 0..count {
        q.put(i).unwrap();
    }
    for _ in 0..stops {
        q.put(u64::MAX).unwrap();
    }
}

fn consume_u64(q: Queue<u64>, done: Queue<u64>, ready: Queue<u8>, go: Lock) {
    ready_then_wait(&ready, &go);
    let mut n = 0u64;
    while q.get().unwrap() != u64::MAX {
        n += 1;
    }
    done.put(n).unwrap();
}

fn produce_bytes(q: Queue<Vec<u8>>, size: usize, count: u64, ready: Queue<u8>, go: Lock) {
    let template = vec![0xa5u8; size];
    ready_then_wait(&ready, &go);
    for _ in 0..count {
        q.put(template.clone()).unwrap();
    }
    q.put(Vec::new()).unwrap();
}

/// Starts `procs`, waits until each has reported ready, starts the clock and
/// releases them.
fn start_all(procs: &[Process], ready: &Queue<u8>) -> Instant {
    for p in procs {
        p.start().unwrap();
    }
    for _ in procs {
        ready.get_timeout(Duration::from_secs(30)).unwrap();
    }
    Instant::now()
}

fn join_all(procs: &[Process]) {
    for p in procs {
        assert_eq!(p.join().unwrap(), 0, "a benchmark process failed");
    }
}

fn report(name: &str, items: u64, elapsed: Duration, bytes_per_item: Option<u64>) {
    let rate = items as f64 / elapsed.as_secs_f64();
    match bytes_per_item {
        Some(b) => println!(
            "{name:<20} {:>8.3} M msg/s  {:>8.0} MB/s  ({items} items in {elapsed:.2?})",
            rate / 1e6,
            rate * b as f64 / 1e6
        ),
        None => println!(
            "{name:<20} {:>8.3} M msg/s  ({items} items in {elapsed:.2?})",
            rate / 1e6
        ),
    }
}

fn one_to_one_u64(count: u64) {
    let q: Queue<u64> = Queue::new().unwrap();
    let ready: Queue<u8> = Queue::new().unwrap();
    let go = Lock::new().unwrap();
    let held = go.acquire();
    let p = [Process::new(
        produce_u64,
        (q.clone(), count, 1, ready.clone(), go.clone()),
    )];
    let t0 = start_all(&p, &ready);
    drop(held);
    let mut n = 0u64;
    while q.get().unwrap() != u64::MAX {
        n += 1;
    }
    let elapsed = t0.elapsed();
    assert_eq!(n, count);
    join_all(&p);
    report("queue 1p1c u64", n, elapsed, None);
}

fn two_to_two_u64(count: u64) {
    let q: Queue<u64> = Queue::new().unwrap();
    let done: Queue<u64> = Queue::new().unwrap();
    let ready: Queue<u8> = Queue::new().unwrap();
    let go = Lock::new().unwrap();
    let held = go.acquire();
    let mut procs = Vec::new();
    for _ in 0..2 {
        procs.push(Process::new(
            produce_u64,
            (q.clone(), count / 2, 1, ready.clone(), go.clone()),
        ));
        procs.push(Process::new(
            consume_u64,
            (q.clone(), done.clone(), ready.clone(), go.clone()),
        ));
    }
    let t0 = start_all(&procs, &ready);
    drop(held);
    let n = done.get().unwrap() + done.get().unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(n, count / 2 * 2);
    join_all(&procs);
    report("queue 2p2c u64", n, elapsed, None);
}

fn one_to_one_bytes(name: &str, size: usize, count: u64) {
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    let ready: Queue<u8> = Queue::new().unwrap();
    let go = Lock::new().unwrap();
    let held = go.acquire();
    let p = [Process::new(
        produce_bytes,
        (q.clone(), size, count, ready.clone(), go.clone()),
    )];
    let t0 = start_all(&p, &ready);
    drop(held);
    let mut n = 0u64;
    loop {
        let item = q.get().unwrap();
        if item.is_empty() {
            break;
        }
        assert_eq!(item.len(), size);
        n += 1;
    }
    let elapsed = t0.elapsed();
    assert_eq!(n, count);
    join_all(&p);
    report(name, n, elapsed, Some(size as u64));
}

/// The reference: a futex lock word at its cheapest (Drepper's "mutex2" fast
/// paths: CAS 0 → 1 to acquire, swap → 0 to release). The uncontended loop
/// never reaches the futex calls, so they are left out.
struct BareLock(AtomicU32);

impl BareLock {
    #[inline]
    fn lock(&self) {
        while self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
    #[inline]
    fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            unreachable!("uncontended benchmark");
        }
    }
}

fn lock_uncontended(rounds: u64) {
    let lock = Lock::new().unwrap();
    let bare = BareLock(AtomicU32::new(0));
    // Alternate, so both see the same machine conditions.
    let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..rounds {
            let g = black_box(&lock).acquire();
            drop(black_box(g));
        }
        ours = ours.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..rounds {
            black_box(&bare).lock();
            black_box(&bare).unlock();
        }
        theirs = theirs.min(t.elapsed());
    }
    let ns = |d: Duration| d.as_nanos() as f64 / rounds as f64;
    println!(
        "{:<20} {:>8.2} ns/op  (best of 5 x {rounds})",
        "lock uncontended",
        ns(ours)
    );
    println!(
        "{:<20} {:>8.2} ns/op  (ratio {:.2}x)",
        "bare futex lock",
        ns(theirs),
        ns(ours) / ns(theirs)
    );
}

fn main() {
    multiprocess::init();
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("scale is a number"))
        .unwrap_or(1.0);
    let n = |base: f64| (base * scale).max(1.0) as u64;
    let only = std::env::var("ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| name.contains(o));
    if run("1p1c") {
        one_to_one_u64(n(10e6));
    }
    if run("2p2c") {
        two_to_two_u64(n(10e6));
    }
    if run("1k") {
        one_to_one_bytes("queue 1p1c 1KiB", 1024, n(2e6));
    }
    if run("1m") {
        one_to_one_bytes("queue 1p1c 1MiB", 1 << 20, n(4000.0));
    }
    if run("lock") {
        lock_uncontended(n(10e6));
    }
}
