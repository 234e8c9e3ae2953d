//! Fault tests of the remote Pool and Executor (issue 11), each against a
//! real `redis-server` the test starts, with workers that re-execute this
//! test binary.
//!
//! Every test checks a history: the results of a map compared with the
//! inputs (0 lost, 0 duplicated, in input order), and a log of the runs
//! themselves (each task appends `S <index> <pid>` before and
//! `E <index> <pid>` after its work to a file opened `O_APPEND`), so a
//! task that ran twice is seen even though its result is seen once. The
//! counts are printed (`--nocapture`) for the closing note.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiprocess::remote::{BackendError, Cluster, LocalServer, Pool, build_id};
use multiprocess::{ExecutorError, PoolError, StartMethod, TaskError};

multiprocess::init_before_main!();

const LEASE: Duration = Duration::from_millis(300);
/// The input whose task aborts its worker.
const POISON: u64 = 77;
/// Bound of every wait for a map's results.
const RESULTS: Duration = Duration::from_secs(60);

/// A task's input: the run log's path, the input's index, and how long
/// the task sleeps (ms).
type Item = (String, u64, u64);

fn note(log: &str, tag: char, i: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the run log");
    f.write_all(format!("{tag} {i} {}\n", std::process::id()).as_bytes())
        .expect("append to the run log");
}

/// Logs its run and returns its index.
fn logged(item: Item) -> u64 {
    note(&item.0, 'S', item.1);
    if item.2 > 0 {
        std::thread::sleep(Duration::from_millis(item.2));
    }
    note(&item.0, 'E', item.1);
    item.1
}

/// [`logged`], but input [`POISON`] aborts the worker.
fn poisoned(item: Item) -> u64 {
    if item.1 == POISON {
        note(&item.0, 'S', item.1);
        std::process::abort();
    }
    logged(item)
}

fn square(x: u64) -> u64 {
    x * x
}

multiprocess::remote_task!(logged, poisoned, square);

fn items(log: &str, n: u64, sleep_ms: u64) -> Vec<Item> {
    (0..n).map(|i| (log.to_owned(), i, sleep_ms)).collect()
}

fn cluster(url: &str) -> Cluster {
    Cluster::builder(url).lease(LEASE).connect().unwrap()
}

// ---------------------------------------------------------------------
// The run log and the history check.

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("mp-remote-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The run log: which pids started and ended each index.
#[derive(Default)]
struct Runs {
    started: HashMap<u64, Vec<u32>>,
    ended: HashMap<u64, Vec<u32>>,
}

impl Runs {
    fn read(log: &str) -> Runs {
        let mut runs = Runs::default();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(tag), Some(i), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(i), Ok(pid)) = (i.parse::<u64>(), pid.parse::<u32>()) else {
                continue;
            };
            match tag {
                "S" => runs.started.entry(i).or_default().push(pid),
                "E" => runs.ended.entry(i).or_default().push(pid),
                _ => {}
            }
        }
        runs
    }

    fn starts(&self) -> usize {
        self.started.values().map(Vec::len).sum()
    }

    fn ends(&self) -> usize {
        self.ended.values().map(Vec::len).sum()
    }

    fn ran_by(&self, pid: u32) -> usize {
        self.started
            .values()
            .flatten()
            .filter(|p| **p == pid)
            .count()
    }

    /// Indices `pid` started and has not ended.
    fn in_flight(&self, pid: u32) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .started
            .iter()
            .filter(|(i, pids)| {
                let s = pids.iter().filter(|p| **p == pid).count();
                let e = self
                    .ended
                    .get(i)
                    .map_or(0, |e| e.iter().filter(|p| **p == pid).count());
                s > e
            })
            .map(|(i, _)| *i)
            .collect();
        v.sort();
        v
    }

    fn ended_by_other(&self, i: u64, pid: u32) -> bool {
        self.ended
            .get(&i)
            .is_some_and(|pids| pids.iter().any(|p| *p != pid))
    }
}

/// Checks the results of a map over `0..n` (each task returns its
/// index): none lost, none duplicated, in input order, every index run
/// to its end at least once. Prints the counts.
fn check_history(test: &str, n: u64, results: &[u64], runs: &Runs) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in results {
        *seen.entry(*r).or_default() += 1;
    }
    let lost = (0..n).filter(|i| !seen.contains_key(i)).count();
    let duplicated: usize = seen.values().map(|c| c - 1).sum();
    let in_order = results.iter().copied().eq(0..n);
    let not_run = (0..n).filter(|i| !runs.ended.contains_key(i)).count();
    let reran = runs.started.values().filter(|p| p.len() > 1).count();
    eprintln!(
        "[{test}] inputs={n} results={} lost={lost} duplicated={duplicated} in_order={in_order} \
         runs_started={} runs_ended={} inputs_started_twice_or_more={reran}",
        results.len(),
        runs.starts(),
        runs.ends(),
    );
    assert_eq!(lost, 0, "{test}: results lost");
    assert_eq!(duplicated, 0, "{test}: results duplicated");
    assert_eq!(results.len() as u64, n, "{test}: result count");
    assert!(in_order, "{test}: results out of input order");
    assert_eq!(
        not_run, 0,
        "{test}: inputs with a result but no finished run"
    );
}

// ---------------------------------------------------------------------
// Processes.

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let _ = rustix::process::kill_process(pid, sig);
}

use rustix::process::Signal;

/// Workers started by hand (so their pids are known); killed on drop.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Procs {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

    /// Starts a worker of `pool` (in network namespace `netns`, if any).
    fn worker(&mut self, url: &str, pool: &str, netns: Option<&str>) -> u32 {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .env("MULTIPROCESS_WORKER", url)
            .env("MULTIPROCESS_WORKER_POOL", pool)
            .env("MULTIPROCESS_WORKER_NAMESPACE", "default")
            .env("MULTIPROCESS_WORKER_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker");
        let pid = child.id();
        self.0.push(child);
        pid
    }

    fn kill(&mut self, pid: u32) {
        if let Some(k) = self.0.iter().position(|c| c.id() == pid) {
            let mut c = self.0.swap_remove(k);
            signal(pid, Signal::KILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            signal(c.id(), Signal::CONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Waits until every pid in `pids` is a live worker of `pool`.
fn wait_workers(pool: &Pool, pids: &[u32]) {
    let ok = eventually(Duration::from_secs(15), || {
        let live: HashSet<u32> = pool
            .workers()
            .unwrap_or_default()
            .iter()
            .map(|w| w.pid)
            .collect();
        pids.iter().all(|p| live.contains(p))
    });
    assert!(ok, "workers {pids:?} did not come up: {:?}", pool.workers());
}

/// Freezes `pid` (SIGSTOP) at a moment it is inside a task; the indices
/// it was running. Panics if it never is.
fn stop_mid_task(pid: u32, log: &str) -> Vec<u64> {
    let ok = eventually(Duration::from_secs(10), || Runs::read(log).ran_by(pid) > 0);
    assert!(ok, "worker {pid} ran nothing");
    for attempt in 0..200 {
        signal(pid, Signal::STOP);
        std::thread::sleep(Duration::from_millis(5));
        let inflight = Runs::read(log).in_flight(pid);
        if !inflight.is_empty() {
            return inflight;
        }
        signal(pid, Signal::CONT);
        std::thread::sleep(Duration::from_millis(3 + attempt % 7));
    }
    panic!("worker {pid} was never caught inside a task");
}

// ---------------------------------------------------------------------
// A minimal RESP client, to look at the server's keys as an operator
// would (the `redis` crate is not a dev-dependency).

#[derive(Debug, PartialEq)]
enum Resp {
    Nil,
    Int(i64),
    Text(String),
    Error(String),
    Array(Vec<Resp>),
}

fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    match kind {
        "+" => Resp::Text(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Resp::Nil;
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).unwrap();
            buf.truncate(n as usize);
            Resp::Text(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Resp::Nil;
            }
            Resp::Array((0..n).map(|_| read_resp(r)).collect())
        }
        other => panic!("unexpected RESP type {other:?}"),
    }
}

fn redis(port: u16, args: &[&str]) -> Resp {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).unwrap();
    read_resp(&mut BufReader::new(s))
}

fn keys(port: u16, pattern: &str) -> Vec<String> {
    match redis(port, &["KEYS", pattern]) {
        Resp::Array(v) => v
            .into_iter()
            .filter_map(|k| match k {
                Resp::Text(t) => Some(t),
                _ => None,
            })
            .collect(),
        other => panic!("KEYS: {other:?}"),
    }
}

fn int(r: Resp) -> i64 {
    match r {
        Resp::Int(i) => i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// `XLEN` and the pending count of the pool's task stream.
fn task_stream(port: u16, pool: &str) -> (i64, i64) {
    let key = format!("mp:{{default:{pool}}}:t:{}", build_id().short());
    let len = int(redis(port, &["XLEN", &key]));
    let pending = match redis(port, &["XPENDING", &key, "w"]) {
        Resp::Array(v) => match v.into_iter().next() {
            Some(Resp::Int(n)) => n,
            other => panic!("XPENDING: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    };
    (len, pending)
}

// ---------------------------------------------------------------------
// 1. kill -9

#[test]
fn kill_9_mid_chunk_redelivers_the_chunk() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("kill9").unwrap();
    let dir = Scratch::new("kill9");
    let log = dir.file("runs");
    let mut procs = Procs::default();
    for _ in 0..3 {
        procs.worker(server.url(), "kill9", None);
    }
    wait_workers(&pool, &procs.pids());
    let n = 240;
    let r = pool
        .with_chunksize(4)
        .map_async(logged, items(&log, n, 20))
        .unwrap();
    let victim = procs.pids()[0];
    let inflight = stop_mid_task(victim, &log);
    procs.kill(victim);
    let t = Instant::now();
    let results = r.get_timeout(RESULTS).unwrap();
    eprintln!(
        "[kill9] killed worker {victim} inside inputs {inflight:?}; map done {:?} later",
        t.elapsed()
    );
    let runs = Runs::read(&log);
    for i in &inflight {
        assert!(
            runs.ended_by_other(*i, victim),
            "input {i} of the killed worker's chunk was not run again"
        );
    }
    check_history("kill9", n, &results, &runs);
}

// ---------------------------------------------------------------------
// 2. SIGSTOP for 2x the lease, then SIGCONT

#[test]
fn frozen_worker_loses_its_lease_and_its_late_result_is_dropped() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("freeze").unwrap();
    let dir = Scratch::new("freeze");
    let log = dir.file("runs");
    let mut procs = Procs::default();
    for _ in 0..3 {
        procs.worker(server.url(), "freeze", None);
    }
    wait_workers(&pool, &procs.pids());
    let n = 240;
    let r = pool
        .with_chunksize(4)
        .map_async(logged, items(&log, n, 20))
        .unwrap();
    let victim = procs.pids()[0];
    let inflight = stop_mid_task(victim, &log);
    std::thread::sleep(LEASE * 2);
    // The lease is over: another worker takes the chunk over.
    let taken = eventually(Duration::from_secs(10), || {
        let runs = Runs::read(&log);
        inflight.iter().all(|i| runs.ended_by_other(*i, victim))
    });
    signal(victim, Signal::CONT);
    assert!(taken, "the frozen worker's chunk was not reclaimed");
    let results = r.get_timeout(RESULTS).unwrap();
    // The thawed worker finishes the tasks it was inside; its results
    // must not reach the caller a second time.
    let finished = eventually(Duration::from_secs(10), || {
        let runs = Runs::read(&log);
        inflight
            .iter()
            .all(|i| runs.ended.get(i).is_some_and(|p| p.contains(&victim)))
    });
    assert!(finished, "the thawed worker did not finish its tasks");
    let runs = Runs::read(&log);
    eprintln!(
        "[freeze] froze worker {victim} for {:?} inside inputs {inflight:?}; each finished by it \
         and by another worker",
        LEASE * 2
    );
    check_history("freeze", n, &results, &runs);
    // The thawed worker still serves, and nothing comes twice.
    std::thread::sleep(LEASE);
    let log2 = dir.file("runs2");
    let again = pool
        .with_chunksize(1)
        .map_async(logged, items(&log2, 60, 10))
        .unwrap()
        .get_timeout(RESULTS)
        .unwrap();
    let runs2 = Runs::read(&log2);
    check_history("freeze-after", 60, &again, &runs2);
    assert!(
        runs2.ran_by(victim) > 0,
        "the thawed worker took no work afterwards"
    );
}

// ---------------------------------------------------------------------
// 3. A poison task

#[test]
fn poison_task_gives_worker_lost_after_max_deliveries() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("poison").unwrap();
    pool.spawn_local_workers(3).unwrap();
    let before: HashSet<u32> = pool.worker_pids().into_iter().collect();
    let dir = Scratch::new("poison");
    let log = dir.file("runs");
    let n = 200;
    let mut it = pool.imap(poisoned, items(&log, n, 5)).unwrap();
    let mut ok = Vec::new();
    let mut lost = None;
    let t = Instant::now();
    while let Some(r) = it.next_timeout(RESULTS).unwrap() {
        let i = ok.len() as u64 + u64::from(lost.is_some());
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                assert_eq!(i, POISON, "input {i} failed: {e:?}");
                lost = Some(e);
            }
        }
    }
    let runs = Runs::read(&log);
    let killers = runs.started.get(&POISON).cloned().unwrap_or_default();
    eprintln!(
        "[poison] input {POISON}: {lost:?} after {:?}; it ran {} times (pids {killers:?})",
        t.elapsed(),
        killers.len()
    );
    assert_eq!(lost, Some(TaskError::WorkerLost { deliveries: 3 }));
    assert_eq!(
        killers.len(),
        3,
        "the poison task ran {} times",
        killers.len()
    );
    let expected: Vec<u64> = (0..n).filter(|i| *i != POISON).collect();
    let got: HashSet<u64> = ok.iter().copied().collect();
    eprintln!(
        "[poison] inputs={n} ok_results={} lost={} duplicated={} in_order={} worker_lost=1",
        ok.len(),
        expected.iter().filter(|i| !got.contains(i)).count(),
        ok.len() - got.len(),
        ok == expected
    );
    assert_eq!(ok, expected, "every other input's result, once, in order");
    let not_run = expected
        .iter()
        .filter(|i| !runs.ended.contains_key(i))
        .count();
    assert_eq!(not_run, 0, "inputs with a result but no finished run");
    // The supervisor replaced the three dead workers.
    let replaced = eventually(Duration::from_secs(15), || {
        let now = pool.worker_pids();
        now.len() == 3 && now.iter().all(|p| !killers.contains(p))
    });
    let now: HashSet<u32> = pool.worker_pids().into_iter().collect();
    eprintln!("[poison] workers before {before:?}, after {now:?}");
    assert!(
        replaced,
        "the dead local workers were not replaced: {now:?}"
    );
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

// ---------------------------------------------------------------------
// 4. The caller killed

/// A caller in a child process: submits long work, says so, and waits to
/// be killed.
fn doomed_caller(url: String, log: String, ready: String) {
    let c = Cluster::builder(&url)
        .lease(LEASE)
        .key_ttl(Duration::from_secs(1))
        .connect()
        .unwrap();
    let pool = c.pool("orphan").unwrap();
    let r = pool
        .with_chunksize(1)
        .map_async(logged, items(&log, 400, 20))
        .unwrap();
    std::fs::write(&ready, "submitted").unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(r);
}

#[test]
fn killed_caller_keys_expire_and_workers_go_idle() {
    let server = LocalServer::start().unwrap();
    let port = server.port();
    let c = cluster(server.url());
    let pool = c.pool("orphan").unwrap();
    let dir = Scratch::new("orphan");
    let log = dir.file("runs");
    let ready = dir.file("ready");
    let mut procs = Procs::default();
    for _ in 0..2 {
        procs.worker(server.url(), "orphan", None);
    }
    wait_workers(&pool, &procs.pids());
    drop(pool);
    let p = multiprocess::Process::new(
        doomed_caller,
        (server.url().to_owned(), log.clone(), ready.clone()),
    );
    p.start().unwrap();
    let started = eventually(Duration::from_secs(15), || {
        std::path::Path::new(&ready).exists() && Runs::read(&log).ends() >= 10
    });
    assert!(started, "the caller's work did not start");
    let prefix = "mp:{default:orphan}:";
    for kind in ["l", "r", "d"] {
        assert!(
            !keys(port, &format!("{prefix}{kind}:*")).is_empty(),
            "no {kind}: key while the caller lives"
        );
    }
    p.kill().unwrap();
    assert!(p.join_timeout(Duration::from_secs(10)).unwrap().is_some());
    let killed = Instant::now();
    let gone = eventually(Duration::from_secs(10), || {
        ["l", "r", "d"]
            .iter()
            .all(|k| keys(port, &format!("{prefix}{k}:*")).is_empty())
    });
    let keys_gone_after = killed.elapsed();
    assert!(
        gone,
        "the dead caller's keys stayed: {:?}",
        keys(port, &format!("{prefix}*"))
    );
    let idle = eventually(Duration::from_secs(10), || {
        task_stream(port, "orphan") == (0, 0)
    });
    let idle_after = killed.elapsed();
    assert!(
        idle,
        "the task stream did not drain: (XLEN, pending) = {:?}",
        task_stream(port, "orphan")
    );
    let ran = Runs::read(&log).ends();
    std::thread::sleep(LEASE * 2);
    let ran_later = Runs::read(&log).ends();
    eprintln!(
        "[orphan] caller killed: its keys gone after {keys_gone_after:?}, task stream empty \
         (XLEN 0, XPENDING 0) after {idle_after:?}; {ran} of 400 tasks ran, {} more after",
        ran_later - ran
    );
    assert_eq!(
        ran, ran_later,
        "workers kept running the dead caller's tasks"
    );
    assert!(ran < 400, "every task ran: nothing was dropped");
}

// ---------------------------------------------------------------------
// 5. Worker hosts in network namespaces

/// Network namespaces joined to this one by veth pairs; deleted on drop.
struct Hosts {
    names: Vec<String>,
    subnets: Vec<u32>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Hosts {
    fn create(n: usize) -> Hosts {
        let pid = std::process::id();
        let mut hosts = Hosts {
            names: Vec::new(),
            subnets: Vec::new(),
        };
        for i in 0..n {
            let name = format!("mpfault{pid}h{i}");
            let subnet = 100 + (pid % 50) * 3 + i as u32;
            let outer = format!("mpf{}{i}a", pid % 100_000);
            let inner = format!("mpf{}{i}b", pid % 100_000);
            let here = format!("10.211.{subnet}.1/24");
            let there = format!("10.211.{subnet}.2/24");
            assert!(ip(&["netns", "add", &name]), "ip netns add {name}");
            hosts.names.push(name.clone());
            hosts.subnets.push(subnet);
            let ok = ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]) && ip(&["link", "set", &inner, "netns", &name])
                && ip(&["addr", "add", &here, "dev", &outer])
                && ip(&["link", "set", &outer, "up"])
                && ip(&[
                    "netns", "exec", &name, "ip", "addr", "add", &there, "dev", &inner,
                ])
                && ip(&["netns", "exec", &name, "ip", "link", "set", &inner, "up"])
                && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
            assert!(ok, "cannot wire network namespace {name}");
        }
        hosts
    }

    fn server_ip(&self, i: usize) -> String {
        format!("10.211.{}.1", self.subnets[i])
    }

    /// Cuts host `i` off the server (or heals it).
    fn blackhole(&self, i: usize, on: bool) {
        let target = format!("{}/32", self.server_ip(i));
        let verb = if on { "add" } else { "del" };
        assert!(ip(&[
            "netns",
            "exec",
            &self.names[i],
            "ip",
            "route",
            verb,
            "blackhole",
            &target
        ]));
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair wired into it.
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

#[test]
fn worker_host_cut_off_and_healed() {
    let root = rustix::process::getuid().is_root();
    if !root || !ip(&["netns", "list"]) {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let server = LocalServer::builder().bind("0.0.0.0").start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("hosts").unwrap();
    let hosts = Hosts::create(3);
    let mut procs = Procs::default();
    let mut pids = Vec::new();
    for i in 0..3 {
        let url = format!("redis://{}:{}/0", hosts.server_ip(i), server.port());
        pids.push(procs.worker(&url, "hosts", Some(&hosts.names[i])));
    }
    wait_workers(&pool, &pids);
    let dir = Scratch::new("hosts");
    // Every host serves.
    let log0 = dir.file("runs0");
    let first = pool
        .with_chunksize(1)
        .map_async(logged, items(&log0, 60, 15))
        .unwrap()
        .get_timeout(RESULTS)
        .unwrap();
    let runs0 = Runs::read(&log0);
    check_history("hosts-all-three", 60, &first, &runs0);
    for pid in &pids {
        assert!(
            runs0.ran_by(*pid) > 0,
            "the worker {pid} in its host ran nothing"
        );
    }
    // Cut host 0 off while it runs a task.
    let log = dir.file("runs");
    let n = 300;
    let r = pool
        .with_chunksize(2)
        .map_async(logged, items(&log, n, 20))
        .unwrap();
    let victim = pids[0];
    let inflight = stop_mid_task(victim, &log);
    hosts.blackhole(0, true);
    signal(victim, Signal::CONT);
    let cut = Instant::now();
    let dropped_out = eventually(Duration::from_secs(5), || {
        !pool.worker_pids().contains(&victim)
    });
    assert!(dropped_out, "the cut-off worker still looks alive");
    std::thread::sleep(Duration::from_secs(1));
    hosts.blackhole(0, false);
    let healed = cut.elapsed();
    let results = r.get_timeout(RESULTS).unwrap();
    let runs = Runs::read(&log);
    for i in &inflight {
        assert!(
            runs.ended_by_other(*i, victim),
            "input {i} of the cut-off worker was not reclaimed"
        );
    }
    eprintln!(
        "[hosts] cut worker {victim} off inside inputs {inflight:?}, healed after {healed:?}"
    );
    check_history("hosts-cut-off", n, &results, &runs);
    // Healed: it comes back and serves; its late result never shows.
    let back = eventually(Duration::from_secs(20), || {
        pool.worker_pids().contains(&victim)
    });
    assert!(back, "the healed worker did not come back");
    let log2 = dir.file("runs2");
    let again = pool
        .with_chunksize(1)
        .map_async(logged, items(&log2, 60, 15))
        .unwrap()
        .get_timeout(RESULTS)
        .unwrap();
    let runs2 = Runs::read(&log2);
    check_history("hosts-healed", 60, &again, &runs2);
    assert!(runs2.ran_by(victim) > 0, "the healed worker took no work");
    let late = Runs::read(&log);
    eprintln!(
        "[hosts] inputs finished by the cut-off worker too (late results dropped): {:?}",
        inflight
            .iter()
            .filter(|i| late.ended.get(i).is_some_and(|p| p.contains(&victim)))
            .collect::<Vec<_>>()
    );
    drop(procs);
    drop(hosts);
}

// ---------------------------------------------------------------------
// 6. The server restarted (with and without AOF) and frozen

#[test]
fn server_restart_without_aof_fails_the_map_with_backend_lost() {
    let mut server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("noaof").unwrap();
    pool.spawn_local_workers(2).unwrap();
    let dir = Scratch::new("noaof");
    let log = dir.file("runs");
    let r = pool
        .with_chunksize(2)
        .map_async(logged, items(&log, 300, 20))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || Runs::read(&log)
        .ends()
        >= 20));
    server.restart().unwrap();
    let t = Instant::now();
    let got = r.get_timeout(Duration::from_secs(30));
    eprintln!(
        "[noaof] restart without AOF mid-map: {got:?} after {:?}",
        t.elapsed()
    );
    match got {
        Err(PoolError::Backend(BackendError::Lost(_))) => {}
        other => panic!("expected Backend(Lost), got {other:?}"),
    }
    // The pool goes on on the empty server.
    let log2 = dir.file("runs2");
    let again = pool
        .with_chunksize(1)
        .map_async(logged, items(&log2, 50, 0))
        .unwrap()
        .get_timeout(RESULTS)
        .unwrap();
    check_history("noaof-after", 50, &again, &Runs::read(&log2));
}

#[test]
fn server_restart_with_aof_loses_nothing() {
    let mut server = LocalServer::builder().appendonly(true).start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("aof").unwrap();
    pool.spawn_local_workers(2).unwrap();
    let dir = Scratch::new("aof");
    let log = dir.file("runs");
    let n = 300;
    let r = pool
        .with_chunksize(2)
        .map_async(logged, items(&log, n, 10))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || Runs::read(&log)
        .ends()
        >= 20));
    server.restart().unwrap();
    let t = Instant::now();
    let results = r.get_timeout(RESULTS).unwrap();
    eprintln!(
        "[aof] restart with AOF mid-map: done {:?} later",
        t.elapsed()
    );
    check_history("aof", n, &results, &Runs::read(&log));
}

#[test]
fn server_frozen_for_a_second_then_the_map_completes() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("sigstop").unwrap();
    pool.spawn_local_workers(2).unwrap();
    let dir = Scratch::new("sigstop");
    let log = dir.file("runs");
    let n = 200;
    let r = pool
        .with_chunksize(2)
        .map_async(logged, items(&log, n, 10))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || Runs::read(&log)
        .ends()
        >= 20));
    server.pause().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    server.resume().unwrap();
    let t = Instant::now();
    let results = r.get_timeout(RESULTS).unwrap();
    eprintln!(
        "[sigstop] server frozen 1 s mid-map: done {:?} after the thaw",
        t.elapsed()
    );
    check_history("sigstop", n, &results, &Runs::read(&log));
}

// ---------------------------------------------------------------------
// 7. A client timeout shorter than the server's block

#[test]
fn call_timeout_shorter_than_the_collectors_block() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::builder(server.url())
        .lease(LEASE)
        .call_timeout(Duration::from_millis(50))
        .connect()
        .unwrap();
    let pool = c.pool("short").unwrap();
    // Workers by hand, watched through a cluster with the default
    // timeouts (spawn_local_workers gives up on the first timed-out poll).
    let watcher = cluster(server.url()).pool("short").unwrap();
    let mut procs = Procs::default();
    for _ in 0..2 {
        procs.worker(server.url(), "short", None);
    }
    wait_workers(&watcher, &procs.pids());
    let dir = Scratch::new("short");
    let log = dir.file("runs");
    let n = 500;
    // Slow tasks: the collector's XREAD blocks (100 ms) with nothing to
    // read, longer than the call timeout.
    let r = pool
        .with_chunksize(5)
        .map_async(logged, items(&log, n, 2))
        .unwrap();
    let results = r.get_timeout(RESULTS).unwrap();
    check_history("short-timeout-map", n, &results, &Runs::read(&log));
    let log2 = dir.file("runs2");
    let mut it = pool.imap(logged, items(&log2, 100, 3)).unwrap();
    let mut got = Vec::new();
    while let Some(v) = it.next_timeout(RESULTS).unwrap() {
        got.push(v.unwrap());
    }
    check_history("short-timeout-imap", 100, &got, &Runs::read(&log2));
    // A server freeze of 1.5 s, ten times the XREAD's read timeout (100 ms
    // block + 50 ms): the pending call never hangs and never duplicates.
    // It either completes (the collector's retry opened a new connection,
    // whose handshake waits up to connect_timeout, 2 s, and so outlasted
    // the freeze) or fails with Backend(Timeout) (the retry took an idle
    // connection and timed out again, reads having failed for longer than
    // call_timeout); which one depends on the idle connections at hand.
    let log3 = dir.file("runs3");
    let r = pool
        .with_chunksize(5)
        .map_async(logged, items(&log3, 300, 10))
        .unwrap();
    let going = eventually(Duration::from_secs(10), || Runs::read(&log3).ends() >= 20);
    assert!(going, "the map did not start");
    server.pause().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.resume().unwrap();
    match r.get_timeout(RESULTS) {
        Ok(results) => {
            eprintln!("[short-timeout-freeze-1.5s] the map completed");
            check_history(
                "short-timeout-freeze-1.5s",
                300,
                &results,
                &Runs::read(&log3),
            );
        }
        Err(PoolError::Backend(BackendError::Timeout(e))) => {
            eprintln!("[short-timeout-freeze-1.5s] the map failed with Backend(Timeout({e:?}))");
        }
        Err(other) => panic!("after a 1.5 s freeze: {other:?}"),
    }
    // The pool goes on (a call may still time out while the thawed
    // server catches up: retried).
    let goes_on = (0..10).any(|_| {
        let r = pool
            .apply_async(square, (3u64,))
            .and_then(|r| r.get_timeout(RESULTS));
        matches!(r, Ok(9))
    });
    assert!(goes_on, "the pool did not go on after the freeze");
}

// ---------------------------------------------------------------------
// 8. The executor

#[test]
fn executor_survives_a_killed_worker_and_a_poison_task() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let ex = c.executor("exec").unwrap();
    ex.spawn_local_workers(2).unwrap();
    let dir = Scratch::new("exec");
    let log = dir.file("runs");
    let f = ex.submit(logged, ((log.clone(), 7, 800),)).unwrap();
    let ok = eventually(Duration::from_secs(10), || {
        Runs::read(&log).started.contains_key(&7)
    });
    assert!(ok, "the task did not start");
    let victim = Runs::read(&log).started[&7][0];
    signal(victim, Signal::KILL);
    let t = Instant::now();
    assert_eq!(f.result_timeout(RESULTS).unwrap(), 7);
    let runs = Runs::read(&log);
    eprintln!(
        "[executor] killed worker {victim} inside a future's task; the future resolved {:?} \
         later; the task ran on {:?}",
        t.elapsed(),
        runs.started[&7]
    );
    assert!(runs.ended_by_other(7, victim), "the task was not run again");
    // The executor keeps working.
    let futures: Vec<_> = (100..120u64)
        .map(|i| ex.submit(logged, ((log.clone(), i, 0),)).unwrap())
        .collect();
    for (k, f) in futures.iter().enumerate() {
        assert_eq!(f.result_timeout(RESULTS).unwrap(), 100 + k as u64);
    }
    // A poison task fails only its own future.
    let inputs = [1u64, 2, POISON, 3, 4];
    let futures: Vec<_> = inputs
        .iter()
        .map(|i| ex.submit(poisoned, ((log.clone(), *i, 20),)).unwrap())
        .collect();
    for (i, f) in inputs.iter().zip(&futures) {
        let r = f.result_timeout(RESULTS);
        if *i == POISON {
            eprintln!("[executor] poison future: {r:?}");
            match r {
                Err(ExecutorError::Task(TaskError::WorkerLost { deliveries: 3 })) => {}
                other => panic!("poison future: {other:?}"),
            }
        } else {
            assert_eq!(r.unwrap(), *i);
        }
    }
    assert_eq!(
        ex.submit(square, (9u64,))
            .unwrap()
            .result_timeout(RESULTS)
            .unwrap(),
        81
    );
}

// ---------------------------------------------------------------------
// 9. Fork with a live connection

/// A single-threaded process holding a live connection (a cluster, no
/// pool yet: a pool has threads, and a multi-threaded process refuses to
/// fork) forks a child that uses the server, then uses its own connection.
fn fork_parent(url: String) -> Result<(), String> {
    let c = cluster(&url);
    let c2 = c.clone();
    let url2 = url.clone();
    let child = multiprocess::get_context(StartMethod::Fork).process_closure(move || {
        // The parent's cluster: its idle connection is the parent's, so
        // the child must open its own.
        let p = c2.pool("fork").unwrap();
        let v = p
            .map_async(square, 0..100u64)
            .unwrap()
            .get_timeout(Duration::from_secs(30))
            .unwrap();
        assert_eq!(v, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
        drop(p);
        // A fresh cluster from the same URL.
        let fresh = cluster(&url2);
        let q = fresh.pool("fork").unwrap();
        assert_eq!(q.apply(square, (12u64,)).unwrap(), 144);
    });
    child.start().map_err(|e| format!("fork: {e}"))?;
    let code = child
        .join_timeout(Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    if code != Some(0) {
        return Err(format!("the fork child exited with {code:?}"));
    }
    // The connection opened before the fork still works.
    let pool = c.pool("fork").map_err(|e| e.to_string())?;
    let v = pool
        .map_async(square, 0..100u64)
        .map_err(|e| e.to_string())?
        .get_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    if v != (0..100u64).map(|x| x * x).collect::<Vec<_>>() {
        return Err(format!("wrong results after the fork: {v:?}"));
    }
    Ok(())
}

#[test]
fn fork_child_of_a_connected_process_uses_the_server() {
    let server = LocalServer::start().unwrap();
    let c = cluster(server.url());
    let pool = c.pool("fork").unwrap();
    let mut procs = Procs::default();
    for _ in 0..2 {
        procs.worker(server.url(), "fork", None);
    }
    wait_workers(&pool, &procs.pids());
    let p = multiprocess::Process::new(fork_parent, (server.url().to_owned(),));
    p.start().unwrap();
    let code = p.join_timeout(Duration::from_secs(90)).unwrap();
    eprintln!("[fork] a connected process forked a child that used the server; exit code {code:?}");
    assert_eq!(
        code,
        Some(0),
        "the forking process failed (its stderr says why)"
    );
    // And this process's pool still works.
    assert_eq!(pool.apply(square, (5u64,)).unwrap(), 25);
}
