//! Property tests (proptest) on real processes:
//!
//! - a queue delivers each item exactly once, in per-producer FIFO order,
//!   under random schedules of 1–3 producers and 1–3 consumers that mix
//!   blocking, `try_` and timed puts and gets on a queue small enough to be
//!   full often;
//! - connection framing round-trips arbitrary byte strings of 0..64 KiB
//!   (both sides of the 32 KiB ring/socket split), several in flight at once,
//!   typed and raw, plus the empty message and a 16 MiB one.
//!
//! `PROPTEST_CASES` overrides the case counts (proptest's own variable).

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use common::{LIMIT, bounded};
use multiprocess::{
    Connection, GetTimeoutError, Pipe, Process, PutTimeoutError, Queue, TryGetError, TryPutError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};

multiprocess::init_before_main!();

/// Cases per property: `PROPTEST_CASES` or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default_cases),
        // Shrinking re-runs whole process trees; keep it bounded.
        max_shrink_iters: 64,
        // Failures are reported with the minimal case in the panic message.
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------
// Queues under random schedules.

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum PutOp {
    Put,
    TryPut,
    /// put_timeout with this many µs.
    PutTimeout(u64),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum GetOp {
    Get,
    TryGet,
    /// get_timeout with this many µs.
    GetTimeout(u64),
}

type Item = Option<(u32, u32)>; // (producer, seq); None ends a consumer

/// Puts one item per op, as the op says; an item that a `try_put` or
/// `put_timeout` could not place is not sent. Reports the sequence numbers
/// it did send.
fn producer(id: u32, ops: Vec<PutOp>, queue: Queue<Item>, report: Queue<(u32, Vec<u32>)>) {
    let mut sent = Vec::new();
    for (seq, op) in ops.into_iter().enumerate() {
        let seq = seq as u32;
        let item = Some((id, seq));
        let placed = match op {
            PutOp::Put => {
                queue.put(item).unwrap();
                true
            }
            PutOp::TryPut => match queue.try_put(item) {
                Ok(()) => true,
                Err(TryPutError::Full(back)) => {
                    assert_eq!(back, item, "try_put gave back another item");
                    false
                }
                Err(e) => panic!("try_put: {e}"),
            },
            PutOp::PutTimeout(us) => match queue.put_timeout(item, Duration::from_micros(us)) {
                Ok(()) => true,
                Err(PutTimeoutError::Timeout(back)) => {
                    assert_eq!(back, item, "put_timeout gave back another item");
                    false
                }
                Err(e) => panic!("put_timeout: {e}"),
            },
        };
        if placed {
            sent.push(seq);
        }
    }
    report.put((id, sent)).unwrap();
}

/// Gets with the ops in turn (cycling) until it receives `None`; reports
/// what it received, in order.
fn consumer(ops: Vec<GetOp>, queue: Queue<Item>, report: Queue<Vec<(u32, u32)>>) {
    let mut got = Vec::new();
    for op in ops.iter().cycle() {
        let item = match *op {
            GetOp::Get => queue.get().unwrap(),
            GetOp::TryGet => match queue.try_get() {
                Ok(item) => item,
                Err(TryGetError::Empty) => continue,
                Err(e) => panic!("try_get: {e}"),
            },
            GetOp::GetTimeout(us) => match queue.get_timeout(Duration::from_micros(us)) {
                Ok(item) => item,
                Err(GetTimeoutError::Timeout) => continue,
                Err(e) => panic!("get_timeout: {e}"),
            },
        };
        match item {
            Some(item) => got.push(item),
            None => break,
        }
    }
    report.put(got).unwrap();
}

#[derive(Debug, Clone)]
struct Schedule {
    maxsize: usize,
    producers: Vec<Vec<PutOp>>,
    consumers: Vec<Vec<GetOp>>,
}

fn put_op() -> impl Strategy<Value = PutOp> {
    prop_oneof![
        2 => Just(PutOp::Put),
        1 => Just(PutOp::TryPut),
        1 => (0u64..2000).prop_map(PutOp::PutTimeout),
    ]
}

fn get_op() -> impl Strategy<Value = GetOp> {
    prop_oneof![
        1 => Just(GetOp::Get),
        1 => Just(GetOp::TryGet),
        1 => (0u64..2000).prop_map(GetOp::GetTimeout),
    ]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        1usize..=4,
        prop::collection::vec(prop::collection::vec(put_op(), 0..60), 1..=3),
        prop::collection::vec(prop::collection::vec(get_op(), 1..8), 1..=3),
    )
        .prop_map(|(maxsize, producers, consumers)| Schedule {
            maxsize,
            producers,
            consumers,
        })
}

fn run_schedule(s: &Schedule) -> Result<(), TestCaseError> {
    let wait = Duration::from_secs(20);
    let queue: Queue<Item> = Queue::bounded(s.maxsize).unwrap();
    let sent_q: Queue<(u32, Vec<u32>)> = Queue::new().unwrap();
    let got_q: Queue<Vec<(u32, u32)>> = Queue::new().unwrap();
    let ps: Vec<Process> = s
        .producers
        .iter()
        .enumerate()
        .map(|(id, ops)| {
            Process::new(
                producer,
                (id as u32, ops.clone(), queue.clone(), sent_q.clone()),
            )
        })
        .collect();
    let cs: Vec<Process> = s
        .consumers
        .iter()
        .map(|ops| Process::new(consumer, (ops.clone(), queue.clone(), got_q.clone())))
        .collect();
    for p in cs.iter().chain(&ps) {
        p.start().unwrap();
    }
    for p in &ps {
        prop_assert_eq!(p.join_timeout(wait).unwrap(), Some(0), "producer");
    }
    let mut sent: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for _ in &ps {
        let (id, seqs) = sent_q.get_timeout(wait).unwrap();
        for seq in seqs {
            *sent.entry((id, seq)).or_default() += 1;
        }
    }
    for _ in &cs {
        queue.put_timeout(None, wait).unwrap();
    }
    let mut got: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for _ in &cs {
        let items = got_q.get_timeout(wait).unwrap();
        // Per consumer, each producer's items in the order it put them.
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for (id, seq) in items {
            if let Some(prev) = last.insert(id, seq) {
                prop_assert!(seq > prev, "producer {}: {} after {}", id, seq, prev);
            }
            *got.entry((id, seq)).or_default() += 1;
        }
    }
    for p in &cs {
        prop_assert_eq!(p.join_timeout(wait).unwrap(), Some(0), "consumer");
    }
    prop_assert!(queue.is_empty());
    // Exactly once: the multisets sent and received are equal.
    prop_assert_eq!(got, sent);
    Ok(())
}

#[test]
fn queues_deliver_exactly_once_in_per_producer_order_under_random_schedules() {
    bounded(LIMIT * 2, || {
        runner(32)
            .run(&schedule(), |s| run_schedule(&s))
            .unwrap_or_else(|e| panic!("{e}"));
    });
}

// ---------------------------------------------------------------------------
// Connection framing.

/// Echoes messages from `input` to `output` until `input` ends: raw ones
/// (`recv_bytes`/`send_bytes`) or typed `Vec<u8>`s.
fn echo(
    input: Connection<Infallible, Vec<u8>>,
    output: Connection<Vec<u8>, Infallible>,
    raw: bool,
) {
    if raw {
        while let Ok(bytes) = input.recv_bytes() {
            output.send_bytes(&bytes).unwrap();
        }
    } else {
        while let Ok(bytes) = input.recv() {
            output.send(bytes).unwrap();
        }
    }
}

struct Echo {
    raw: bool,
    to_child: Connection<Vec<u8>, Infallible>,
    from_child: Connection<Infallible, Vec<u8>>,
    child: Process,
}

impl Echo {
    fn start(raw: bool) -> Echo {
        let (child_in, to_child) = Pipe::simplex::<Vec<u8>>().unwrap();
        let (from_child, child_out) = Pipe::simplex::<Vec<u8>>().unwrap();
        let child = Process::new(echo, (child_in, child_out, raw));
        child.start().unwrap();
        Echo {
            raw,
            to_child,
            from_child,
            child,
        }
    }

    /// Sends every message (typed or raw) from a thread while receiving the
    /// echoes here, so messages of any size can be in flight together.
    fn round_trip(&self, messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let raw = self.raw;
        let wait = Duration::from_secs(60);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for m in messages {
                    if raw {
                        self.to_child.send_bytes(m).unwrap();
                    } else {
                        self.to_child.send(m.clone()).unwrap();
                    }
                }
            });
            messages
                .iter()
                .map(|_| {
                    if raw {
                        self.from_child.recv_bytes_timeout(wait).unwrap()
                    } else {
                        self.from_child.recv_timeout(wait).unwrap()
                    }
                })
                .collect()
        })
    }

    fn stop(self) {
        drop(self.to_child);
        assert_eq!(
            self.child.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(0)
        );
    }
}

#[test]
fn framing_round_trips_arbitrary_byte_strings() {
    bounded(LIMIT * 2, || {
        let echoes = [Echo::start(false), Echo::start(true)];
        let messages = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..65536), 1..5);
        runner(64)
            .run(&(messages, any::<bool>()), |(messages, raw)| {
                let back = echoes[usize::from(raw)].round_trip(&messages);
                prop_assert!(back == messages, "a message came back changed");
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        // The edges: empty, around the 32 KiB ring limit, and 16 MiB.
        let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
        for echo in &echoes {
            for size in [
                0,
                1,
                (32 << 10) - 9,
                (32 << 10) - 8,
                32 << 10,
                (32 << 10) + 1,
            ] {
                let m = vec![0xA5; size];
                assert_eq!(
                    echo.round_trip(std::slice::from_ref(&m)),
                    [m],
                    "{size} bytes"
                );
            }
            let back = echo.round_trip(&[Vec::new(), big.clone(), Vec::new()]);
            assert_eq!(back.len(), 3);
            assert!(back[0].is_empty() && back[2].is_empty());
            assert!(
                back[1] == big,
                "16 MiB came back changed (raw: {})",
                echo.raw
            );
        }
        for echo in echoes {
            echo.stop();
        }
    });
}
