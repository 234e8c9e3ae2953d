//! Fault injection: SIGKILL a process at a random point, many rounds each, and
//! check that nothing hangs, nothing a live process could receive is lost or
//! duplicated, and every primitive keeps working.
//!
//! Kinds: a producer mid-put, a consumer mid-get, a lock holder (Lock and
//! RLock), a Pool worker mid-task, a child holding a Connection, and the
//! parent of daemon children.
//!
//! - `FAULT_ROUNDS=N` sets the rounds per kind (default 100 or 200 per kind,
//!   so the file stays well within ~40 s on 2 cores; 200 rounds of every kind
//!   took 29 s on a 2-core VM).
//! - `FAULT_SEED=S` replays a run: every round's random choices (kill delay,
//!   item sizes and counts) come from a generator seeded with `S`, the kind
//!   and the round number; a failing round prints the seed to use. (Where the
//!   kill lands still depends on scheduling, so a replay is close, not exact.)
//! - Each kind prints `rounds survived` and `items checked` on stderr
//!   (`--nocapture` to see them).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{bounded, eventually, pid_gone};
use fastrand::Rng;
use multiprocess::{
    Connection, GetTimeoutError, Lock, Pipe, Pool, Process, Queue, QueueBuilder, RLock, RawArray,
    RecvTimeoutError, StartMethod, TaskError,
};

multiprocess::init_before_main!();

/// How many rounds each kind runs: `FAULT_ROUNDS` or the kind's default.
fn rounds(default: usize) -> usize {
    std::env::var("FAULT_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("FAULT_ROUNDS must be a number"))
        .unwrap_or(default)
}

/// The run's seed: `FAULT_SEED` or a fresh one.
fn base_seed() -> u64 {
    match std::env::var("FAULT_SEED") {
        Ok(s) => s.parse().expect("FAULT_SEED must be a number"),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// Prints how to replay a round if the round panics.
struct ReplayHint {
    kind: &'static str,
    seed: u64,
    round: usize,
}

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "faults[{}]: round {} failed; replay with FAULT_SEED={}",
                self.kind, self.round, self.seed
            );
        }
    }
}

/// Runs `rounds` rounds of `round` on `lanes` threads (each round starts its
/// own processes, so lanes overlap their waits), under one watchdog. A round
/// returns how many items it checked.
fn run_kind(
    kind: &'static str,
    default_rounds: usize,
    lanes: usize,
    round: fn(&mut Rng, usize) -> u64,
) {
    let total = rounds(default_rounds);
    let seed = base_seed();
    // Generous: a round takes milliseconds, its bounded waits at most ~10 s.
    let limit = Duration::from_secs(60 + 2 * total as u64);
    let items = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    {
        let items = items.clone();
        bounded(limit, move || {
            let lanes: Vec<_> = (0..lanes)
                .map(|lane| {
                    let items = items.clone();
                    std::thread::spawn(move || {
                        let mut r = lane;
                        while r < total {
                            let _hint = ReplayHint {
                                kind,
                                seed,
                                round: r,
                            };
                            let mut rng = Rng::with_seed(
                                seed ^ kind_hash(kind) ^ (r as u64).wrapping_mul(0x9E37_79B9),
                            );
                            items.fetch_add(round(&mut rng, r), Ordering::Relaxed);
                            r += lanes;
                        }
                    })
                })
                .collect();
            for lane in lanes {
                if let Err(panic) = lane.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
    eprintln!(
        "faults[{kind}]: {total} rounds survived, {} items checked, {:.1?} (seed {seed})",
        items.load(Ordering::Relaxed),
        started.elapsed()
    );
}

fn kind_hash(kind: &str) -> u64 {
    kind.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Items: a Vec<u8> that names its producer and sequence number and whose
// every byte is checkable, with sizes from a seeded generator so some items
// span several chunks of a small ring.

fn item_size(rng: &mut Rng, max: usize) -> usize {
    // Mostly small, sometimes larger than the ring.
    if rng.u8(..) < 200 {
        rng.usize(8..256)
    } else {
        rng.usize(8..max)
    }
}

fn make_item(producer: u32, seq: u32, size: usize) -> Vec<u8> {
    let mut item = vec![(seq as u8) ^ (producer as u8).wrapping_mul(31); size];
    item[..4].copy_from_slice(&producer.to_le_bytes());
    item[4..8].copy_from_slice(&seq.to_le_bytes());
    item
}

/// Checks an item's bytes; returns (producer, seq).
fn check_item(item: &[u8]) -> (u32, u32) {
    assert!(item.len() >= 8, "short item: {} bytes", item.len());
    let producer = u32::from_le_bytes(item[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(item[4..8].try_into().unwrap());
    let fill = (seq as u8) ^ (producer as u8).wrapping_mul(31);
    assert!(
        item[8..].iter().all(|&b| b == fill),
        "corrupt item {producer}/{seq} ({} bytes)",
        item.len()
    );
    (producer, seq)
}

/// Puts `count` items (sizes from `seed`), then returns.
fn produce(queue: Queue<Vec<u8>>, producer: u32, seed: u64, count: u32, max: usize) {
    let mut rng = Rng::with_seed(seed);
    for seq in 0..count {
        let size = item_size(&mut rng, max);
        queue.put(make_item(producer, seq, size)).unwrap();
    }
}

/// The queue still carries an item both ways after the round.
fn queue_still_works(queue: &Queue<Vec<u8>>) {
    queue
        .put_timeout(make_item(99, 7, 300), WAIT)
        .expect("put after the round");
    let item = queue.get_timeout(WAIT).expect("get after the round");
    assert_eq!(check_item(&item), (99, 7));
}

/// Drains `queue` on a thread until `done` is set and the queue stays empty.
fn drain_thread(
    queue: Queue<Vec<u8>>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let finished = done.load(Ordering::SeqCst);
            match queue.get_timeout(Duration::from_millis(if finished { 50 } else { 5 })) {
                Ok(item) => got.push(item),
                Err(GetTimeoutError::Timeout) if finished => return got,
                Err(GetTimeoutError::Timeout) => {}
                Err(e) => panic!("get: {e}"),
            }
        }
    })
}

// ---------------------------------------------------------------------------
// A producer killed mid-put: what it published arrives whole, in order, as a
// prefix of what it meant to send; a live producer loses nothing.

fn producer_round(rng: &mut Rng, _round: usize) -> u64 {
    let capacity = if rng.bool() { 4096 } else { 64 * 1024 };
    let max = 3 * capacity;
    let queue: Queue<Vec<u8>> = QueueBuilder::new()
        .capacity_bytes(capacity)
        .build()
        .unwrap();
    let (seed_dead, seed_live) = (rng.u64(..), rng.u64(..));
    let live_count = rng.u32(1..60);
    let victim = Process::new(produce, (queue.clone(), 0, seed_dead, u32::MAX, max));
    let live = Process::new(produce, (queue.clone(), 1, seed_live, live_count, max));
    let done = Arc::new(AtomicBool::new(false));
    let drain = drain_thread(queue.clone(), done.clone());
    victim.start().unwrap();
    live.start().unwrap();
    std::thread::sleep(Duration::from_micros(rng.u64(0..4000)));
    victim.kill().unwrap();
    assert_eq!(victim.join_timeout(WAIT).unwrap(), Some(-9));
    assert_eq!(live.join_timeout(WAIT).unwrap(), Some(0), "live producer");
    done.store(true, Ordering::SeqCst);
    let got = drain.join().unwrap();
    // Per producer: exactly 0..k in order, with the sizes the seed gave.
    let mut next = [0u32; 2];
    let mut rngs = [Rng::with_seed(seed_dead), Rng::with_seed(seed_live)];
    for item in &got {
        let (p, seq) = check_item(item);
        assert!(p < 2, "unknown producer {p}");
        assert_eq!(seq, next[p as usize], "producer {p}: lost or duplicated");
        let size = item_size(&mut rngs[p as usize], max);
        assert_eq!(item.len(), size, "producer {p} item {seq}: wrong size");
        next[p as usize] += 1;
    }
    assert_eq!(next[1], live_count, "the live producer's items");
    queue_still_works(&queue);
    got.len() as u64
}

#[test]
fn producer_killed_mid_put() {
    run_kind("producer", 100, 2, producer_round);
}

// ---------------------------------------------------------------------------
// A consumer killed mid-get. It logs each item it took in a shared array
// (slot 0: count, slot 1: "inside get", then the sequence numbers), so the
// accounting is exact: items received by the parent plus items the victim
// logged are each sent item at most once, and at most one (the one it was
// getting when killed) is missing, only if it died inside `get`.

fn consume_and_log(queue: Queue<Vec<u8>>, log: RawArray<u64>) {
    let mut count = 0u64;
    loop {
        log.set(1, 1).unwrap();
        let item = queue.get().unwrap();
        let (_, seq) = check_item(&item);
        log.set(2 + count as usize, u64::from(seq)).unwrap();
        count += 1;
        log.set(0, count).unwrap();
        log.set(1, 0).unwrap();
    }
}

fn consumer_round(rng: &mut Rng, _round: usize) -> u64 {
    let capacity = if rng.bool() { 4096 } else { 64 * 1024 };
    let max = 3 * capacity;
    let queue: Queue<Vec<u8>> = QueueBuilder::new()
        .capacity_bytes(capacity)
        .build()
        .unwrap();
    let count = rng.u32(20..400);
    let log: RawArray<u64> = RawArray::new(count as usize + 2).unwrap();
    let victim = Process::new(consume_and_log, (queue.clone(), log.clone()));
    victim.start().unwrap();
    let seed = rng.u64(..);
    let producer = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::with_seed(seed);
            for seq in 0..count {
                let size = item_size(&mut rng, max);
                queue
                    .put_timeout(make_item(0, seq, size), WAIT)
                    .expect("put while consumers run");
            }
        })
    };
    let done = Arc::new(AtomicBool::new(false));
    // The parent is the live consumer, competing with the victim.
    let drain = drain_thread(queue.clone(), done.clone());
    std::thread::sleep(Duration::from_micros(rng.u64(0..4000)));
    victim.kill().unwrap();
    assert_eq!(victim.join_timeout(WAIT).unwrap(), Some(-9));
    producer.join().unwrap();
    done.store(true, Ordering::SeqCst);
    let got = drain.join().unwrap();

    let logged = log.get(0).unwrap() as usize;
    let inside_get = log.get(1).unwrap() == 1;
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    let mut last_parent = None;
    for item in &got {
        let (_, seq) = check_item(item);
        if let Some(prev) = last_parent {
            assert!(seq > prev, "parent got {seq} after {prev}");
        }
        last_parent = Some(seq);
        *seen.entry(seq).or_default() += 1;
    }
    for i in 0..logged {
        *seen.entry(log.get(2 + i).unwrap() as u32).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated: {dups:?}");
    let missing: Vec<u32> = (0..count).filter(|s| !seen.contains_key(s)).collect();
    let allowed = usize::from(inside_get);
    assert!(
        missing.len() <= allowed,
        "lost {missing:?} (victim logged {logged}, inside get: {inside_get})"
    );
    queue_still_works(&queue);
    u64::from(count)
}

#[test]
fn consumer_killed_mid_get() {
    run_kind("consumer", 200, 2, consumer_round);
}

// ---------------------------------------------------------------------------
// A lock holder killed: the lock can be acquired, and reports the previous
// holder died whenever the victim was inside its critical section.

fn churn_lock(lock: Lock, state: RawArray<u64>) {
    loop {
        let _guard = lock.acquire();
        state.set(0, 1).unwrap();
        for _ in 0..state.get(2).unwrap() {
            std::hint::spin_loop();
        }
        state.set(1, state.get(1).unwrap() + 1).unwrap();
        state.set(0, 0).unwrap();
    }
}

fn churn_rlock(lock: RLock, state: RawArray<u64>) {
    loop {
        let _outer = lock.acquire();
        let _inner = lock.acquire();
        state.set(0, 1).unwrap();
        for _ in 0..state.get(2).unwrap() {
            std::hint::spin_loop();
        }
        state.set(1, state.get(1).unwrap() + 1).unwrap();
        state.set(0, 0).unwrap();
    }
}

fn lock_round(rng: &mut Rng, round: usize) -> u64 {
    // state: [inside, laps, spin length]
    let state: RawArray<u64> = RawArray::from_slice(&[0, 0, rng.u64(0..20_000)]).unwrap();
    let use_rlock = round % 2 == 1;
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let victim = if use_rlock {
        Process::new(churn_rlock, (rlock.clone(), state.clone()))
    } else {
        Process::new(churn_lock, (lock.clone(), state.clone()))
    };
    victim.start().unwrap();
    // Sometimes a waiter of ours is already asleep on the lock at the kill.
    let waiter = rng.bool().then(|| {
        let (lock, rlock) = (lock.clone(), rlock.clone());
        std::thread::spawn(move || {
            if use_rlock {
                rlock.acquire_timeout(WAIT).map(|g| g.previous_owner_died())
            } else {
                lock.acquire_timeout(WAIT).map(|g| g.previous_owner_died())
            }
        })
    });
    std::thread::sleep(Duration::from_micros(rng.u64(0..4000)));
    victim.kill().unwrap();
    assert_eq!(victim.join_timeout(WAIT).unwrap(), Some(-9));
    let inside = state.get(0).unwrap() == 1;
    let mut told = waiter.map(|w| w.join().unwrap().expect("the waiter got the lock"));
    let died = if use_rlock {
        let g = rlock.acquire_timeout(WAIT).expect("RLock after the kill");
        assert_eq!(rlock.depth(), 1);
        g.previous_owner_died()
    } else {
        let g = lock.acquire_timeout(WAIT).expect("Lock after the kill");
        g.previous_owner_died()
    };
    // At most one acquirer after the kill learns of the death, and one does
    // if the victim died holding the lock.
    let told = told.take().unwrap_or(false);
    assert!(!(told && died), "the death was reported twice");
    let reported = told || died;
    if inside {
        assert!(
            reported,
            "the holder died inside its critical section, unreported"
        );
    }
    // Afterwards an ordinary free lock.
    if use_rlock {
        let g = rlock.try_acquire().expect("free RLock");
        assert!(!g.previous_owner_died());
    } else {
        let g = lock.try_acquire().expect("free Lock");
        assert!(!g.previous_owner_died());
    }
    state.get(1).unwrap() + 1
}

#[test]
fn lock_holder_killed() {
    run_kind("lock", 100, 2, lock_round);
}

// ---------------------------------------------------------------------------
// A Pool worker killed mid-task: exactly one result or error per input, at
// most one WorkerDied per kill, and the pool goes on with a replacement.

fn busy_double(x: u64) -> u64 {
    let until = Instant::now() + Duration::from_micros((x % 7) * 150);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x * 2
}

fn pool_round(rng: &mut Rng, _round: usize) -> u64 {
    let pool = Pool::new(2).unwrap();
    let n = rng.u64(20..200);
    let chunksize = rng.usize(1..6);
    let mut results = pool
        .with_chunksize(chunksize)
        .imap(busy_double, 0..n)
        .unwrap();
    std::thread::sleep(Duration::from_micros(rng.u64(0..8000)));
    let pids = pool.worker_pids();
    let victim = pids[rng.usize(..pids.len())];
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(victim as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    let mut died = 0;
    let mut got = 0u64;
    while let Some(r) = results.next_timeout(WAIT).expect("a result in time") {
        match r {
            Ok(v) => assert_eq!(v, got * 2, "input {got}"),
            Err(TaskError::WorkerDied { pid, signal, .. }) => {
                assert_eq!((pid, signal), (victim, Some(9)), "input {got}");
                died += 1;
            }
            Err(e) => panic!("input {got}: {e}"),
        }
        got += 1;
    }
    assert_eq!(got, n, "one result or error per input");
    assert!(died <= 1, "{died} tasks failed for one kill");
    // The pool goes on, with a replacement worker.
    assert_eq!(pool.map(busy_double, 0..10u64).unwrap()[9], 18);
    assert!(eventually(WAIT, || pool.worker_pids().len() == 2));
    assert!(!pool.worker_pids().contains(&victim));
    n
}

#[test]
fn pool_worker_killed_mid_task() {
    run_kind("pool", 100, 2, pool_round);
}

// ---------------------------------------------------------------------------
// A child holding a Connection killed mid-send or mid-receive: the parent
// receives a prefix of what it sent, whole and in order, then an error (never
// a hang or a corrupt message), and its own sends fail instead of blocking.

fn talk(conn: Connection<Vec<u8>, u64>, seed: u64) {
    let mut rng = Rng::with_seed(seed);
    for seq in 0.. {
        // Sizes across the ring path (≤ 32 KiB) and the socket path.
        let size = item_size(&mut rng, 100 * 1024);
        conn.send(make_item(2, seq, size)).unwrap();
        while let Ok(ack) = conn.try_recv() {
            assert!(ack <= u64::from(seq));
        }
    }
}

fn connection_round(rng: &mut Rng, _round: usize) -> u64 {
    let (ours, theirs) = Pipe::new::<u64, Vec<u8>>().unwrap();
    let seed = rng.u64(..);
    let victim = Process::new(talk, (theirs, seed));
    victim.start().unwrap();
    let delay = Duration::from_micros(rng.u64(0..6000));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(delay);
        victim.kill().unwrap();
        victim
    });
    let mut sizes = Rng::with_seed(seed);
    let mut next = 0u32;
    let end = loop {
        match ours.recv_timeout(WAIT) {
            Ok(item) => {
                assert_eq!(
                    check_item(&item),
                    (2, next),
                    "lost, duplicated or reordered"
                );
                assert_eq!(item.len(), item_size(&mut sizes, 100 * 1024));
                let _ = ours.send(u64::from(next));
                next += 1;
            }
            Err(RecvTimeoutError::Timeout) => panic!("no message and no EOF within {WAIT:?}"),
            Err(e) => break e,
        }
    };
    let victim = killer.join().unwrap();
    assert_eq!(victim.join_timeout(WAIT).unwrap(), Some(-9));
    assert!(
        matches!(end, RecvTimeoutError::Disconnected),
        "after {next} messages: {end:?}"
    );
    // Sending to the dead peer fails promptly, even for a large message.
    let t = Instant::now();
    let mut failed = false;
    for _ in 0..64 {
        if ours.send(u64::MAX).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "sends to a dead peer kept succeeding");
    assert!(t.elapsed() < WAIT);
    u64::from(next)
}

#[test]
fn child_holding_a_connection_killed() {
    run_kind("connection", 200, 2, connection_round);
}

// ---------------------------------------------------------------------------
// The parent of daemon children killed: every daemon is gone within 1 s.
// Each daemon writes its own pid first thing, and the parent writes each pid
// after `start`, so a daemon is checked if either got that far.

fn daemon_sleeper(pids: RawArray<u64>, slot: usize) {
    pids.set(slot, u64::from(std::process::id())).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn daemon_parent(pids: RawArray<u64>, children: usize, spawn: bool, stderr: PathBuf) {
    // This process's stderr, inherited by what it starts, goes to a file
    // the test reads afterwards.
    let file = std::fs::File::create(stderr).unwrap();
    rustix::stdio::dup2_stderr(&file).unwrap();
    let method = if spawn {
        StartMethod::Spawn
    } else {
        StartMethod::ForkServer
    };
    let mut keep = Vec::new();
    for i in 0..children {
        let p = Process::builder()
            .daemon(true)
            .start_method(method)
            .target(daemon_sleeper, (pids.clone(), 2 * i));
        p.start().unwrap();
        pids.set(2 * i + 1, u64::from(p.pid().unwrap())).unwrap();
        keep.push(p);
    }
    std::thread::sleep(Duration::from_secs(60));
}

fn daemon_round(rng: &mut Rng, round: usize) -> u64 {
    let children = rng.usize(1..4);
    let pids: RawArray<u64> = RawArray::new(2 * children).unwrap();
    let spawn = rng.bool();
    let stderr = std::env::temp_dir().join(format!(
        "multiprocess-faults-{}-{round}.stderr",
        std::process::id()
    ));
    let parent = Process::new(
        daemon_parent,
        (pids.clone(), children, spawn, stderr.clone()),
    );
    parent.start().unwrap();
    // Usually let the first daemon start (the child's own fork server or a
    // re-exec takes milliseconds), then kill at a random point among the
    // later starts; sometimes kill at a random point of the very first one.
    if rng.u8(..) < 192 {
        assert!(
            eventually(WAIT, || pids.get(1).unwrap() != 0),
            "no daemon started"
        );
    }
    std::thread::sleep(Duration::from_micros(rng.u64(0..5000)));
    parent.kill().unwrap();
    assert_eq!(parent.join_timeout(WAIT).unwrap(), Some(-9));
    let killed_at = Instant::now();
    let mut known: Vec<u32> = (0..2 * children)
        .map(|i| pids.get(i).unwrap() as u32)
        .filter(|&p| p != 0)
        .collect();
    known.sort_unstable();
    known.dedup();
    for &pid in &known {
        assert!(
            eventually(
                Duration::from_secs(1).saturating_sub(killed_at.elapsed()),
                || { pid_gone(pid) }
            ),
            "daemon {pid} outlived its killed parent by 1 s (spawn: {spawn})"
        );
    }
    // A daemon being spawned when its parent died exits without a word (it
    // used to abort with "fatal runtime error" from std's exec-status pipe).
    let said = std::fs::read_to_string(&stderr).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr);
    assert!(
        !said.contains("fatal runtime error"),
        "a process started by the killed parent aborted:\n{said}"
    );
    known.len() as u64
}

#[test]
fn parent_of_daemons_killed() {
    run_kind("daemon", 400, 2, daemon_round);
}
