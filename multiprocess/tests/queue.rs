//! Queue across real processes: FIFO and exactly-once delivery, timeouts,
//! items larger than the ring, and processes killed mid-put and mid-get.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded};
use multiprocess::{
    GetTimeoutError, Lock, Pipe, Process, PutTimeoutError, Queue, QueueBuilder, TryGetError,
    TryPutError,
};

multiprocess::init_before_main!();

type Item = (u32, u32); // (producer, sequence number)

fn produce(id: u32, count: u32, queue: Queue<Option<Item>>) {
    for seq in 0..count {
        queue.put(Some((id, seq))).unwrap();
    }
}

fn consume(queue: Queue<Option<Item>>, results: Queue<Vec<Item>>) {
    let mut got = Vec::new();
    while let Some(item) = queue.get().unwrap() {
        got.push(item);
    }
    results.put(got).unwrap();
}

#[test]
fn mpmc_delivers_each_item_once_in_per_producer_order() {
    bounded(LIMIT, || {
        let (producers, consumers, count) = (3u32, 2usize, 20_000u32);
        let queue: Queue<Option<Item>> = Queue::new().unwrap();
        let results: Queue<Vec<Item>> = Queue::new().unwrap();
        let ps: Vec<Process> = (0..producers)
            .map(|id| Process::new(produce, (id, count, queue.clone())))
            .collect();
        let cs: Vec<Process> = (0..consumers)
            .map(|_| Process::new(consume, (queue.clone(), results.clone())))
            .collect();
        for p in ps.iter().chain(&cs) {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        for _ in 0..consumers {
            queue.put(None).unwrap();
        }
        let mut seen: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for _ in 0..consumers {
            let got = results.get_timeout(Duration::from_secs(30)).unwrap();
            // Within one consumer, each producer's items arrive in order.
            let mut last: BTreeMap<u32, u32> = BTreeMap::new();
            for (id, seq) in got {
                if let Some(prev) = last.insert(id, seq) {
                    assert!(seq > prev, "producer {id}: {seq} after {prev}");
                }
                seen.entry(id).or_default().push(seq);
            }
        }
        for c in &cs {
            assert_eq!(c.join().unwrap(), 0);
        }
        for id in 0..producers {
            let mut seqs = seen.remove(&id).unwrap();
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (0..count).collect::<Vec<_>>(),
                "producer {id}: lost or duplicated"
            );
        }
    });
}

fn put_many(queue: Queue<u64>, count: u64) {
    for i in 0..count {
        queue.put(i).unwrap();
    }
}

#[test]
fn put_everything_join_then_read() {
    // The tutorial's pattern: the producer finishes before anyone reads.
    bounded(LIMIT, || {
        let queue: Queue<u64> = Queue::new().unwrap();
        let p = Process::new(put_many, (queue.clone(), 100_000));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(queue.qsize(), 100_000);
        for i in 0..100_000 {
            assert_eq!(queue.try_get().unwrap(), i);
        }
        assert!(queue.is_empty());
        assert!(matches!(queue.try_get(), Err(TryGetError::Empty)));
    });
}

fn put_big(queue: Queue<Vec<u8>>, size: usize, count: usize) {
    for i in 0..count {
        queue.put(vec![i as u8; size]).unwrap();
    }
}

#[test]
fn items_larger_than_the_ring_pass() {
    bounded(LIMIT, || {
        let queue: Queue<Vec<u8>> = QueueBuilder::new()
            .capacity_bytes(64 * 1024)
            .build()
            .unwrap();
        let p = Process::new(put_big, (queue.clone(), 3 << 20, 4));
        p.start().unwrap();
        for i in 0..4 {
            let item = queue.get_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(item.len(), 3 << 20);
            assert!(item.iter().all(|&b| b == i as u8));
        }
        assert_eq!(p.join().unwrap(), 0);
    });
}

#[test]
fn timeouts_and_immediacy() {
    // CPython _TestQueue.test_put / test_get / test_timeout
    let queue: Queue<u8> = Queue::bounded(2).unwrap();
    let t = Instant::now();
    assert!(matches!(queue.try_get(), Err(TryGetError::Empty)));
    assert!(t.elapsed() < Duration::from_millis(100));
    let t = Instant::now();
    assert!(matches!(
        queue.get_timeout(Duration::from_millis(200)),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
    queue.put(1).unwrap();
    queue.put(2).unwrap();
    assert!(queue.is_full());
    match queue.try_put(3) {
        Err(TryPutError::Full(v)) => assert_eq!(v, 3),
        other => panic!("{other:?}"),
    }
    let t = Instant::now();
    match queue.put_timeout(4, Duration::from_millis(200)) {
        Err(PutTimeoutError::Timeout(v)) => assert_eq!(v, 4),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(queue.get().unwrap(), 1);
    assert_eq!(queue.get().unwrap(), 2);
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Nested {
    label: String,
    queues: Vec<Option<Queue<String>>>,
}

fn use_nested(nested: Nested) {
    for q in nested.queues.into_iter().flatten() {
        q.put(nested.label.clone()).unwrap();
    }
}

#[test]
fn queues_travel_nested_in_arguments() {
    bounded(LIMIT, || {
        let a: Queue<String> = Queue::new().unwrap();
        let b: Queue<String> = Queue::new().unwrap();
        let nested = Nested {
            label: "hi".into(),
            queues: vec![Some(a.clone()), None, Some(b.clone())],
        };
        let p = Process::new(use_nested, (nested,));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(a.try_get().unwrap(), "hi");
        assert_eq!(b.try_get().unwrap(), "hi");
    });
}

#[test]
fn handles_cannot_go_through_a_queue() {
    let queue: Queue<Lock> = Queue::new().unwrap();
    let lock = Lock::new().unwrap();
    let err = queue.put(lock).unwrap_err();
    assert!(err.to_string().contains("Connection"), "{err}");
    let _lock: Lock = err.into_inner(); // the value comes back
    let (a, _b) = Pipe::new::<u8, u8>().unwrap();
    let conns: Queue<multiprocess::Connection<u8>> = Queue::new().unwrap();
    assert!(conns.try_put(a).is_err());
}

fn put_forever(queue: Queue<Vec<u8>>, size: usize) {
    let mut i = 0u64;
    loop {
        let mut item = vec![0u8; size];
        item[..8].copy_from_slice(&i.to_le_bytes());
        queue.put(item).unwrap();
        i += 1;
    }
}

fn get_forever(queue: Queue<Vec<u8>>) {
    loop {
        let _ = queue.get().unwrap();
    }
}

fn check_item(item: &[u8], size: usize) -> u64 {
    assert_eq!(item.len(), size);
    u64::from_le_bytes(item[..8].try_into().unwrap())
}

#[test]
fn producer_killed_mid_put_leaves_the_queue_working() {
    bounded(LIMIT, || {
        // Items of 3 chunks or more, so a kill often lands mid-message.
        let size = 200 * 1024;
        for round in 0..5 {
            let queue: Queue<Vec<u8>> = QueueBuilder::new()
                .capacity_bytes(64 * 1024)
                .build()
                .unwrap();
            let p = Process::new(put_forever, (queue.clone(), size));
            p.start().unwrap();
            // Read a few, then kill the producer while it is mid-put.
            let mut expected = 0;
            for _ in 0..=round {
                let item = queue.get_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(check_item(&item, size), expected);
                expected += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
            p.kill().unwrap();
            assert_eq!(p.join().unwrap(), -9);
            // Whole items that were published still arrive, in order; a
            // partial one never does.
            while let Ok(item) = queue.get_timeout(Duration::from_millis(200)) {
                assert_eq!(check_item(&item, size), expected);
                expected += 1;
            }
            // A new producer and the old consumer carry on.
            let p2 = Process::new(put_big, (queue.clone(), size, 3));
            p2.start().unwrap();
            for i in 0..3 {
                let item = queue.get_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(item.len(), size);
                assert!(
                    item.iter().all(|&b| b == i as u8),
                    "round {round}: corrupt item"
                );
            }
            assert_eq!(p2.join().unwrap(), 0);
        }
    });
}

#[test]
fn consumer_killed_mid_get_leaves_the_queue_working() {
    bounded(LIMIT, || {
        let size = 200 * 1024;
        for round in 0..5 {
            let queue: Queue<Vec<u8>> = QueueBuilder::new()
                .capacity_bytes(64 * 1024)
                .build()
                .unwrap();
            let producer = Process::new(put_forever, (queue.clone(), size));
            let consumer = Process::new(get_forever, (queue.clone(),));
            producer.start().unwrap();
            consumer.start().unwrap();
            std::thread::sleep(Duration::from_millis(20 + 10 * round));
            consumer.kill().unwrap();
            assert_eq!(consumer.join().unwrap(), -9);
            // We take over as the consumer: items keep coming, whole and in
            // increasing order (the one the dead consumer was reading is
            // skipped, never delivered in pieces).
            let mut last = None;
            for _ in 0..10 {
                let item = queue.get_timeout(Duration::from_secs(10)).unwrap();
                let n = check_item(&item, size);
                if let Some(prev) = last {
                    assert!(n > prev, "round {round}: {n} after {prev}");
                }
                last = Some(n);
            }
            producer.kill().unwrap();
            producer.join().unwrap();
        }
    });
}

fn put_small_forever(queue: Queue<u64>) {
    let mut i = 0;
    loop {
        queue.put(i).unwrap();
        i += 1;
    }
}

#[test]
fn small_items_survive_random_kills() {
    bounded(LIMIT, || {
        let queue: Queue<u64> = QueueBuilder::new().capacity_bytes(4096).build().unwrap();
        for round in 0..10u64 {
            let p = Process::new(put_small_forever, (queue.clone(),));
            p.start().unwrap();
            let mut expected = 0;
            for _ in 0..100 {
                assert_eq!(
                    queue.get_timeout(Duration::from_secs(10)).unwrap(),
                    expected
                );
                expected += 1;
            }
            std::thread::sleep(Duration::from_micros(100 * round));
            p.kill().unwrap();
            p.join().unwrap();
            while let Ok(v) = queue.try_get() {
                assert_eq!(v, expected);
                expected += 1;
            }
            assert!(queue.is_empty());
        }
    });
}

// ---- Queue::shutdown ----

fn blocked_get(q: Queue<u32>, ready: multiprocess::Event) {
    ready.set();
    let start = Instant::now();
    let r = q.get_timeout(Duration::from_secs(20));
    assert!(
        matches!(r, Err(multiprocess::GetTimeoutError::ShutDown)),
        "{r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woken by shutdown"
    );
}

fn blocked_put(q: Queue<u32>, ready: multiprocess::Event) {
    ready.set();
    let start = Instant::now();
    match q.put_timeout(7, Duration::from_secs(20)) {
        Err(multiprocess::PutTimeoutError::ShutDown(7)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woken by shutdown"
    );
}

/// A getter blocked on an empty queue and a putter blocked on a full one,
/// each in another process, fail with ShutDown as soon as the queue is
/// shut down (not at their 60 s timeout).
#[test]
fn shutdown_wakes_blocked_getters_and_putters_in_other_processes() {
    bounded(LIMIT, || {
        let empty = Queue::<u32>::new().unwrap();
        let full = Queue::<u32>::bounded(1).unwrap();
        full.put(1).unwrap();
        let (r1, r2) = (
            multiprocess::Event::new().unwrap(),
            multiprocess::Event::new().unwrap(),
        );
        let g = Process::new(blocked_get, (empty.clone(), r1.clone()));
        let p = Process::new(blocked_put, (full.clone(), r2.clone()));
        g.start().unwrap();
        p.start().unwrap();
        assert!(r1.wait_timeout(Duration::from_secs(20)));
        assert!(r2.wait_timeout(Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(200)); // let them block
        empty.shutdown(false);
        full.shutdown(false);
        assert_eq!(g.join().unwrap(), 0);
        assert_eq!(p.join().unwrap(), 0);
        // The full queue's item is still drained, then ShutDown.
        assert_eq!(full.get().unwrap(), 1);
        assert!(matches!(full.get(), Err(multiprocess::GetError::ShutDown)));
    });
}

/// An immediate shutdown discards what is left: gets fail at once, and a
/// JoinableQueue's join returns (the discarded items count as done), also
/// when called from another process's handle.
#[test]
fn immediate_shutdown_discards_and_releases_join() {
    bounded(LIMIT, || {
        let q = Queue::<String>::new().unwrap();
        q.put("a".into()).unwrap();
        q.put("b".into()).unwrap();
        q.shutdown(true);
        assert!(q.is_shutdown());
        assert_eq!(q.qsize(), 0);
        assert!(matches!(
            q.try_get(),
            Err(multiprocess::TryGetError::ShutDown)
        ));
        match q.try_put("c".into()) {
            Err(multiprocess::TryPutError::ShutDown(s)) => assert_eq!(s, "c"),
            other => panic!("{other:?}"),
        }
        let j = multiprocess::JoinableQueue::<u32>::new().unwrap();
        for i in 0..3 {
            j.put(i).unwrap();
        }
        assert_eq!(j.get().unwrap(), 0);
        j.shutdown(true);
        assert_eq!(j.unfinished_tasks(), 1, "only the taken task is left");
        j.task_done().unwrap();
        assert!(j.join_timeout(Duration::from_secs(10)).is_ok());
    });
}
