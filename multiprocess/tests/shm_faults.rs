//! Shared memory under faults real deployments bring: a `/dev/shm` too small
//! for a segment (Docker's default is 64 MiB).

multiprocess::init_before_main!();

mod common;

use std::time::Duration;

use common::{LIMIT, bounded, unique_shm_name};
use multiprocess::{
    ShareableList, ShareableListError, SharedMemory, SharedMemoryError, StartMethod, get_context,
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
fn dev_shm_names() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
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
