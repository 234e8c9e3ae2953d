//! Lock across real processes: mutual exclusion, try/timeout semantics, and a
//! holder that dies (Python's Lock deadlocks forever there).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, temp_dir};
use multiprocess::{Lock, Process, Queue};

multiprocess::init_before_main!();

/// Read-modify-write of a counter file: loses updates without the lock.
fn bump_file(path: PathBuf, lock: Lock, times: u32) {
    for _ in 0..times {
        let _guard = lock.acquire();
        let n: u64 = std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::yield_now();
        std::fs::write(&path, (n + 1).to_string()).unwrap();
    }
}

#[test]
fn mutual_exclusion_across_processes() {
    bounded(LIMIT, || {
        let dir = temp_dir("lock");
        let path = dir.join("counter");
        std::fs::write(&path, "0").unwrap();
        let lock = Lock::new().unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| Process::new(bump_file, (path.clone(), lock.clone(), 200)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "800");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// Takes the lock, says so, and holds it until killed (or 60 s pass).
fn hold(lock: Lock, ready: Queue<u32>) {
    let _guard = lock.acquire();
    ready.put(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn held_lock_is_visible_and_try_acquire_is_immediate() {
    // CPython _TestLock: acquire(False) on a held lock returns False at once.
    bounded(LIMIT, || {
        let lock = Lock::new().unwrap();
        let ready: Queue<u32> = Queue::new().unwrap();
        let p = Process::new(hold, (lock.clone(), ready.clone()));
        p.start().unwrap();
        ready.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(lock.is_locked());
        let t = Instant::now();
        assert!(lock.try_acquire().is_none());
        assert!(t.elapsed() < Duration::from_millis(100));
        let t = Instant::now();
        assert!(lock.acquire_timeout(Duration::from_millis(200)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(150));
        p.kill().unwrap();
        p.join().unwrap();
    });
}

#[test]
fn a_dead_holder_hands_the_lock_on_within_a_second() {
    bounded(LIMIT, || {
        let lock = Lock::new().unwrap();
        let ready: Queue<u32> = Queue::new().unwrap();
        let p = Process::new(hold, (lock.clone(), ready.clone()));
        p.start().unwrap();
        let holder = ready.get_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(Some(holder), p.pid());
        // A waiter is already blocked when the holder dies.
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let guard = lock.acquire_timeout(Duration::from_secs(30));
                guard.map(|g| g.previous_owner_died())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        let killed_at = Instant::now();
        assert_eq!(
            waiter.join().unwrap(),
            Some(true),
            "the waiter must be told the owner died"
        );
        let handed_on = killed_at.elapsed();
        assert!(handed_on < Duration::from_secs(1), "took {handed_on:?}");
        // Afterwards the lock is an ordinary free lock again.
        let guard = lock.try_acquire().expect("free");
        assert!(!guard.previous_owner_died());
    });
}
