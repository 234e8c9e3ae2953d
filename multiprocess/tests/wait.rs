//! `wait` across real processes: the ready subset of several pipes (small
//! messages in the shared rings, large ones on the socket, end of stream),
//! process sentinels, listeners, queues and Listener connections; timeouts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded};
use multiprocess::{Client, Connection, Listener, Pipe, Process, Queue, RecvError, wait};

multiprocess::init_before_main!();

const T: Duration = Duration::from_secs(10);

/// Child: after `delay_ms`, sends `msg` on each connection.
fn send_later(conns: Vec<Connection<Vec<u8>, ()>>, delay_ms: u64, msg: Vec<u8>) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    for c in &conns {
        c.send(msg.clone()).unwrap();
    }
    // Stay until the parent has read (closing would make every end ready).
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn pipes_give_the_ready_subset() {
    bounded(LIMIT, || {
        for size in [3usize, 100 << 10] {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            for _ in 0..4 {
                let (a, b) = Pipe::new::<(), Vec<u8>>().unwrap();
                ours.push(a);
                theirs.push(b);
            }
            // Only 1 and 3 go to the child; 0 and 2 stay open here and silent.
            let t3 = theirs.pop().unwrap();
            let t2 = theirs.pop().unwrap();
            let t1 = theirs.pop().unwrap();
            let p = Process::new(send_later, (vec![t1, t3], 100u64, vec![7u8; size]));
            p.start().unwrap();
            let objs: Vec<&dyn multiprocess::Waitable> = ours
                .iter()
                .map(|c| c as &dyn multiprocess::Waitable)
                .collect();
            let mut seen = Vec::new();
            let end = Instant::now() + T;
            while seen.len() < 2 && Instant::now() < end {
                let ready = wait(&objs, Some(T)).unwrap();
                assert!(!ready.is_empty());
                for i in ready {
                    assert!(i == 1 || i == 3, "pipe {i} reported ready");
                    assert_eq!(ours[i].recv().unwrap(), vec![7u8; size]);
                    seen.push(i);
                }
            }
            seen.sort();
            assert_eq!(seen, [1, 3]);
            assert!(wait(&objs, Some(Duration::ZERO)).unwrap().is_empty());
            assert_eq!(p.join_timeout(T).unwrap(), Some(0));
            // The child is gone: its ends are closed, ours are ready (EOF).
            assert_eq!(wait(&objs, Some(T)).unwrap(), [1, 3]);
            assert!(matches!(ours[1].recv(), Err(RecvError::Disconnected)));
            drop(t2);
        }
    });
}

#[test]
fn a_blocked_wait_wakes_on_a_ring_message_every_time() {
    // A small message goes through shared memory and makes the socket
    // readable only if the sender saw the waiter's announcement: a lost
    // wake-up would hang here (the test is bounded).
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<u32, u32>().unwrap();
        let b = Arc::new(b);
        let sender = std::thread::spawn(move || {
            for i in 0..2000u32 {
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
                a.send(i).unwrap();
            }
            a
        });
        for i in 0..2000u32 {
            let ready = wait(&[&*b], None).unwrap();
            assert_eq!(ready, [0]);
            assert_eq!(b.recv().unwrap(), i);
        }
        drop(sender.join().unwrap());
    });
}

/// Child: after `delay_ms`, sends one small message.
fn ping_later(conn: Connection<u8, ()>, delay_ms: u64) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    conn.send(1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_blocked_wait_wakes_on_a_message_from_another_process() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<(), u8>().unwrap();
        let p = Process::new(ping_later, (theirs, 150u64));
        p.start().unwrap();
        let start = Instant::now();
        assert_eq!(wait(&[&ours], None).unwrap(), [0]);
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(ours.recv().unwrap(), 1);
        assert_eq!(p.join_timeout(T).unwrap(), Some(0));
    });
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn process_sentinels() {
    bounded(LIMIT, || {
        let quick = Process::new(sleep_ms, (50u64,));
        let slow = Process::new(sleep_ms, (60_000u64,));
        quick.start().unwrap();
        slow.start().unwrap();
        assert_eq!(wait(&[&quick, &slow], Some(T)).unwrap(), [0]);
        assert_eq!(quick.join().unwrap(), 0);
        // Still ready once joined.
        assert_eq!(wait(&[&quick, &slow], Some(T)).unwrap(), [0]);
        assert!(
            wait(&[&slow], Some(Duration::from_millis(50)))
                .unwrap()
                .is_empty()
        );
        slow.kill().unwrap();
        assert_eq!(wait(&[&slow], Some(T)).unwrap(), [0]);
        assert_eq!(slow.join().unwrap(), -9);
        // A process that was never started is an error.
        let never = Process::new(sleep_ms, (0u64,));
        let err = wait(&[&never], Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    });
}

/// Child: sends on the pipe, then exits after a while.
fn send_then_exit(conn: Connection<u8, ()>, linger_ms: u64) {
    conn.send(5).unwrap();
    std::thread::sleep(Duration::from_millis(linger_ms));
}

#[test]
fn mixed_pipes_processes_listeners_and_queues() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<(), u8>().unwrap();
        let (_quiet, _quiet_peer) = Pipe::new::<(), u8>().unwrap();
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", None).unwrap();
        let queue = Queue::<u32>::new().unwrap();
        let p = Process::new(send_then_exit, (theirs, 300u64));
        p.start().unwrap();

        // The pipe first (the process lingers).
        let ready = wait(&[&ours, &_quiet, &p, &listener, &queue], Some(T)).unwrap();
        assert_eq!(ready, [0]);
        assert_eq!(ours.recv().unwrap(), 5);
        // Then the process's exit (and its end of the pipe closing).
        let ready = wait(&[&_quiet, &p, &listener, &queue], Some(T)).unwrap();
        assert_eq!(ready, [1]);
        assert_eq!(p.join().unwrap(), 0);
        // A client waiting to be accepted.
        let a = listener.address().clone();
        let client = std::thread::spawn(move || Client::connect::<(), ()>(a, None).unwrap());
        let ready = wait(&[&_quiet, &listener, &queue], Some(T)).unwrap();
        assert_eq!(ready, [1]);
        let accepted = listener.accept().unwrap();
        let client = client.join().unwrap();
        // An item put into the queue by another thread.
        let q = queue.clone();
        let putter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            q.put(9).unwrap();
        });
        let ready = wait(&[&_quiet, &listener, &queue, &accepted], Some(T)).unwrap();
        assert_eq!(ready, [2]);
        assert_eq!(queue.get().unwrap(), 9);
        putter.join().unwrap();
        // A Listener connection: readable when the client sends.
        client.send(()).unwrap();
        let ready = wait(&[&_quiet, &listener, &queue, &accepted], Some(T)).unwrap();
        assert_eq!(ready, [3]);
        accepted.recv().unwrap();
        assert!(
            wait(
                &[&_quiet, &listener, &queue, &accepted],
                Some(Duration::ZERO)
            )
            .unwrap()
            .is_empty()
        );
    });
}

#[test]
fn timeouts() {
    bounded(LIMIT, || {
        let (_a, b) = Pipe::new::<u8, u8>().unwrap();
        let p = Process::new(sleep_ms, (60_000u64,));
        p.start().unwrap();
        for ms in [0u64, 1, 50, 200] {
            let t = Duration::from_millis(ms);
            let start = Instant::now();
            assert!(wait(&[&b, &p], Some(t)).unwrap().is_empty());
            let took = start.elapsed();
            assert!(took >= t, "{took:?} < {t:?}");
            assert!(took < t + Duration::from_secs(2), "{took:?} for {t:?}");
        }
        // Nothing to wait for: sleeps the timeout.
        let start = Instant::now();
        assert!(
            wait(&[], Some(Duration::from_millis(30)))
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
        p.kill().unwrap();
        p.join().unwrap();
    });
}

#[test]
fn a_connection_another_thread_receives_on_is_rechecked() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<u8, u8>().unwrap();
        let b = Arc::new(b);
        let b2 = b.clone();
        let receiver = std::thread::spawn(move || b2.recv_timeout(Duration::from_millis(300)));
        std::thread::sleep(Duration::from_millis(50));
        // The receiver holds the lock: wait neither blocks on it nor hangs.
        let start = Instant::now();
        assert!(
            wait(&[&*b], Some(Duration::from_millis(100)))
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(receiver.join().unwrap().is_err());
        a.send(3).unwrap();
        assert_eq!(wait(&[&*b], Some(T)).unwrap(), [0]);
        assert_eq!(b.recv().unwrap(), 3);
    });
}

#[test]
fn raw_descriptors() {
    // Python's wait() takes raw sockets too.
    bounded(LIMIT, || {
        use std::io::Write;
        use std::os::fd::AsFd;
        let (r1, _w1) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r2, mut w2) = std::os::unix::net::UnixStream::pair().unwrap();
        let (f1, f2) = (r1.as_fd(), r2.as_fd());
        assert!(wait(&[&f1, &f2], Some(Duration::ZERO)).unwrap().is_empty());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w2.write_all(b"x").unwrap();
            w2
        });
        assert_eq!(wait(&[&f1, &f2], Some(T)).unwrap(), [1]);
        drop(writer.join().unwrap());
    });
}
