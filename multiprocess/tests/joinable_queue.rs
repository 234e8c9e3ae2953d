//! JoinableQueue and SimpleQueue across real processes: `task_done` by workers then `join`,
//! `join_timeout`, extra `task_done`, and a consumer killed between `get`
//! and `task_done` (CPython's `_TestQueue.test_task_done`, plus our crash
//! handling).

mod common;

use std::time::{Duration, Instant};

use common::{LIMIT, bounded};
use multiprocess::{JoinTimeoutError, JoinableQueue, Process, Queue, SimpleQueue, TaskDoneError};

multiprocess::init_before_main!();

/// Takes items until `None`, marking each done after a short "work".
fn worker(q: JoinableQueue<Option<u32>>, results: Queue<u32>) {
    while let Some(n) = q.get().unwrap() {
        std::thread::sleep(Duration::from_micros(200));
        results.put(n * n).unwrap();
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

#[test]
fn join_returns_once_four_workers_mark_every_item_done() {
    bounded(LIMIT, || {
        let q: JoinableQueue<Option<u32>> = JoinableQueue::new().unwrap();
        let results: Queue<u32> = Queue::new().unwrap();
        let workers: Vec<Process> = (0..4)
            .map(|_| Process::new(worker, (q.clone(), results.clone())))
            .collect();
        for w in &workers {
            w.start().unwrap();
        }
        for n in 0..200 {
            q.put(Some(n)).unwrap();
        }
        q.join_timeout(Duration::from_secs(30)).unwrap();
        // join returned: every item was processed, so every result is there.
        assert_eq!(q.unfinished_tasks(), 0);
        let mut got: Vec<u32> = (0..200).map(|_| results.try_get().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..200).map(|n| n * n).collect::<Vec<_>>());
        for _ in &workers {
            q.put(None).unwrap();
        }
        q.join_timeout(Duration::from_secs(30)).unwrap();
        for w in &workers {
            assert_eq!(w.join().unwrap(), 0);
        }
        assert_eq!(q.abandoned_tasks(), 0);
    });
}

#[test]
fn join_timeout_times_out_while_items_are_pending() {
    bounded(LIMIT, || {
        let q = JoinableQueue::new().unwrap();
        q.put(1u8).unwrap();
        q.put(2u8).unwrap();
        let start = Instant::now();
        let err = q.join_timeout(Duration::from_millis(200)).unwrap_err();
        let waited = start.elapsed();
        assert!(matches!(err, JoinTimeoutError::Timeout { unfinished: 2 }));
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // Taken but not done still counts.
        q.get().unwrap();
        q.get().unwrap();
        assert!(q.join_timeout(Duration::from_millis(50)).is_err());
        q.task_done().unwrap();
        q.task_done().unwrap();
        q.join_timeout(Duration::from_millis(50)).unwrap();
    });
}

fn take_and_finish(q: JoinableQueue<u8>, n: usize) {
    for _ in 0..n {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn extra_task_done_is_an_error_in_any_process() {
    bounded(LIMIT, || {
        let q = JoinableQueue::new().unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        q.put(1u8).unwrap();
        q.put(2u8).unwrap();
        let child = Process::new(take_and_finish, (q.clone(), 2));
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
        q.join_timeout(Duration::from_secs(5)).unwrap();
        let err = q.task_done().unwrap_err();
        assert_eq!(err, TaskDoneError::TooManyCalls);
        assert_eq!(
            err.to_string(),
            "task_done() called more times than items were taken from the queue"
        );
    });
}

/// Takes one item, says so, and never marks it done.
fn take_and_hang(q: JoinableQueue<u8>, took: Queue<u8>) {
    let item = q.get().unwrap();
    took.put(item).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn consumer_killed_between_get_and_task_done_releases_join() {
    bounded(LIMIT, || {
        let q = JoinableQueue::new().unwrap();
        let took: Queue<u8> = Queue::new().unwrap();
        q.put(7u8).unwrap();
        q.put(8u8).unwrap();
        let child = Process::new(take_and_hang, (q.clone(), took.clone()));
        child.start().unwrap();
        assert_eq!(took.get_timeout(Duration::from_secs(30)).unwrap(), 7);
        // The child holds item 7 unfinished; item 8 is still queued.
        assert_eq!(q.unfinished_tasks(), 2);
        child.kill().unwrap();
        assert_eq!(child.join().unwrap(), -9);
        // The live item still holds join back...
        assert!(q.join_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(q.unfinished_tasks(), 1);
        assert_eq!(q.abandoned_tasks(), 1);
        // ...and once it is done, join returns.
        assert_eq!(q.get().unwrap(), 8);
        q.task_done().unwrap();
        let start = Instant::now();
        q.join_timeout(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        // The dead consumer's item cannot be marked done twice.
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    });
}

#[test]
fn blocked_join_returns_when_the_holder_is_killed() {
    bounded(LIMIT, || {
        let q = JoinableQueue::new().unwrap();
        let took: Queue<u8> = Queue::new().unwrap();
        q.put(1u8).unwrap();
        let child = Process::new(take_and_hang, (q.clone(), took.clone()));
        child.start().unwrap();
        took.get_timeout(Duration::from_secs(30)).unwrap();
        let q2 = q.clone();
        let joiner = std::thread::spawn(move || {
            let start = Instant::now();
            q2.join_timeout(Duration::from_secs(20))
                .map(|()| start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        child.join().unwrap();
        let waited = joiner
            .join()
            .unwrap()
            .expect("join did not notice the death");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(q.abandoned_tasks(), 1);
    });
}

fn simple_echo(inbox: SimpleQueue<String>, outbox: SimpleQueue<String>) {
    // Wait until the parent's item is visible here, then answer.
    while inbox.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = inbox.get().unwrap();
    assert!(inbox.is_empty());
    outbox.put(s.to_uppercase()).unwrap();
    outbox.close();
}

#[test]
fn simple_queue_put_get_and_is_empty_across_processes() {
    bounded(LIMIT, || {
        let inbox = SimpleQueue::new().unwrap();
        let outbox = SimpleQueue::new().unwrap();
        assert!(inbox.is_empty() && outbox.is_empty());
        let p = Process::new(simple_echo, (inbox.clone(), outbox.clone()));
        p.start().unwrap();
        inbox.put("hello".to_string()).unwrap();
        assert_eq!(outbox.get().unwrap(), "HELLO");
        assert_eq!(p.join().unwrap(), 0);
        // The child took the item: empty here too.
        assert!(inbox.is_empty());
        assert!(outbox.is_empty());
        inbox.close();
    });
}

fn finish_one(q: JoinableQueue<u8>) {
    q.task_done().unwrap();
}

#[test]
fn task_done_may_come_from_another_process() {
    bounded(LIMIT, || {
        let q = JoinableQueue::new().unwrap();
        q.put(1u8).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        // The item was taken here; a child marks it done.
        let p = Process::new(finish_one, (q.clone(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        q.join_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    });
}
