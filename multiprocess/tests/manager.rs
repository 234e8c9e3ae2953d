//! The Manager: shared dict, list and value through typed proxies, across
//! real processes; proxies passed in arguments and through a Queue; a
//! manager on TCP with a key, reached by `connect`; and the faults: a wrong
//! key, a client killed mid-stream, a server killed, an owner killed, a
//! shut-down manager, a value read as the wrong type.

multiprocess::init_before_main!();

mod common;

use std::time::{Duration, Instant};

use common::{LIMIT, bounded, pid_gone};
use multiprocess::{
    DictProxy, EventProxy, ListProxy, LockProxy, Manager, ManagerError, Process, Queue, QueueProxy,
    ValueProxy,
};

fn fill(d: DictProxy<u32, String>, l: ListProxy<u32>, v: ValueProxy<f64>, tag: u32) {
    for i in 0..50 {
        d.insert(tag * 1000 + i, format!("{tag}:{i}")).unwrap();
        l.push(tag * 1000 + i).unwrap();
    }
    v.set(f64::from(tag)).unwrap();
}

fn wait_gone(pid: u32, limit: Duration) -> bool {
    let t = Instant::now();
    while !pid_gone(pid) {
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn dict_list_and_value_are_shared_by_children() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let d = manager.dict::<u32, String>().unwrap();
        let l = manager.list::<u32>().unwrap();
        let v = manager.value(0.5f64).unwrap();
        assert_eq!(v.get().unwrap(), 0.5);
        let ps: Vec<Process> = (1..=3)
            .map(|tag| Process::new(fill, (d.clone(), l.clone(), v.clone(), tag)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        }
        assert_eq!(d.len().unwrap(), 150);
        assert_eq!(d.get(&2007).unwrap().as_deref(), Some("2:7"));
        assert_eq!(d.get(&9).unwrap(), None);
        let mut all = l.to_vec().unwrap();
        assert_eq!(all.len(), 150);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 150);
        assert!([1.0, 2.0, 3.0].contains(&v.get().unwrap()));
        // Python's dict keeps insertion order, and so does this one.
        let order = manager.dict::<String, u8>().unwrap();
        for k in ["z", "a", "m"] {
            order.insert(k.into(), 0).unwrap();
        }
        order.insert("z".into(), 9).unwrap();
        assert_eq!(order.keys().unwrap(), ["z", "a", "m"]);
        assert_eq!(order.remove(&"a".to_string()).unwrap(), Some(0));
        assert_eq!(
            order.items().unwrap(),
            [("z".to_string(), 9), ("m".to_string(), 0)]
        );
        assert_eq!(order.get_or_insert("m".into(), 5).unwrap(), 0);
        assert_eq!(order.get_or_insert("q".into(), 5).unwrap(), 5);
        assert!(order.contains_key(&"q".to_string()).unwrap());
        order.clear().unwrap();
        assert!(order.is_empty().unwrap());
        // The list's own methods.
        let l2 = manager.list::<i32>().unwrap();
        l2.extend([1, 2, 3]).unwrap();
        assert!(l2.insert(0, 0).unwrap());
        assert!(!l2.insert(99, 0).unwrap());
        assert_eq!(l2.set(1, 10).unwrap(), Some(1));
        assert_eq!(l2.remove(2).unwrap(), Some(2));
        assert_eq!(l2.pop().unwrap(), Some(3));
        assert_eq!(l2.to_vec().unwrap(), [0, 10]);
        assert_eq!(l2.get(5).unwrap(), None);
        assert!(v.swap(7.0).unwrap() >= 1.0);
        assert_eq!(v.get().unwrap(), 7.0);
    });
}

fn take_and_use(q: Queue<DictProxy<String, u64>>) {
    let d = q.get_timeout(Duration::from_secs(20)).unwrap();
    d.insert("from the child".into(), u64::from(std::process::id()))
        .unwrap();
}

#[test]
fn a_proxy_travels_through_a_queue() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let d = manager.dict::<String, u64>().unwrap();
        let q = Queue::new().unwrap();
        let p = Process::new(take_and_use, (q.clone(),));
        p.start().unwrap();
        q.put(d.clone()).unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        assert_eq!(
            d.get(&"from the child".to_string()).unwrap(),
            Some(u64::from(p.pid().unwrap()))
        );
    });
}

fn remote_client(address: String, key: Vec<u8>, n: u64) {
    let m = Manager::connect(address.parse::<std::net::SocketAddr>().unwrap(), &key).unwrap();
    let counts = m.dict_named::<String, u64>("counts").unwrap();
    for _ in 0..n {
        let c = counts.get(&"hits".to_string()).unwrap().unwrap_or(0);
        counts.insert("hits".into(), c + 1).unwrap();
    }
    m.list_named::<u64>("done").unwrap().push(n).unwrap();
}

fn wrong_key(address: String) {
    match Manager::connect(
        address.parse::<std::net::SocketAddr>().unwrap(),
        b"not the key",
    ) {
        Err(ManagerError::Auth(_)) => {}
        other => panic!("a wrong key gave {other:?}"),
    }
}

/// Python's `BaseManager(address, authkey)` served on TCP: a process that
/// did not start it connects with the key and finds objects by name; a
/// wrong key is refused.
#[test]
fn a_manager_on_tcp_serves_clients_that_connect_with_the_key() {
    bounded(LIMIT, || {
        let manager = Manager::builder()
            .address("127.0.0.1:0")
            .authkey(b"tcp secret")
            .start()
            .unwrap();
        let address = manager.address().to_string();
        let counts = manager.dict_named::<String, u64>("counts").unwrap();
        let p = Process::new(remote_client, (address.clone(), b"tcp secret".to_vec(), 40));
        p.start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        assert_eq!(counts.get(&"hits".to_string()).unwrap(), Some(40));
        assert_eq!(
            manager.list_named::<u64>("done").unwrap().to_vec().unwrap(),
            [40]
        );
        let bad = Process::new(wrong_key, (address,));
        bad.start().unwrap();
        assert_eq!(bad.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        // A named object of another kind is refused, naming it.
        match manager.list_named::<u64>("counts") {
            Err(ManagerError::Refused(why)) => assert!(why.contains("counts"), "{why}"),
            other => panic!("{other:?}"),
        }
    });
}

fn hammer(d: DictProxy<u64, Vec<u8>>) {
    let mut i = 0u64;
    loop {
        d.insert(i % 100, vec![7; 4096]).unwrap();
        i += 1;
    }
}

/// A client killed while it sends requests costs the server nothing: other
/// clients go on.
#[test]
fn a_client_killed_mid_stream_leaves_the_server_serving() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let d = manager.dict::<u64, Vec<u8>>().unwrap();
        for _ in 0..3 {
            let p = Process::new(hammer, (d.clone(),));
            p.start().unwrap();
            let t = Instant::now();
            while d.len().unwrap() < 10 {
                assert!(t.elapsed() < Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(5));
            }
            p.kill().unwrap();
            p.join_timeout(Duration::from_secs(10)).unwrap();
        }
        d.insert(1000, vec![1]).unwrap();
        assert_eq!(d.get(&1000).unwrap(), Some(vec![1]));
        assert!(d.len().unwrap() >= 10);
    });
}

/// A server that dies (killed, or shut down) makes every proxy call fail
/// with `ServerGone` at once, never hang; a named object asked for with
/// other types is refused, naming both.
#[test]
fn a_dead_or_shut_down_server_gives_server_gone_and_other_types_are_refused() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let d = manager.dict_named::<u32, String>("typed").unwrap();
        d.insert(1, "one".into()).unwrap();
        // The same name asked for with other types is refused, naming both.
        match manager.dict_named::<u32, Vec<u64>>("typed") {
            Err(ManagerError::Refused(why)) => {
                assert!(why.contains("String") && why.contains("Vec<u64>"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Nothing was lost by the bad request.
        assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));

        let pid = manager.server_pid().unwrap();
        let t = Instant::now();
        multiprocess_kill(pid);
        assert!(wait_gone(pid, Duration::from_secs(10)));
        match d.get(&1) {
            Err(ManagerError::ServerGone { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.len(), Err(ManagerError::ServerGone { .. })));
        assert!(t.elapsed() < Duration::from_secs(10));
        drop(manager);

        let mut manager = Manager::new().unwrap();
        let l = manager.list::<u8>().unwrap();
        l.push(1).unwrap();
        let pid = manager.server_pid().unwrap();
        manager.shutdown();
        assert!(wait_gone(pid, Duration::from_secs(10)));
        assert!(matches!(l.push(2), Err(ManagerError::ServerGone { .. })));
        let other = Manager::new().unwrap();
        let pid = other.server_pid().unwrap();
        drop(other);
        assert!(
            wait_gone(pid, Duration::from_secs(10)),
            "drop stops the server"
        );
    });
}

fn multiprocess_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn owner(pids: Queue<u32>) {
    let manager = Manager::new().unwrap();
    pids.put(manager.server_pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(manager);
}

/// An owner killed with SIGKILL leaves no orphan server.
#[test]
fn a_killed_owner_leaves_no_orphan_server() {
    bounded(LIMIT, || {
        let pids = Queue::new().unwrap();
        let p = Process::builder()
            .daemon(true)
            .target(owner, (pids.clone(),));
        p.start().unwrap();
        let server = pids.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(!pid_gone(server));
        p.kill().unwrap();
        p.join_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            wait_gone(server, Duration::from_secs(10)),
            "server {server} outlived its owner"
        );
    });
}

/// A value holding an OS handle cannot be stored: a clear error.
#[test]
fn a_value_holding_a_handle_is_refused() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let d = manager.dict::<u8, Queue<u8>>().unwrap();
        match d.insert(1, Queue::new().unwrap()) {
            Err(ManagerError::Encode(why)) => assert!(why.contains("handle"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.len().unwrap(), 0);
    });
}

fn count_under_lock(lock: LockProxy, d: DictProxy<String, u64>, n: u64) {
    let key = "n".to_string();
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        let v = d.get(&key).unwrap().unwrap_or(0);
        d.insert(key.clone(), v + 1).unwrap();
    }
}

/// Python's `manager.Lock()`: 3 processes doing read-modify-write under it
/// lose no update; a held lock times out others; the guard releases.
#[test]
fn a_manager_lock_excludes_across_processes() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let lock = manager.lock().unwrap();
        let d = manager.dict::<String, u64>().unwrap();
        let ps: Vec<Process> = (0..3)
            .map(|_| Process::new(count_under_lock, (lock.clone(), d.clone(), 300)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
        }
        assert_eq!(d.get(&"n".to_string()).unwrap(), Some(900));
        let g = lock.acquire().unwrap();
        let other = Process::new(try_lock_briefly, (lock.clone(),));
        other.start().unwrap();
        assert_eq!(
            other.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(0)
        );
        drop(g);
        assert!(
            lock.acquire_timeout(Duration::from_millis(100))
                .unwrap()
                .is_some()
        );
    });
}

fn try_lock_briefly(lock: LockProxy) {
    let t = Instant::now();
    assert!(
        lock.acquire_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
}

fn hold_forever(lock: LockProxy, held: Queue<u8>) {
    let _g = lock.acquire().unwrap();
    held.put(1).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// A holder killed with the lock held: the server releases it (Python's
/// manager lock would stay held forever).
#[test]
fn a_manager_lock_held_by_a_killed_process_is_released() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let lock = manager.lock().unwrap();
        let held = Queue::new().unwrap();
        let p = Process::new(hold_forever, (lock.clone(), held.clone()));
        p.start().unwrap();
        held.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            lock.acquire_timeout(Duration::from_millis(50))
                .unwrap()
                .is_none()
        );
        p.kill().unwrap();
        p.join_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            lock.acquire_timeout(Duration::from_secs(10))
                .unwrap()
                .is_some(),
            "the dead holder's lock was not released"
        );
    });
}

fn wait_then_answer(e: EventProxy, q: QueueProxy<String>) {
    assert!(e.wait_timeout(Duration::from_secs(30)).unwrap());
    q.put(format!("woken {}", std::process::id())).unwrap();
}

/// Python's `manager.Event()` and `manager.Queue()` across processes:
/// a child waits on the event and answers through the queue.
#[test]
fn a_manager_event_and_queue_work_across_processes() {
    bounded(LIMIT, || {
        let manager = Manager::new().unwrap();
        let e = manager.event().unwrap();
        let q = manager.queue::<String>().unwrap();
        assert_eq!(q.try_get().unwrap(), None);
        let t = Instant::now();
        assert_eq!(q.get_timeout(Duration::from_millis(200)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(100));
        let p = Process::new(wait_then_answer, (e.clone(), q.clone()));
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(q.is_empty().unwrap());
        assert!(!e.is_set().unwrap());
        e.set().unwrap();
        let got = q.get_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(got, Some(format!("woken {}", p.pid().unwrap())));
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        q.put("a".into()).unwrap();
        q.put("b".into()).unwrap();
        assert_eq!(q.len().unwrap(), 2);
        assert_eq!(q.get().unwrap(), "a");
        e.clear().unwrap();
        assert!(!e.wait_timeout(Duration::from_millis(50)).unwrap());
    });
}
