//! The process tree's key (Python's `current_process().authkey`) and the
//! barrier action it authenticates, across real processes under every start
//! method. `Fork` refuses in this multi-threaded test process, so its cases
//! run in a `Spawn` child (single-threaded) that forks.

multiprocess::init_before_main!();

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{LIMIT, bounded};
use multiprocess::{Barrier, Process, Queue, Semaphore, StartMethod, current_process, get_context};

const LONG: Duration = Duration::from_secs(30);
const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::ForkServer,
    StartMethod::Spawn,
];

fn join_ok(p: &Process) {
    let code = p
        .join_timeout(LONG)
        .expect("started")
        .expect("exited in time");
    assert_eq!(code, 0, "{p:?}");
}

/// Starts `direct`, or for `Fork` (refused in this multi-threaded process)
/// `via_fork_driver`, a single-threaded `Spawn` child that forks.
fn start_with(method: StartMethod, direct: Process, via_fork_driver: Process) -> Process {
    let p = if method == StartMethod::Fork {
        via_fork_driver
    } else {
        direct
    };
    p.start().expect("start");
    p
}

// ------------------------------------------------------- the key itself

fn report_key(out: Queue<Vec<u8>>) {
    out.put(current_process().authkey().to_vec()).unwrap();
}

/// In a `Spawn` child: reports its own key and a `Fork` child's.
fn report_keys_with_fork(out: Queue<Vec<u8>>) {
    report_key(out.clone());
    let p = get_context(StartMethod::Fork).process(report_key, (out,));
    p.start().expect("fork from a single-threaded child");
    join_ok(&p);
}

#[test]
fn every_start_method_passes_the_key_to_the_child() {
    bounded(LIMIT, || {
        let mine = current_process().authkey();
        assert_ne!(mine, [0; 32]);
        for method in METHODS {
            let out = Queue::new().unwrap();
            let p = start_with(
                method,
                get_context(method).process(report_key, (out.clone(),)),
                get_context(StartMethod::Spawn).process(report_keys_with_fork, (out.clone(),)),
            );
            let reports = if method == StartMethod::Fork { 2 } else { 1 };
            for _ in 0..reports {
                let key = out.get_timeout(LONG).expect("a key");
                assert_eq!(key, mine, "{method:?} child's key");
            }
            join_ok(&p);
        }
    });
}

// ------------------------------------- a barrier action, once per pass

/// Counts passes when used as the action (each participant sets it before
/// waiting; the action runs in whichever arrives last).
static PASSES: OnceLock<Semaphore> = OnceLock::new();

fn count_pass() {
    PASSES.get().expect("PASSES set before waiting").release();
}

const PASS_COUNT: u32 = 5;

fn participant(barrier: Barrier, passes: Semaphore) {
    let _ = PASSES.set(passes);
    for pass in 0..PASS_COUNT {
        barrier
            .wait_timeout(LONG)
            .unwrap_or_else(|e| panic!("pass {pass}: {e}"));
    }
}

/// Runs the participants of one barrier as children of `method`.
fn participants(method: StartMethod, barrier: Barrier, passes: Semaphore) {
    let ps: Vec<Process> = (0..barrier.parties())
        .map(|_| get_context(method).process(participant, (barrier.clone(), passes.clone())))
        .collect();
    for p in &ps {
        p.start().expect("start");
    }
    for p in &ps {
        join_ok(p);
    }
}

fn fork_participants(barrier: Barrier, passes: Semaphore) {
    participants(StartMethod::Fork, barrier, passes)
}

#[test]
fn the_action_runs_once_per_pass_under_every_start_method() {
    bounded(LIMIT, || {
        for method in METHODS {
            let passes = Semaphore::new(0).unwrap();
            let barrier = Barrier::builder(3).action(count_pass).build().unwrap();
            if method == StartMethod::Fork {
                let driver = get_context(StartMethod::Spawn)
                    .process(fork_participants, (barrier.clone(), passes.clone()));
                driver.start().expect("start");
                join_ok(&driver);
            } else {
                participants(method, barrier.clone(), passes.clone());
            }
            assert_eq!(
                passes.value(),
                PASS_COUNT,
                "{method:?}: one action per pass"
            );
            assert!(!barrier.is_broken(), "{method:?}");
        }
    });
}

// ------------------------------------------------------------ forgery

static LEGIT_RUNS: AtomicU32 = AtomicU32::new(0);
static EVIL_RUNS: AtomicU32 = AtomicU32::new(0);

fn legit() {
    LEGIT_RUNS.fetch_add(1, Ordering::SeqCst);
}
fn evil() {
    EVIL_RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Where the action's words sit in a barrier's page (see the table in
/// `src/sync/barrier.rs`): the offset, the executable's dev and inode, and
/// the 32-byte MAC.
const ACTION: u64 = 40;
const ACTION_MAC: u64 = 72;
const PARTIES: u64 = 20;

/// This process's barrier pages, opened for writing through `/proc`, as
/// `(parties, file)`.
fn barrier_pages() -> Vec<(u32, std::fs::File)> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let path = entry.unwrap().path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        if !target.to_string_lossy().contains("multiprocess-barrier") {
            continue;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut word = [0u8; 4];
        file.read_exact_at(&mut word, PARTIES).unwrap();
        pages.push((u32::from_le_bytes(word), file));
    }
    pages
}

/// A holder of both barriers (`victim` of 2 parties, `other` of 3) rewrites
/// the victim's stored action: `how` 0 points it at the other barrier's
/// action (a real entry point of this executable), 1 flips a bit of its MAC.
fn forge(victim: Barrier, other: Barrier, how: u8) {
    let pages = barrier_pages();
    let find = |parties| &pages.iter().find(|(p, _)| *p == parties).expect("page").1;
    let (victim_page, other_page) = (find(victim.parties()), find(other.parties()));
    match how {
        0 => {
            let mut offset = [0u8; 8];
            other_page.read_exact_at(&mut offset, ACTION).unwrap();
            victim_page.write_all_at(&offset, ACTION).unwrap();
        }
        2 => {
            // The whole authenticated action of another barrier of this
            // tree: offset, executable identity, flag and MAC.
            let mut words = [0u8; (ACTION_MAC + 32 - ACTION) as usize];
            other_page.read_exact_at(&mut words, ACTION).unwrap();
            victim_page.write_all_at(&words, ACTION).unwrap();
        }
        _ => {
            let mut byte = [0u8; 1];
            victim_page
                .read_exact_at(&mut byte, ACTION_MAC + 5)
                .unwrap();
            byte[0] ^= 0x10;
            victim_page.write_all_at(&byte, ACTION_MAC + 5).unwrap();
        }
    }
    drop((victim, other));
}

/// The other participant: waits once and reports the outcome, `Ok(index)`
/// or the error's message.
fn wait_and_report(barrier: Barrier, out: Queue<Result<usize, String>>) {
    out.put(barrier.wait_timeout(LONG).map_err(|e| e.to_string()))
        .unwrap();
}

#[test]
fn a_forged_action_is_not_run_and_breaks_the_barrier_for_everyone() {
    bounded(LIMIT, || {
        for (method, how) in [
            (StartMethod::ForkServer, 0),
            (StartMethod::Spawn, 1),
            (StartMethod::ForkServer, 2),
        ] {
            let victim = Barrier::builder(2).action(legit).build().unwrap();
            let other = Barrier::builder(3).action(evil).build().unwrap();
            let before = LEGIT_RUNS.load(Ordering::SeqCst);
            let t = {
                let victim = victim.clone();
                std::thread::spawn(move || victim.wait_timeout(LONG).is_ok())
            };
            assert!(victim.wait_timeout(LONG).is_ok());
            assert!(t.join().unwrap());
            assert_eq!(
                LEGIT_RUNS.load(Ordering::SeqCst),
                before + 1,
                "the real action runs"
            );

            let p = get_context(method).process(forge, (victim.clone(), other.clone(), how));
            p.start().expect("start");
            join_ok(&p);

            // Whichever of us arrives last finds the forgery; neither hangs.
            let out = Queue::new().unwrap();
            let w = get_context(method).process(wait_and_report, (victim.clone(), out.clone()));
            w.start().expect("start");
            let mine = victim.wait_timeout(LONG).map_err(|e| e.to_string());
            let theirs = out
                .get_timeout(LONG)
                .expect("the other participant returned");
            join_ok(&w);
            // Both fail; the one that arrived last and checked the action
            // says why, the other sees the plain broken barrier.
            let refused = "barrier is broken: its action cannot run here: the stored action \
                           fails authentication under this process tree's key";
            let (both, why): (Vec<_>, Vec<_>) = [&mine, &theirs]
                .into_iter()
                .map(|r| r.as_ref().expect_err("no participant passes"))
                .partition(|e| e.as_str() == "barrier is broken");
            assert_eq!(
                (both.len(), why.len()),
                (1, 1),
                "{method:?}, forgery {how}: {mine:?} {theirs:?}"
            );
            assert!(
                why[0].starts_with(refused),
                "{method:?}, forgery {how}: {}",
                why[0]
            );
            assert!(victim.is_broken());
            assert_eq!(
                LEGIT_RUNS.load(Ordering::SeqCst),
                before + 1,
                "nothing more ran here"
            );
            assert_eq!(
                EVIL_RUNS.load(Ordering::SeqCst),
                0,
                "the forged target never ran here"
            );
            // Still refused after a reset: the stored action stays forged.
            victim.reset();
            let t = {
                let victim = victim.clone();
                std::thread::spawn(move || victim.wait_timeout(LONG))
            };
            let mine = victim.wait_timeout(LONG);
            let theirs = t.join().unwrap();
            assert!(mine.is_err() && theirs.is_err(), "{mine:?} {theirs:?}");
            assert_eq!(EVIL_RUNS.load(Ordering::SeqCst), 0);
            assert_eq!(LEGIT_RUNS.load(Ordering::SeqCst), before + 1);
        }
    });
}
