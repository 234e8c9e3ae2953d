//! Shared memory under faults real deployments bring: a `/dev/shm` too small
//! for a segment (Docker's default is 64 MiB), and a `ShareableList` writer
//! stopped or killed in the middle of a `set`.

multiprocess::init_before_main!();

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, unique_shm_name};
use multiprocess::{
    Event, Process, ShareableList, ShareableListError, SharedMemory, SharedMemoryError,
    StartMethod, get_context,
};

/// A child's exit code meaning "cannot make a mount namespace here: skip".
const SKIP: i32 = 77;

/// Moves the calling thread into a mount namespace of its own with a 1 MiB
/// tmpfs on `/dev/shm` (as root; `Err` with the reason otherwise).
fn mount_small_dev_shm() -> Result<(), String> {
    // Only this thread moves; `shm_open` runs on it. (`unshare` is
    // deprecated in rustix for `CLONE_FILES`, which is not used here.)
    #[allow(deprecated)]
    rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    // `mount(8)` runs in the namespace of the thread that forks it.
    for args in [
        &["--make-rprivate", "/"][..],
        &["-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"],
    ] {
        let out = std::process::Command::new("mount")
            .args(args)
            .output()
            .map_err(|e| format!("mount {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// The names in (this namespace's) `/dev/shm`.
/// Segments in `/dev/shm`, leaving out the per-user liveness domain, an
/// empty file that stays by design (`sys/liveness.rs`).
fn dev_shm_names() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("multiprocess-liveness-"))
        .collect()
}

/// In a `Spawn` child with a 1 MiB `/dev/shm`: a 4 MiB segment and a 2 MiB
/// list are refused with `NoSpace`, leave nothing behind, and what fits
/// still works. Without the reservation, creating succeeds and the first
/// write past 1 MiB kills the child with SIGBUS.
fn in_a_small_dev_shm(name: String) {
    if let Err(why) = mount_small_dev_shm() {
        eprintln!("skipped: {why}");
        std::process::exit(SKIP);
    }
    const BIG: usize = 4 << 20;
    match SharedMemory::create(Some(&name), BIG) {
        Ok(shm) => {
            for offset in (0..shm.size()).step_by(4096) {
                shm.write_at(offset, &[1; 4096]).unwrap();
            }
            panic!("a {BIG}-byte segment was created and written in a 1 MiB /dev/shm");
        }
        Err(e @ SharedMemoryError::NoSpace { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&BIG.to_string()) && text.contains("/dev/shm is too small"),
                "{text}"
            );
            eprintln!("as expected: {e}");
        }
        Err(e) => panic!("unexpected error: {e:?}"),
    }
    assert_eq!(dev_shm_names(), Vec::<String>::new(), "left behind");

    match ShareableList::new([vec![7u8; 2 << 20]]) {
        Ok(_) => panic!("a 2 MiB list was created in a 1 MiB /dev/shm"),
        Err(ShareableListError::SharedMemory(SharedMemoryError::NoSpace { size, .. })) => {
            assert!(size > 2 << 20, "{size}");
        }
        Err(e) => panic!("unexpected error: {e:?}"),
    }
    assert_eq!(dev_shm_names(), Vec::<String>::new(), "left behind");

    // The space is all there still: what fits is created and written.
    let shm = SharedMemory::create(Some(&name), 512 << 10).unwrap();
    for offset in (0..shm.size()).step_by(4096) {
        shm.write_at(offset, &[2; 4096]).unwrap();
    }
    let list = ShareableList::new([vec![3u8; 256 << 10]]).unwrap();
    assert_eq!(list.get_bytes(0).unwrap(), vec![3u8; 256 << 10]);
    list.unlink().unwrap();
    shm.unlink().unwrap();
}

#[test]
fn a_small_dev_shm_is_an_error_at_creation_not_a_sigbus() {
    bounded(LIMIT, || {
        // Start the tracker here, in the host's mount namespace, so the
        // child registers with it rather than starting one in its own.
        SharedMemory::create(None, 8).unwrap().unlink().unwrap();
        let p = get_context(StartMethod::Spawn)
            .process(in_a_small_dev_shm, (unique_shm_name("small"),));
        p.start().unwrap();
        let code = p
            .join_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("the child did not finish within 60 s");
        if code == SKIP {
            eprintln!("skipped: no mount namespace with a small /dev/shm here (see the child)");
            return;
        }
        assert_eq!(code, 0, "the child failed (-7 is SIGBUS)");
    });
}

/// How many bytes slot 0 holds: a `set` takes long enough (a millisecond or
/// more) that a stop signal often lands inside one.
const BIG_ITEM: usize = 1 << 20;

/// Sets slot 0 of list `name` to ever-changing 1 MiB values until `stop`,
/// pausing 3 ms after each (a seqlock reader needs a gap between writes as
/// long as its own copy to finish a read).
fn write_big_forever(name: String, stop: Event) {
    let list = ShareableList::attach(&name).unwrap();
    let mut v = vec![0u8; BIG_ITEM];
    let mut n = 0u8;
    while !stop.is_set() {
        n = n.wrapping_add(1);
        v.fill(n);
        list.set(0, v.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Slot 0's state word (at 32 + 8): its sequence (bits 40..) is odd while a
/// `set` is under way.
fn write_under_way(list: &ShareableList) -> bool {
    let state = list.shm().atomic_u64(40).unwrap().load(Ordering::SeqCst);
    (state >> 40) % 2 == 1
}

/// Whether process `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Thread `tid`'s CPU time (user + system) so far, from
/// `/proc/self/task/<tid>/stat` (fields 14 and 15, in clock ticks of
/// 10 ms: `USER_HZ` is 100 on Linux).
fn thread_cpu_time(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Starts a writer of 1 MiB values into a fresh list and stops it (SIGSTOP)
/// in the middle of a `set`, retrying at random moments until one lands
/// there. Returns the list, the writer, its pid and its stop event.
fn writer_stopped_mid_write() -> (ShareableList, Process, u32, Event) {
    let list = ShareableList::new([vec![0u8; BIG_ITEM]]).unwrap();
    let stop = Event::new().unwrap();
    let p = Process::new(write_big_forever, (list.name().to_owned(), stop.clone()));
    p.start().unwrap();
    let pid = p.pid().unwrap();
    while list.get_bytes(0).unwrap()[0] == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    loop {
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..5000)));
        signal(pid, rustix::process::Signal::STOP);
        while !stopped(pid) {
            std::thread::yield_now();
        }
        if write_under_way(&list) {
            return (list, p, pid, stop);
        }
        signal(pid, rustix::process::Signal::CONT);
    }
}

#[test]
fn a_reader_waits_for_a_paused_writer_without_spinning_and_never_calls_it_corrupt() {
    bounded(LIMIT, || {
        let (list, p, pid, stop) = writer_stopped_mid_write();
        let name = list.name().to_owned();
        // The reader: one `get` that starts while the writer is stopped.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let list = ShareableList::attach(&name).unwrap();
            tid_tx
                .send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            let got = list.get_bytes(0);
            (got, Instant::now())
        });
        let tid = tid_rx.recv().unwrap();
        // Well past the old one-second verdict.
        let pause = Duration::from_millis(2500);
        let cpu_before = thread_cpu_time(tid);
        let start = Instant::now();
        std::thread::sleep(pause);
        assert!(
            !reader.is_finished(),
            "the reader returned while the writer was stopped: {:?}",
            reader.join().unwrap().0
        );
        let cpu = thread_cpu_time(tid) - cpu_before;
        let wall = start.elapsed();
        assert!(
            cpu < wall / 5,
            "the reader used {cpu:?} of CPU in {wall:?} while the writer was stopped"
        );
        eprintln!("reader CPU during a {wall:?} pause: {cpu:?}");
        let resumed = Instant::now();
        signal(pid, rustix::process::Signal::CONT);
        let (got, at) = reader.join().unwrap();
        let bytes = got.expect("a paused writer is not corruption");
        assert_eq!(bytes.len(), BIG_ITEM);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "torn read");
        assert!(
            at.duration_since(resumed) < Duration::from_secs(2),
            "the reader took {:?} to see the resumed write",
            at.duration_since(resumed)
        );
        stop.set();
        assert_eq!(p.join().unwrap(), 0);
        list.unlink().unwrap();
    });
}

#[test]
fn stopping_a_writer_at_random_never_makes_a_reader_report_corrupt() {
    bounded(LIMIT, || {
        let list = ShareableList::new([vec![0u8; BIG_ITEM]]).unwrap();
        let stop = Event::new().unwrap();
        let p = Process::new(write_big_forever, (list.name().to_owned(), stop.clone()));
        p.start().unwrap();
        let pid = p.pid().unwrap();
        let name = list.name().to_owned();
        let done = Event::new().unwrap();
        let reader_done = done.clone();
        let reader = std::thread::spawn(move || {
            let list = ShareableList::attach(&name).unwrap();
            let mut reads = 0u32;
            while !reader_done.is_set() {
                let bytes = list.get_bytes(0).expect("a live writer is not corruption");
                assert!(bytes.iter().all(|&b| b == bytes[0]), "torn read");
                reads += 1;
            }
            reads
        });
        // Stop it often, sometimes for longer than the old one-second verdict.
        let mut mid_write = 0;
        for round in 0..12 {
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..5000)));
            signal(pid, rustix::process::Signal::STOP);
            while !stopped(pid) {
                std::thread::yield_now();
            }
            mid_write += usize::from(write_under_way(&list));
            let hold = if round % 4 == 0 { 1300 } else { 30 };
            std::thread::sleep(Duration::from_millis(hold));
            assert!(!reader.is_finished(), "the reader failed");
            signal(pid, rustix::process::Signal::CONT);
        }
        done.set();
        let reads = reader.join().unwrap();
        stop.set();
        assert_eq!(p.join().unwrap(), 0);
        eprintln!("{reads} reads, {mid_write} of 12 stops landed mid-write");
        list.unlink().unwrap();
    });
}

#[test]
fn a_writer_killed_mid_write_is_reported_corrupt_within_a_bounded_time() {
    bounded(LIMIT, || {
        let (list, p, pid, _stop) = writer_stopped_mid_write();
        signal(pid, rustix::process::Signal::KILL);
        assert_eq!(p.join().unwrap(), -9);
        let start = Instant::now();
        let e = list.get(0).unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(e, ShareableListError::Corrupt { .. }) && e.to_string().contains("died"),
            "{e}"
        );
        assert!(e.to_string().contains("liveness id"), "{e}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // The next set repairs the slot.
        list.set(0, "fresh").unwrap();
        assert_eq!(list.get_str(0).unwrap(), "fresh");
        list.unlink().unwrap();
    });
}
