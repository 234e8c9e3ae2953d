//! SharedMemory across real processes: CPython's `_TestSharedMemory` and the
//! shared-memory half of `TestResourceTracker`
//! (`test_shared_memory_cleaned_after_process_termination`, gh-82300).

multiprocess::init_before_main!();

mod common;

use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{LIMIT, assert_shm_gone_within, eventually, pid_gone, shm_exists, unique_shm_name};
use multiprocess::{Process, Queue, SharedMemory, SharedMemoryError, StartMethod, get_context};

/// The test that kills the tracker runs alone; the others share.
static TRACKER: RwLock<()> = RwLock::new(());

/// `common::bounded`, sharing the tracker with the other tests.
fn bounded<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let _shared = TRACKER.read().unwrap_or_else(|e| e.into_inner());
    common::bounded(limit, body)
}

fn write_by_name(name: String, offset: usize, data: Vec<u8>) {
    let shm = SharedMemory::attach(&name).unwrap();
    shm.write_at(offset, &data).unwrap();
}

#[test]
fn attach_by_name_sees_writes_across_processes() {
    bounded(LIMIT, || {
        let name = unique_shm_name("attach");
        let shm = SharedMemory::create(Some(&name), 4096).unwrap();
        assert_eq!(shm.name(), name);
        assert!(shm_exists(&name));
        shm.write_at(0, b"parent").unwrap();
        let p = Process::new(write_by_name, (name.clone(), 100, b"child".to_vec()));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        let mut buf = [0u8; 5];
        shm.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, b"child");
        // The child's exit did not take the segment with it: we hold it.
        assert!(shm_exists(&name));
        let again = SharedMemory::attach(&name).unwrap();
        let mut buf = [0u8; 6];
        again.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"parent");
        shm.unlink().unwrap();
        assert!(!shm_exists(&name));
    });
}

#[test]
fn size_is_at_least_requested_and_attach_takes_the_segments_size() {
    bounded(LIMIT, || {
        let shm = SharedMemory::create(None, 1000).unwrap();
        assert!(shm.name().starts_with("psm_"), "{}", shm.name());
        assert!(shm.size() >= 1000);
        assert_eq!(shm.to_vec().len(), shm.size());
        let attached = SharedMemory::attach(shm.name()).unwrap();
        assert_eq!(attached.size(), shm.size());
        // A leading slash is accepted and not part of the name, as in Python.
        let slashed = SharedMemory::attach(&format!("/{}", shm.name())).unwrap();
        assert_eq!(slashed.name(), shm.name());
        shm.unlink().unwrap();
        assert!(!shm_exists(shm.name()));
    });
}

#[test]
fn errors_match_python() {
    bounded(LIMIT, || {
        assert!(matches!(
            SharedMemory::create(None, 0),
            Err(SharedMemoryError::ZeroSize)
        ));
        let name = unique_shm_name("errors");
        assert!(matches!(
            SharedMemory::attach(&name),
            Err(SharedMemoryError::NotFound { .. })
        ));
        let shm = SharedMemory::create(Some(&name), 16).unwrap();
        assert!(matches!(
            SharedMemory::create(Some(&name), 16),
            Err(SharedMemoryError::AlreadyExists { .. })
        ));
        shm.unlink().unwrap();
        assert!(matches!(
            shm.unlink(),
            Err(SharedMemoryError::NotFound { .. })
        ));
        for bad in ["a\0b", "a/b", "", "/"] {
            assert!(
                matches!(
                    SharedMemory::create(Some(bad), 16),
                    Err(SharedMemoryError::InvalidName { .. })
                ),
                "{bad:?}"
            );
            assert!(matches!(
                SharedMemory::attach(bad),
                Err(SharedMemoryError::InvalidName { .. })
            ));
        }
        assert!(matches!(
            shm.read_at(10, &mut [0; 7]),
            Err(SharedMemoryError::OutOfBounds { .. })
        ));
        assert!(matches!(
            shm.atomic_u64(4),
            Err(SharedMemoryError::Misaligned { .. })
        ));
        // A segment whose creator has not sized it yet.
        let empty = unique_shm_name("empty");
        std::fs::File::create(Path::new("/dev/shm").join(&empty)).unwrap();
        assert!(matches!(
            SharedMemory::attach(&empty),
            Err(SharedMemoryError::Empty { .. })
        ));
        std::fs::remove_file(Path::new("/dev/shm").join(&empty)).unwrap();
        // The mapping outlives the name.
        shm.write_at(0, b"still mapped").unwrap();
    });
}

fn write_passed(shm: SharedMemory) {
    assert!(shm.is_tracked());
    shm.write_at(0, b"written by the child").unwrap();
}

fn passing_to_a_child_attaches_the_same_segment(method: StartMethod) {
    let shm = SharedMemory::create(Some(&unique_shm_name("pass")), 64).unwrap();
    let p = get_context(method).process(write_passed, (SharedMemory::attach(shm.name()).unwrap(),));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let mut buf = [0u8; 20];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"written by the child");
    // The child registered the segment with the same tracker: its exit
    // does not unlink a segment we still hold.
    std::thread::sleep(Duration::from_millis(200));
    assert!(shm_exists(shm.name()));
    shm.unlink().unwrap();
}

#[test]
fn passing_to_a_forkserver_child_attaches_the_same_segment() {
    bounded(LIMIT, || {
        passing_to_a_child_attaches_the_same_segment(StartMethod::ForkServer)
    });
}

#[test]
fn passing_to_a_spawned_child_attaches_the_same_segment() {
    bounded(LIMIT, || {
        passing_to_a_child_attaches_the_same_segment(StartMethod::Spawn)
    });
}

fn never_runs(_shm: SharedMemory) {}

#[test]
fn after_unlink_a_child_cannot_attach() {
    bounded(LIMIT, || {
        let shm = SharedMemory::create(Some(&unique_shm_name("unlinked")), 64).unwrap();
        let p = Process::new(never_runs, (SharedMemory::attach(shm.name()).unwrap(),));
        shm.unlink().unwrap();
        // Decoding the argument fails in the child: it exits with an error.
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 1);
        assert!(SharedMemory::attach(shm.name()).is_err());
    });
}

fn add_many(shm: SharedMemory, times: u64) {
    let counter = shm.atomic_u64(8).unwrap();
    for _ in 0..times {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn atomics_are_shared_between_processes() {
    bounded(LIMIT, || {
        let shm = SharedMemory::create(None, 16).unwrap();
        let ps: Vec<Process> = (0..3)
            .map(|_| {
                Process::new(
                    add_many,
                    (SharedMemory::attach(shm.name()).unwrap(), 10_000),
                )
            })
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(shm.atomic_u64(8).unwrap().load(Ordering::SeqCst), 30_000);
        shm.unlink().unwrap();
    });
}

/// Creates a tracked segment, reports its name, and waits to be killed.
fn create_and_wait(name: String, ready: Queue<String>) {
    let shm = SharedMemory::create(Some(&name), 1 << 20).unwrap();
    shm.write_at(0, b"leaked").unwrap();
    ready.put(name).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a child that creates segment `tag…`, then ends it with `signal`
/// and checks that the tracker unlinks the segment within 2 s.
fn creator_ended_by_signal_leaks_nothing(tag: &str, signal: i32, method: StartMethod) {
    let name = unique_shm_name(tag);
    let ready = Queue::new().unwrap();
    let p = get_context(method).process(create_and_wait, (name.clone(), ready.clone()));
    p.start().unwrap();
    assert_eq!(ready.get_timeout(Duration::from_secs(20)).unwrap(), name);
    assert!(shm_exists(&name));
    if signal == 9 {
        p.kill().unwrap();
    } else {
        p.terminate().unwrap();
    }
    assert_eq!(p.join().unwrap(), -signal);
    let ended = Instant::now();
    assert_shm_gone_within(&name, Duration::from_secs(2));
    eprintln!("unlinked {:?} after the signal", ended.elapsed());
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(SharedMemoryError::NotFound { .. })
    ));
}

#[test]
fn segment_of_a_killed_creator_is_unlinked() {
    // CPython test_shared_memory_cleaned_after_process_termination.
    bounded(LIMIT, || {
        creator_ended_by_signal_leaks_nothing("killed", 9, StartMethod::ForkServer)
    });
}

#[test]
fn segment_of_a_killed_spawned_creator_is_unlinked() {
    bounded(LIMIT, || {
        creator_ended_by_signal_leaks_nothing("killed_spawned", 9, StartMethod::Spawn)
    });
}

#[test]
fn segment_of_a_terminated_creator_is_unlinked() {
    bounded(LIMIT, || {
        creator_ended_by_signal_leaks_nothing("terminated", 15, StartMethod::ForkServer)
    });
}

/// The pid of the process listening on this test binary's tracker address
/// (from /proc/net/unix and /proc/*/fd).
fn tracker_pid() -> Option<u32> {
    let uid = rustix::process::getuid().as_raw();
    let path = format!("@multiprocess-shm-{uid}-{}", std::process::id());
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let inode = table.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
        (cols.len() == 8 && cols[7] == path && cols[3] == "00010000").then(|| cols[6].to_owned())
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)) {
                return Some(pid);
            }
        }
    }
    None
}

#[test]
fn tracker_ignores_ctrl_c_and_restarts_after_being_killed() {
    // CPython TestResourceTracker: the tracker survives SIGINT/SIGTERM and is
    // restarted if killed. Runs alone: it kills the tracker the others share.
    let _alone = TRACKER.write().unwrap_or_else(|e| e.into_inner());
    common::bounded(LIMIT, || {
        let held = SharedMemory::create(Some(&unique_shm_name("held")), 64).unwrap();
        let pid = tracker_pid().expect("the tracker listens");
        let tracker = rustix::process::Pid::from_raw(pid as i32).unwrap();
        for sig in [
            rustix::process::Signal::INT,
            rustix::process::Signal::TERM,
            rustix::process::Signal::HUP,
        ] {
            rustix::process::kill_process(tracker, sig).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(!pid_gone(pid), "the tracker died of a termination signal");
        rustix::process::kill_process(tracker, rustix::process::Signal::KILL).unwrap();
        assert!(eventually(Duration::from_secs(5), || pid_gone(pid)));
        // A child starts a new tracker, which cleans up after the child.
        creator_ended_by_signal_leaks_nothing("restarted", 9, StartMethod::ForkServer);
        // Our own handle still works; unlinking reconnects us to a tracker
        // (that one exited with the child, its only client).
        held.write_at(0, b"still here").unwrap();
        held.unlink().unwrap();
        let restarted = tracker_pid().expect("a new tracker listens");
        assert_ne!(restarted, pid);
    });
}

fn attach_and_exit(name: String, tracked: bool) {
    let shm = if tracked {
        SharedMemory::attach(&name).unwrap()
    } else {
        SharedMemory::attach_untracked(&name).unwrap()
    };
    assert_eq!(shm.is_tracked(), tracked);
}

#[test]
fn untracked_attacher_does_not_unlink_at_exit() {
    // gh-82300: a process attaching with track=False must not unlink.
    bounded(LIMIT, || {
        let shm = SharedMemory::create_untracked(Some(&unique_shm_name("untracked")), 64).unwrap();
        let p = Process::new(attach_and_exit, (shm.name().to_owned(), false));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(300));
        assert!(shm_exists(shm.name()));
        // Nor does a tracked attacher: the tree did not create the segment
        // as tracked, so the tracker does not own it and never unlinks it
        // (it only unlinks names its tree created; see tests/shm_ownership.rs).
        let p = Process::new(attach_and_exit, (shm.name().to_owned(), true));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(300));
        assert!(shm_exists(shm.name()));
        shm.unlink().unwrap();
    });
}

#[test]
fn a_segment_dropped_without_unlink_stays_while_its_creator_lives() {
    bounded(LIMIT, || {
        let name = unique_shm_name("dropped");
        drop(SharedMemory::create(Some(&name), 64).unwrap());
        assert!(shm_exists(&name));
        let shm = SharedMemory::attach(&name).unwrap();
        shm.unlink().unwrap();
        assert!(!shm_exists(&name));
    });
}

/// Creates a segment, sends it to the parent, and waits for the parent to
/// say it attached before exiting.
fn create_and_send(out: Queue<SharedMemory>, ack: Queue<()>) {
    let shm = SharedMemory::create(None, 32).unwrap();
    shm.write_at(0, b"made by a worker").unwrap();
    out.put(shm).unwrap();
    ack.get_timeout(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_segment_sent_through_a_queue_is_attached_by_the_receiver() {
    bounded(LIMIT, || {
        let (out, ack) = (Queue::new().unwrap(), Queue::new().unwrap());
        let p = Process::new(create_and_send, (out.clone(), ack.clone()));
        p.start().unwrap();
        let shm = out.get_timeout(Duration::from_secs(20)).unwrap();
        ack.put(()).unwrap();
        assert_eq!(p.join().unwrap(), 0);
        // We hold it now, so the worker's exit did not unlink it.
        std::thread::sleep(Duration::from_millis(200));
        assert!(shm_exists(shm.name()));
        let mut buf = [0u8; 16];
        shm.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"made by a worker");
        shm.unlink().unwrap();
    });
}

fn attach_and_unlink(name: String) {
    SharedMemory::attach(&name).unwrap().unlink().unwrap();
}

fn create_until_told(name: String, ready: Queue<()>, go: Queue<()>) {
    let shm = SharedMemory::create(Some(&name), 4096).unwrap();
    shm.write_at(0, b"new").unwrap();
    ready.put(()).unwrap();
    go.get_timeout(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_name_unlinked_elsewhere_and_created_again_is_held_again_when_attached() {
    // This process holds a name; another unlinks it (the tracker forgets
    // every hold on it); a third creates the name again, this process
    // attaches the new segment, and the creator exits. The tracker must count
    // this process as a holder of the new segment and leave it in place.
    bounded(LIMIT, || {
        let name = unique_shm_name("reused");
        let first = SharedMemory::create(Some(&name), 4096).unwrap();
        let u = Process::new(attach_and_unlink, (name.clone(),));
        u.start().unwrap();
        assert_eq!(u.join().unwrap(), 0);
        assert!(!shm_exists(&name));
        drop(first);
        let (ready, go) = (Queue::new().unwrap(), Queue::new().unwrap());
        let c = Process::new(create_until_told, (name.clone(), ready.clone(), go.clone()));
        c.start().unwrap();
        ready.get_timeout(Duration::from_secs(30)).unwrap();
        let second = SharedMemory::attach(&name).unwrap();
        go.put(()).unwrap();
        assert_eq!(c.join().unwrap(), 0);
        // Give the tracker time to see the creator go.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            shm_exists(&name),
            "the tracker unlinked a segment this process still holds"
        );
        let mut buf = [0u8; 3];
        second.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"new");
        second.unlink().unwrap();
    });
}
