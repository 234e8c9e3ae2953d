//! `remote::Queue` and `remote::JoinableQueue` against a real
//! `redis-server` (one per test), with real child processes: FIFO and
//! exact qsize, a many-process history check, a consumer killed before its
//! confirm, lost replies (client timeout shorter than the server block),
//! retried puts, bounds, joins, and bad input (too large, OS handles,
//! wrong type, server out of memory, killed, restarted with and without
//! its data, fork with a live connection).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use multiprocess::remote::{BackendError, Cluster, JoinableQueue, LocalServer, Queue};
use multiprocess::{
    GetError, GetTimeoutError, JoinTimeoutError, Process, PutError, PutTimeoutError, StartMethod,
    TaskDoneError, TryGetError, TryPutError, get_context,
};

multiprocess::init_before_main!();

const LEASE: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(20);
/// The wait for an item that is there (or due within a lease or two).
const SHORT: Duration = Duration::from_secs(5);

fn cluster(server: &LocalServer) -> Cluster {
    Cluster::builder(server.url())
        .lease(LEASE)
        .connect()
        .expect("connect")
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

fn join(p: &Process) -> i32 {
    p.join_timeout(WAIT)
        .expect("join")
        .expect("child still running")
}

#[test]
fn fifo_order_and_exact_qsize() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("fifo").unwrap();
    assert_eq!(q.maxsize(), None);
    assert!(q.is_empty().unwrap());
    for i in 0..20 {
        q.put(i).unwrap();
        assert_eq!(q.qsize().unwrap(), i as usize + 1);
    }
    // A second handle (another consumer) sees the same queue.
    let other: Queue<u64> = c.queue("fifo").unwrap();
    assert_eq!(other.qsize().unwrap(), 20);
    let first = q.clone();
    within(WAIT, move || {
        for i in 0..10 {
            assert_eq!(first.get().unwrap(), i);
        }
    });
    for i in 10..20 {
        assert_eq!(other.try_get().unwrap(), i);
    }
    assert_eq!(q.qsize().unwrap(), 0);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let start = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(200)),
        Err(GetTimeoutError::Timeout)
    ));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // Another namespace is another queue.
    let elsewhere = Cluster::builder(server.url())
        .namespace("other")
        .connect()
        .unwrap();
    let q2: Queue<u64> = elsewhere.queue("fifo").unwrap();
    q2.put(99).unwrap();
    assert_eq!(q.qsize().unwrap(), 0);
    assert_eq!(q2.qsize().unwrap(), 1);
}

fn produce(q: Queue<Option<u64>>, producer: u64, n: u64) {
    for i in 0..n {
        q.put(Some(producer * 100_000 + i)).unwrap();
    }
}

fn consume(q: Queue<Option<u64>>, out: Queue<(u64, u64)>, me: u64) {
    loop {
        match q.get_timeout(WAIT).unwrap() {
            Some(item) => out.put((me, item)).unwrap(),
            None => return,
        }
    }
}

#[test]
fn producers_and_consumers_in_seven_processes_lose_and_duplicate_nothing() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<Option<u64>> = c.queue("work").unwrap();
    let out: Queue<(u64, u64)> = c.queue("out").unwrap();
    let (producers, per, consumers) = (4u64, 500u64, 3u64);
    let cons: Vec<Process> = (0..consumers)
        .map(|me| Process::new(consume, (q.clone(), out.clone(), me)))
        .collect();
    for p in &cons {
        p.start().unwrap();
    }
    let prods: Vec<Process> = (0..producers)
        .map(|p| Process::new(produce, (q.clone(), p, per)))
        .collect();
    for p in &prods {
        p.start().unwrap();
    }
    for p in &prods {
        assert_eq!(join(p), 0);
    }
    for _ in 0..consumers {
        q.put(None).unwrap();
    }
    for p in &cons {
        assert_eq!(join(p), 0);
    }
    let total = (producers * per) as usize;
    assert_eq!(out.qsize().unwrap(), total);
    let mut got = Vec::with_capacity(total);
    // Per consumer and producer, items arrive in the order put.
    let mut last: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for _ in 0..total {
        let (me, item) = out.try_get().unwrap();
        let (producer, i) = (item / 100_000, item % 100_000);
        if let Some(prev) = last.insert((me, producer), i) {
            assert!(prev < i, "consumer {me} saw {producer}:{i} after {prev}");
        }
        got.push(item);
    }
    got.sort_unstable();
    let mut want: Vec<u64> = (0..producers)
        .flat_map(|p| (0..per).map(move |i| p * 100_000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want, "every item exactly once");
    assert_eq!(q.qsize().unwrap(), 0);
    assert!(matches!(out.try_get(), Err(TryGetError::Empty)));
}

/// Takes an item without confirming it (as a consumer killed between the
/// move and the confirm would), then waits to be killed.
fn take_and_hang(q: Queue<u64>) {
    assert!(q.__take_unconfirmed(0).unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

fn get_one(q: Queue<u64>) {
    let _ = q.get_timeout(Duration::from_secs(60));
}

#[test]
fn a_consumer_killed_before_its_confirm_gives_the_item_back_after_the_lease() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("kill").unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let child = Process::new(take_and_hang, (q.clone(),));
    child.start().unwrap();
    let deadline = Instant::now() + WAIT;
    while q.qsize().unwrap() != 1 {
        assert!(Instant::now() < deadline, "the child never took an item");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The item is in transit: not counted, not available to others while
    // its consumer lives.
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    q.put(3).unwrap();
    q.put(4).unwrap();
    child.kill().unwrap();
    join(&child);
    // After the lease, the reaper (run by qsize) puts the item back at the
    // head: it was first.
    let start = Instant::now();
    while q.qsize().unwrap() != 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
    for want in [1, 3, 4] {
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), want);
    }
    assert_eq!(q.qsize().unwrap(), 0);

    // A consumer killed while blocked in BLMOVE takes nothing with it.
    let blocked = Process::new(get_one, (q.clone(),));
    blocked.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    blocked.kill().unwrap();
    join(&blocked);
    q.put(3).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 3);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

#[test]
fn a_get_whose_reply_was_lost_finds_its_item_again_first() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("lost-reply").unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    // The move happened on the server, the reply never came back.
    assert!(q.__take_unconfirmed(0).unwrap());
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get_timeout(SHORT).unwrap(), 0);
    assert_eq!(q.get_timeout(SHORT).unwrap(), 1);
    assert_eq!(q.get_timeout(SHORT).unwrap(), 2);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    // Dropping a handle with an unconfirmed item gives it back at once.
    q.put(7).unwrap();
    let other: Queue<u64> = c.queue("lost-reply").unwrap();
    assert!(other.__take_unconfirmed(0).unwrap());
    assert_eq!(q.qsize().unwrap(), 0);
    drop(other);
    assert_eq!(q.qsize().unwrap(), 1);
    assert_eq!(q.try_get().unwrap(), 7);
}

#[test]
fn a_consumer_judged_dead_while_only_slow_does_not_get_the_item_too() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let slow: Queue<u64> = c.queue("slow").unwrap();
    let other: Queue<u64> = c.queue("slow").unwrap();
    slow.put(1).unwrap();
    // `slow` took the item, and stalls past its lease before confirming.
    assert!(slow.__take_unconfirmed(1).unwrap());
    assert!(matches!(other.try_get(), Err(TryGetError::Empty)));
    std::thread::sleep(LEASE * 3);
    // The reaper (run by this call) gives the item back: `other` gets it.
    assert_eq!(other.get_timeout(Duration::from_secs(5)).unwrap(), 1);
    // `slow` wakes up and retries its confirm: the item is not its own
    // any more, and it must not be delivered twice.
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(300)),
        Err(GetTimeoutError::Timeout)
    ));
    slow.put(2).unwrap();
    assert_eq!(slow.get_timeout(SHORT).unwrap(), 2);

    // A confirm whose reply was lost but which did run: the retry
    // answers "yours" (the done marker), so the item is not lost either.
    slow.put(3).unwrap();
    assert!(slow.__take_unconfirmed(2).unwrap());
    assert_eq!(slow.qsize().unwrap(), 0);
    assert_eq!(slow.get_timeout(SHORT).unwrap(), 3);
    assert!(matches!(other.try_get(), Err(TryGetError::Empty)));
    // The same, and the handle is dropped instead of retrying: the item
    // goes back to the queue rather than nowhere.
    slow.put(4).unwrap();
    let dropped: Queue<u64> = c.queue("slow").unwrap();
    assert!(dropped.__take_unconfirmed(2).unwrap());
    assert_eq!(slow.qsize().unwrap(), 0);
    drop(dropped);
    assert_eq!(other.try_get().unwrap(), 4);
}

#[test]
fn a_client_timeout_shorter_than_the_server_block_loses_no_item() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::builder(server.url())
        .lease(LEASE)
        .call_timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    let q: Queue<u64> = c.queue("short").unwrap();
    let getter = q.clone();
    // Every BLMOVE blocks 2 s on the server, the socket gives up after
    // 150 ms: each wait ends in a client timeout and a dropped connection.
    getter.__set_blocking(Duration::from_secs(2), Duration::from_millis(150));
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let got = getter.get_timeout(Duration::from_secs(8));
        (got, start.elapsed())
    });
    for i in 0..5u64 {
        std::thread::sleep(Duration::from_millis(230));
        q.put(i).unwrap();
    }
    let (got, waited) = t.join().unwrap();
    assert_eq!(got.unwrap(), 0);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The rest are all there, once, in order: nothing stuck in a
    // processing list of a dropped connection.
    for i in 1..5 {
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), i);
    }
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));

    // Over and over: 20 items through a getter that times out constantly.
    let getter = q.clone();
    getter.__set_blocking(Duration::from_secs(2), Duration::from_millis(20));
    let t = std::thread::spawn(move || {
        (0..20)
            .map(|_| getter.get_timeout(Duration::from_secs(10)).unwrap())
            .collect::<Vec<u64>>()
    });
    for i in 0..20u64 {
        std::thread::sleep(Duration::from_millis(7 * (i % 5)));
        q.put(100 + i).unwrap();
    }
    let got = t.join().unwrap();
    assert_eq!(got, (100..120).collect::<Vec<u64>>());
    assert_eq!(q.qsize().unwrap(), 0);
}

#[test]
fn a_put_retried_with_the_same_put_id_is_applied_once() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("retry").unwrap();
    assert!(q.__put_with_id(5, "put-1").unwrap());
    assert!(q.__put_with_id(5, "put-1").unwrap());
    assert_eq!(q.qsize().unwrap(), 1);
    assert!(q.__put_with_id(5, "put-2").unwrap());
    assert_eq!(q.qsize().unwrap(), 2);
}

fn take_two(q: Queue<u64>) {
    std::thread::sleep(Duration::from_millis(300));
    q.get_timeout(WAIT).unwrap();
    q.get_timeout(WAIT).unwrap();
}

#[test]
fn a_bounded_queue_refuses_when_full_and_hands_the_value_back() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue_bounded("bounded", 2).unwrap();
    assert_eq!(q.maxsize(), Some(2));
    // Another handle adopts the stored bound.
    let other: Queue<u64> = c.queue_bounded("bounded", 50).unwrap();
    assert_eq!(other.maxsize(), Some(2));
    assert_eq!(c.queue::<u64>("bounded").unwrap().maxsize(), Some(2));
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full().unwrap());
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    let start = Instant::now();
    let err = q.put_timeout(4, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, PutTimeoutError::Timeout(4)));
    assert_eq!(err.into_inner(), 4);
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert_eq!(q.qsize().unwrap(), 2);
    // A put waits for room, made by another process.
    let child = Process::new(take_two, (q.clone(),));
    child.start().unwrap();
    let start = Instant::now();
    q.put(5).unwrap();
    q.put_timeout(6, WAIT).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(join(&child), 0);
    assert_eq!(q.try_get().unwrap(), 5);
    assert_eq!(q.try_get().unwrap(), 6);
}

fn work(q: JoinableQueue<Option<u32>>, out: Queue<u32>) {
    while let Some(n) = q.get_timeout(WAIT).unwrap() {
        std::thread::sleep(Duration::from_millis(1));
        out.put(n * n).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

#[test]
fn join_waits_for_task_done_from_three_processes() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: JoinableQueue<Option<u32>> = c.joinable_queue("jobs").unwrap();
    let out: Queue<u32> = c.queue("squares").unwrap();
    assert!(matches!(q.task_done(), Err(TaskDoneError::TooManyCalls)));
    for n in 0..100 {
        q.put(Some(n)).unwrap();
    }
    assert_eq!(q.unfinished_tasks().unwrap(), 100);
    let err = q.join_timeout(Duration::from_millis(100)).unwrap_err();
    assert!(matches!(err, JoinTimeoutError::Timeout { unfinished: 100 }));
    let workers: Vec<Process> = (0..3)
        .map(|_| Process::new(work, (q.clone(), out.clone())))
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    q.join_timeout(WAIT).unwrap();
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
    // join returned: every result is there.
    let mut got: Vec<u32> = (0..100).map(|_| out.try_get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).map(|n| n * n).collect::<Vec<_>>());
    for _ in &workers {
        q.put(None).unwrap();
    }
    within(WAIT, {
        let q = q.clone();
        move || q.join().unwrap()
    });
    for w in &workers {
        assert_eq!(join(w), 0);
    }
    assert!(matches!(q.task_done(), Err(TaskDoneError::TooManyCalls)));
    assert_eq!(q.unfinished_tasks().unwrap(), 0);
}

#[test]
fn an_item_over_max_payload_is_refused_before_sending() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::builder(server.url())
        .max_payload(1024)
        .connect()
        .unwrap();
    let q: Queue<Vec<u8>> = c.queue("big").unwrap();
    let err = q.put(vec![7u8; 2000]).unwrap_err();
    assert!(
        matches!(
            &err,
            PutError::Backend {
                error: BackendError::TooLarge { max: 1024, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_payload"), "{err}");
    assert_eq!(err.into_inner(), vec![7u8; 2000]);
    assert!(matches!(
        q.try_put(vec![1u8; 1025]),
        Err(TryPutError::Backend { .. })
    ));
    assert_eq!(q.qsize().unwrap(), 0);
    q.put(vec![1u8; 1000]).unwrap();
    assert_eq!(q.get_timeout(SHORT).unwrap().len(), 1000);
}

#[test]
fn an_item_holding_an_os_handle_is_refused_with_the_value_back() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<multiprocess::Queue<u8>> = c.queue("handles").unwrap();
    let local: multiprocess::Queue<u8> = multiprocess::Queue::new().unwrap();
    local.put(9).unwrap();
    let err = q.put(local).unwrap_err();
    assert!(matches!(err, PutError::ContainsHandle(_)), "{err:?}");
    let back = err.into_inner();
    assert_eq!(back.get().unwrap(), 9, "the same local queue came back");
    assert_eq!(q.qsize().unwrap(), 0);
}

#[test]
fn an_item_of_the_wrong_type_is_a_decode_error_and_the_queue_goes_on() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let numbers: Queue<u64> = c.queue("typed").unwrap();
    let strings: Queue<String> = c.queue("typed").unwrap();
    numbers.put(1_000).unwrap();
    numbers.put(1_001).unwrap();
    let err = strings.get_timeout(SHORT).unwrap_err();
    assert!(matches!(err, GetTimeoutError::Decode(_)), "{err:?}");
    assert_eq!(numbers.qsize().unwrap(), 1, "the bad item was consumed");
    assert_eq!(numbers.get_timeout(SHORT).unwrap(), 1_001);
    strings.put("fine".into()).unwrap();
    assert_eq!(strings.get_timeout(SHORT).unwrap(), "fine");
}

#[test]
fn a_server_out_of_memory_refuses_the_put_and_hands_the_value_back() {
    let server = LocalServer::builder().maxmemory("2mb").start().unwrap();
    let c = cluster(&server);
    let q: Queue<Vec<u8>> = c.queue("oom").unwrap();
    let mut puts = 0usize;
    let err = loop {
        match q.put(vec![puts as u8; 64 << 10]) {
            Ok(()) => puts += 1,
            Err(e) => break e,
        }
        assert!(puts < 200, "2 MB never filled");
    };
    assert!(
        matches!(
            &err,
            PutError::Backend {
                error: BackendError::OutOfMemory(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.into_inner(), vec![puts as u8; 64 << 10]);
    assert_eq!(q.qsize().unwrap(), puts);
    // A full server still drains.
    assert_eq!(q.get_timeout(SHORT).unwrap(), vec![0u8; 64 << 10]);
    assert_eq!(q.qsize().unwrap(), puts - 1);
}

#[test]
fn a_killed_server_makes_a_waiting_get_fail_in_bounded_time() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("killed").unwrap();
    let getter = q.clone();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        (getter.get_timeout(Duration::from_secs(60)), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(server);
    let (got, waited) = t.join().unwrap();
    assert!(matches!(got, Err(GetTimeoutError::Backend(_))), "{got:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let err = q.put(1).unwrap_err();
    assert!(matches!(err, PutError::Backend { value: 1, .. }), "{err:?}");
}

#[test]
fn a_frozen_server_makes_calls_fail_in_bounded_time_and_loses_nothing() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::builder(server.url())
        .lease(LEASE)
        .call_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    let q: Queue<u64> = c.queue("frozen").unwrap();
    q.put(1).unwrap();
    server.pause().unwrap();
    // The takes and puts sent now sit in the server's sockets and run when
    // it thaws, after the client gave up on them (a new connection cannot
    // even finish its handshake: Unreachable).
    let start = Instant::now();
    let got = q.get_timeout(Duration::from_secs(1));
    assert!(
        matches!(
            got,
            Err(GetTimeoutError::Backend(
                BackendError::Timeout(_) | BackendError::Unreachable { .. }
            ))
        ),
        "{got:?}"
    );
    // The deadline, plus the connect attempt in progress then (its
    // handshake gives up after the connect timeout, 2 s).
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err = q.put(2).unwrap_err();
    assert!(
        matches!(
            err,
            PutError::Backend {
                value: 2,
                error: BackendError::Timeout(_) | BackendError::Unreachable { .. }
            }
        ),
        "{err:?}"
    );
    // Retried with its put id for the reconnect grace (3 s), plus the
    // connect attempt in progress then.
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    server.resume().unwrap();
    // Item 1 may have been moved by a take whose reply never came: this
    // handle finds it first. The put's tries (one put id) were applied at
    // most once (none if no try got past the handshake).
    assert_eq!(q.get_timeout(SHORT).unwrap(), 1);
    let mut rest = Vec::new();
    while let Ok(n) = q.get_timeout(Duration::from_millis(300)) {
        rest.push(n);
    }
    assert!(rest.is_empty() || rest == [2], "{rest:?}");
    assert_eq!(q.qsize().unwrap(), 0);
}

#[test]
fn a_server_restarted_without_its_data_makes_a_waiting_get_fail_with_lost() {
    let mut server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("volatile").unwrap();
    q.put(1).unwrap();
    let getter = q.clone();
    let t = std::thread::spawn(move || {
        assert_eq!(getter.get().unwrap(), 1);
        let start = Instant::now();
        (getter.get(), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(400));
    server.restart().unwrap();
    let (got, waited) = within(WAIT, move || t.join().unwrap());
    assert!(
        matches!(got, Err(GetError::Backend(BackendError::Lost(_)))),
        "{got:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The put says so too, and hands the value back.
    let err = q.put(2).unwrap_err();
    assert!(
        matches!(
            err,
            PutError::Backend {
                value: 2,
                error: BackendError::Lost(_)
            }
        ),
        "{err:?}"
    );
    // Making the queue again starts afresh.
    let q: Queue<u64> = c.queue("volatile").unwrap();
    q.put(3).unwrap();
    assert_eq!(q.get_timeout(SHORT).unwrap(), 3);
}

#[test]
fn with_appendonly_a_restart_loses_no_item_and_gets_go_on() {
    let mut server = LocalServer::builder().appendonly(true).start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("durable").unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert!(q.__take_unconfirmed(0).unwrap());
    let getter = q.clone();
    let t = std::thread::spawn(move || getter.get_timeout(Duration::from_secs(15)));
    std::thread::sleep(Duration::from_millis(300));
    server.restart().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    q.put(10).unwrap();
    let mut got = vec![within(WAIT, move || t.join().unwrap()).unwrap()];
    for _ in 0..3 {
        got.push(q.get_timeout(Duration::from_secs(5)).unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 10]);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

fn forked_child(q: Queue<u64>) {
    let n = q.get_timeout(WAIT).unwrap();
    q.put(n * 10).unwrap();
}

/// Runs single-threaded (a Spawn child), so it may fork: uses the queue,
/// forks a child that uses it with the inherited (live) connection pool,
/// then uses it again.
fn fork_driver(q: Queue<u64>) {
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(SHORT).unwrap(), 1);
    q.put(4).unwrap();
    let child = get_context(StartMethod::Fork).process(forked_child, (q.clone(),));
    child.start().expect("a single-threaded driver can fork");
    assert_eq!(join(&child), 0);
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 40);
    q.put(5).unwrap();
    assert_eq!(q.get_timeout(SHORT).unwrap(), 5);
    q.put(6).unwrap();
}

#[test]
fn a_forked_child_uses_the_queue_and_the_parent_connection_still_works() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<u64> = c.queue("fork").unwrap();
    let driver = get_context(StartMethod::Spawn).process(fork_driver, (q.clone(),));
    driver.start().unwrap();
    assert_eq!(join(&driver), 0);
    assert_eq!(q.try_get().unwrap(), 6);
    assert_eq!(q.qsize().unwrap(), 0);
}

/// serde's untagged enum: its Deserialize needs deserialize_any.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Loose {
    Number(u32),
    Text(String),
}

#[test]
fn an_untagged_enum_is_refused_at_put_naming_the_cause() {
    let server = LocalServer::start().unwrap();
    let c = cluster(&server);
    let q: Queue<Loose> = c.queue("loose").unwrap();
    let err = q.put(Loose::Number(1)).unwrap_err();
    assert!(err.to_string().contains("untagged"), "{err}");
    assert!(matches!(err, PutError::Encode { .. }), "{err:?}");
    assert_eq!(err.into_inner(), Loose::Number(1));
    assert!(q.is_empty().unwrap(), "nothing was put");
}
