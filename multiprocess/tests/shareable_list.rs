//! ShareableList and SharedMemoryManager across real processes: CPython's
//! `test_shared_memory_ShareableList_basics` / `_pickling` and
//! `test_shared_memory_SharedMemoryManager_basics`, plus the errors of a
//! corrupt or foreign segment and a SIGKILLed manager owner.

multiprocess::init_before_main!();

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{LIMIT, assert_shm_gone_within, bounded, shm_exists, unique_shm_name};
use multiprocess::{
    Item, ItemKind, Lock, Process, Queue, ShareableList, ShareableListError, SharedMemory,
    SharedMemoryError, SharedMemoryManager, items,
};

/// Attaches by name, checks what the parent wrote, changes three slots.
fn modify_by_name(name: String) {
    let c = ShareableList::attach(&name).unwrap();
    assert_eq!(c.len(), 7);
    assert_eq!(c.get_str(0).unwrap(), "howdy");
    assert_eq!(c.get(1).unwrap(), Item::Bytes(b"HoWdY".to_vec()));
    assert_eq!(c.get_float(2).unwrap(), -273.154);
    assert_eq!(c.get(4).unwrap(), Item::None);
    c.set(2, "dry ice").unwrap(); // float slot → str
    c.set(3, c.get_int(3).unwrap() + 1).unwrap();
    c.set(6, -999).unwrap();
}

/// Receives the list itself (serialized as its name) and changes a slot.
fn modify_passed(list: ShareableList) {
    assert!(list.shm().is_tracked());
    list.set(5, false).unwrap();
}

#[test]
fn a_child_attaches_by_name_and_sees_and_changes_values() {
    bounded(LIMIT, || {
        let a = ShareableList::with_name(
            &unique_shm_name("child"),
            items!["howdy", b"HoWdY", -273.154, 100, Item::None, true, 42],
        )
        .unwrap();
        let p = Process::new(modify_by_name, (a.name().to_owned(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(
            a.to_vec().unwrap(),
            items!["howdy", b"HoWdY", "dry ice", 101, Item::None, true, -999]
        );
        assert_eq!(a.kind(2).unwrap(), ItemKind::Str);
        let p = Process::new(modify_passed, (ShareableList::attach(a.name()).unwrap(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(a.get(5).unwrap(), Item::Bool(false));
        // The children's exits did not unlink what we still hold.
        assert!(shm_exists(a.name()));
        assert_eq!(
            a.to_string(),
            format!(
                "ShareableList(['howdy', b'HoWdY', 'dry ice', 101, None, False, -999], name='{}')",
                a.name()
            )
        );
        a.unlink().unwrap();
        assert!(!shm_exists(a.name()));
    });
}

#[test]
fn index_kind_and_storage_errors_match_python() {
    bounded(LIMIT, || {
        let a = ShareableList::new(items!["howdy", 1.5, b"", "x\0"]).unwrap();
        // IndexError.
        assert!(matches!(
            a.get(4),
            Err(ShareableListError::IndexOutOfRange { index: 4, len: 4 })
        ));
        assert!(matches!(
            a.set(usize::MAX, 1),
            Err(ShareableListError::IndexOutOfRange { .. })
        ));
        // ValueError: exceeds available storage; the slot keeps its value.
        let e = a.set(0, "a str longer than eight bytes").unwrap_err();
        assert!(
            matches!(
                e,
                ShareableListError::ExceedsStorage {
                    index: 0,
                    needed: 29,
                    capacity: 8
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("exceeds available storage"), "{e}");
        assert_eq!(a.get_str(0).unwrap(), "howdy");
        assert!(matches!(
            a.set(2, vec![0u8; 9]),
            Err(ShareableListError::ExceedsStorage { .. })
        ));
        // A float slot takes up to 8 bytes of str; capacity is in bytes, so
        // 3 two-byte characters (6 bytes) fit and 5 (10 bytes) do not.
        a.set(1, "ééé").unwrap();
        assert!(a.set(1, "ééééé").is_err());
        assert_eq!(a.get_str(1).unwrap(), "ééé");
        // A typed read of another kind.
        assert!(matches!(
            a.get_int(0),
            Err(ShareableListError::WrongKind {
                index: 0,
                expected: ItemKind::Int,
                found: ItemKind::Str
            })
        ));
        assert!(matches!(
            a.get_bytes(3),
            Err(ShareableListError::WrongKind { .. })
        ));
        // Trailing NULs survive (Python strips them).
        assert_eq!(a.get_str(3).unwrap(), "x\0");
        assert_eq!(a.index("x\0").unwrap(), Some(3));
        assert_eq!(a.count(1.5).unwrap(), 0);
        a.unlink().unwrap();
    });
}

/// Tries to attach `name` as a list; must fail.
fn attach_must_fail(name: String) {
    assert!(ShareableList::attach(&name).is_err());
}

#[test]
fn attaching_a_missing_foreign_or_corrupt_segment_is_an_error() {
    bounded(LIMIT, || {
        // FileNotFoundError.
        assert!(matches!(
            ShareableList::attach(&unique_shm_name("missing")),
            Err(ShareableListError::SharedMemory(
                SharedMemoryError::NotFound { .. }
            ))
        ));
        // A segment that is not a list: too small, or no magic.
        let small = SharedMemory::create(Some(&unique_shm_name("small")), 16).unwrap();
        assert!(matches!(
            ShareableList::attach(small.name()),
            Err(ShareableListError::NotAShareableList { .. })
        ));
        small.unlink().unwrap();
        let foreign =
            SharedMemory::create_untracked(Some(&unique_shm_name("foreign")), 4096).unwrap();
        foreign.write_at(0, &[0xab; 4096]).unwrap();
        // A child whose attach fails does not become a holder: its exit
        // leaves the (untracked) segment in place. (First, before this
        // process tries: a holder here would keep it too.)
        let p = Process::new(attach_must_fail, (foreign.name().to_owned(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        std::thread::sleep(Duration::from_millis(200));
        assert!(shm_exists(foreign.name()));
        let e = ShareableList::attach(foreign.name()).unwrap_err();
        assert!(
            matches!(e, ShareableListError::NotAShareableList { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("is not a ShareableList"), "{e}");
        foreign.unlink().unwrap();

        // A list whose header or slots were scribbled over.
        let list = ShareableList::new(items![1, "two", 3.0]).unwrap();
        let shm = list.shm();
        let header = |at: usize, v: u64| shm.write_at(at, &v.to_ne_bytes()).unwrap();
        let corrupt = |what: &str| {
            let e = ShareableList::attach(list.name()).unwrap_err();
            assert!(
                matches!(e, ShareableListError::Corrupt { .. }),
                "{what}: {e:?}"
            );
        };
        header(16, u64::MAX); // slot count
        corrupt("huge length");
        header(16, 3);
        header(24, 1 << 40); // data length
        corrupt("huge data area");
        header(24, 24);
        header(32, 12); // slot 0's capacity, not a multiple of 8
        corrupt("odd capacity");
        header(32, 8);
        header(40, 0x9 << 32); // slot 0's state: unknown kind
        corrupt("unknown kind");
        // An attached list re-checks the state on each read.
        assert!(matches!(
            list.get(0),
            Err(ShareableListError::Corrupt { .. })
        ));
        header(40, (4 << 32) | 9); // a str of 9 bytes in 8
        assert!(matches!(
            list.get(0),
            Err(ShareableListError::Corrupt { .. })
        ));
        header(40, (1 << 32) | 8); // an int again
        shm.write_at(88, &[0xff; 3]).unwrap(); // slot 1 (at 32 + 3 × 16 + 8): not UTF-8
        assert!(matches!(
            list.get(1),
            Err(ShareableListError::Corrupt { .. })
        ));
        shm.write_at(8, &2u32.to_ne_bytes()).unwrap(); // version
        assert!(matches!(
            ShareableList::attach(list.name()),
            Err(ShareableListError::NotAShareableList { .. })
        ));
        list.unlink().unwrap();
    });
}

/// Adds 1 to slot 0 `times` times, each read-modify-write under `lock`.
fn add_under_lock(name: String, lock: Lock, times: i64) {
    let list = ShareableList::attach(&name).unwrap();
    for _ in 0..times {
        let _guard = lock.acquire();
        let n = list.get_int(0).unwrap();
        list.set(0, n + 1).unwrap();
    }
}

#[test]
fn a_lock_beside_the_list_makes_increments_exact() {
    bounded(LIMIT, || {
        let list = ShareableList::new([0]).unwrap();
        let lock = Lock::new().unwrap();
        let ps: Vec<Process> = (0..3)
            .map(|_| Process::new(add_under_lock, (list.name().to_owned(), lock.clone(), 300)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(list.get_int(0).unwrap(), 900);
        list.unlink().unwrap();
    });
}

fn set_first(list: ShareableList, shm: SharedMemory) {
    list.set(0, "from the child").unwrap();
    shm.write_at(0, b"child").unwrap();
}

#[test]
fn manager_shutdown_unlinks_everything_it_made() {
    bounded(LIMIT, || {
        let smm = SharedMemoryManager::new().unwrap();
        let sl = smm.shareable_list(items!["placeholder text", 1]).unwrap();
        let shm = smm.shared_memory(64).unwrap();
        let other = smm.shared_memory(8).unwrap();
        let names = smm.segments();
        assert_eq!(names, [sl.name(), shm.name(), other.name()]);
        assert!(names.iter().all(|n| shm_exists(n)));
        let p = Process::new(
            set_first,
            (
                ShareableList::attach(sl.name()).unwrap(),
                SharedMemory::attach(shm.name()).unwrap(),
            ),
        );
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(sl.get_str(0).unwrap(), "from the child");
        // One already unlinked by hand is skipped.
        other.unlink().unwrap();
        smm.shutdown().unwrap();
        for n in &names {
            assert!(!shm_exists(n), "{n} left after shutdown");
        }
        // Mappings outlive the names, as in Python.
        assert_eq!(sl.get_int(1).unwrap(), 1);

        // Dropping the manager is shutdown too (Python's `with` block).
        let name = {
            let smm = SharedMemoryManager::new().unwrap();
            smm.shareable_list([1, 2, 3]).unwrap().name().to_owned()
        };
        assert!(!shm_exists(&name));
    });
}

/// Creates segments through a manager, reports their names, waits to be
/// killed.
fn manage_and_wait(ready: Queue<Vec<String>>) {
    let smm = SharedMemoryManager::new().unwrap();
    let sl = smm.shareable_list(items!["x", 2]).unwrap();
    let shm = smm.shared_memory(1 << 16).unwrap();
    ready
        .put(vec![sl.name().to_owned(), shm.name().to_owned()])
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(smm);
}

#[test]
fn a_sigkilled_manager_owner_leaks_nothing() {
    bounded(LIMIT, || {
        let ready = Queue::new().unwrap();
        let p = Process::new(manage_and_wait, (ready.clone(),));
        p.start().unwrap();
        let names = ready.get_timeout(Duration::from_secs(20)).unwrap();
        assert!(names.iter().all(|n| shm_exists(n)));
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), -9);
        for n in &names {
            assert_shm_gone_within(n, Duration::from_secs(3));
        }
    });
}

const TORN_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TORN_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Writes slot 0 over and over, cycling str A, int, str B, bytes, until
/// `stop` is set (or 20 s pass, should the test have died).
fn write_forever(name: String, stop: multiprocess::Event) {
    let list = ShareableList::attach(&name).unwrap();
    let values = items![TORN_A, -1, TORN_B, TORN_A.as_bytes()];
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !stop.is_set() && std::time::Instant::now() < end {
        for v in &values {
            list.set(0, v.clone()).unwrap();
        }
    }
}

#[test]
fn a_reader_never_sees_a_torn_value_from_a_single_writer() {
    bounded(LIMIT, || {
        let list = ShareableList::new([TORN_A]).unwrap();
        let stop = multiprocess::Event::new().unwrap();
        let p = Process::new(write_forever, (list.name().to_owned(), stop.clone()));
        p.start().unwrap();
        let allowed = items![TORN_A, -1, TORN_B, TORN_A.as_bytes()];
        // Wait for the writer to be under way (the watchdog bounds this).
        while list.get(0).unwrap() == allowed[0] {
            std::thread::yield_now();
        }
        let mut changes = 0;
        let mut last = Item::None;
        for _ in 0..200_000 {
            let v = list.get(0).unwrap();
            assert!(allowed.contains(&v), "torn read: {v}");
            if v != last {
                changes += 1;
                last = v;
            }
        }
        stop.set();
        assert_eq!(p.join().unwrap(), 0);
        eprintln!("{changes} changes seen in 200000 reads");
        assert!(changes > 1, "the writer never ran");
        list.unlink().unwrap();
    });
}

#[test]
fn a_write_cut_short_is_reported_after_a_second_and_the_next_set_repairs_it() {
    bounded(LIMIT, || {
        let list = ShareableList::new(items!["abc", 7]).unwrap();
        // What a writer killed inside `set` leaves: slot 0's state word
        // (at 32 + 8) with an odd sequence number (bits 40..).
        let state = list.shm().atomic_u64(40).unwrap();
        state.fetch_or(1 << 40, Ordering::SeqCst);
        let start = std::time::Instant::now();
        let e = list.get(0).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(900));
        assert!(
            matches!(e, ShareableListError::Corrupt { .. }) && e.to_string().contains("mid-write"),
            "{e}"
        );
        assert_eq!(list.get_int(1).unwrap(), 7, "other slots are unaffected");
        list.set(0, "xyz").unwrap();
        assert_eq!(list.get_str(0).unwrap(), "xyz");
        list.unlink().unwrap();
    });
}
