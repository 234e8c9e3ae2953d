//! `multiprocess` against Python's `multiprocessing` and the OS floor.
//!
//! `cargo run --release -p benchmarks -- [--quick] [--json PATH] [--svg PATH] [--only NAME]`
//!
//! The runner starts one worker process per workload (this binary again,
//! with `MPBENCH_WORKER` set) and one `python3 python/bench.py WORKLOAD`,
//! each in its own process group and killed if it outlives its time limit;
//! both print the same JSON lines (see `workloads::Line`). The runner then
//! prints one table, writes JSON and draws an SVG chart. See BENCHMARKS.md.

mod floors;
mod remote;
mod report;
mod sys;
mod workloads;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use report::{Floor, Row, Stats, Target};
use workloads::Line;

#[global_allocator]
static ALLOC: sys::CountingAlloc = sys::CountingAlloc;

const WORKER_ENV: &str = "MPBENCH_WORKER";
const QUICK_ENV: &str = "MPBENCH_QUICK";

/// A workload: its name, whether Python runs it, its targets, its notes.
struct Workload {
    name: &'static str,
    python: bool,
    targets: &'static [Target],
    notes: &'static str,
}

const COPIES_QUEUE: &str = "Copies per side (from the code): put serializes into the handle's reused buffer \
(postcard, copy 1) and copies that into the ring (copy 2, ring.rs put_locked); get copies the record out of \
the ring into a reused buffer (copy 3, ring.rs get_locked) and deserializes from it (copy 4). So 2 per side.";
const COPIES_PIPE: &str = "Copies per side (from the code): send serializes into the connection's reused buffer \
(copy 1; none for send_bytes) and sendmsg copies it into the kernel (copy 2); recv copies from the kernel into \
the receive buffer (copy 3, frame.rs), then deserializes from it or, for recv_bytes, copies it into the returned \
Vec (copy 4; a large message is read straight into its own Vec instead). So 2 per side, 1 on send for send_bytes.";

use Target::*;

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "start_join/fork",
        python: true,
        targets: &[FloorWithin(3.0)],
        notes: "Start + join of a process that does nothing. Floor: fork, _exit(0) in the child, waitpid.",
    },
    Workload {
        name: "start_join/forkserver",
        python: true,
        targets: &[FloorWithin(3.0), SpeedupAtLeast(30.0)],
        notes: "Floor: fork + _exit + waitpid in the benchmark process (the server's fork is the irreducible part).",
    },
    Workload {
        name: "start_join/spawn",
        python: true,
        targets: &[FloorWithin(3.0)],
        notes: "Floor: std::process::Command re-executing this binary with an env var that makes main exit first thing.",
    },
    Workload {
        name: "start_1000",
        python: false,
        targets: &[RustBelow(1000.0)],
        notes: "1,000 processes started, then all joined, default start method (ForkServer). Rust only.",
    },
    Workload {
        name: "queue/u64_1p1c",
        python: true,
        targets: &[SpeedupAtLeast(50.0)],
        notes: "1 producer and 1 consumer child; clock from the parent's go to the consumer's last get. Floor: SPSC spin ring of 8-byte slots between 2 forked processes.",
    },
    Workload {
        name: "queue/u64_2p2c",
        python: true,
        targets: &[SpeedupAtLeast(30.0)],
        notes: "2 producer and 2 consumer children. Floor: the same 1p1c SPSC spin ring (an MPMC floor would be lower).",
    },
    Workload {
        name: "queue/1KiB_1p1c",
        python: true,
        targets: &[SpeedupAtLeast(10.0)],
        notes: "Rust items are Vec<u8> of 1024 bytes (cloned per put, as put takes ownership); Python puts one bytes object. Floor: SPSC spin ring of 1 KiB slots.",
    },
    Workload {
        name: "queue/1MiB_1p1c",
        python: true,
        targets: &[SpeedupAtLeast(10.0)],
        notes: "MB/s = 10^6 bytes/s. Floor: one memcpy of 1 MiB in one process (the queue makes 2+ copies per side).",
    },
    Workload {
        name: "pipe/roundtrip_small",
        python: true,
        targets: &[SpeedupAtLeast(30.0)],
        notes: "send(u64) + recv echo, unpinned, default spin setting. Floors: socketpair, futex and spin ping-pong; the table shows the best.",
    },
    Workload {
        name: "pipe/roundtrip_small_same_cpu",
        python: true,
        targets: &[],
        notes: "Both ends pinned to CPU 0 (sched_setaffinity). Same floors, pinned alike.",
    },
    Workload {
        name: "pipe/roundtrip_small_cross_cpu",
        python: true,
        targets: &[SpeedupAtLeast(30.0)],
        notes: "Parent on CPU 0, child on CPU 1. Same floors, pinned alike.",
    },
    Workload {
        name: "pipe/oneway_1MiB",
        python: true,
        targets: &[SpeedupAtLeast(4.0)],
        notes: "send_bytes / recv_bytes of 1 MiB, MB/s. Floor: memcpy of 1 MiB buffers in one process.",
    },
    Workload {
        name: "lock/uncontended",
        python: true,
        targets: &[FloorWithin(1.3)],
        notes: "acquire + release (guard drop). Floor: a futex lock word in shared memory, CAS acquire, swap release.",
    },
    Workload {
        name: "lock/counter_2proc",
        python: true,
        targets: &[],
        notes: "counter += 1 under the lock, 2 processes: `*counter.lock() += 1` on a `Value<u64>`; Python uses Value('i', lock=False) under a Lock. Floor: Drepper futex mutex, 2 forked processes.",
    },
    Workload {
        name: "event/pingpong",
        python: true,
        targets: &[SpeedupAtLeast(10.0)],
        notes: "Round trip: set(ping); wait(pong); clear(pong) against a child doing the reverse, unpinned. Floors: futex and spin ping-pong between 2 forked processes.",
    },
    Workload {
        name: "idle/consumer_cpu",
        python: true,
        targets: &[RustBelow(1.0)],
        notes: "CPU time (getrusage RUSAGE_SELF in the child, user+sys) over wall time of a consumer blocked ~1 s in Queue::get.",
    },
    Workload {
        name: "idle/recv_cpu",
        python: true,
        targets: &[RustBelow(1.0)],
        notes: "The same for a process blocked ~1 s in Connection::recv.",
    },
    Workload {
        name: "manager/dict_setget",
        python: true,
        targets: &[SpeedupAtLeast(20.0)],
        notes: "d[i] = i then d[i] on a Manager dict from the owning process, µs per pair (two round trips to the server).",
    },
    Workload {
        name: "manager/shared_updates",
        python: true,
        targets: &[],
        notes: "2 processes each doing n times: lock, get, set of one key of a Manager dict, under the manager's lock (both sides).",
    },
    Workload {
        name: "pool/map_chunksize1",
        python: true,
        targets: &[SpeedupAtLeast(10.0)],
        notes: "Pool of 2 workers, map(square, range(N)) with chunksize=1: one task message and one result message per item. Python: multiprocessing.Pool(2), default start method.",
    },
    Workload {
        name: "pool/map_100k_ints",
        python: true,
        targets: &[SpeedupAtLeast(10.0)],
        notes: "Pool of 2 workers, map(square, range(100000)) with the default chunksize (ceil(N / (4 * processes)) = 12,500 items per chunk).",
    },
    Workload {
        name: "pool/apply_async_roundtrip",
        python: true,
        targets: &[SpeedupAtLeast(25.0)],
        notes: "Pool of 2 workers: apply_async(square, (i,)).get(), one at a time; time per round trip.",
    },
    Workload {
        name: "pool/maxtasksperchild1_200",
        python: true,
        targets: &[SpeedupAtLeast(2.0)],
        notes: "Pool of 2 workers with maxtasksperchild=1: map(square, range(200)) with chunksize=1, so every task retires its worker and a new one starts. Rust: the default start method (fork server); Python: its default on Linux (fork in 3.11).",
    },
    Workload {
        name: "alloc/queue_u64",
        python: false,
        targets: &[RustAtMost(0.0)],
        notes: COPIES_QUEUE,
    },
    Workload {
        name: "alloc/queue_1KiB",
        python: false,
        targets: &[RustAtMost(0.0)],
        notes: "Items are [[u8; 32]; 32] (1 KiB, no heap part), so every allocation counted is the library's.",
    },
    Workload {
        name: "alloc/pipe_u64",
        python: false,
        targets: &[RustAtMost(0.0)],
        notes: COPIES_PIPE,
    },
    Workload {
        name: "alloc/pipe_1KiB",
        python: false,
        targets: &[RustAtMost(0.0)],
        notes: "Items are [[u8; 32]; 32], so every allocation counted is the library's.",
    },
    Workload {
        name: "alloc/pipe_bytes_1KiB",
        python: false,
        targets: &[RustAtMost(1.0)],
        notes: "send_bytes + recv_bytes of 1 KiB: recv_bytes returns a new Vec, so 1 is the least possible.",
    },
    // remote/*: multiprocess::remote on a redis-server the runner starts
    // (skipped without one); see remote.rs.
    Workload {
        name: "remote/local_pool_2w",
        python: false,
        targets: &[],
        notes: "Reference for the remote rows: the local Pool of 2 workers, map(square, 0..N) at chunksize 1, N = 100k (quick 20k); pool/map_chunksize1 without Python.",
    },
    Workload {
        name: "remote/map_c1_1w",
        python: false,
        targets: &[],
        notes: REMOTE_MAP,
    },
    Workload {
        name: "remote/map_c1_2w",
        python: false,
        targets: &[RustAtLeast(30_000.0)],
        notes: REMOTE_MAP,
    },
    Workload {
        name: "remote/map_c1_4w",
        python: false,
        targets: &[],
        notes: REMOTE_MAP,
    },
    Workload {
        name: "remote/sleep1ms_1w",
        python: false,
        targets: &[],
        notes: "remote::Pool, 1 worker: map(sleep_1ms, 0..2000) (quick 200) at chunksize 1; the base of the scaling rows.",
    },
    Workload {
        name: "remote/sleep1ms_2w",
        python: false,
        targets: &[RustAtLeast(80.0)],
        notes: REMOTE_SCALING,
    },
    Workload {
        name: "remote/sleep1ms_4w",
        python: false,
        targets: &[RustAtLeast(80.0)],
        notes: REMOTE_SCALING,
    },
    Workload {
        name: "remote/apply_p50_2w",
        python: false,
        targets: &[RustAtMost(500.0)],
        notes: REMOTE_APPLY,
    },
    Workload {
        name: "remote/apply_p99_2w",
        python: false,
        targets: &[],
        notes: REMOTE_APPLY,
    },
    Workload {
        name: "remote/rq_1w",
        python: true,
        targets: &[],
        notes: REMOTE_RQ,
    },
    Workload {
        name: "remote/rq_2w",
        python: true,
        targets: &[SpeedupAtLeast(20.0)],
        notes: REMOTE_RQ,
    },
    Workload {
        name: "remote/queue_put_get",
        python: false,
        targets: &[],
        notes: "remote::Queue<u64>, one process: put(i) then get() (the put script; a take script plus a confirm script), 3000 pairs (quick 300) per sample.",
    },
    Workload {
        name: "remote/lock_acquire_release",
        python: false,
        targets: &[],
        notes: "remote::Lock, uncontended, one process: acquire() + release() (a Lua script each, one round trip each), 3000 pairs (quick 300) per sample.",
    },
];

const REMOTE_MAP: &str = "remote::Pool with N local workers (this binary re-executed) on a redis-server started by the runner (no persistence): map(square, 0..100k) (quick 5k) at chunksize 1, one stream entry per task and one per result. Clock from the call to the last result.";
const REMOTE_SCALING: &str = "Scaling: N workers against 1 on map(sleep_1ms, 0..2000) (quick 200) at chunksize 1, one 1-worker and one N-worker run per sample: (rate_N / rate_1) / N, in % of ideal.";
const REMOTE_APPLY: &str = "remote::Pool of 2 workers: apply(square, (i,)) one at a time, after 200 warm-up calls; each sample is the percentile of a batch of 2000 (quick 300) latencies.";
const REMOTE_RQ: &str = "Same server, same task count: Rust = remote::Pool map(square, 0..2000) (quick 200) at chunksize 1 with N workers; Python = RQ 3.0 (python/rq_bench.py): enqueue_many of 2000 jobs of a module-level square, N SimpleWorker processes started before the clock, clock from the first enqueue to all return values fetched.";

fn main() {
    // The spawn floor: a re-execution that does nothing at all.
    if std::env::var_os(floors::EXIT_AT_ONCE).is_some() {
        std::process::exit(0);
    }
    multiprocess::init();
    if let Ok(name) = std::env::var(WORKER_ENV) {
        let quick = std::env::var(QUICK_ENV).is_ok_and(|v| v == "1");
        if let Err(e) = workloads::run(&name, quick) {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = runner() {
        eprintln!("benchmarks: {e}");
        std::process::exit(2);
    }
}

struct Options {
    quick: bool,
    json: PathBuf,
    svg: PathBuf,
    only: Vec<String>,
    python: bool,
}

fn options() -> Result<Options, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        quick: false,
        json: here.join("../target/benchmarks.json"),
        svg: here.join("chart.svg"),
        only: Vec::new(),
        python: true,
    };
    let mut svg_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = value()?.into(),
            "--svg" => {
                o.svg = value()?.into();
                svg_given = true;
            }
            "--only" => o.only.extend(value()?.split(',').map(String::from)),
            "--no-python" => o.python = false,
            "-h" | "--help" => {
                println!(
                    "usage: benchmarks [--quick] [--json PATH] [--svg PATH] [--only NAME[,NAME]] [--no-python]\n\
                     --only takes workload names or prefixes (queue, pipe/roundtrip)"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a} (try --help)")),
        }
    }
    // The chart in the repository (shown by the README) is the full run's:
    // a partial or quick run draws its chart under target/ unless told.
    if !svg_given && (o.quick || !o.only.is_empty()) {
        o.svg = here.join("../target/benchmarks-chart.svg");
    }
    Ok(o)
}

fn runner() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let started = Instant::now();
    let selected: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| o.only.is_empty() || o.only.iter().any(|p| w.name.starts_with(p.as_str())))
        .collect();
    if selected.is_empty() {
        return Err("--only matched no workload".into());
    }
    let machine = machine();
    let mode = if o.quick { "quick" } else { "full" };
    println!("multiprocess benchmarks, {mode} mode");
    println!(
        "machine: {} ({} CPUs, {}), Linux {}, {}, {}",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["memory"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["rustc"].as_str().unwrap_or("?"),
        machine["python"].as_str().unwrap_or("?"),
    );
    let limit = Duration::from_secs(if o.quick { 60 } else { 300 });
    let exe = std::env::current_exe()?;
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let script = python_dir.join("bench.py");
    let rq_script = python_dir.join("rq_bench.py");
    // One redis-server for every remote/* row (each uses its own keys),
    // and one check (with at most one pip install) that RQ imports.
    let remote = selected.iter().any(|w| is_remote(w.name));
    let server = remote.then(start_redis);
    let rq = (o.python && server.as_ref().is_some_and(Result::is_ok))
        .then(|| selected.iter().any(|w| is_rq(w.name)))
        .filter(|&any| any)
        .map(|_| ensure_rq(&rq_script, o.quick));
    let mut rows = Vec::new();
    for w in selected {
        let t = Instant::now();
        let mut row = Row::new(w.name);
        row.notes = w.notes.into();
        let url = match (&server, is_remote(w.name)) {
            (Some(Ok(server)), true) => Some(server.url().to_owned()),
            (Some(Err(why)), true) => {
                row.skipped.push(format!("rust: {why}"));
                if w.python && o.python {
                    row.skipped.push(format!("python: {why}"));
                }
                None
            }
            _ => None,
        };
        let skip = is_remote(w.name) && url.is_none();
        if skip {
            row.unit = remote::unit(w.name).into();
            row.higher_is_better = report::higher_is_better(&row.unit);
        }
        if !skip {
            let mut rust = Command::new(&exe);
            rust.env(WORKER_ENV, w.name)
                .env(QUICK_ENV, if o.quick { "1" } else { "0" });
            if let Some(url) = &url {
                rust.env(remote::URL_ENV, url);
            }
            collect(&mut row, "rust", rust, limit);
        }
        if w.python && o.python && !skip {
            let mut py = Command::new("python3");
            py.arg(if is_rq(w.name) { &rq_script } else { &script })
                .arg(w.name);
            if o.quick {
                py.arg("--quick");
            }
            if let Some(url) = &url {
                py.env(remote::URL_ENV, url);
            }
            match (&rq, is_rq(w.name)) {
                (Some(Err(why)), true) => row.skipped.push(format!("python: {why}")),
                _ => collect(&mut row, "python", py, limit),
            }
        }
        row.finish(w.targets);
        eprintln!(
            "  {:<32} {:>6.1} s{}",
            w.name,
            t.elapsed().as_secs_f64(),
            if row.errors.is_empty() {
                ""
            } else {
                "  (errors)"
            }
        );
        rows.push(row);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    print!("{}", report::table(&rows));
    for r in &rows {
        for s in &r.skipped {
            println!("skipped: {}: {s}", r.workload);
        }
        for e in &r.errors {
            println!("error: {}: {e}", r.workload);
        }
    }
    println!("\n{mode} run took {elapsed:.0} s");

    let json = serde_json::json!({
        "mode": mode,
        "machine": machine,
        "duration_s": elapsed,
        "method": "medians over repetitions, with min and max; Rust/floor = Rust's cost over the floor's \
                   (1 = at the floor); Rust vs Python = speed-up (>1: Rust faster)",
        "results": rows,
    });
    if let Some(dir) = o.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.json, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {}", o.json.display());
    let title = format!(
        "multiprocess vs Python multiprocessing ({mode}; {}, {} CPUs)",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"]
    );
    if let Some(dir) = o.svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    report::chart(&rows, &title, &o.svg)?;
    println!("wrote {}", o.svg.display());
    if rows.iter().any(|r| !r.errors.is_empty()) {
        return Err("some benchmarks failed (see the errors above)".into());
    }
    drop(server);
    Ok(())
}

fn is_remote(name: &str) -> bool {
    name.starts_with("remote/") && name != "remote/local_pool_2w"
}

fn is_rq(name: &str) -> bool {
    name.starts_with("remote/rq_")
}

/// The remote rows' server, or why there is none.
#[cfg(feature = "redis")]
fn start_redis() -> Result<RedisServer, String> {
    if !multiprocess::remote::LocalServer::available() {
        return Err("redis-server not found on PATH (apt-get install redis-server)".into());
    }
    multiprocess::remote::LocalServer::start()
        .map(RedisServer)
        .map_err(|e| format!("redis-server did not start: {e}"))
}

#[cfg(not(feature = "redis"))]
fn start_redis() -> Result<RedisServer, String> {
    Err(
        "built without the redis feature (cargo run --release -p benchmarks --features redis)"
            .into(),
    )
}

/// The remote rows' `redis-server`, killed on drop.
struct RedisServer(#[cfg(feature = "redis")] multiprocess::remote::LocalServer);

impl RedisServer {
    #[cfg(feature = "redis")]
    fn url(&self) -> &str {
        self.0.url()
    }

    #[cfg(not(feature = "redis"))]
    fn url(&self) -> &str {
        unreachable!("no server without the redis feature")
    }
}

/// Whether RQ 3.0 imports for `python3` (`rq_bench.py --ensure` tries one
/// `pip install --user rq==3.0.0` if not), or why not.
fn ensure_rq(script: &Path, quick: bool) -> Result<(), String> {
    let mut row = Row::new("rq check");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("--ensure");
    let limit = Duration::from_secs(if quick { 60 } else { 120 });
    let stdout = collect_raw(&mut row, "python", cmd, limit);
    if let Some(e) = row.errors.first() {
        return Err(format!("RQ not available: {e}"));
    }
    match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) if l.starts_with("ok") => {
            eprintln!("  {}", l.trim());
            Ok(())
        }
        Some(l) => Err(l.trim().to_owned()),
        None => Err("RQ not available: rq_bench.py --ensure printed nothing".into()),
    }
}

/// Runs one side of a workload with a time limit and adds its lines to `row`.
fn collect(row: &mut Row, side: &str, cmd: Command, limit: Duration) {
    let stdout = collect_raw(row, side, cmd, limit);
    for l in stdout.lines().filter(|l| l.starts_with('{')) {
        let line: Line = match serde_json::from_str(l) {
            Ok(line) => line,
            Err(e) => {
                row.errors.push(format!("{side}: bad line {l:?}: {e}"));
                continue;
            }
        };
        row.unit = line.unit.clone();
        row.higher_is_better = report::higher_is_better(&line.unit);
        let stats = Stats::of(&line.samples);
        match line.imp.as_str() {
            "rust" => row.rust = stats,
            "python" => row.python = stats,
            _ => row.floors.extend(stats.map(|stats| Floor {
                kind: line.kind.unwrap_or_default(),
                stats,
            })),
        }
    }
}

/// Runs `cmd` in its own process group with a time limit; its stdout.
/// A failure or overrun is added to `row.errors`.
fn collect_raw(row: &mut Row, side: &str, mut cmd: Command, limit: Duration) -> String {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            row.errors.push(format!("{side}: cannot start: {e}"));
            return String::new();
        }
    };
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")));
    let err = reader(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let kill_group = || {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    };
    if status.is_none() {
        kill_group();
        let _ = child.wait();
        row.errors
            .push(format!("{side}: hung past {} s, killed", limit.as_secs()));
    } else {
        // Leftover grandchildren (none expected) must not hold the pipes.
        kill_group();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if let Some(status) = status.filter(|s| !s.success()) {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        row.errors.push(format!("{side}: {status}: {last}"));
    }
    stdout
}

/// The machine and versions, for the table header and the JSON.
fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal")
        .trim_end_matches(" kB")
        .parse::<f64>()
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let uname = rustix::system::uname();
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or("python3 not found".into(), |s| s.trim().to_string());
    serde_json::json!({
        "cpu": field(&cpuinfo, "model name"),
        "cpus": multiprocess::cpu_count(),
        "memory": memory,
        "kernel": uname.release().to_string_lossy(),
        "rustc": env!("MPBENCH_RUSTC"),
        "python": python,
    })
}
