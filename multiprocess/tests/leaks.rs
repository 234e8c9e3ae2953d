//! Leak checks: after many create/pass/drop cycles of every kind of object
//! and many process starts, this process's descriptors, its zombie
//! descendants, its live descendants and the shared-memory names it created
//! are back where they started; the long-lived child that received and
//! dropped every object holds no more descriptors than before either. And
//! with `RLIMIT_NOFILE` at 256 and 100 queues alive, everything still works.
//!
//! `LEAK_CYCLES=N` sets the cycles per kind (default 10,000: ~14 s on a
//! 2-core VM in a debug build), `LEAK_STARTS=N` the process starts (default
//! 1,000, plus 1 in 20 of that by Spawn), `LEAK_POOLS=N` the Pools and
//! Executors made, used and dropped (default 200; ten times as many
//! Listener/Client pairs). Figures go to stderr
//! (`--nocapture`).
//!
//! The tests share one lock: descriptor counts are per process, so two leak
//! checks in one binary must not overlap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, rss_kib};
use multiprocess::{
    Array, Barrier, Client, Condition, Connection, Event, Executor, JoinableQueue, Listener, Lock,
    Pipe, Pool, Process, Queue, RLock, Semaphore, SharedMemory, SimpleQueue, StartMethod, Value,
    get_context,
};
use serde::{Deserialize, Serialize};

multiprocess::init_before_main!();

static SERIAL: Mutex<()> = Mutex::new(());

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn fd_count() -> usize {
    // The directory handle itself is one entry, the same every time.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What each descriptor is (for the failure message).
fn fd_table() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Memory mappings: a region that is never unmapped shows here even when
/// its descriptor was closed.
/// A process's mappings. Every object this crate maps is a shared mapping
/// (of a memfd or a `/dev/shm` file), so those are listed one by one and
/// must come back exactly; private ones are only counted, because the
/// kernel merges and splits adjacent private mappings as the heap and the
/// allocator's own mappings move, so their count drifts by one or two with
/// nothing leaked (seen once in CI: the sink 30 -> 31 after 10,000 cycles).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Maps {
    /// `perms size path` of each shared mapping, sorted.
    shared: Vec<String>,
    private: usize,
}

impl Maps {
    fn total(&self) -> usize {
        self.shared.len() + self.private
    }
}

/// Drift of the private mappings' count that is not a leak: a leak per
/// cycle shows up thousands of times over.
const PRIVATE_MAPS_NOISE: usize = 4;

fn maps_of(pid: &str) -> Maps {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut shared = Vec::new();
    let mut private = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap_or_default();
        let perms = fields.next().unwrap_or_default();
        if perms.ends_with('s') {
            let (start, end) = range.split_once('-').unwrap_or(("0", "0"));
            let size = u64::from_str_radix(end, 16).unwrap_or(0)
                - u64::from_str_radix(start, 16).unwrap_or(0);
            let path: Vec<&str> = fields.skip(3).collect();
            shared.push(format!("{perms} {size} {}", path.join(" ")));
        } else {
            private += 1;
        }
    }
    shared.sort();
    Maps { shared, private }
}

/// Panics unless `after` maps what `before` did: the same shared mappings,
/// and private ones within [`PRIVATE_MAPS_NOISE`] either way (plus `slack`
/// more): the kernel's merging of adjacent private mappings moves the count
/// up as well as down (seen in CI: the sink 28 -> 29 private after 10,000
/// Condition cycles, with every shared mapping the same).
fn assert_maps(before: &Maps, after: &Maps, slack: usize, what: &str) {
    assert_eq!(
        before.shared, after.shared,
        "{what}: the shared mappings differ"
    );
    assert!(
        after.private <= before.private + slack + PRIVATE_MAPS_NOISE
            && after.private + PRIVATE_MAPS_NOISE >= before.private,
        "{what}: private mappings {} -> {}",
        before.private,
        after.private
    );
}

/// (ppid, state) of every process.
fn process_table() -> BTreeMap<u32, (u32, char)> {
    let mut table = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        table.insert(pid, (ppid, state));
    }
    table
}

/// (live descendants, zombie descendants) of this process.
fn descendants() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let table = process_table();
    let mut live = BTreeSet::new();
    let mut zombies = BTreeSet::new();
    let mut frontier = vec![std::process::id()];
    while let Some(parent) = frontier.pop() {
        for (&pid, &(ppid, state)) in &table {
            if ppid == parent {
                if state == 'Z' {
                    zombies.insert(pid);
                } else {
                    live.insert(pid);
                }
                frontier.push(pid);
            }
        }
    }
    (live, zombies)
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct Snapshot {
    fds: usize,
    fd_table: BTreeMap<u32, String>,
    maps: Maps,
    live_children: BTreeSet<u32>,
    zombies: BTreeSet<u32>,
}

/// Mappings a threaded workload may add for good, independent of how many
/// cycles ran: glibc gives threads their own malloc arenas (up to 8 per
/// core, two mappings each) and caches exited threads' stacks (up to 40 MiB,
/// two mappings each).
const MAPS_SLACK: usize = 100;

/// A snapshot once asynchronous teardown has finished: two equal snapshots
/// 150 ms apart.
fn settled() -> Snapshot {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = snapshot();
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let now = snapshot();
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Panics unless `after` is `before` again: the same descriptors, children
/// and shared mappings, and private mappings within `slack` (see
/// [`assert_maps`]).
fn assert_same(before: &Snapshot, after: &Snapshot, slack: usize, what: &str) {
    assert_maps(&before.maps, &after.maps, slack, what);
    assert_eq!(
        Snapshot {
            maps: before.maps.clone(),
            ..after.clone()
        },
        *before,
        "{what}: leaked"
    );
}

fn snapshot() -> Snapshot {
    let (live_children, zombies) = descendants();
    Snapshot {
        fds: fd_count(),
        fd_table: fd_table(),
        maps: maps_of("self"),
        live_children,
        zombies,
    }
}

/// Every kind of object that travels between processes.
#[derive(Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // one at a time, moved once
enum Obj {
    Queue(Queue<u64>),
    Joinable(JoinableQueue<u64>),
    Simple(SimpleQueue<u64>),
    Conn(Connection<u8, u8>),
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    Event(Event),
    Condition(Condition),
    Barrier(Barrier),
    Value(Value<u64>),
    Array(Array<u64>),
    Shm(SharedMemory),
    /// Asks the sink for its descriptor count.
    Probe,
    Stop,
}

const KINDS: [&str; 13] = [
    "Queue",
    "JoinableQueue",
    "SimpleQueue",
    "Pipe/Connection",
    "Lock",
    "RLock",
    "Semaphore",
    "Event",
    "Condition",
    "Barrier",
    "Value",
    "Array",
    "SharedMemory",
];

/// Makes one object of kind `k`, touching it the way a user would. Returns
/// whatever the parent must keep until the sink acknowledges (the other end
/// of a pipe), and the name of a segment to unlink afterwards.
fn make(k: usize) -> (Obj, Option<Connection<u8, u8>>, Option<SharedMemory>) {
    match k {
        0 => {
            let q = Queue::new().unwrap();
            q.put(1).unwrap();
            (Obj::Queue(q), None, None)
        }
        1 => {
            let q = JoinableQueue::new().unwrap();
            q.put(1).unwrap();
            (Obj::Joinable(q), None, None)
        }
        2 => {
            let q = SimpleQueue::new().unwrap();
            q.put(1).unwrap();
            (Obj::Simple(q), None, None)
        }
        3 => {
            let (a, b) = Pipe::new::<u8, u8>().unwrap();
            a.send(1).unwrap();
            (Obj::Conn(b), Some(a), None)
        }
        4 => {
            let l = Lock::new().unwrap();
            drop(l.acquire());
            (Obj::Lock(l), None, None)
        }
        5 => {
            let l = RLock::new().unwrap();
            drop(l.acquire());
            (Obj::RLock(l), None, None)
        }
        6 => {
            let s = Semaphore::new(2).unwrap();
            drop(s.acquire());
            (Obj::Semaphore(s), None, None)
        }
        7 => {
            let e = Event::new().unwrap();
            e.set();
            (Obj::Event(e), None, None)
        }
        8 => {
            let c = Condition::new().unwrap();
            c.acquire().notify_all();
            (Obj::Condition(c), None, None)
        }
        9 => (Obj::Barrier(Barrier::new(2).unwrap()), None, None),
        10 => {
            let v = Value::new(7u64).unwrap();
            v.set(8);
            (Obj::Value(v), None, None)
        }
        11 => {
            let a = Array::<u64>::new(16).unwrap();
            a.set(3, 4).unwrap();
            (Obj::Array(a), None, None)
        }
        12 => {
            let s = SharedMemory::create(None, 4096).unwrap();
            s.write_at(0, b"leak").unwrap();
            let keep = SharedMemory::attach(s.name()).unwrap();
            (Obj::Shm(s), None, Some(keep))
        }
        _ => unreachable!(),
    }
}

/// The long-lived child: receives objects, uses them a little, drops them,
/// and acknowledges each (with its descriptor count when probed).
fn sink(conn: Connection<u64, Obj>) {
    loop {
        // One line, not a backtrace, when the parent is gone (it failed an
        // assertion): the parent's message stays the last thing in the log.
        let obj = match conn.recv() {
            Ok(obj) => obj,
            Err(e) => {
                eprintln!("leaks sink: stopping, the parent's connection says: {e}");
                std::process::exit(1);
            }
        };
        let reply = match obj {
            Obj::Stop => return,
            Obj::Probe => fd_count() as u64,
            Obj::Queue(q) => q.get().unwrap(),
            Obj::Joinable(q) => {
                let v = q.get().unwrap();
                q.task_done().unwrap();
                v
            }
            Obj::Simple(q) => q.get().unwrap(),
            Obj::Conn(c) => u64::from(c.recv().unwrap()),
            Obj::Value(v) => v.get(),
            Obj::Array(a) => a.get(3).unwrap(),
            Obj::Shm(s) => {
                let mut buf = [0u8; 4];
                s.read_at(0, &mut buf).unwrap();
                assert_eq!(&buf, b"leak");
                1
            }
            Obj::Event(e) => u64::from(e.is_set()),
            other => {
                drop(other);
                1
            }
        };
        conn.send(reply).unwrap();
    }
}

fn noop(_x: u64) {}

#[test]
fn objects_and_process_starts_leak_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cycles = env_count("LEAK_CYCLES", 10_000);
    let starts = env_count("LEAK_STARTS", 1_000);
    bounded(LIMIT * 10, move || {
        let (conn, theirs) = Pipe::new::<Obj, u64>().unwrap();
        let child = Process::new(sink, (theirs,));
        child.start().unwrap();
        let sink_pid = child.pid().unwrap().to_string();
        // The sink's descriptor count (it counts them itself) and its
        // mappings (read here while it waits for the next message).
        let probe = || {
            conn.send(Obj::Probe).unwrap();
            let fds = conn.recv_timeout(Duration::from_secs(30)).unwrap();
            (fds, maps_of(&sink_pid))
        };
        // Reserved up front: growing it later could add a mapping of its own.
        let mut created_names = Vec::with_capacity(cycles + KINDS.len());
        let cycle = |k: usize, names: &mut Vec<String>| {
            let (obj, keep, shm) = make(k);
            conn.send(obj).unwrap();
            conn.recv_timeout(Duration::from_secs(30)).unwrap();
            drop(keep);
            if let Some(shm) = shm {
                names.push(shm.name().to_owned());
                shm.unlink().unwrap();
            }
        };
        // Warm up: the first of each kind may start the tracker or open a
        // connection to it, once per process.
        for k in 0..KINDS.len() {
            cycle(k, &mut created_names);
        }
        for (k, kind) in KINDS.iter().enumerate() {
            let before = snapshot();
            let child_before = probe();
            let rss = rss_kib();
            let t = Instant::now();
            for _ in 0..cycles {
                cycle(k, &mut created_names);
            }
            let took = t.elapsed();
            let after = snapshot();
            let child_after = probe();
            eprintln!(
                "leaks[{}]: {cycles} cycles in {took:.1?}; fds {} -> {}, maps {} -> {}, \
                 sink fds {} -> {}, sink maps {} -> {}, VmRSS {rss} -> {} KiB",
                kind,
                before.fds,
                after.fds,
                before.maps.total(),
                after.maps.total(),
                child_before.0,
                child_after.0,
                child_before.1.total(),
                child_after.1.total(),
                rss_kib(),
            );
            assert_same(&before, &after, 0, &format!("{kind}: this process"));
            assert_maps(
                &child_before.1,
                &child_after.1,
                0,
                &format!("{kind}: the sink"),
            );
            assert_eq!(
                child_before.0, child_after.0,
                "{}: the sink leaked descriptors",
                kind
            );
        }
        let leftover: Vec<_> = created_names
            .iter()
            .filter(|n| std::path::Path::new("/dev/shm").join(n).exists())
            .collect();
        assert!(
            leftover.is_empty(),
            "{} of {} segments left in /dev/shm, e.g. {:?}",
            leftover.len(),
            created_names.len(),
            leftover.first()
        );
        conn.send(Obj::Stop).unwrap();
        assert_eq!(
            child.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(0)
        );

        // Process starts, joined: the fork server's children and re-executed
        // (Spawn) ones, which are this process's own children.
        for (method, n) in [
            (StartMethod::ForkServer, starts),
            (StartMethod::Spawn, starts / 20),
        ] {
            // Warm-up start (the fork server is started on first use).
            let p = get_context(method).process(noop, (0,));
            p.start().unwrap();
            p.join().unwrap();
            let before = snapshot();
            let rss = rss_kib();
            let t = Instant::now();
            for i in 0..n {
                let p = get_context(method).process(noop, (i as u64,));
                p.start().unwrap();
                assert_eq!(
                    p.join_timeout(Duration::from_secs(30)).unwrap(),
                    Some(0),
                    "start {i}"
                );
            }
            let took = t.elapsed();
            let after = snapshot();
            eprintln!(
                "leaks[{method:?} starts]: {n} in {took:.1?}; fds {} -> {}, zombies {} -> {}, VmRSS {rss} -> {} KiB",
                before.fds,
                after.fds,
                before.zombies.len(),
                after.zombies.len(),
                rss_kib(),
            );
            assert_same(&before, &after, 0, &format!("{method:?} process starts"));
        }

        // Pools and executors created, used and dropped (their workers and
        // monitor threads end), and authenticated Listener/Client pairs.
        let pools = env_count("LEAK_POOLS", 200);
        let run_pool = || {
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.map(square, 0..20u64).unwrap()[19], 361);
        };
        let run_executor = || {
            let ex = Executor::new(2).unwrap();
            let f = ex.submit(square, (9u64,)).unwrap();
            assert_eq!(f.result_timeout(Duration::from_secs(30)).unwrap(), 81);
            ex.shutdown(true, false);
        };
        let run_listener = || {
            let listener = Listener::<u64, u64>::bind("127.0.0.1:0", Some(b"key")).unwrap();
            let address = listener.address().clone();
            let client = std::thread::spawn(move || {
                let c = Client::connect::<u64, u64>(address, Some(b"key")).unwrap();
                c.send(5).unwrap();
                c.recv().unwrap()
            });
            let conn = listener.accept_timeout(Duration::from_secs(30)).unwrap();
            let v = conn.recv_timeout(Duration::from_secs(30)).unwrap();
            conn.send(v + 1).unwrap();
            assert_eq!(client.join().unwrap(), 6);
        };
        let cases: [(&str, usize, &dyn Fn()); 3] = [
            ("Pool", pools, &run_pool),
            ("Executor", pools, &run_executor),
            ("Listener/Client", pools * 10, &run_listener),
        ];
        for (name, n, run) in cases {
            run();
            let before = settled();
            let rss = rss_kib();
            let t = Instant::now();
            for _ in 0..n {
                run();
            }
            let took = t.elapsed();
            // Pool workers exit asynchronously after the drop.
            let after = settled();
            eprintln!(
                "leaks[{name}]: {n} in {took:.1?}; fds {} -> {}, maps {} -> {}, live children {} -> {}, VmRSS {rss} -> {} KiB",
                before.fds,
                after.fds,
                before.maps.total(),
                after.maps.total(),
                before.live_children.len(),
                after.live_children.len(),
                rss_kib(),
            );
            // These start threads here (monitor, result handler, client), and
            // glibc's arenas and stack cache add a bounded number of
            // mappings that stay; a mapping leaked per cycle would exceed
            // the bound (n ≥ 200 by default).
            assert_same(&before, &after, MAPS_SLACK, name);
        }
    });
}

/// Dropping a Pool or an Executor joins its threads, so every descriptor it
/// opened (worker queues, pidfds, the monitor's wake pipe) is closed when
/// `drop` returns, not a monitor tick later.
#[test]
fn a_dropped_pool_has_closed_its_descriptors_when_drop_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    bounded(LIMIT, || {
        // The process-wide helpers (fork server, tracker) start on first
        // use: let them exist before the baseline.
        drop(Pool::new(2).unwrap());
        let before = fd_table();
        for round in 0..20 {
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
            drop(pool);
            assert_eq!(fd_table(), before, "round {round}: Pool");
            let ex = Executor::new(2).unwrap();
            let f = ex.submit(square, (3u64,)).unwrap();
            assert_eq!(f.result_timeout(Duration::from_secs(30)).unwrap(), 9);
            drop(f);
            drop(ex);
            assert_eq!(fd_table(), before, "round {round}: Executor");
        }
    });
}

// ---------------------------------------------------------------------------
// RLIMIT_NOFILE = 256 with 100 queues alive, in a child started for this so
// the test binary keeps its own limit.

fn fill(queues: Vec<Queue<u64>>, base: u64) {
    for (i, q) in queues.iter().enumerate() {
        q.put(base + i as u64).unwrap();
    }
}

fn square(x: u64) -> u64 {
    x * x
}

fn echo(conn: Connection<Vec<u8>, Vec<u8>>) {
    while let Ok(v) = conn.recv() {
        conn.send(v).unwrap();
    }
}

/// Runs under the low limit; every failure is a panic (exit code 1).
fn under_low_limit(report: Queue<String>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(256),
            maximum: Some(256),
        },
    )
    .unwrap();
    assert_eq!(getrlimit(Resource::Nofile).current, Some(256));
    let queues: Vec<Queue<u64>> = (0..100).map(|_| Queue::new().unwrap()).collect();
    let fds_with_queues = fd_count();
    // Four children fill 25 queues each.
    let ps: Vec<Process> = (0..4)
        .map(|c| Process::new(fill, (queues[c * 25..(c + 1) * 25].to_vec(), c as u64 * 25)))
        .collect();
    for p in &ps {
        p.start().unwrap();
    }
    for p in &ps {
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    }
    for (i, q) in queues.iter().enumerate() {
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), i as u64);
    }
    // A pipe to a child, with a message past the ring (socket path).
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    let p = Process::new(echo, (b,));
    p.start().unwrap();
    for size in [0, 10, 100_000] {
        a.send(vec![5; size]).unwrap();
        assert_eq!(
            a.recv_timeout(Duration::from_secs(10)).unwrap(),
            vec![5; size]
        );
    }
    drop(a);
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
    // A pool, sync objects and a named segment.
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..100u64).unwrap()[99], 99 * 99);
    drop(pool);
    let lock = Lock::new().unwrap();
    drop(lock.acquire());
    let event = Event::new().unwrap();
    event.set();
    let shm = SharedMemory::create(None, 4096).unwrap();
    shm.unlink().unwrap();
    // Creating objects until the limit bites fails cleanly, not by a panic
    // or abort inside the library, and frees what it took.
    let mut more = Vec::new();
    let err = loop {
        match Queue::<u64>::new() {
            Ok(q) => more.push(q),
            Err(e) => break e,
        }
        assert!(more.len() < 1000, "the limit never bit");
    };
    let created = more.len();
    // Starting a process or making a pipe now fails with an error (or
    // succeeds), never a panic or a hang.
    let p = Process::new(noop, (0,));
    let start = match p.start() {
        Ok(()) => {
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
            "succeeded".to_owned()
        }
        Err(e) => format!("failed: {e}"),
    };
    let pipe = match Pipe::new::<u8, u8>() {
        Ok(_) => "succeeded".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    drop(more);
    let q = Queue::<u64>::new().expect("a queue once descriptors are free again");
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    report
        .put(format!(
            "100 queues = {fds_with_queues} fds of 256; {created} more queues until {err}; \
             at the limit a process start {start}, a pipe {pipe}; all worked again once freed"
        ))
        .unwrap();
}

#[test]
fn low_descriptor_limit_with_100_queues_alive() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    bounded(LIMIT, || {
        let report: Queue<String> = Queue::new().unwrap();
        let p = Process::new(under_low_limit, (report.clone(),));
        p.start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(50)).unwrap(), Some(0));
        let line = report.get_timeout(Duration::from_secs(5)).unwrap();
        eprintln!("leaks[RLIMIT_NOFILE=256]: {line}");
    });
}
