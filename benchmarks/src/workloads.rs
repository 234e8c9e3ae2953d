//! The Rust side of each workload, run in a worker process of its own (see
//! `main.rs`), with its floors. Each workload prints [`Line`]s.

use std::time::{Duration, Instant};

use multiprocess::{
    Connection, Lock, Pipe, Process, Queue, QueueBuilder, RecvError, StartMethod, Value,
    get_context,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::floors::{self, PingPong, Result, mono_ns, pin};
use crate::sys;

/// Every blocking call in a benchmark child gives up after this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One measurement series, as printed by the Rust worker and by `bench.py`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Line {
    pub workload: String,
    /// `rust`, `python` or `floor`.
    #[serde(rename = "impl")]
    pub imp: String,
    /// What the floor is (floors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub unit: String,
    pub samples: Vec<f64>,
}

pub(crate) struct Out<'a> {
    workload: &'a str,
}

impl Out<'_> {
    fn emit(&self, imp: &str, kind: Option<&str>, unit: &str, samples: Vec<f64>) {
        let line = Line {
            workload: self.workload.into(),
            imp: imp.into(),
            kind: kind.map(Into::into),
            unit: unit.into(),
            samples,
        };
        println!(
            "{}",
            serde_json::to_string(&line).expect("a Line serializes")
        );
    }
    pub(crate) fn rust(&self, unit: &str, samples: Vec<f64>) {
        self.emit("rust", None, unit, samples)
    }
    fn floor(&self, kind: &str, unit: &str, samples: Vec<f64>) {
        self.emit("floor", Some(kind), unit, samples)
    }
}

/// Repetition counts and sizes for quick or full mode.
fn pick(quick: bool, q: usize, full: usize) -> usize {
    if quick { q } else { full }
}

/// Joins a benchmark child within [`TIMEOUT`]; a hung child is killed.
fn finish(p: &Process) -> Result<()> {
    match p.join_timeout(TIMEOUT)? {
        Some(0) => Ok(()),
        Some(code) => Err(format!("child {} exited with {code}", p.name()).into()),
        None => {
            p.kill()?;
            let _ = p.join_timeout(Duration::from_secs(5));
            Err(format!("child {} hung and was killed", p.name()).into())
        }
    }
}

/// Runs the workload `name`, printing its lines.
pub(crate) fn run(name: &str, quick: bool) -> Result<()> {
    let out = Out { workload: name };
    match name {
        "start_join/fork" => start_join(&out, StartMethod::Fork, pick(quick, 30, 200)),
        "start_join/forkserver" => start_join(&out, StartMethod::ForkServer, pick(quick, 30, 200)),
        "start_join/spawn" => start_join(&out, StartMethod::Spawn, pick(quick, 15, 60)),
        "start_1000" => start_1000(&out, pick(quick, 1, 3)),
        "queue/u64_1p1c" => queue::<u64>(&out, 1, 1, 8, pick(quick, 200_000, 2_000_000), quick),
        "queue/u64_2p2c" => queue::<u64>(&out, 2, 2, 8, pick(quick, 200_000, 2_000_000), quick),
        "queue/1KiB_1p1c" => {
            queue::<Vec<u8>>(&out, 1, 1, 1024, pick(quick, 100_000, 1_000_000), quick)
        }
        "queue/1MiB_1p1c" => queue::<Vec<u8>>(&out, 1, 1, 1 << 20, pick(quick, 200, 2000), quick),
        "pipe/roundtrip_small" => roundtrip(&out, (None, None), quick),
        "pipe/roundtrip_small_same_cpu" => roundtrip(&out, (Some(0), Some(0)), quick),
        "pipe/roundtrip_small_cross_cpu" => roundtrip(&out, (Some(0), Some(1)), quick),
        "pipe/oneway_1MiB" => oneway_1mib(&out, quick),
        "lock/uncontended" => lock_uncontended(&out, quick),
        "lock/counter_2proc" => lock_counter(&out, quick),
        "event/pingpong" => event_pingpong(&out, quick),
        "idle/consumer_cpu" => idle(&out, false, pick(quick, 1, 3)),
        "idle/recv_cpu" => idle(&out, true, pick(quick, 1, 3)),
        "alloc/queue_u64"
        | "alloc/queue_1KiB"
        | "alloc/pipe_u64"
        | "alloc/pipe_1KiB"
        | "alloc/pipe_bytes_1KiB" => allocs(&out, name),
        "manager/dict_setget" => manager_dict_setget(&out, quick),
        "manager/shared_updates" => manager_shared_updates(&out, quick),
        "pool/map_chunksize1" => pool_map_chunksize1(&out, quick),
        "pool/map_100k_ints" => pool_map_100k_ints(&out, quick),
        "pool/apply_async_roundtrip" => pool_apply_async_roundtrip(&out, quick),
        "pool/maxtasksperchild1_200" => pool_maxtasksperchild1(&out, quick),
        _ if name.starts_with("remote/") => crate::remote::run(&out, name, quick),
        _ => Err(format!("unknown workload {name}").into()),
    }
}

// ---------------------------------------------------------------- start

fn noop() {}

fn start_join(out: &Out, method: StartMethod, reps: usize) -> Result<()> {
    // Floors first: the bare fork needs this process single-threaded.
    if method == StartMethod::Spawn {
        floors::reexec(2)?; // warm the page cache
        out.floor(
            "re-exec of this binary, exits at once",
            "ms",
            floors::reexec(reps)?,
        );
    } else {
        floors::fork_exit_wait(3)?;
        out.floor(
            "fork + _exit + waitpid",
            "ms",
            floors::fork_exit_wait(reps)?,
        );
    }
    let ctx = get_context(method);
    let once = || -> Result<f64> {
        let t = Instant::now();
        let p = ctx.process(noop, ());
        p.start()?;
        finish(&p)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..3 {
        once()?; // starts the fork server, warms caches
    }
    let samples = (0..reps).map(|_| once()).collect::<Result<Vec<_>>>()?;
    out.rust("ms", samples);
    Ok(())
}

fn start_1000(out: &Out, reps: usize) -> Result<()> {
    // 1000 running children hold 1000+ descriptors here (pidfds, status
    // sockets): lift the soft limit to the hard one, as a user would.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    let warm = Process::new(noop, ());
    warm.start()?;
    finish(&warm)?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let ps: Vec<Process> = (0..1000).map(|_| Process::new(noop, ())).collect();
        for p in &ps {
            p.start()?;
        }
        for p in &ps {
            finish(p)?;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out.rust("ms", samples);
    Ok(())
}

// ---------------------------------------------------------------- queue

/// A message type for the queue workloads: made once, cloned per put.
trait Payload: Serialize + DeserializeOwned + Clone + 'static {
    fn make(size: usize) -> Self;
    fn sentinel() -> Self;
    fn is_sentinel(&self) -> bool;
}

impl Payload for u64 {
    fn make(_: usize) -> Self {
        7
    }
    fn sentinel() -> Self {
        u64::MAX
    }
    fn is_sentinel(&self) -> bool {
        *self == u64::MAX
    }
}

impl Payload for Vec<u8> {
    fn make(size: usize) -> Self {
        vec![7u8; size]
    }
    fn sentinel() -> Self {
        Vec::new()
    }
    fn is_sentinel(&self) -> bool {
        self.is_empty()
    }
}

fn q_producer<T: Payload>(q: Queue<T>, ready: Queue<u8>, go: Queue<u8>, n: u64, size: usize) {
    let msg = T::make(size);
    ready.put(1).unwrap();
    go.get_timeout(TIMEOUT).unwrap();
    for _ in 0..n {
        q.put(msg.clone()).unwrap();
    }
}

fn q_consumer<T: Payload>(q: Queue<T>, ready: Queue<u8>, results: Queue<(u64, u64)>) {
    ready.put(1).unwrap();
    let mut count = 0;
    while !q.get_timeout(TIMEOUT).unwrap().is_sentinel() {
        count += 1;
    }
    results.put((count, mono_ns())).unwrap();
}

/// `producers` and `consumers` child processes; `n` messages in all. The
/// clock runs from the parent's "go" to the last consumer's last item.
fn queue<T: Payload>(
    out: &Out,
    producers: u64,
    consumers: u64,
    size: usize,
    n: usize,
    quick: bool,
) -> Result<()> {
    let reps = pick(quick, 3, 10);
    let big = size >= 1 << 20;
    let unit = if big { "MB/s" } else { "msg/s" };
    if big {
        out.floor(
            "memcpy of 1 MiB buffers, one process",
            unit,
            floors::memcpy_1mib(n, reps),
        );
    } else {
        out.floor(
            "SPSC ring of fixed slots in shared memory, both ends spinning (1 producer, 1 consumer)",
            unit,
            floors::spsc_ring(size, n, reps)?,
        );
    }
    let n = n as u64 / producers * producers;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let q = QueueBuilder::new().build::<T>()?;
        let ready = Queue::<u8>::new()?;
        let go = Queue::<u8>::new()?;
        let results = Queue::<(u64, u64)>::new()?;
        let mut ps = Vec::new();
        for _ in 0..consumers {
            let p = Process::new(q_consumer::<T>, (q.clone(), ready.clone(), results.clone()));
            p.start()?;
            ps.push(p);
        }
        let mut producing = Vec::new();
        for _ in 0..producers {
            let args = (q.clone(), ready.clone(), go.clone(), n / producers, size);
            let p = Process::new(q_producer::<T>, args);
            p.start()?;
            producing.push(p);
        }
        for _ in 0..producers + consumers {
            ready.get_timeout(TIMEOUT)?;
        }
        let t0 = mono_ns();
        for _ in 0..producers {
            go.put(1).map_err(|e| e.to_string())?;
        }
        for p in &producing {
            finish(p)?;
        }
        for _ in 0..consumers {
            q.put(T::sentinel()).map_err(|e| e.to_string())?;
        }
        let (mut got, mut end) = (0, 0);
        for _ in 0..consumers {
            let (count, at) = results.get_timeout(TIMEOUT)?;
            got += count;
            end = end.max(at);
        }
        for p in &ps {
            finish(p)?;
        }
        if got != n {
            return Err(format!("consumers got {got} of {n} items").into());
        }
        let secs = (end - t0) as f64 / 1e9;
        samples.push(if big {
            (n as f64 * size as f64) / secs / 1e6
        } else {
            n as f64 / secs
        });
    }
    out.rust(unit, samples);
    Ok(())
}

// ---------------------------------------------------------------- pipe

fn echo(conn: Connection<u64, u64>, cpu: Option<usize>) {
    pin(cpu).unwrap();
    loop {
        match conn.recv_timeout(TIMEOUT) {
            Ok(v) => conn.send(v).unwrap(),
            Err(multiprocess::RecvTimeoutError::Disconnected) => return,
            Err(e) => panic!("echo: {e}"),
        }
    }
}

fn roundtrip(out: &Out, cpus: (Option<usize>, Option<usize>), quick: bool) -> Result<()> {
    let (reps, batch) = (pick(quick, 5, 20), pick(quick, 2000, 10_000));
    for kind in [PingPong::Socketpair, PingPong::Futex, PingPong::Spin] {
        // Both ends spinning on one CPU is a floor only with yields, and
        // slow: fewer round trips.
        let batch = if matches!(kind, PingPong::Spin) && cpus.0.is_some() && cpus.0 == cpus.1 {
            batch / 10
        } else {
            batch
        };
        out.floor(
            kind.name(),
            "µs",
            floors::ping_pong(kind, cpus, reps, batch)?,
        );
    }
    pin(cpus.0)?;
    let (mine, theirs) = Pipe::new::<u64, u64>()?;
    let p = Process::new(echo, (theirs, cpus.1));
    p.start()?;
    let round = |n: usize| -> Result<()> {
        for i in 0..n as u64 {
            mine.send(i).map_err(|e| e.to_string())?;
            if mine.recv_timeout(TIMEOUT)? != i {
                return Err("echo out of order".into());
            }
        }
        Ok(())
    };
    round(1000)?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        round(batch)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    drop(mine);
    finish(&p)?;
    pin(None)?;
    out.rust("µs", samples);
    Ok(())
}

fn bytes_sender(conn: Connection<(), ()>, n: u64) {
    let buf = vec![7u8; 1 << 20];
    for _ in 0..=n {
        conn.send_bytes(&buf).unwrap();
    }
}

fn oneway_1mib(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 3, 10), pick(quick, 200, 1000));
    out.floor(
        "memcpy of 1 MiB buffers, one process",
        "MB/s",
        floors::memcpy_1mib(n, reps),
    );
    let mut samples = Vec::new();
    for _ in 0..reps {
        let (mine, theirs) = Pipe::new::<(), ()>()?;
        let p = Process::new(bytes_sender, (theirs, n as u64));
        p.start()?;
        mine.recv_bytes_timeout(TIMEOUT)?; // warm-up message
        let t = Instant::now();
        for _ in 0..n {
            if mine.recv_bytes_timeout(TIMEOUT)?.len() != 1 << 20 {
                return Err("short message".into());
            }
        }
        samples.push((n << 20) as f64 / t.elapsed().as_secs_f64() / 1e6);
        finish(&p)?;
    }
    out.rust("MB/s", samples);
    Ok(())
}

// ---------------------------------------------------------------- pool

fn pool_square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// A pool of 2 workers, warmed up (workers started, code paths touched).
fn warm_pool() -> Result<multiprocess::Pool> {
    let pool = multiprocess::Pool::new(2)?;
    pool.map(pool_square, 0..1000u64)?;
    pool.with_chunksize(1).map(pool_square, 0..1000u64)?;
    Ok(pool)
}

pub(crate) fn pool_map_chunksize1(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 3, 5), pick(quick, 20_000, 100_000) as u64);
    let pool = warm_pool()?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = pool.with_chunksize(1).map(pool_square, 0..n)?;
        samples.push(n as f64 / t.elapsed().as_secs_f64());
        if r.len() as u64 != n || r[n as usize - 1] != (n - 1) * (n - 1) {
            return Err("wrong map result".into());
        }
    }
    out.rust("tasks/s", samples);
    Ok(())
}

fn pool_map_100k_ints(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 5, 20), 100_000u64);
    let pool = warm_pool()?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = pool.map(pool_square, 0..n)?;
        samples.push(n as f64 / t.elapsed().as_secs_f64());
        if r.len() as u64 != n || r[n as usize - 1] != (n - 1) * (n - 1) {
            return Err("wrong map result".into());
        }
    }
    out.rust("items/s", samples);
    Ok(())
}

fn pool_apply_async_roundtrip(out: &Out, quick: bool) -> Result<()> {
    let (reps, batch) = (pick(quick, 5, 10), pick(quick, 2000, 10_000) as u64);
    let pool = warm_pool()?;
    let round = |n: u64| -> Result<()> {
        for i in 0..n {
            let r = pool.apply_async(pool_square, (i,))?;
            if r.get_timeout(TIMEOUT)? != i * i {
                return Err("wrong apply_async result".into());
            }
        }
        Ok(())
    };
    round(1000)?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        round(batch)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    out.rust("µs", samples);
    Ok(())
}

/// 200 one-task chunks on 2 workers that each retire after one task: the
/// cost of replacing a worker, per task.
fn pool_maxtasksperchild1(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 2, 5), 200u64);
    let pool = multiprocess::Pool::builder()
        .processes(2)
        .maxtasksperchild(1)
        .build()?;
    pool.with_chunksize(1).map(pool_square, 0..20u64)?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = pool.with_chunksize(1).map(pool_square, 0..n)?;
        samples.push(n as f64 / t.elapsed().as_secs_f64());
        if r.len() as u64 != n || r[n as usize - 1] != (n - 1) * (n - 1) {
            return Err("wrong map result".into());
        }
    }
    out.rust("tasks/s", samples);
    Ok(())
}

// ---------------------------------------------------------------- lock

fn lock_uncontended(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 5, 10), pick(quick, 1_000_000, 5_000_000));
    out.floor(
        "futex lock word in shared memory: CAS acquire, swap release",
        "ns",
        floors::lock_uncontended(n, reps)?,
    );
    let lock = Lock::new()?;
    let samples = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                drop(std::hint::black_box(lock.acquire()));
            }
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .collect();
    out.rust("ns", samples);
    Ok(())
}

fn event_ponger(ping: multiprocess::Event, pong: multiprocess::Event, n: u64) {
    for _ in 0..n {
        if !ping.wait_timeout(TIMEOUT) {
            return;
        }
        ping.clear();
        pong.set();
    }
}

/// Event ping-pong: this process sets `ping` and waits for `pong`; a child
/// does the reverse. µs per round trip (two set/wait/clear handoffs).
fn event_pingpong(out: &Out, quick: bool) -> Result<()> {
    let (reps, batch) = (pick(quick, 5, 20), pick(quick, 2000, 10_000));
    for kind in [PingPong::Futex, PingPong::Spin] {
        out.floor(
            kind.name(),
            "µs",
            floors::ping_pong(kind, (None, None), reps, batch)?,
        );
    }
    let (ping, pong) = (multiprocess::Event::new()?, multiprocess::Event::new()?);
    let warmup = 1000;
    let total = warmup + reps * batch;
    let p = Process::new(event_ponger, (ping.clone(), pong.clone(), total as u64));
    p.start()?;
    let round = |n: usize| -> Result<()> {
        for _ in 0..n {
            ping.set();
            if !pong.wait_timeout(TIMEOUT) {
                return Err("ponger did not answer".into());
            }
            pong.clear();
        }
        Ok(())
    };
    round(warmup)?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        round(batch)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    finish(&p)?;
    out.rust("µs", samples);
    Ok(())
}

fn counter_worker(counter: Value<u64>, ready: Queue<u8>, go: Queue<u8>, n: u64, done: Queue<u64>) {
    ready.put(1).unwrap();
    go.get_timeout(TIMEOUT).unwrap();
    for _ in 0..n {
        // A plain read-modify-write: only the Value's lock makes it exact.
        *counter.lock() += 1;
    }
    done.put(mono_ns()).unwrap();
}

fn lock_counter(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 3, 5), pick(quick, 1_000_000, 5_000_000));
    out.floor(
        "futex lock word (Drepper's mutex), 2 forked processes",
        "ops/s",
        floors::lock_counter(n, reps)?,
    );
    let mut samples = Vec::new();
    for _ in 0..reps {
        let counter = Value::new(0u64)?;
        let (ready, go, done) = (Queue::new()?, Queue::new()?, Queue::new()?);
        let ps: Vec<Process> = (0..2)
            .map(|_| {
                let args = (
                    counter.clone(),
                    ready.clone(),
                    go.clone(),
                    n as u64,
                    done.clone(),
                );
                Process::new(counter_worker, args)
            })
            .collect();
        for p in &ps {
            p.start()?;
        }
        for _ in &ps {
            ready.get_timeout(TIMEOUT)?;
        }
        let t0 = mono_ns();
        for _ in &ps {
            go.put(1u8).map_err(|e| e.to_string())?;
        }
        let mut end = 0;
        for _ in &ps {
            end = end.max(done.get_timeout(TIMEOUT)?);
        }
        for p in &ps {
            finish(p)?;
        }
        let count = counter.get();
        if count != 2 * n as u64 {
            return Err(format!("counter is {count}, expected {}", 2 * n).into());
        }
        samples.push(2.0 * n as f64 / ((end - t0) as f64 / 1e9));
    }
    out.rust("ops/s", samples);
    Ok(())
}

// ---------------------------------------------------------------- manager

/// µs per `d[i] = i` + `d[i]` pair on a manager dict, from this process.
fn manager_dict_setget(out: &Out, quick: bool) -> Result<()> {
    let (reps, batch) = (pick(quick, 3, 5), pick(quick, 2000, 20_000));
    let manager = multiprocess::Manager::new()?;
    let d = manager.dict::<u64, u64>()?;
    for i in 0..200 {
        d.insert(i, i)?;
        d.get(&i)?;
    }
    let mut samples = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for i in 0..batch as u64 {
            d.insert(i, i)?;
            if d.get(&i)? != Some(i) {
                return Err("the dict lost a value".into());
            }
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    out.rust("µs", samples);
    Ok(())
}

fn manager_updater(
    d: multiprocess::DictProxy<String, u64>,
    lock: multiprocess::LockProxy,
    ready: Queue<u8>,
    go: Queue<u8>,
    n: u64,
    done: Queue<u64>,
) {
    ready.put(1).unwrap();
    go.get_timeout(TIMEOUT).unwrap();
    let key = "n".to_string();
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        let v = d.get(&key).unwrap().unwrap_or(0);
        d.insert(key.clone(), v + 1).unwrap();
    }
    done.put(mono_ns()).unwrap();
}

/// 2 processes, each `n` times: lock, get, set on one manager dict key
/// under a manager lock (Python: the same with `Manager().Lock()`).
fn manager_shared_updates(out: &Out, quick: bool) -> Result<()> {
    let (reps, n) = (pick(quick, 2, 3), pick(quick, 20_000, 100_000));
    let manager = multiprocess::Manager::new()?;
    let mut samples = Vec::new();
    for _ in 0..reps {
        let d = manager.dict::<String, u64>()?;
        d.insert("n".into(), 0)?;
        let lock = manager.lock()?;
        let (ready, go, done) = (Queue::new()?, Queue::new()?, Queue::new()?);
        let ps: Vec<Process> = (0..2)
            .map(|_| {
                let args = (
                    d.clone(),
                    lock.clone(),
                    ready.clone(),
                    go.clone(),
                    n as u64,
                    done.clone(),
                );
                Process::new(manager_updater, args)
            })
            .collect();
        for p in &ps {
            p.start()?;
        }
        for _ in &ps {
            ready.get_timeout(TIMEOUT)?;
        }
        let t0 = mono_ns();
        for _ in &ps {
            go.put(1u8).map_err(|e| e.to_string())?;
        }
        let mut end = 0;
        for _ in &ps {
            end = end.max(done.get_timeout(TIMEOUT * 10)?);
        }
        for p in &ps {
            finish(p)?;
        }
        let count = d.get(&"n".to_string())?.unwrap_or(0);
        if count != 2 * n as u64 {
            return Err(format!("counter is {count}, expected {}", 2 * n).into());
        }
        samples.push(2.0 * n as f64 / ((end - t0) as f64 / 1e9));
    }
    out.rust("ops/s", samples);
    Ok(())
}

// ---------------------------------------------------------------- idle

/// CPU and wall nanoseconds spent blocked in one `get`.
fn idle_queue(q: Queue<u8>, ready: Queue<u8>, results: Queue<(u64, u64)>) {
    ready.put(1).unwrap();
    let (c0, t0) = (sys::cpu_time_self(), Instant::now());
    q.get_timeout(TIMEOUT).unwrap();
    let (cpu, wall) = (sys::cpu_time_self() - c0, t0.elapsed());
    results
        .put((cpu.as_nanos() as u64, wall.as_nanos() as u64))
        .unwrap();
}

/// The same for one `recv`; the first message says "ready".
fn idle_recv(conn: Connection<(u64, u64), u8>) {
    conn.send((0, 0)).unwrap();
    let (c0, t0) = (sys::cpu_time_self(), Instant::now());
    conn.recv_timeout(TIMEOUT).unwrap();
    let (cpu, wall) = (sys::cpu_time_self() - c0, t0.elapsed());
    conn.send((cpu.as_nanos() as u64, wall.as_nanos() as u64))
        .unwrap();
}

fn idle(out: &Out, connection: bool, reps: usize) -> Result<()> {
    let mut samples = Vec::new();
    for _ in 0..reps {
        let (cpu, wall) = if connection {
            let (mine, theirs) = Pipe::new::<u8, (u64, u64)>()?;
            let p = Process::new(idle_recv, (theirs,));
            p.start()?;
            mine.recv_timeout(TIMEOUT)?;
            std::thread::sleep(Duration::from_secs(1));
            mine.send(1).map_err(|e| e.to_string())?;
            let r = mine.recv_timeout(TIMEOUT)?;
            finish(&p)?;
            r
        } else {
            let (q, ready, results) = (Queue::new()?, Queue::new()?, Queue::new()?);
            let p = Process::new(idle_queue, (q.clone(), ready.clone(), results.clone()));
            p.start()?;
            ready.get_timeout(TIMEOUT)?;
            std::thread::sleep(Duration::from_secs(1));
            q.put(1).map_err(|e| e.to_string())?;
            let r = results.get_timeout(TIMEOUT)?;
            finish(&p)?;
            r
        };
        samples.push(cpu as f64 / wall as f64 * 100.0);
    }
    out.rust("% CPU", samples);
    Ok(())
}

// ---------------------------------------------------------------- allocations

/// 1 KiB with no heap part: `[[u8; 32]; 32]` (serde has arrays up to 32).
type Kib = [[u8; 32]; 32];

/// Allocations per call of `f` in steady state (after a warm-up).
fn per_op(mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    const N: u64 = 20_000;
    for _ in 0..1000 {
        f()?;
    }
    (0..3)
        .map(|_| {
            let before = sys::allocations();
            for _ in 0..N {
                f()?;
            }
            Ok((sys::allocations() - before) as f64 / N as f64)
        })
        .collect()
}

fn allocs(out: &Out, name: &str) -> Result<()> {
    let samples = match name {
        "alloc/queue_u64" => {
            let q = Queue::<u64>::new()?;
            per_op(|| {
                q.put(7).map_err(|e| e.to_string())?;
                q.get()?;
                Ok(())
            })?
        }
        "alloc/queue_1KiB" => {
            let q = Queue::<Kib>::new()?;
            per_op(|| {
                q.put([[7; 32]; 32]).map_err(|e| e.to_string())?;
                q.get()?;
                Ok(())
            })?
        }
        "alloc/pipe_u64" => {
            let (a, b) = Pipe::new::<u64, u64>()?;
            per_op(|| {
                a.send(7).map_err(|e| e.to_string())?;
                b.recv()?;
                Ok(())
            })?
        }
        "alloc/pipe_1KiB" => {
            let (a, b) = Pipe::new::<Kib, Kib>()?;
            per_op(|| {
                a.send([[7; 32]; 32]).map_err(|e| e.to_string())?;
                b.recv()?;
                Ok(())
            })?
        }
        _ => {
            let (a, b) = Pipe::new::<(), ()>()?;
            let buf = [7u8; 1024];
            per_op(|| {
                a.send_bytes(&buf).map_err(|e| e.to_string())?;
                let _: Vec<u8> = b.recv_bytes().map_err(|e: RecvError| e.to_string())?;
                Ok(())
            })?
        }
    };
    out.rust("allocs/op", samples);
    Ok(())
}
