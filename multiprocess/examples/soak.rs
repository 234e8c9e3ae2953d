//! Soak test: continuous traffic through a queue, pipes and a pool while
//! producers, consumers and pool workers are SIGKILLed at random, for a fixed
//! time; exits non-zero if any item was lost, duplicated, invented or
//! corrupted.
//!
//! ```text
//! cargo run --release --example soak            # 5 minutes
//! SOAK_SECS=60 cargo run --release --example soak
//! ```
//!
//! - Queue: 2 producer processes put items (`Vec<u8>`, 16 B to 100 KiB, so
//!   some span several chunks of the 64 KiB ring) into one queue; 2 consumer
//!   processes take them, check their bytes and forward `(producer, seq)`
//!   over their own pipe to a reader thread here. Every 0.1–0.6 s one of the
//!   four is killed and replaced.
//! - Accounting is exact: a producer stores how many puts returned (so a
//!   killed one sent `0..n` and perhaps `n`), a consumer raises a flag before
//!   `get` and lowers it after forwarding (so a killed one took at most one
//!   item, only if the flag was up). At the end live producers stop, the
//!   queue is drained, and every item is checked against a bitmap: missing
//!   items beyond those explained by consumers killed inside `get` are
//!   *lost*, items received twice *duplicated*, items never sent *invented*.
//! - Pool: 2 workers run batches of `imap`; a worker is killed every 0.2–1 s.
//!   Each batch must return exactly one result or `WorkerDied` per input.
//! - Every 10 s a line: throughput, kills, and this process's VmRSS.
//!
//! `SOAK_SEED` replays the random choices (not the timing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastrand::Rng;
use multiprocess::{
    Connection, Pipe, Pool, Process, Queue, QueueBuilder, RawArray, RecvError, TaskError,
};

const WAIT: Duration = Duration::from_secs(30);

fn item(producer: u32, seq: u32, size: usize) -> Vec<u8> {
    let mut v = vec![(seq as u8) ^ (producer as u8).wrapping_mul(31); size.max(8)];
    v[..4].copy_from_slice(&producer.to_le_bytes());
    v[4..8].copy_from_slice(&seq.to_le_bytes());
    v
}

/// Puts items until `state[1]` is set; `state[0]` counts returned puts.
fn producer(queue: Queue<Vec<u8>>, id: u32, seed: u64, state: RawArray<u64>) {
    let mut rng = Rng::with_seed(seed);
    let mut seq = 0u32;
    while state.get(1) == Some(0) {
        let size = if rng.u8(..) == 0 {
            rng.usize(64 << 10..100 << 10)
        } else {
            rng.usize(16..4096)
        };
        queue.put(item(id, seq, size)).unwrap();
        seq += 1;
        state.set(0, u64::from(seq)).unwrap();
    }
}

/// Takes items until an empty one, checks them, forwards (producer, seq);
/// `flag[0]` is 1 from before `get` until it returns (an item may have been
/// taken), then 2 until the forward is sent (an item was taken).
fn consumer(queue: Queue<Vec<u8>>, out: Connection<(u32, u32), ()>, flag: RawArray<u64>) {
    loop {
        flag.set(0, 1).unwrap();
        let v = queue.get().unwrap();
        flag.set(0, 2).unwrap();
        if v.is_empty() {
            flag.set(0, 0).unwrap();
            return;
        }
        let p = u32::from_le_bytes(v[..4].try_into().unwrap());
        let s = u32::from_le_bytes(v[4..8].try_into().unwrap());
        let fill = (s as u8) ^ (p as u8).wrapping_mul(31);
        assert!(v[8..].iter().all(|&b| b == fill), "corrupt item {p}/{s}");
        out.send((p, s)).unwrap();
        flag.set(0, 0).unwrap();
    }
}

fn task(x: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros(x % 50);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x.wrapping_mul(3)
}

#[derive(Default)]
struct Ledger {
    /// Per producer id, one bit per sequence number received.
    seen: HashMap<u32, Vec<u64>>,
    duplicated: u64,
    received: u64,
}

impl Ledger {
    fn record(&mut self, p: u32, s: u32) {
        let bits = self.seen.entry(p).or_default();
        let (w, b) = (s as usize / 64, s % 64);
        if bits.len() <= w {
            bits.resize(w + 1, 0);
        }
        if bits[w] & (1 << b) != 0 {
            self.duplicated += 1;
        } else {
            bits[w] |= 1 << b;
        }
        self.received += 1;
    }

    fn has(&self, p: u32, s: u32) -> bool {
        self.seen
            .get(&p)
            .and_then(|bits| bits.get(s as usize / 64))
            .is_some_and(|w| w & (1 << (s % 64)) != 0)
    }

    fn bytes(&self) -> usize {
        self.seen.values().map(|v| v.capacity() * 8).sum()
    }
}

#[derive(Default)]
struct Counters {
    producer_kills: AtomicU64,
    consumer_kills: AtomicU64,
    worker_kills: AtomicU64,
    pool_tasks: AtomicU64,
    pool_died: AtomicU64,
    errors: AtomicU64,
}

struct ProducerSlot {
    id: u32,
    process: Process,
    state: RawArray<u64>,
}

struct ConsumerSlot {
    process: Process,
    flag: RawArray<u64>,
    reader: std::thread::JoinHandle<()>,
}

/// A producer that is gone: how many puts returned, and whether it was
/// killed (then one more item may have been published).
struct Finished {
    id: u32,
    count: u64,
    killed: bool,
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    multiprocess::init();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("soak: {secs} s, seed {seed} (SOAK_SEED to replay)");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counters = Arc::new(Counters::default());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let queue_side = {
        let (counters, ledger) = (counters.clone(), ledger.clone());
        std::thread::spawn(move || run_queue(seed, deadline, &counters, &ledger))
    };
    let pool_side = {
        let (counters, stop) = (counters.clone(), stop.clone());
        std::thread::spawn(move || run_pool(seed ^ 0x5eed, deadline, &counters, &stop))
    };

    let start = Instant::now();
    let mut rss_start = None;
    let (mut last_items, mut last_tasks, mut last_at) = (0, 0, start);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(10).min(deadline - Instant::now()));
        let now = Instant::now();
        let items = ledger.lock().unwrap().received;
        let tasks = counters.pool_tasks.load(Ordering::Relaxed);
        let dt = (now - last_at).as_secs_f64();
        let rss = vm_rss_kib();
        let base = *rss_start.get_or_insert(rss);
        println!(
            "t={:>4.0}s queue {:>8.0} items/s  pool {:>7.0} tasks/s  kills: {} producers, {} consumers, {} workers  VmRSS {} KiB ({:+} KiB since t=10s)",
            (now - start).as_secs_f64(),
            (items - last_items) as f64 / dt,
            (tasks - last_tasks) as f64 / dt,
            counters.producer_kills.load(Ordering::Relaxed),
            counters.consumer_kills.load(Ordering::Relaxed),
            counters.worker_kills.load(Ordering::Relaxed),
            rss,
            rss as i64 - base as i64,
        );
        (last_items, last_tasks, last_at) = (items, tasks, now);
    }
    stop.store(true, Ordering::SeqCst);
    let (lost, explained, invented) = queue_side.join().expect("queue side panicked");
    pool_side.join().expect("pool side panicked");
    let ledger = ledger.lock().unwrap();
    let rss = vm_rss_kib();
    let errors = counters.errors.load(Ordering::Relaxed);
    println!(
        "soak summary: {:.0} s; queue items received {} (missing {lost}; consumers killed holding an item {}, inside get {}; duplicated {}; invented {invented}); pool tasks {} ({} failed with WorkerDied); kills: {} producers, {} consumers, {} pool workers; errors {errors}; VmRSS {} KiB at t=10s -> {rss} KiB at end ({:+} KiB; the delivery bitmaps hold {} KiB)",
        start.elapsed().as_secs_f64(),
        ledger.received,
        explained.1,
        explained.0,
        ledger.duplicated,
        counters.pool_tasks.load(Ordering::Relaxed),
        counters.pool_died.load(Ordering::Relaxed),
        counters.producer_kills.load(Ordering::Relaxed),
        counters.consumer_kills.load(Ordering::Relaxed),
        counters.worker_kills.load(Ordering::Relaxed),
        rss_start.unwrap_or(rss),
        rss as i64 - rss_start.unwrap_or(rss) as i64,
        ledger.bytes() / 1024,
    );
    // Each consumer killed holding an item lost exactly that one; one killed
    // inside get lost at most the one it was taking.
    let unexplained = lost.saturating_sub(explained.0 + explained.1);
    let unaccounted = explained.1.saturating_sub(lost);
    println!("lost (not explained by a killed consumer): {unexplained}");
    if unexplained > 0 || unaccounted > 0 || ledger.duplicated > 0 || invented > 0 || errors > 0 {
        println!("soak FAILED");
        std::process::exit(1);
    }
    println!("soak passed: 0 lost, 0 duplicated");
}

/// Runs the queue side until `deadline`; returns (lost, (consumers killed
/// inside get, consumers killed holding an item), invented).
fn run_queue(
    seed: u64,
    deadline: Instant,
    counters: &Counters,
    ledger: &Arc<Mutex<Ledger>>,
) -> (u64, (u64, u64), u64) {
    let mut rng = Rng::with_seed(seed);
    let queue: Queue<Vec<u8>> = QueueBuilder::new()
        .capacity_bytes(64 << 10)
        .build()
        .unwrap();
    let mut next_id = 0u32;
    let mut finished: Vec<Finished> = Vec::new();
    // Consumers killed inside get (may have taken an item), and after get
    // before forwarding (took one).
    let mut explained = (0u64, 0u64);
    let start_producer = |id: u32, rng: &mut Rng| {
        let state = RawArray::<u64>::new(2).unwrap();
        let process = Process::new(producer, (queue.clone(), id, rng.u64(..), state.clone()));
        process.start().unwrap();
        ProducerSlot { id, process, state }
    };
    let start_consumer = || {
        let flag = RawArray::<u64>::new(1).unwrap();
        let (rx, tx) = Pipe::new::<(), (u32, u32)>().unwrap();
        let process = Process::new(consumer, (queue.clone(), tx, flag.clone()));
        process.start().unwrap();
        let ledger = ledger.clone();
        let reader = std::thread::spawn(move || {
            loop {
                match rx.recv() {
                    Ok((p, s)) => ledger.lock().unwrap().record(p, s),
                    Err(RecvError::Disconnected) => return,
                    Err(e) => panic!("forward pipe: {e}"),
                }
            }
        });
        ConsumerSlot {
            process,
            flag,
            reader,
        }
    };
    let mut producers: Vec<ProducerSlot> = (0..2)
        .map(|_| {
            next_id += 1;
            start_producer(next_id, &mut rng)
        })
        .collect();
    let mut consumers: Vec<ConsumerSlot> = (0..2).map(|_| start_consumer()).collect();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.u64(100..600)));
        let i = rng.usize(0..2);
        if rng.bool() {
            let old = std::mem::replace(&mut producers[i], {
                next_id += 1;
                start_producer(next_id, &mut rng)
            });
            old.process.kill().unwrap();
            assert_eq!(old.process.join_timeout(WAIT).unwrap(), Some(-9));
            counters.producer_kills.fetch_add(1, Ordering::Relaxed);
            finished.push(Finished {
                id: old.id,
                count: old.state.get(0).unwrap(),
                killed: true,
            });
        } else {
            let old = std::mem::replace(&mut consumers[i], start_consumer());
            old.process.kill().unwrap();
            assert_eq!(old.process.join_timeout(WAIT).unwrap(), Some(-9));
            counters.consumer_kills.fetch_add(1, Ordering::Relaxed);
            match old.flag.get(0).unwrap() {
                1 => explained.0 += 1,
                2 => explained.1 += 1,
                _ => {}
            }
            old.reader.join().unwrap();
        }
    }
    // Stop the producers, then the consumers behind everything they sent.
    for p in &producers {
        p.state.set(1, 1).unwrap();
    }
    for p in producers {
        assert_eq!(p.process.join_timeout(WAIT).unwrap(), Some(0));
        finished.push(Finished {
            id: p.id,
            count: p.state.get(0).unwrap(),
            killed: false,
        });
    }
    for _ in &consumers {
        queue.put_timeout(Vec::new(), WAIT).unwrap();
    }
    for c in consumers {
        assert_eq!(c.process.join_timeout(WAIT).unwrap(), Some(0));
        c.reader.join().unwrap();
    }
    let ledger = ledger.lock().unwrap();
    let mut lost = 0;
    let mut invented = 0;
    let mut expected_total = 0;
    for f in &finished {
        let count = f.count as u32;
        lost += (0..count).filter(|&s| !ledger.has(f.id, s)).count() as u64;
        expected_total += u64::from(count);
        // Beyond the count: one more only from a killed producer.
        let bits = ledger.seen.get(&f.id).map_or(0, |b| b.len() as u32 * 64);
        let allowed_extra = if f.killed { count + 1 } else { count };
        invented += (allowed_extra..bits)
            .filter(|&s| ledger.has(f.id, s))
            .count() as u64;
    }
    let ids: Vec<u32> = ledger.seen.keys().copied().collect();
    invented += ids
        .iter()
        .filter(|id| !finished.iter().any(|f| f.id == **id))
        .count() as u64;
    println!(
        "queue side: {} producers, {expected_total} items certainly sent, {} received",
        finished.len(),
        ledger.received
    );
    (lost, explained, invented)
}

fn run_pool(seed: u64, deadline: Instant, counters: &Arc<Counters>, stop: &Arc<AtomicBool>) {
    let pool = Arc::new(Pool::new(2).unwrap());
    let killer = {
        let (pool, counters, stop) = (pool.clone(), counters.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::with_seed(seed);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.u64(200..1000)));
                let pids = pool.worker_pids();
                if let Some(&pid) = pids.get(rng.usize(0..pids.len().max(1))) {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid as i32).unwrap(),
                        rustix::process::Signal::KILL,
                    );
                    counters.worker_kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut rng = Rng::with_seed(seed.rotate_left(17));
    let mut base = 0u64;
    while Instant::now() < deadline {
        let n = rng.u64(100..2000);
        let mut results = pool
            .with_chunksize(rng.usize(1..20))
            .imap(task, base..base + n)
            .unwrap();
        let mut got = 0;
        loop {
            match results.next_timeout(WAIT) {
                Ok(Some(Ok(v))) => {
                    if v != (base + got).wrapping_mul(3) {
                        eprintln!("pool: input {} gave {v}", base + got);
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(Err(TaskError::WorkerDied { .. }))) => {
                    counters.pool_died.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Err(e))) => {
                    eprintln!("pool: input {}: {e}", base + got);
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("pool: no result within {WAIT:?}: {e}");
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            got += 1;
        }
        if got != n {
            eprintln!("pool: {got} results for {n} inputs");
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        counters.pool_tasks.fetch_add(got, Ordering::Relaxed);
        base += n;
    }
    killer.join().unwrap();
}
