//! Who owns a named segment: the process tree that created it. A second
//! launch of the same program that attaches a live segment and exits must
//! not make its own tracker unlink it (Python's gh-82300: the attaching
//! process's resource tracker unlinks the creator's segment).
//!
//! The second launch has to be a tree of its own, with its own tracker, as
//! a program started again from a shell is: this test binary run from a
//! copy (a different executable, so the tracker's walk up the parent chain
//! stops at it), on `second_launch_entry`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, shm_exists, temp_dir, unique_shm_name};
use multiprocess::{ShareableList, SharedMemory};

multiprocess::init_before_main!();

/// Set in the second launch: the segment to attach (`shm:NAME` or
/// `list:NAME`).
const SECOND_ENV: &str = "MULTIPROCESS_TEST_SECOND_LAUNCH";

/// Does nothing unless this binary is the second launch: attaches (tracked,
/// the default), checks the creator's data, and exits.
#[test]
fn second_launch_entry() {
    let Ok(what) = std::env::var(SECOND_ENV) else {
        return;
    };
    match what.split_once(':') {
        Some(("shm", name)) => {
            let shm = SharedMemory::attach(name).expect("attach the first launch's segment");
            assert!(shm.is_tracked());
            let mut buf = [0u8; 5];
            shm.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"alive");
        }
        Some(("list", name)) => {
            let list = ShareableList::attach(name).expect("attach the first launch's list");
            assert_eq!(list.get_str(0).unwrap(), "alive");
        }
        _ => panic!("bad {SECOND_ENV}: {what}"),
    }
}

/// This binary copied to a fresh path: the same program, another
/// executable file.
fn copy_of_this_binary(dir: &Path) -> PathBuf {
    let copy = dir.join("second-launch");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    copy
}

/// Processes running `exe` (the second launch and the tracker it started).
fn running(exe: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| {
                p == exe
                    || p.to_string_lossy().trim_end_matches(" (deleted)") == exe.to_string_lossy()
            })
        })
        .collect()
}

/// Runs the second launch on `what` and waits until it and its tracker
/// have exited (the tracker acts on its last client's exit, then exits).
fn second_launch(exe: &Path, what: &str) {
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "second_launch_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SECOND_ENV, what)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the second launch did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the second launch failed: {status}");
    while !running(exe).is_empty() {
        assert!(
            Instant::now() < end,
            "the second launch's tracker did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_launch_that_attaches_and_exits_leaves_the_segment_alone() {
    bounded(LIMIT, || {
        let dir = temp_dir("second-launch");
        let exe = copy_of_this_binary(&dir);

        let name = unique_shm_name("owned");
        let shm = SharedMemory::create(Some(&name), 4096).unwrap();
        shm.write_at(0, b"alive").unwrap();
        second_launch(&exe, &format!("shm:{name}"));
        assert!(
            shm_exists(&name),
            "the second launch's tracker unlinked a segment it only attached"
        );
        // Still the same, live segment for its creator and for new attaches.
        let again = SharedMemory::attach(&name).unwrap();
        let mut buf = [0u8; 5];
        again.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"alive");
        shm.unlink().unwrap();

        let list = ShareableList::new(["alive"]).unwrap();
        let list_name = list.name().to_owned();
        second_launch(&exe, &format!("list:{list_name}"));
        assert!(
            shm_exists(&list_name),
            "the second launch's tracker unlinked a list it only attached"
        );
        assert_eq!(list.get_str(0).unwrap(), "alive");
        list.unlink().unwrap();

        std::fs::remove_dir_all(dir).unwrap();
    });
}
