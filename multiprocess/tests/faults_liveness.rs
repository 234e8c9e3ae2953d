//! The fault suite's liveness kinds: owners whose pid cannot be trusted.
//!
//! - `holder_in_another_pid_namespace`: the holder is a process of another
//!   tree in a child pid namespace (`unshare --pid`, the test binary re-run
//!   on `ns_holder_entry`), reached through an abstract-socket Listener, as
//!   two containers of one pod would be. Its pid means nothing here. While
//!   it lives, nothing it holds may be taken over; once its namespace is
//!   killed, everything it held must be recovered promptly.
//! - `holder_whose_pid_is_reused`: the holder is an ordinary child, killed
//!   while holding; before anyone looks, its pid is given to an unrelated
//!   process (`/proc/sys/kernel/ns_last_pid`, as root). What it held must
//!   still be recovered promptly.
//!
//! Each round takes one primitive in turn: Lock, RLock, Semaphore,
//! Condition, Barrier, JoinableQueue (an unfinished task) and Queue (an item
//! half put). `FAULT_ROUNDS=N` sets the rounds per kind (default 7 and 14:
//! each primitive once or twice), `FAULT_PRIMITIVE=Lock` (etc.) runs only
//! one primitive. Counts go to stderr (`--nocapture`).
//! Where a namespace or a pid cannot be made (no root, no `unshare`), the
//! kind prints why and passes without running.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bounded;
use multiprocess::{
    Address, Barrier, BarrierTimeoutError, Client, Condition, Connection, JoinTimeoutError,
    JoinableQueue, Listener, Lock, Pipe, Queue, RLock, Semaphore, StartMethod, get_context,
};
use serde::{Deserialize, Serialize};

multiprocess::init_before_main!();

/// Set in the re-run of this binary that hosts a namespace's holder: the
/// Listener's abstract name.
const ADDR_ENV: &str = "MULTIPROCESS_TEST_LIVENESS_ADDR";
const KEY: &[u8] = b"liveness-test-key";
/// The item half put: larger than the queue's ring, so the put streams and
/// can be stopped or killed in the middle.
const BIG: usize = 48 << 20;
/// How long a live holder must keep what it holds against a waiter (many
/// probe slices of 100 ms).
const HOLD: Duration = Duration::from_millis(1200);
/// How long recovery from a dead holder may take (it is about one slice).
const RECOVER: Duration = Duration::from_secs(10);

const PRIMITIVES: [&str; 7] = [
    "Lock",
    "RLock",
    "Semaphore",
    "Condition",
    "Barrier",
    "JoinableQueue",
    "Queue",
];

/// The primitives the rounds take in turn: all, or the one named by
/// `FAULT_PRIMITIVE`.
fn primitives() -> Vec<&'static str> {
    match std::env::var("FAULT_PRIMITIVE") {
        Ok(name) => vec![
            *PRIMITIVES
                .iter()
                .find(|p| **p == name)
                .expect("FAULT_PRIMITIVE names one of PRIMITIVES"),
        ],
        Err(_) => PRIMITIVES.to_vec(),
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("FAULT_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("FAULT_ROUNDS must be a number"))
        .unwrap_or(default)
}

/// What the holder is sent, one primitive per round (a clone: the test
/// keeps its own handles).
#[derive(Clone, Serialize, Deserialize)]
enum Held {
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    Condition(Condition),
    /// Two barriers of 3 parties: the holder waits at both (one from
    /// another thread).
    Barrier(Barrier, Barrier),
    Joinable(JoinableQueue<u64>),
    /// The holder puts two big items, saying so before each.
    Queue(Queue<Vec<u8>>),
}

fn make(primitive: &str) -> Held {
    match primitive {
        "Lock" => Held::Lock(Lock::new().unwrap()),
        "RLock" => Held::RLock(RLock::new().unwrap()),
        "Semaphore" => Held::Semaphore(Semaphore::new(1).unwrap()),
        "Condition" => Held::Condition(Condition::new().unwrap()),
        "Barrier" => Held::Barrier(Barrier::new(3).unwrap(), Barrier::new(3).unwrap()),
        "JoinableQueue" => {
            let q = JoinableQueue::new().unwrap();
            q.put(7).unwrap();
            Held::Joinable(q)
        }
        "Queue" => Held::Queue(Queue::new().unwrap()),
        other => unreachable!("{other}"),
    }
}

fn big_item(n: u8) -> Vec<u8> {
    vec![n; BIG]
}

/// The holder's side: takes what it is sent, says so (`1`), and keeps it
/// until it is killed.
fn hold(conn: Connection<u8, Held>) {
    let held = conn.recv().expect("the objects");
    match held {
        Held::Lock(l) => {
            let l = Box::leak(Box::new(l));
            std::mem::forget(l.acquire());
        }
        Held::RLock(l) => {
            let l = Box::leak(Box::new(l));
            std::mem::forget(l.acquire());
        }
        Held::Semaphore(s) => {
            let s = Box::leak(Box::new(s));
            std::mem::forget(s.acquire());
        }
        Held::Condition(c) => {
            let c = Box::leak(Box::new(c));
            std::mem::forget(c.acquire());
        }
        Held::Barrier(a, b) => {
            std::thread::spawn(move || b.wait());
            std::thread::spawn(move || a.wait());
        }
        Held::Joinable(q) => {
            assert_eq!(q.get().unwrap(), 7);
            Box::leak(Box::new(q));
        }
        Held::Queue(q) => {
            for n in 1..=2 {
                conn.send(1).unwrap();
                q.put(big_item(n)).unwrap();
            }
            Box::leak(Box::new(q));
        }
    }
    conn.send(1).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------
// The checks, from the waiting side.

/// While the holder lives: nothing is taken over. `pause` stops and resumes
/// the holder's processes (for the queue: a put stopped in the middle).
fn check_kept(held: &Held, conn: &Connection<Held, u8>, pause: &dyn Fn(bool)) {
    match held {
        Held::Lock(l) => assert!(
            l.acquire_timeout(HOLD).is_none(),
            "Lock taken from a live holder"
        ),
        Held::RLock(l) => {
            assert!(
                l.acquire_timeout(HOLD).is_none(),
                "RLock taken from a live holder"
            )
        }
        Held::Semaphore(s) => assert!(
            s.acquire_timeout(HOLD).is_none(),
            "a live holder's permit was returned"
        ),
        Held::Condition(c) => assert!(
            c.acquire_timeout(HOLD).is_none(),
            "Condition taken from a live holder"
        ),
        Held::Barrier(a, b) => {
            let end = Instant::now() + RECOVER;
            while (a.n_waiting(), b.n_waiting()) != (1, 1) {
                assert!(Instant::now() < end, "the holder never waited at both");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                a.wait_timeout(HOLD),
                Err(BarrierTimeoutError::Timeout),
                "a live party was taken for dead"
            );
        }
        Held::Joinable(q) => assert!(
            matches!(
                q.join_timeout(HOLD),
                Err(JoinTimeoutError::Timeout { unfinished: 1 })
            ),
            "a live holder's task was dropped"
        ),
        Held::Queue(q) => {
            // First item: the producer fills the ring and waits for room;
            // stopped there, mid-put, while a consumer takes what is in the
            // ring and waits for the rest; resumed, the item must arrive
            // whole.
            std::thread::sleep(Duration::from_millis(300));
            pause(true);
            let q2 = q.clone();
            let consumer = std::thread::spawn(move || q2.get_timeout(Duration::from_secs(60)));
            std::thread::sleep(HOLD);
            pause(false);
            let item = consumer.join().unwrap().expect("the stopped put's item");
            assert!(
                item.len() == BIG && item.iter().all(|&b| b == 1),
                "the item put by a stopped (live) producer was damaged or dropped"
            );
            // The second put is under way when this returns.
            assert_eq!(conn.recv_timeout(RECOVER).unwrap(), 1);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Once the holder is dead: everything is recovered within [`RECOVER`].
fn check_recovered(held: &Held) {
    let t = Instant::now();
    match held {
        Held::Lock(l) => {
            let g = l.acquire_timeout(RECOVER).expect("Lock of a dead holder");
            assert!(g.previous_owner_died());
        }
        Held::RLock(l) => {
            let g = l.acquire_timeout(RECOVER).expect("RLock of a dead holder");
            assert!(g.previous_owner_died());
        }
        Held::Semaphore(s) => {
            let _permit = s
                .acquire_timeout(RECOVER)
                .expect("the permit of a dead holder");
        }
        Held::Condition(c) => {
            let g = c
                .acquire_timeout(RECOVER)
                .expect("Condition of a dead holder");
            assert!(g.previous_owner_died());
        }
        Held::Barrier(_, b) => {
            assert_eq!(
                b.wait_timeout(RECOVER),
                Err(BarrierTimeoutError::BrokenBarrier),
                "a dead party must break the barrier"
            );
        }
        Held::Joinable(q) => q.join_timeout(RECOVER).expect("a dead holder's task"),
        Held::Queue(q) => {
            // The item died half put, filling the ring: a consumer drops it
            // once it finds the producer dead, and the queue goes on.
            let q2 = q.clone();
            let consumer = std::thread::spawn(move || q2.get_timeout(RECOVER));
            q.put_timeout(vec![9; 10], RECOVER)
                .expect("a put after a dead producer");
            let item = consumer
                .join()
                .unwrap()
                .expect("the queue after a dead producer");
            assert_eq!(item, vec![9; 10]);
        }
    }
    assert!(t.elapsed() < RECOVER, "recovery took {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// A holder in another pid namespace.

/// Does nothing unless this binary was re-run (by `unshare`) as a
/// namespace's first process: then starts the holder as a child (so its pid
/// is not 1, and made high, so that it is not a live pid outside either)
/// and waits for it.
#[test]
fn ns_holder_entry() {
    let Some(addr) = std::env::var_os(ADDR_ENV) else {
        return;
    };
    let _ = std::fs::write(
        "/proc/sys/kernel/ns_last_pid",
        (30_000 + fastrand::u32(0..20_000)).to_string(),
    );
    let conn = Client::connect::<u8, Held>(Address::Abstract(addr.into_encoded_bytes()), Some(KEY))
        .expect("reach the test's listener");
    let p = get_context(StartMethod::Spawn).process(hold, (conn,));
    p.start().unwrap();
    p.join().unwrap();
}

fn unshare_works() -> Result<(), String> {
    let status = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("no unshare(1): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("unshare --pid fails here ({status}): not root?"))
    }
}

/// Every process descended from `root` (by the parent pids in /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if let Some(ppid) = after.split(' ').nth(1).and_then(|s| s.parse::<u32>().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn signal_all(pids: &[u32], sig: rustix::process::Signal) {
    for &pid in pids {
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, sig);
        }
    }
}

/// Kills the `unshare` process on drop (and with it, by `--kill-child`,
/// the namespace), so a failing round leaves nothing behind.
struct Namespace(Child);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ns_round(round: usize) {
    let primitives = primitives();
    let primitive = primitives[round % primitives.len()];
    let name = format!(
        "multiprocess-liveness-test-{}-{round}-{}",
        std::process::id(),
        fastrand::u64(..)
    );
    let listener =
        Listener::<Held, u8>::bind(Address::Abstract(name.clone().into_bytes()), Some(KEY))
            .unwrap();
    let exe = std::env::current_exe().unwrap();
    let ns = Namespace(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(exe)
            .args([
                "--exact",
                "ns_holder_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ADDR_ENV, &name)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let conn = listener
        .accept_timeout(RECOVER)
        .expect("the holder connects");
    let held = make(primitive);
    conn.send(held.clone()).unwrap();
    assert_eq!(conn.recv_timeout(RECOVER).unwrap(), 1, "{primitive}: held");
    let unshare_pid = ns.0.id();
    let pause = |stop: bool| {
        let sig = if stop {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        signal_all(&descendants(unshare_pid), sig);
    };
    check_kept(&held, &conn, &pause);
    // Kill the whole namespace: its first process, then everyone in it.
    let members = descendants(unshare_pid);
    signal_all(&members, rustix::process::Signal::KILL);
    drop(ns);
    let end = Instant::now() + RECOVER;
    while members
        .iter()
        .any(|&p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < end, "the namespace did not die");
        std::thread::sleep(Duration::from_millis(5));
    }
    check_recovered(&held);
}

#[test]
fn holder_in_another_pid_namespace() {
    if let Err(why) = unshare_works() {
        eprintln!("faults[pid namespace]: skipped: {why}");
        return;
    }
    let total = rounds(PRIMITIVES.len());
    let started = Instant::now();
    bounded(Duration::from_secs(60 + 15 * total as u64), move || {
        for round in 0..total {
            ns_round(round);
        }
    });
    eprintln!(
        "faults[pid namespace]: {total} rounds survived ({} primitives), {:.1?}",
        PRIMITIVES.len().min(total),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// A dead holder's pid given to another process.

/// Starts an unrelated process (`sleep`) with pid `pid`, through
/// `ns_last_pid`; `None` if the pid went to someone else each time.
fn occupy_pid(pid: u32) -> Result<Option<Child>, String> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .map_err(|e| format!("cannot write /proc/sys/kernel/ns_last_pid ({e}): not root?"))?;
        let mut child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        if child.id() == pid {
            return Ok(Some(child));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(None)
}

/// Kills the impostor on drop.
struct Impostor(Child);

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One round; `Err` if a pid cannot be reused here (the kind is skipped).
fn reuse_round(round: usize) -> Result<bool, String> {
    let primitives = primitives();
    let primitive = primitives[round % primitives.len()];
    let held = make(primitive);
    let (ours, theirs) = Pipe::new::<Held, u8>().unwrap();
    let holder = get_context(StartMethod::Spawn).process(hold, (theirs,));
    holder.start().unwrap();
    ours.send(held.clone()).unwrap();
    assert_eq!(ours.recv_timeout(RECOVER).unwrap(), 1, "{primitive}: held");
    if let Held::Barrier(a, b) = &held {
        let end = Instant::now() + RECOVER;
        while (a.n_waiting(), b.n_waiting()) != (1, 1) {
            assert!(Instant::now() < end, "the holder never waited at both");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Held::Queue(_) = &held {
        // Let the first put get under way, then kill it in the middle.
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = holder.pid().unwrap();
    holder.kill().unwrap();
    assert_eq!(holder.join_timeout(RECOVER).unwrap(), Some(-9));
    let Some(impostor) = occupy_pid(pid)? else {
        eprintln!("faults[pid reuse]: round {round}: pid {pid} went elsewhere 200 times");
        return Ok(false);
    };
    let _impostor = Impostor(impostor);
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the impostor holds the dead holder's pid"
    );
    check_recovered(&held);
    Ok(true)
}

#[test]
fn holder_whose_pid_is_reused() {
    let total = rounds(2 * PRIMITIVES.len());
    let started = Instant::now();
    let (reused, skipped) = bounded(Duration::from_secs(60 + 15 * total as u64), move || {
        let mut reused = 0;
        for round in 0..total {
            match reuse_round(round) {
                Ok(true) => reused += 1,
                Ok(false) => {}
                Err(why) => return (reused, Some(why)),
            }
        }
        (reused, None)
    });
    if let Some(why) = skipped {
        eprintln!("faults[pid reuse]: skipped: {why}");
        return;
    }
    eprintln!(
        "faults[pid reuse]: {total} rounds survived, {reused} with the pid really reused, {:.1?}",
        started.elapsed()
    );
    assert!(
        reused * 2 >= total,
        "the pid was reused in only {reused} of {total} rounds"
    );
}
