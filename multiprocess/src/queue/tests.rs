//! Queue tests: threads stand in for processes, and a second mapping of the
//! same memfd (`Queue::from_fd` of a dup) for another process's view.

use super::*;
use crate::sync::Lock;
use crate::sync::raw_lock::tests::dead_id;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

const T10: Duration = Duration::from_secs(10);

/// Another mapping of the same queue, as a child process would have.
/// A second mapping of the queue, as another process would have. Under
/// Miri, which cannot map a memfd twice, a clone sharing this mapping (the
/// ring code under test is the same; only `from_fd` is skipped).
fn remap<T: Serialize + DeserializeOwned + 'static>(q: &Queue<T>) -> Queue<T> {
    #[cfg(miri)]
    return q.clone();
    #[cfg(not(miri))]
    Queue::from_fd(q.ring.fd().try_clone_to_owned().unwrap()).unwrap()
}

fn small<T: Serialize + DeserializeOwned + 'static>(cap: usize) -> Queue<T> {
    QueueBuilder::new().capacity_bytes(cap).build().unwrap()
}

fn encoded<T: Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v).unwrap().0
}

/// Item counts and byte sizes: Miri interprets every instruction, so its
/// runs use 1/64 (a ring of 64 KiB becomes 1 KiB, a 1 MiB item 16 KiB:
/// still larger than the ring, still wrapping).
fn scaled(n: usize) -> usize {
    if cfg!(miri) { (n / 64).max(2) } else { n }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

#[test]
fn fifo_and_sizes() {
    let q = Queue::new().unwrap();
    assert!(q.is_empty() && !q.is_full() && q.maxsize().is_none());
    let n = scaled(1000) as u32;
    for i in 0..n {
        q.put(i).unwrap();
    }
    assert_eq!(q.qsize(), n as usize);
    let other = remap(&q);
    for i in 0..n {
        assert_eq!(other.get_timeout(T10).unwrap(), i);
    }
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

#[test]
fn many_small_items_wrap_the_ring() {
    // 1 KiB ring, strings of varying length: records wrap at every offset.
    let q: Queue<String> = small(1024);
    let c = remap(&q);
    let h = std::thread::spawn(move || {
        for i in 0..scaled(5000) {
            q.put_timeout("x".repeat(i % 100), T10).unwrap();
        }
    });
    for i in 0..scaled(5000) {
        assert_eq!(c.get_timeout(T10).unwrap(), "x".repeat(i % 100));
    }
    h.join().unwrap();
}

#[test]
fn mpmc_exactly_once() {
    const PRODUCERS: u64 = 3;
    const CONSUMERS: usize = 3;
    let each = scaled(20_000) as u64;
    let q: Queue<(u64, u64)> = small(4096);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = if p % 2 == 0 { q.clone() } else { remap(&q) };
            std::thread::spawn(move || {
                for i in 0..each {
                    q.put_timeout((p, i), T10).expect("put wedged");
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let q = if c % 2 == 0 { q.clone() } else { remap(&q) };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(item) = q.get_timeout(Duration::from_millis(500)) {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut counts: HashMap<(u64, u64), u32> = HashMap::new();
    for c in consumers {
        let got = c.join().unwrap();
        // Per-producer FIFO as seen by each consumer.
        let mut last: HashMap<u64, u64> = HashMap::new();
        for &(p, i) in &got {
            if let Some(&prev) = last.get(&p) {
                assert!(i > prev, "producer {p}: {i} after {prev}");
            }
            last.insert(p, i);
            *counts.entry((p, i)).or_default() += 1;
        }
    }
    assert_eq!(counts.len() as u64, PRODUCERS * each, "items lost");
    assert!(counts.values().all(|&n| n == 1), "items duplicated");
    assert!(q.is_empty());
}

#[test]
fn bounded_full_and_empty_are_immediate() {
    let q = Queue::bounded(6).unwrap();
    for i in 0..6u8 {
        q.try_put(i).unwrap();
    }
    assert!(q.is_full());
    let t = Instant::now();
    assert!(matches!(q.try_put(9), Err(TryPutError::Full(9))));
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());

    let t = Instant::now();
    let err = q.put_timeout(9, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, PutTimeoutError::Timeout(9)));
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(190) && e < Duration::from_secs(2),
        "{e:?}"
    );

    for i in 0..6u8 {
        assert_eq!(q.try_get().unwrap(), i);
    }
    let t = Instant::now();
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    assert!(t.elapsed() < Duration::from_millis(50));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(200)),
        Err(GetTimeoutError::Timeout)
    ));
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(190) && e < Duration::from_secs(2),
        "{e:?}"
    );
}

#[test]
fn blocked_put_resumes_when_room_appears() {
    let q = Queue::bounded(1).unwrap();
    q.put(1u32).unwrap();
    let p = q.clone();
    let h = std::thread::spawn(move || p.put_timeout(2, T10).is_ok());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q.get_timeout(T10).unwrap(), 1);
    assert_eq!(q.get_timeout(T10).unwrap(), 2);
    assert!(h.join().unwrap());
}

#[test]
fn items_larger_than_the_ring_stream_through() {
    let q: Queue<Vec<u8>> = small(scaled(64 * 1024));
    let c = remap(&q);
    let consumer = std::thread::spawn(move || {
        (0..4)
            .map(|_| c.get_timeout(T10).expect("big item wedged"))
            .collect::<Vec<_>>()
    });
    for seed in 0..4u8 {
        q.put_timeout(pattern(seed, scaled(1 << 20)), T10).unwrap();
    }
    let got = consumer.join().unwrap();
    for (seed, item) in got.iter().enumerate() {
        assert!(
            *item == pattern(seed as u8, scaled(1 << 20)),
            "item {seed} corrupted"
        );
    }
    assert!(q.is_empty());
}

#[test]
fn try_put_of_an_item_that_does_not_fit_is_full_not_partial() {
    let q: Queue<Vec<u8>> = small(4096);
    assert!(matches!(
        q.try_put(vec![0; 10_000]),
        Err(TryPutError::Full(_))
    ));
    q.try_put(vec![1; 10]).unwrap();
    assert_eq!(q.try_get().unwrap(), vec![1; 10]);
}

#[test]
fn put_timeout_mid_item_aborts_cleanly() {
    // Nobody drains: the item is started, then abandoned at the deadline.
    let q: Queue<Vec<u8>> = small(scaled(64 * 1024));
    let err = q
        .put_timeout(pattern(1, scaled(1 << 20)), Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(err, PutTimeoutError::Timeout(_)));
    // The partial first chunk fills the ring until a consumer drains it.
    let c = remap(&q);
    let consumer = std::thread::spawn(move || c.get_timeout(T10));
    q.put_timeout(vec![7; 8], T10).unwrap();
    // The consumer skipped the partial item and the abort marker.
    assert_eq!(consumer.join().unwrap().unwrap(), vec![7; 8]);
    assert!(q.try_get().is_err());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
)]
fn consumer_dying_mid_item_leaves_queue_working() {
    let q: Queue<Vec<u8>> = small(64 * 1024);
    q.ring.hooks.dead_id.store(dead_id(), Ordering::Relaxed);
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            q.put_timeout(pattern(3, 1 << 20), T10).unwrap();
            q.put_timeout(pattern(4, 1000), T10).unwrap();
        })
    };
    // A consumer takes two chunks of the big item, then "dies" holding the
    // get lock.
    q.ring.hooks.crash_get_after.store(2, Ordering::Relaxed);
    let mut buf = Vec::new();
    let d = Some(Instant::now() + T10);
    assert_eq!(q.ring.get(&mut buf, false, d, d), Err(Incomplete::Crashed));
    q.ring.hooks.crash_get_after.store(0, Ordering::Relaxed);
    // The next consumer takes the lock over, drops the orphaned chunks and
    // gets the next whole item.
    let t = Instant::now();
    assert_eq!(q.get_timeout(T10).unwrap(), pattern(4, 1000));
    assert!(t.elapsed() < Duration::from_secs(2));
    producer.join().unwrap();
    assert!(q.is_empty());
    q.put(vec![1]).unwrap();
    assert_eq!(q.get_timeout(T10).unwrap(), vec![1]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
)]
fn producer_dying_mid_item_then_new_producer() {
    let q: Queue<Vec<u8>> = small(64 * 1024);
    q.ring.hooks.dead_id.store(dead_id(), Ordering::Relaxed);
    q.ring.hooks.crash_put_after.store(2, Ordering::Relaxed);
    let consumer = {
        let c = remap(&q);
        std::thread::spawn(move || c.get_timeout(T10))
    };
    // Writes two chunks of a big item and "dies" holding the put lock.
    let big = encoded(&pattern(5, 1 << 20));
    assert_eq!(
        q.ring.put(ring::Msg::whole(&big), None, None),
        Err(Incomplete::Crashed)
    );
    q.ring.hooks.crash_put_after.store(0, Ordering::Relaxed);
    // A new producer takes the put lock over (publishing an abort), and its
    // item is the one the waiting consumer gets.
    q.put_timeout(pattern(6, 100), T10).unwrap();
    assert_eq!(consumer.join().unwrap().unwrap(), pattern(6, 100));
    assert!(q.is_empty());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
)]
fn consumer_drops_partial_item_of_a_dead_writer() {
    let q: Queue<Vec<u8>> = small(64 * 1024);
    let dead = dead_id();
    q.ring.hooks.dead_id.store(dead, Ordering::Relaxed);
    q.ring.hooks.header_pid.store(dead, Ordering::Relaxed);
    q.ring.hooks.crash_put_after.store(1, Ordering::Relaxed);
    let big = encoded(&pattern(5, 200_000));
    assert_eq!(
        q.ring.put(ring::Msg::whole(&big), None, None),
        Err(Incomplete::Crashed)
    );
    q.ring.hooks.header_pid.store(0, Ordering::Relaxed);
    q.ring.hooks.crash_put_after.store(0, Ordering::Relaxed);
    // Nobody puts: the consumer takes the first chunk, waits for the rest,
    // finds the writer dead and drops it; then it times out normally.
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(300)),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    q.put_timeout(vec![9], T10).unwrap();
    assert_eq!(q.get_timeout(T10).unwrap(), vec![9]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
)]
fn wrong_item_type_is_refused() {
    let q: Queue<u64> = Queue::new().unwrap();
    let (bytes, fds) = codec::encode(&q).unwrap();
    assert!(codec::decode::<Queue<String>>(&bytes, fds).is_err());
    let err = Queue::<String>::from_fd(q.ring.fd().try_clone_to_owned().unwrap()).unwrap_err();
    assert!(err.to_string().contains("alloc::string::String"), "{err}");
    // Not a queue at all.
    let lock = Lock::new().unwrap();
    let (bytes, fds) = codec::encode(&lock).unwrap();
    assert!(codec::decode::<Queue<u64>>(&bytes, fds).is_err());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
)]
fn travels_as_a_handle() {
    let q: Queue<u64> = Queue::new().unwrap();
    let (bytes, fds) = codec::encode(&q).unwrap();
    let child: Queue<u64> = codec::decode(&bytes, fds).unwrap();
    child.put(77).unwrap();
    assert_eq!(q.get_timeout(T10).unwrap(), 77);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
)]
fn handles_inside_items_are_refused() {
    let q: Queue<(u32, Option<Lock>)> = Queue::new().unwrap();
    q.put((1, None)).unwrap();
    let lock = Lock::new().unwrap();
    let err = q.put((2, Some(lock))).unwrap_err();
    assert!(
        err.to_string().contains("send it over a Connection"),
        "{err}"
    );
    let (n, back) = err.into_inner();
    assert_eq!(n, 2);
    assert!(back.is_some(), "the lock is handed back");
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_timeout(T10).unwrap().0, 1);
}

#[test]
fn unserializable_item_is_handed_back() {
    struct Bad(u8);
    impl Serialize for Bad {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    impl<'de> Deserialize<'de> for Bad {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d).map(Bad)
        }
    }
    let q: Queue<Bad> = Queue::new().unwrap();
    let err = q.try_put(Bad(4)).unwrap_err();
    assert!(matches!(err, TryPutError::Encode { .. }));
    assert!(err.to_string().starts_with("cannot put the item"), "{err}");
    assert_eq!(err.into_inner().0, 4);
    assert!(q.is_empty());
}

#[test]
fn bad_capacity_is_refused() {
    assert!(
        QueueBuilder::new()
            .capacity_bytes(3000)
            .build::<u8>()
            .is_err()
    );
    assert!(
        QueueBuilder::new()
            .capacity_bytes(512)
            .build::<u8>()
            .is_err()
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "measures the thread CPU-time clock, which Miri does not provide"
)]
fn idle_consumer_sleeps() {
    // A blocked get must sleep, not spin: CPU time of this thread stays tiny.
    let q: Queue<u8> = Queue::new().unwrap();
    let h = std::thread::spawn(move || {
        let cpu = || rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        let before = cpu();
        let _ = q.get_timeout(Duration::from_millis(500));
        let after = cpu();
        (after.tv_sec - before.tv_sec) as f64 + (after.tv_nsec - before.tv_nsec) as f64 * 1e-9
    });
    let cpu_seconds = h.join().unwrap();
    assert!(
        cpu_seconds < 0.02,
        "idle get used {cpu_seconds} s of CPU in 0.5 s"
    );
}

/// Rough single-thread cost of put+get of a u64:
/// `cargo test --release -p multiprocess --lib -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_put_get_u64_single_thread() {
    let q: Queue<u64> = Queue::new().unwrap();
    let n = 5_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        q.put(i).unwrap();
        assert_eq!(q.get().unwrap(), i);
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    println!("put+get u64, one thread: {per:.1} ns per pair");
}

/// Rough 1 producer / 1 consumer throughput of u64 items (two threads).
#[test]
#[ignore]
fn bench_1p1c_u64() {
    let q: Queue<u64> = Queue::new().unwrap();
    let n = 5_000_000u64;
    let c = q.clone();
    let t = Instant::now();
    let h = std::thread::spawn(move || {
        for i in 0..n {
            assert_eq!(c.get().unwrap(), i);
        }
    });
    for i in 0..n {
        q.put(i).unwrap();
    }
    h.join().unwrap();
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("1P1C u64: {:.2} M msg/s", rate / 1e6);
}

#[test]
fn byte_items_are_written_as_postcard_writes_them() {
    for len in [0usize, 1, 127, 128, 16_383, 16_384, 70_000] {
        let v = pattern(2, len);
        let (prefix, n) = codec::varint(v.len());
        let mut ours = prefix[..n].to_vec();
        ours.extend_from_slice(&v);
        assert_eq!(ours, encoded(&v), "Vec<u8> of {len}");
        let s = "é".repeat(len / 2);
        let (prefix, n) = codec::varint(s.len());
        let mut ours = prefix[..n].to_vec();
        ours.extend_from_slice(s.as_bytes());
        assert_eq!(ours, encoded(&s), "String of {} bytes", s.len());
    }
}

#[test]
fn byte_items_round_trip_whole_and_chunked() {
    // A 64 KiB ring: the larger items stream through in chunks.
    let q: Queue<Vec<u8>> = small(scaled(64 * 1024));
    let s: Queue<String> = small(scaled(64 * 1024));
    let (qc, sc) = (remap(&q), remap(&s));
    let lens = [0usize, 1, 127, 128, 1000, 16_384, 65_536, 300_000]
        .map(|l| if l > 1000 { scaled(l) } else { l });
    let h = std::thread::spawn(move || {
        for (i, &len) in lens.iter().enumerate() {
            q.put_timeout(pattern(i as u8, len), T10).unwrap();
            s.put_timeout("ü".repeat(len / 2), T10).unwrap();
        }
    });
    for (i, &len) in lens.iter().enumerate() {
        let v = qc.get_timeout(T10).unwrap();
        assert_eq!(v, pattern(i as u8, len));
        assert_eq!(v.capacity(), len, "reserved exactly from the prefix");
        assert_eq!(sc.get_timeout(T10).unwrap(), "ü".repeat(len / 2));
    }
    h.join().unwrap();
}

#[test]
fn malformed_byte_items_are_decode_errors() {
    let q: Queue<String> = Queue::new().unwrap();
    // Not UTF-8.
    let bad = encoded(&vec![0xffu8, 0xfe]);
    q.ring.put(ring::Msg::whole(&bad), None, None).unwrap();
    let err = q.try_get().unwrap_err();
    assert!(err.to_string().contains("String"), "{err}");
    // A prefix announcing more bytes than the item holds.
    q.ring
        .put(ring::Msg::whole(&[5, b'a']), None, None)
        .unwrap();
    assert!(matches!(q.try_get(), Err(TryGetError::Decode(_))));
    // Not a varint at all.
    q.ring
        .put(ring::Msg::whole(&[0xff; 12]), None, None)
        .unwrap();
    assert!(matches!(q.try_get(), Err(TryGetError::Decode(_))));
    q.put("fine".into()).unwrap();
    assert_eq!(q.try_get().unwrap(), "fine");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
)]
fn put_inside_an_encode_still_refuses_handles() {
    // A Serialize impl that puts into a queue while multiprocess is encoding
    // a value with a side table: the plain path must not use that table.
    struct Sneaky(Queue<Option<Lock>>, Lock);
    impl Serialize for Sneaky {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let err = self.0.put(Some(self.1.clone())).unwrap_err();
            assert!(matches!(err, PutError::ContainsHandle(_)), "{err}");
            self.0.put(None).unwrap();
            s.serialize_unit()
        }
    }
    let q = Queue::new().unwrap();
    let (_, fds) = codec::encode(&Sneaky(q.clone(), Lock::new().unwrap())).unwrap();
    assert!(fds.is_empty());
    assert_eq!(q.qsize(), 1);
    assert!(q.try_get().unwrap().is_none());
}

#[test]
fn fixed_size_items_allocate_nothing_in_steady_state() {
    use crate::sys::count_alloc::allocations;
    let q: Queue<(u64, u32)> = Queue::new().unwrap();
    let c = remap(&q);
    // Warm up: the thread's buffer and first-use caches.
    q.put((0, 0)).unwrap();
    c.get().unwrap();
    let before = allocations();
    for i in 0..scaled(10_000) as u64 {
        q.put((i, i as u32)).unwrap();
        assert_eq!(c.get().unwrap(), (i, i as u32));
    }
    assert_eq!(allocations() - before, 0, "heap allocations by put+get");
}
