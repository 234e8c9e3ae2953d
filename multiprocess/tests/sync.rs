//! RLock, Semaphore, Event, Condition and Barrier across real processes:
//! CPython's `_TestLock`/`_TestSemaphore`/`_TestCondition`/`_TestEvent`/
//! `_TestBarrier` (see LESSONS §10.4), plus what Python cannot do: a holder,
//! waiter or participant that is SIGKILLed.

multiprocess::init_before_main!();

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, eventually};
use multiprocess::{
    Barrier, BarrierTimeoutError, BoundedSemaphore, Condition, Event, Process, Queue, RLock,
    Semaphore,
};

const LONG: Duration = Duration::from_secs(30);

fn start(p: &Process) {
    p.start().expect("start");
}

// ---------------------------------------------------------------- RLock

/// Reports whether the lock could be taken at once.
fn rlock_probe(lock: RLock, out: Queue<bool>) {
    out.put(lock.try_acquire().is_some()).unwrap();
}

fn probe(lock: &RLock, out: &Queue<bool>) -> bool {
    let p = Process::new(rlock_probe, (lock.clone(), out.clone()));
    start(&p);
    assert_eq!(p.join().unwrap(), 0);
    out.get_timeout(LONG).unwrap()
}

#[test]
fn rlock_reacquired_three_times_needs_three_releases() {
    // CPython _TestLock.test_rlock, with another process as the observer.
    bounded(LIMIT, || {
        let lock = RLock::new().unwrap();
        let out = Queue::new().unwrap();
        let a = lock.acquire();
        let b = lock.acquire();
        let c = lock.acquire();
        assert_eq!(lock.depth(), 3);
        assert!(!probe(&lock, &out));
        drop(c);
        drop(b);
        assert!(!probe(&lock, &out), "still held at depth 1");
        drop(a);
        assert!(probe(&lock, &out), "free after three releases");
    });
}

/// Takes the lock twice, says so, and holds it until killed.
fn rlock_hold(lock: RLock, ready: Queue<u32>) {
    let _a = lock.acquire();
    let _b = lock.acquire();
    ready.put(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn rlock_of_a_killed_holder_is_taken_over() {
    bounded(LIMIT, || {
        let lock = RLock::new().unwrap();
        let ready = Queue::new().unwrap();
        let p = Process::new(rlock_hold, (lock.clone(), ready.clone()));
        start(&p);
        ready.get_timeout(LONG).unwrap();
        assert!(lock.try_acquire().is_none());
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        let t = Instant::now();
        let g = lock.acquire_timeout(LONG).expect("taken over");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(g.previous_owner_died());
        assert_eq!(
            lock.depth(),
            1,
            "taken over at depth 1, not the dead holder's 2"
        );
        drop(g);
        assert!(!lock.is_locked());
    });
}

// ---------------------------------------------------------------- Semaphore

fn take_permits(sem: Semaphore, n: u32, done: Queue<u32>) {
    for _ in 0..n {
        sem.acquire().forget();
    }
    done.put(sem.value()).unwrap();
}

#[test]
fn semaphore_counts_across_processes() {
    // CPython _TestSemaphore.test_semaphore / test_bounded_semaphore / test_timeout.
    bounded(LIMIT, || {
        let sem = Semaphore::new(2).unwrap();
        let done = Queue::new().unwrap();
        let p = Process::new(take_permits, (sem.clone(), 2, done.clone()));
        start(&p);
        assert_eq!(done.get_timeout(LONG).unwrap(), 0);
        p.join().unwrap();
        assert!(sem.try_acquire().is_none());
        sem.release();
        sem.release();
        sem.release();
        sem.release();
        assert_eq!(
            sem.value(),
            4,
            "release beyond the initial value is allowed"
        );

        let bounded_sem = BoundedSemaphore::new(2).unwrap();
        assert!(bounded_sem.release().is_err());
        assert_eq!(bounded_sem.value(), 2);

        let empty = Semaphore::new(0).unwrap();
        let t = Instant::now();
        assert!(empty.try_acquire().is_none());
        assert!(t.elapsed() < Duration::from_millis(100));
        let t = Instant::now();
        assert!(empty.acquire_timeout(Duration::from_millis(300)).is_none());
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(290) && e < Duration::from_secs(2),
            "{e:?}"
        );
    });
}

fn release_later(sem: Semaphore) {
    std::thread::sleep(Duration::from_millis(100));
    sem.release();
}

#[test]
fn semaphore_release_in_a_child_wakes_the_parent() {
    bounded(LIMIT, || {
        let sem = Semaphore::new(0).unwrap();
        let p = Process::new(release_later, (sem.clone(),));
        start(&p);
        let g = sem.acquire_timeout(LONG);
        assert!(g.is_some());
        p.join().unwrap();
    });
}

/// Takes `n` guarded permits, says so, and holds them until killed.
fn hold_permits(sem: Semaphore, n: u32, ready: Queue<u32>) {
    let _held: Vec<_> = (0..n).map(|_| sem.acquire()).collect();
    ready.put(sem.value()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn semaphore_permits_of_a_killed_holder_come_back() {
    // Python loses them; guarded permits are tracked per process.
    bounded(LIMIT, || {
        let sem = Semaphore::new(2).unwrap();
        let ready = Queue::new().unwrap();
        let p = Process::new(hold_permits, (sem.clone(), 2, ready.clone()));
        start(&p);
        assert_eq!(ready.get_timeout(LONG).unwrap(), 0);
        let waiter = {
            let sem = sem.clone();
            std::thread::spawn(move || {
                sem.acquire_timeout(LONG)
                    .map(multiprocess::SemaphoreGuard::forget)
                    .is_some()
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        let killed_at = Instant::now();
        assert!(waiter.join().unwrap());
        let e = killed_at.elapsed();
        assert!(e < Duration::from_secs(1), "took {e:?}");
        assert_eq!(
            sem.value(),
            1,
            "both permits came back; the waiter took one"
        );
    });
}

// ---------------------------------------------------------------- Event

fn set_later(event: Event) {
    std::thread::sleep(Duration::from_millis(100));
    event.set();
}

#[test]
fn event_waits_and_a_child_set_wakes_the_parent() {
    // CPython _TestEvent.test_event.
    bounded(LIMIT, || {
        let event = Event::new().unwrap();
        let t = Instant::now();
        assert!(!event.wait_timeout(Duration::ZERO));
        assert!(t.elapsed() < Duration::from_millis(50));
        let t = Instant::now();
        assert!(!event.wait_timeout(Duration::from_millis(200)));
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(190) && e < Duration::from_secs(2),
            "{e:?}"
        );
        event.set();
        let t = Instant::now();
        event.wait();
        assert!(event.wait_timeout(Duration::from_secs(1)));
        assert!(t.elapsed() < Duration::from_millis(50));
        event.clear();
        assert!(!event.is_set());

        let p = Process::new(set_later, (event.clone(),));
        start(&p);
        assert!(event.wait_timeout(LONG), "the child's set woke us");
        p.join().unwrap();
    });
}

/// Busy for the rest of its life only if the wait burns CPU.
fn idle_waiter(event: Event, done: Event) {
    event.wait();
    done.set();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_event_waiter_uses_no_cpu() {
    bounded(LIMIT, || {
        let event = Event::new().unwrap();
        let done = Event::new().unwrap();
        let p = Process::new(idle_waiter, (event.clone(), done.clone()));
        start(&p);
        let pid = p.pid().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(pid) - before;
        // Clock ticks are 10 ms: 1% of a second is one tick.
        assert!(used <= 1, "idle waiter used {used} ticks in 1 s");
        event.set();
        assert!(done.wait_timeout(LONG));
        p.join().unwrap();
    });
}

fn wait_on_both(event: Event, sem: Semaphore) {
    event.wait();
    sem.acquire().forget();
}

#[test]
fn killed_event_and_semaphore_waiters_leave_them_working() {
    bounded(LIMIT, || {
        let (event, sem) = (Event::new().unwrap(), Semaphore::new(0).unwrap());
        let doomed = Process::new(wait_on_both, (event.clone(), sem.clone()));
        start(&doomed);
        std::thread::sleep(Duration::from_millis(200)); // asleep on the event
        doomed.kill().unwrap();
        assert_eq!(doomed.join().unwrap(), -9);
        event.set();
        let doomed = Process::new(wait_on_both, (event.clone(), sem.clone()));
        start(&doomed);
        std::thread::sleep(Duration::from_millis(200)); // asleep on the semaphore
        doomed.kill().unwrap();
        assert_eq!(doomed.join().unwrap(), -9);
        // A live waiter after the deaths.
        let live = Process::new(wait_on_both, (event.clone(), sem.clone()));
        start(&live);
        std::thread::sleep(Duration::from_millis(100));
        sem.release();
        assert_eq!(
            live.join().unwrap(),
            0,
            "the release reached the live waiter"
        );
        assert_eq!(sem.value(), 0);
        event.clear();
        assert!(!event.wait_timeout(Duration::from_millis(50)));
    });
}

// ---------------------------------------------------------------- Condition

/// Waits once and reports `(id, notified)`.
fn cond_waiter(cond: Condition, id: u32, timeout_ms: u64, out: Queue<(u32, bool)>) {
    let mut g = cond.acquire();
    let notified = g.wait_timeout(Duration::from_millis(timeout_ms));
    drop(g);
    out.put((id, notified)).unwrap();
}

fn start_waiters(cond: &Condition, n: u32, out: &Queue<(u32, bool)>) -> Vec<Process> {
    let ps: Vec<Process> = (0..n)
        .map(|id| Process::new(cond_waiter, (cond.clone(), id, 30_000u64, out.clone())))
        .collect();
    for p in &ps {
        start(p);
    }
    assert!(
        eventually(LONG, || cond.waiting() == n as usize),
        "waiters never arrived"
    );
    ps
}

fn nothing_more(out: &Queue<(u32, bool)>) {
    assert!(
        out.get_timeout(Duration::from_millis(200)).is_err(),
        "a waiter woke without a notify"
    );
}

#[test]
fn condition_notify_wakes_exactly_the_requested_number() {
    // CPython _TestCondition.test_notify / test_notify_n / test_notify_all.
    bounded(LIMIT, || {
        let cond = Condition::new().unwrap();
        let out = Queue::new().unwrap();
        // Five waiting processes and a thread of this one (CPython mixes too).
        let ps = start_waiters(&cond, 5, &out);
        let thread = {
            let (cond, out) = (cond.clone(), out.clone());
            std::thread::spawn(move || cond_waiter(cond, 99, 30_000, out))
        };
        assert!(eventually(LONG, || cond.waiting() == 6));
        nothing_more(&out);
        assert_eq!(cond.acquire().notify(1), 1);
        assert!(out.get_timeout(LONG).unwrap().1);
        nothing_more(&out);
        assert_eq!(cond.acquire().notify(2), 2);
        assert!(out.get_timeout(LONG).unwrap().1);
        assert!(out.get_timeout(LONG).unwrap().1);
        nothing_more(&out);
        assert_eq!(cond.acquire().notify_all(), 3);
        let mut last: Vec<u32> = (0..3)
            .map(|_| {
                let (id, notified) = out.get_timeout(LONG).unwrap();
                assert!(notified);
                id
            })
            .collect();
        last.sort();
        assert_eq!(
            last.last(),
            Some(&99),
            "FIFO: the youngest waiter (the thread) is among the last three"
        );
        thread.join().unwrap();
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(cond.waiting(), 0);
    });
}

#[test]
fn condition_timed_out_waiters_are_not_counted() {
    bounded(LIMIT, || {
        let cond = Condition::new().unwrap();
        let out = Queue::new().unwrap();
        let short = Process::new(cond_waiter, (cond.clone(), 0, 100u64, out.clone()));
        start(&short);
        assert!(eventually(LONG, || cond.waiting() == 1));
        let t = Instant::now();
        assert_eq!(out.get_timeout(LONG).unwrap(), (0, false));
        assert!(t.elapsed() < Duration::from_secs(2));
        let live = start_waiters(&cond, 1, &out);
        assert_eq!(cond.acquire().notify(1), 1);
        assert_eq!(out.get_timeout(LONG).unwrap(), (0, true));
        short.join().unwrap();
        live[0].join().unwrap();
    });
}

/// Sets `flag` then notifies: the state `wait_for` waits on.
fn set_and_notify(cond: Condition, flag: Event) {
    std::thread::sleep(Duration::from_millis(100));
    let g = cond.acquire();
    flag.set();
    g.notify_all();
}

#[test]
fn condition_wait_timeout_and_wait_for() {
    bounded(LIMIT, || {
        let cond = Condition::new().unwrap();
        let mut g = cond.acquire();
        let t = Instant::now();
        assert!(!g.wait_timeout(Duration::from_millis(200)));
        assert!(t.elapsed() >= Duration::from_millis(190));
        let flag = Event::new().unwrap();
        assert!(!g.wait_for_timeout(Duration::from_millis(100), || flag.is_set()));
        let p = Process::new(set_and_notify, (cond.clone(), flag.clone()));
        start(&p);
        assert!(g.wait_for_timeout(LONG, || flag.is_set()));
        drop(g);
        p.join().unwrap();
    });
}

#[test]
fn condition_notify_skips_a_killed_waiter() {
    bounded(LIMIT, || {
        let cond = Condition::new().unwrap();
        let out = Queue::new().unwrap();
        let doomed = start_waiters(&cond, 1, &out);
        doomed[0].kill().unwrap();
        assert_eq!(doomed[0].join().unwrap(), -9);
        // A live waiter arrives after the dead one, so it is the younger.
        let live = Process::new(cond_waiter, (cond.clone(), 7, 30_000u64, out.clone()));
        start(&live);
        assert!(eventually(LONG, || cond.waiting() == 2));
        assert_eq!(
            cond.acquire().notify(1),
            1,
            "the notify went to the live waiter"
        );
        assert_eq!(out.get_timeout(LONG).unwrap(), (7, true));
        live.join().unwrap();
        assert_eq!(cond.waiting(), 0, "the dead waiter's slot was reclaimed");
    });
}

/// Holds the RLock twice around a wait; reports the depth after it.
fn rlock_cond_waiter(lock: RLock, cond: Condition, out: Queue<u32>) {
    let _outer = lock.acquire();
    let mut g = cond.acquire();
    let notified = g.wait_timeout(LONG);
    out.put(if notified { lock.depth() } else { 0 }).unwrap();
}

#[test]
fn condition_over_an_rlock_releases_every_level_while_waiting() {
    bounded(LIMIT, || {
        let lock = RLock::new().unwrap();
        let cond = Condition::with_rlock(lock.clone()).unwrap();
        let out = Queue::new().unwrap();
        let p = Process::new(rlock_cond_waiter, (lock.clone(), cond.clone(), out.clone()));
        start(&p);
        assert!(eventually(LONG, || cond.waiting() == 1));
        // Both levels were released, or this would block.
        let g = cond
            .acquire_timeout(LONG)
            .expect("the waiter released the lock");
        assert_eq!(g.notify(1), 1);
        drop(g);
        assert_eq!(out.get_timeout(LONG).unwrap(), 2, "both levels restored");
        assert_eq!(p.join().unwrap(), 0);
    });
}

// ---------------------------------------------------------------- Barrier

/// Counts passes when used as the barrier's action (each process sets it
/// before waiting; the action runs in whichever arrives last).
static PASSES: OnceLock<Semaphore> = OnceLock::new();

fn count_pass() {
    PASSES.get().expect("PASSES set before waiting").release();
}

/// Passes the barrier `n` times; after each pass checks that the action ran
/// exactly once per pass so far, and reports the arrival indices.
fn lockstep(barrier: Barrier, passes: Semaphore, n: u32, out: Queue<Vec<usize>>) {
    let _ = PASSES.set(passes.clone());
    let mut indices = Vec::new();
    for pass in 0..n {
        let i = barrier.wait().expect("barrier broken");
        // The action of pass k+1 needs this process to arrive there too.
        let v = passes.value();
        assert_eq!(v, pass + 1, "pass {pass}: action count");
        indices.push(i);
    }
    out.put(indices).unwrap();
}

fn run_lockstep(parties: u32, n: u32) {
    let passes = Semaphore::new(0).unwrap();
    let _ = PASSES.set(passes.clone());
    let barrier = Barrier::builder(parties)
        .action(count_pass)
        .build()
        .unwrap();
    let out = Queue::new().unwrap();
    let ps: Vec<Process> = (0..parties)
        .map(|_| Process::new(lockstep, (barrier.clone(), passes.clone(), n, out.clone())))
        .collect();
    for p in &ps {
        start(p);
    }
    let all: Vec<Vec<usize>> = (0..parties)
        .map(|_| out.get_timeout(LONG).unwrap())
        .collect();
    for p in &ps {
        assert_eq!(p.join().unwrap(), 0);
    }
    for pass in 0..n as usize {
        let mut got: Vec<usize> = all.iter().map(|v| v[pass]).collect();
        got.sort();
        assert_eq!(
            got,
            (0..parties as usize).collect::<Vec<_>>(),
            "pass {pass}"
        );
    }
    assert_eq!(passes.value(), n, "the action ran once per pass");
    assert!(!barrier.is_broken());
}

#[test]
fn barrier_lock_step_ten_passes_of_five_processes() {
    // CPython _TestBarrier.test_barrier_10 and test_action: one index 0
    // (indeed each index once) per pass, the action once per pass.
    bounded(LIMIT, || run_lockstep(5, 10));
}

#[test]
fn barrier_thousand_passes_of_three_processes() {
    // CPython _TestBarrier.test_thousand (with 3 processes, not 5).
    bounded(LIMIT, || {
        let t = Instant::now();
        run_lockstep(3, 1000);
        eprintln!("1000 passes x 3 processes: {:?}", t.elapsed());
    });
}

/// Waits once and reports whether it passed.
fn barrier_waiter(barrier: Barrier, out: Queue<Option<usize>>) {
    out.put(barrier.wait_timeout(LONG).ok()).unwrap();
}

#[test]
fn barrier_abort_breaks_it_for_the_waiters() {
    // CPython _TestBarrier.test_abort.
    bounded(LIMIT, || {
        let barrier = Barrier::new(3).unwrap();
        let out = Queue::new().unwrap();
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::new(barrier_waiter, (barrier.clone(), out.clone())))
            .collect();
        for p in &ps {
            start(p);
        }
        assert!(eventually(LONG, || barrier.n_waiting() == 2));
        barrier.abort();
        assert_eq!(out.get_timeout(LONG).unwrap(), None);
        assert_eq!(out.get_timeout(LONG).unwrap(), None);
        assert!(barrier.is_broken());
        assert!(barrier.wait().is_err());
        for p in &ps {
            p.join().unwrap();
        }
    });
}

#[test]
fn barrier_reset_frees_waiters_and_is_reusable() {
    // CPython _TestBarrier.test_reset.
    bounded(LIMIT, || {
        let barrier = Barrier::new(3).unwrap();
        let out = Queue::new().unwrap();
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::new(barrier_waiter, (barrier.clone(), out.clone())))
            .collect();
        for p in &ps {
            start(p);
        }
        assert!(eventually(LONG, || barrier.n_waiting() == 2));
        barrier.reset();
        assert_eq!(out.get_timeout(LONG).unwrap(), None);
        assert_eq!(out.get_timeout(LONG).unwrap(), None);
        assert!(!barrier.is_broken());
        for p in &ps {
            p.join().unwrap();
        }
        // Reusable: a full pass.
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::new(barrier_waiter, (barrier.clone(), out.clone())))
            .collect();
        for p in &ps {
            start(p);
        }
        let mine = barrier.wait_timeout(LONG).unwrap();
        let mut all = vec![
            mine,
            out.get_timeout(LONG).unwrap().unwrap(),
            out.get_timeout(LONG).unwrap().unwrap(),
        ];
        all.sort();
        assert_eq!(all, [0, 1, 2]);
        for p in &ps {
            p.join().unwrap();
        }
    });
}

fn barrier_impatient(barrier: Barrier, out: Queue<bool>) {
    let timed_out =
        barrier.wait_timeout(Duration::from_millis(100)) == Err(BarrierTimeoutError::Timeout);
    out.put(timed_out).unwrap();
}

#[test]
fn barrier_timeout_breaks_it_for_all() {
    // CPython _TestBarrier.test_timeout / test_default_timeout.
    bounded(LIMIT, || {
        let barrier = Barrier::new(3).unwrap();
        let out = Queue::new().unwrap();
        let p = Process::new(barrier_impatient, (barrier.clone(), out.clone()));
        start(&p);
        assert_eq!(
            barrier.wait_timeout(LONG),
            Err(BarrierTimeoutError::BrokenBarrier)
        );
        assert!(out.get_timeout(LONG).unwrap());
        assert!(barrier.is_broken());
        p.join().unwrap();

        let with_default = Barrier::with_timeout(2, Duration::from_millis(100)).unwrap();
        let t = Instant::now();
        assert!(with_default.wait().is_err());
        assert!(t.elapsed() >= Duration::from_millis(95));
        assert!(with_default.is_broken());
    });
}

#[test]
fn barrier_of_one_never_blocks() {
    bounded(LIMIT, || {
        let barrier = Barrier::new(1).unwrap();
        for _ in 0..100 {
            assert_eq!(barrier.wait(), Ok(0));
        }
    });
}

fn barrier_wait_long(barrier: Barrier) {
    let _ = barrier.wait_timeout(Duration::from_secs(60));
}

#[test]
fn barrier_participant_killed_while_waiting_breaks_it_within_a_second() {
    bounded(LIMIT, || {
        let barrier = Barrier::new(3).unwrap();
        let p = Process::new(barrier_wait_long, (barrier.clone(),));
        start(&p);
        assert!(eventually(LONG, || barrier.n_waiting() == 1));
        let waiter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || barrier.wait_timeout(LONG))
        };
        assert!(eventually(LONG, || barrier.n_waiting() == 2));
        p.kill().unwrap();
        let killed_at = Instant::now();
        assert_eq!(
            waiter.join().unwrap(),
            Err(BarrierTimeoutError::BrokenBarrier)
        );
        let e = killed_at.elapsed();
        assert!(e < Duration::from_secs(1), "took {e:?}");
        assert!(barrier.is_broken());
        assert_eq!(p.join().unwrap(), -9);
    });
}
