//! `remote::Lock` against a real `redis-server` (each test starts its own)
//! and real processes: mutual exclusion with a history check, a holder
//! killed or frozen past its lease, fences across server restarts with and
//! without persistence, timeouts, an unreachable server, and fork.

multiprocess::init_before_main!();

mod common;

use std::time::{Duration, Instant};

use common::{LIMIT, bounded, eventually};
use multiprocess::remote::{BackendError, Cluster, LocalServer, Lock};
use multiprocess::{Process, Queue, StartMethod, get_context};

const LEASE: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(20);

fn cluster(server: &LocalServer, lease: Duration) -> Cluster {
    Cluster::builder(server.url())
        .lease(lease)
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .expect("connect to the test server")
}

/// Nanoseconds on the system-wide monotonic clock (comparable across
/// processes of this machine).
fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn join_ok(p: &Process) {
    let code = p
        .join_timeout(LONG)
        .expect("started")
        .expect("exited in time");
    assert_eq!(code, 0, "{p:?}");
}

// ------------------------------------------------------ mutual exclusion

/// `n` critical sections, each recorded as (enter, exit, fence) after its
/// release.
fn sections(lock: Lock, events: Queue<(u64, u64, u64)>, n: u32) {
    for _ in 0..n {
        let guard = lock.acquire().expect("acquire");
        let enter = mono_ns();
        // Some work inside, so that overlaps would show.
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros(300) {
            std::hint::spin_loop();
        }
        let exit = mono_ns();
        let fence = guard.fence();
        guard.release().expect("release within the lease");
        events.put((enter, exit, fence)).unwrap();
    }
}

#[test]
fn mutual_exclusion_across_processes_with_growing_fences() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("history").unwrap();
        let events = Queue::new().unwrap();
        let (procs, each) = (4, 50);
        let ps: Vec<Process> = (0..procs)
            .map(|_| Process::new(sections, (lock.clone(), events.clone(), each)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        let mut history: Vec<(u64, u64, u64)> = (0..procs * each)
            .map(|_| events.get_timeout(LONG).expect("every section reported"))
            .collect();
        for p in &ps {
            join_ok(p);
        }
        history.sort_unstable();
        for w in history.windows(2) {
            let ((_, exit_a, fence_a), (enter_b, _, fence_b)) = (w[0], w[1]);
            assert!(exit_a < enter_b, "critical sections overlap: {w:?}");
            assert!(fence_a < fence_b, "fences do not grow in order: {w:?}");
        }
        assert!(!lock.is_locked().unwrap(), "every section released");
    });
}

// ------------------------------------------------- waiting and timeouts

#[test]
fn try_and_timeout_on_a_held_lock_return_none_in_time() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("held").unwrap();
        let held = lock.acquire().unwrap();
        assert!(lock.is_locked().unwrap());
        let t = Instant::now();
        assert!(lock.try_acquire().unwrap().is_none());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // Longer than the lease: the renewal keeps it held throughout.
        let wait = Duration::from_millis(700);
        let t = Instant::now();
        assert!(lock.acquire_timeout(wait).unwrap().is_none());
        let took = t.elapsed();
        assert!(
            took >= wait && took < wait + Duration::from_millis(250),
            "acquire_timeout({wait:?}) took {took:?}"
        );
        assert!(held.is_owned());
        let fence = held.fence();
        held.release().unwrap();
        let g = lock
            .acquire_timeout(Duration::from_millis(100))
            .unwrap()
            .expect("free after the release");
        assert!(g.fence() > fence);
    });
}

/// Blocks in `acquire` and reports when it got the lock.
fn wait_and_report(lock: Lock, waiting: Queue<()>, got: Queue<(u64, u64)>) {
    waiting.put(()).unwrap();
    let g = lock.acquire().expect("acquire");
    got.put((mono_ns(), g.fence())).unwrap();
}

#[test]
fn a_release_wakes_a_waiting_process_at_once() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        // A long lease: the waiter can only get the lock from the release.
        let lock = cluster(&server, Duration::from_secs(10))
            .lock("handoff")
            .unwrap();
        let held = lock.acquire().unwrap();
        let (waiting, got) = (Queue::new().unwrap(), Queue::new().unwrap());
        let p = Process::new(
            wait_and_report,
            (lock.clone(), waiting.clone(), got.clone()),
        );
        p.start().unwrap();
        waiting.get_timeout(LONG).unwrap();
        // Let it block on the server.
        std::thread::sleep(Duration::from_millis(300));
        let fence = held.fence();
        let released_at = mono_ns();
        held.release().unwrap();
        let (acquired_at, child_fence) = got.get_timeout(LONG).unwrap();
        let handoff = Duration::from_nanos(acquired_at - released_at);
        eprintln!("release → waiter acquired: {handoff:?}");
        assert!(
            handoff < Duration::from_millis(100),
            "handoff took {handoff:?}"
        );
        assert!(child_fence > fence);
        join_ok(&p);
    });
}

// ------------------------------------------------------- lost holders

/// Takes the lock, reports its fence, and holds it until killed.
fn hold(lock: Lock, ready: Queue<u64>) {
    let g = lock.acquire().expect("acquire");
    ready.put(g.fence()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_holder_loses_the_lock_after_its_lease() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("killed").unwrap();
        let ready = Queue::new().unwrap();
        let p = Process::new(hold, (lock.clone(), ready.clone()));
        p.start().unwrap();
        let dead_fence = ready.get_timeout(LONG).unwrap();
        // Renewed past its first lease while alive.
        std::thread::sleep(LEASE * 2);
        assert!(lock.try_acquire().unwrap().is_none());
        p.kill().unwrap();
        let t = Instant::now();
        let g = lock
            .acquire_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("acquired after the dead holder's lease");
        let took = t.elapsed();
        assert!(
            took < LEASE + Duration::from_millis(250),
            "took {took:?} (lease {LEASE:?})"
        );
        assert!(g.fence() > dead_fence);
        assert_eq!(p.join_timeout(LONG).unwrap(), Some(-9));
    });
}

/// Takes the lock, reports its fence, then waits to be frozen (SIGSTOP)
/// and thawed: a gap longer than the lease between two short sleeps. Then
/// reports whether it still owns the lock and what its release said.
fn hold_through_freeze(lock: Lock, ready: Queue<u64>, report: Queue<(bool, String)>) {
    let g = lock.acquire().expect("acquire");
    // Read the clock before telling the parent, which freezes us next.
    let start = Instant::now();
    let mut last = start;
    ready.put(g.fence()).unwrap();
    while start.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(5));
        // One reading: a freeze anywhere in the loop shows as a gap.
        let now = Instant::now();
        if now - last > LEASE {
            break;
        }
        last = now;
    }
    let owned = g.is_owned();
    let released = g.release();
    report.put((owned, format!("{released:?}"))).unwrap();
}

#[test]
fn a_frozen_holder_loses_the_lock_and_cannot_release_the_new_one() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("frozen").unwrap();
        let (ready, report) = (Queue::new().unwrap(), Queue::new().unwrap());
        let p = Process::new(
            hold_through_freeze,
            (lock.clone(), ready.clone(), report.clone()),
        );
        p.start().unwrap();
        let stale_fence = ready.get_timeout(LONG).unwrap();
        let pid = p.pid().unwrap();
        signal(pid, "STOP");
        let frozen = Instant::now();
        let g = lock
            .acquire_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("acquired while the holder is frozen");
        assert!(frozen.elapsed() < LEASE + Duration::from_millis(250));
        assert!(g.fence() > stale_fence);
        // Frozen for twice the lease in all.
        std::thread::sleep((LEASE * 2).saturating_sub(frozen.elapsed()));
        signal(pid, "CONT");
        let (owned, released) = report.get_timeout(LONG).unwrap();
        assert!(!owned, "the thawed holder still believes it owns the lock");
        assert!(released.contains("LeaseLost"), "release said {released}");
        join_ok(&p);
        // Its renewal and release left the new holder's lock alone.
        std::thread::sleep(LEASE);
        assert!(g.is_owned());
        assert!(lock.try_acquire().unwrap().is_none());
        g.release().unwrap();
    });
}

// ------------------------------------------------------ server restarts

#[test]
fn fences_grow_across_a_restart_that_lost_the_data() {
    bounded(LIMIT, || {
        let mut server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("amnesia").unwrap();
        let mut last = 0;
        for _ in 0..3 {
            let g = lock.acquire().unwrap();
            assert!(g.fence() > last);
            last = g.fence();
        }
        let g = lock.acquire().unwrap();
        assert!(g.fence() > last);
        server.restart().unwrap();
        // The lock (and the fence counter) are gone with the data.
        assert!(!lock.is_locked().unwrap());
        assert!(!g.is_owned());
        let lost = g.release();
        assert!(matches!(lost, Err(BackendError::LeaseLost(_))), "{lost:?}");
        let g2 = lock.acquire().unwrap();
        assert!(
            g2.fence() > last,
            "fence {} after the restart, {last} before",
            g2.fence()
        );
    });
}

#[test]
fn a_held_lock_survives_a_restart_with_appendonly() {
    bounded(LIMIT, || {
        let mut server = LocalServer::builder().appendonly(true).start().unwrap();
        let lock = cluster(&server, Duration::from_secs(3))
            .lock("durable")
            .unwrap();
        let g = lock.acquire().unwrap();
        server.restart().unwrap();
        assert!(g.is_owned());
        assert!(lock.try_acquire().unwrap().is_none());
        // Still renewed after the restart.
        std::thread::sleep(Duration::from_secs(4));
        assert!(g.is_owned());
        let fence = g.fence();
        g.release().unwrap();
        assert!(lock.acquire().unwrap().fence() > fence);
    });
}

#[test]
fn a_down_server_fails_the_acquire_within_the_connect_timeout() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("down").unwrap();
        drop(lock.acquire().unwrap());
        drop(server);
        for attempt in 0..3 {
            let t = Instant::now();
            let r = match attempt {
                0 => lock.acquire().map(|_| ()),
                1 => lock.try_acquire().map(|_| ()),
                _ => lock.acquire_timeout(Duration::from_secs(30)).map(|_| ()),
            };
            let took = t.elapsed();
            assert!(
                matches!(r, Err(BackendError::Unreachable { .. })),
                "attempt {attempt}: {r:?}"
            );
            assert!(took < Duration::from_millis(1500), "took {took:?}");
        }
    });
}

#[test]
fn a_frozen_server_fails_calls_within_the_call_timeout_and_recovers() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let c = Cluster::builder(server.url())
            .lease(LEASE)
            .call_timeout(Duration::from_millis(300))
            .connect()
            .unwrap();
        let lock = c.lock("stopped").unwrap();
        let fence = lock.acquire().unwrap().fence();
        server.pause().unwrap();
        let t = Instant::now();
        let r = lock.try_acquire();
        let took = t.elapsed();
        server.resume().unwrap();
        assert!(matches!(r, Err(BackendError::Timeout(_))), "{r:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        // The timed-out call may have run on the server after the thaw:
        // then its lease runs out by itself.
        let g = lock
            .acquire_timeout(LEASE * 4)
            .unwrap()
            .expect("the lock works again after the thaw");
        assert!(g.fence() > fence);
    });
}

// ---------------------------------------------------- handles and fork

#[test]
fn a_handle_carries_no_password() {
    bounded(LIMIT, || {
        let server = LocalServer::builder()
            .password("s3cret-pw")
            .start()
            .unwrap();
        let lock = cluster(&server, LEASE).lock("secret").unwrap();
        let bytes = postcard::to_allocvec(&lock).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("secret"));
        assert!(!format!("{lock:?}").contains("s3cret-pw"));
        let g = lock.acquire().unwrap();
        assert!(format!("{g:?}").contains("secret"));
        // Decoded in this process, it reuses the connected cluster.
        let back: Lock = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.name(), "secret");
        assert_eq!(back.lease(), LEASE);
        assert!(back.try_acquire().unwrap().is_none());
    });
}

/// In a forked child of the driver: the lock is held by the driver, so
/// try_acquire finds it held; once the driver released it, acquire it.
fn forked_child(lock: Lock, to_child: Queue<u64>, out: Queue<String>) {
    let parent_fence = to_child.get_timeout(LONG).expect("parent holds");
    let held = lock.try_acquire().expect("own connection works");
    out.put(format!("child try: {}", held.is_none())).unwrap();
    to_child.get_timeout(LONG).expect("parent released");
    let g = lock
        .acquire_timeout(Duration::from_secs(5))
        .expect("own connection works")
        .expect("free after the parent's release");
    out.put(format!("child fence grew: {}", g.fence() > parent_fence))
        .unwrap();
    g.release().unwrap();
}

fn noop() {}

/// A `Spawn` child (single-threaded) with a live connection: forks a child
/// (which gets its own connections), then holds the lock while the child
/// tries it; Fork refuses while the guard's renewal thread runs.
fn fork_driver(lock: Lock, out: Queue<String>) {
    // A pooled, live connection in this process.
    assert!(!lock.is_locked().unwrap());
    let to_child = Queue::new().unwrap();
    let child = get_context(StartMethod::Fork)
        .process(forked_child, (lock.clone(), to_child.clone(), out.clone()));
    child.start().expect("fork while single-threaded");
    let g = lock.acquire().unwrap();
    let refused = get_context(StartMethod::Fork).process(noop, ()).start();
    out.put(format!("fork while held refused: {}", refused.is_err()))
        .unwrap();
    to_child.put(g.fence()).unwrap();
    // Let the child try while held.
    std::thread::sleep(Duration::from_millis(200));
    out.put(format!("parent still owns: {}", g.is_owned()))
        .unwrap();
    g.release().unwrap();
    to_child.put(0).unwrap();
    join_ok(&child);
    // This process's connections were not disturbed by the child.
    out.put(format!("parent after: {:?}", lock.is_locked()))
        .unwrap();
}

#[test]
fn fork_children_use_their_own_connections_and_do_not_own_the_lock() {
    bounded(LIMIT, || {
        let server = LocalServer::start().unwrap();
        let lock = cluster(&server, LEASE).lock("fork").unwrap();
        let out = Queue::new().unwrap();
        let p = get_context(StartMethod::Spawn).process(fork_driver, (lock.clone(), out.clone()));
        p.start().unwrap();
        let mut lines: Vec<String> = (0..5)
            .map(|_| out.get_timeout(LONG).expect("a report"))
            .collect();
        join_ok(&p);
        lines.sort();
        assert_eq!(
            lines,
            [
                "child fence grew: true",
                "child try: true",
                "fork while held refused: true",
                "parent after: Ok(false)",
                "parent still owns: true",
            ]
        );
        assert!(eventually(Duration::from_secs(1), || !lock
            .is_locked()
            .unwrap()));
    });
}
