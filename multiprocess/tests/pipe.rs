//! Pipe and Connection across real processes: typed round trips, EOF when
//! the peer is gone, handles sent over connections, wrong types, sizes.

mod common;

use std::time::Duration;

use common::{LIMIT, bounded};
use multiprocess::{Connection, Pipe, Process, RecvError, RecvTimeoutError, SendError};

multiprocess::init_before_main!();

fn echo(conn: Connection<String>) {
    while let Ok(msg) = conn.recv() {
        conn.send(format!("echo: {msg}")).unwrap();
    }
}

#[test]
fn round_trip_with_a_child() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<String, String>().unwrap();
        let p = Process::new(echo, (theirs,));
        p.start().unwrap();
        for i in 0..100 {
            ours.send(format!("m{i}")).unwrap();
            assert_eq!(
                ours.recv_timeout(Duration::from_secs(10)).unwrap(),
                format!("echo: m{i}")
            );
        }
        // Closing our end ends the child's loop.
        drop(ours);
        assert_eq!(p.join().unwrap(), 0);
    });
}

fn say_hi_and_leave(conn: Connection<String, ()>) {
    conn.send("hi".into()).unwrap();
}

#[test]
fn moving_a_connection_into_a_child_closes_the_parents_copy() {
    // In Python the parent must close its copy of the child's end by hand,
    // or recv() after the child exits hangs forever.
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<(), String>().unwrap();
        let p = Process::new(say_hi_and_leave, (theirs,));
        p.start().unwrap();
        assert_eq!(ours.recv_timeout(Duration::from_secs(10)).unwrap(), "hi");
        assert!(matches!(
            ours.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        ));
        assert_eq!(p.join().unwrap(), 0);
        // Sending to a vanished peer hands the value back.
        match ours.send(()) {
            Err(SendError::Disconnected(())) => {}
            other => panic!("{other:?}"),
        }
    });
}

fn sleep_forever(_conn: Connection<u8>) {
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_peer_ends_a_blocked_recv() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<u8, u8>().unwrap();
        let p = Process::new(sleep_forever, (theirs,));
        p.start().unwrap();
        let killer = {
            let pid = p.pid().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                pid
            })
        };
        killer.join().unwrap();
        p.kill().unwrap();
        assert!(matches!(ours.recv(), Err(RecvError::Disconnected)));
        assert_eq!(p.join().unwrap(), -9);
    });
}

/// Receives a connection over a connection and answers on it.
fn answer_on_received(control: Connection<(), Connection<String, ()>>) {
    let conn = control.recv().unwrap();
    conn.send("via a received connection".into()).unwrap();
}

#[test]
fn a_connection_sent_over_a_connection_works() {
    bounded(LIMIT, || {
        let (control, control_child) = Pipe::new::<Connection<String, ()>, ()>().unwrap();
        let p = Process::new(answer_on_received, (control_child,));
        p.start().unwrap();
        let (x, y) = Pipe::new::<(), String>().unwrap();
        control.send(y).unwrap(); // our copy of `y` is closed by the move
        assert_eq!(
            x.recv_timeout(Duration::from_secs(10)).unwrap(),
            "via a received connection"
        );
        // The only copy of `y` was in the child, which has exited: EOF.
        assert_eq!(p.join().unwrap(), 0);
        assert!(matches!(
            x.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        ));
    });
}

fn send_string(conn: Connection<String, ()>) {
    conn.send("not a number".into()).unwrap();
    conn.send("still not".into()).unwrap();
}

#[test]
fn a_message_of_the_wrong_type_is_an_error_naming_the_expected_type() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<(), String>().unwrap();
        let p = Process::new(send_string, (theirs,));
        p.start().unwrap();
        let wrong: Connection<(), u64> = ours.retype();
        match wrong.recv() {
            Err(e @ RecvError::WrongType { .. }) => assert!(e.to_string().contains("u64"), "{e}"),
            other => panic!("{other:?}"),
        }
        // The stream stays in sync: the next message decodes as its own type.
        let right: Connection<(), String> = wrong.retype();
        assert_eq!(right.recv().unwrap(), "still not");
        assert_eq!(p.join().unwrap(), 0);
    });
}

fn checksum(conn: Connection<(usize, u64), Vec<u8>>) {
    let data = conn.recv().unwrap();
    let sum = data.iter().map(|&b| u64::from(b)).sum();
    conn.send((data.len(), sum)).unwrap();
}

#[test]
fn a_large_message_reaches_a_child_whole() {
    bounded(LIMIT, || {
        let (ours, theirs) = Pipe::new::<Vec<u8>, (usize, u64)>().unwrap();
        let p = Process::new(checksum, (theirs,));
        p.start().unwrap();
        let data: Vec<u8> = (0..64 << 20).map(|i: usize| (i % 251) as u8).collect();
        let want: u64 = data.iter().map(|&b| u64::from(b)).sum();
        ours.send(data).unwrap();
        assert_eq!(
            ours.recv_timeout(Duration::from_secs(30)).unwrap(),
            (64 << 20, want)
        );
        assert_eq!(p.join().unwrap(), 0);
    });
}

#[test]
fn an_oversized_message_is_refused_and_handed_back() {
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    a.set_max_message_size(1024);
    let err = a.send(vec![0; 4096]).unwrap_err();
    assert_eq!(err.into_inner().len(), 4096);
    a.send(vec![1; 10]).unwrap();
    assert_eq!(b.recv().unwrap(), vec![1; 10]);
}
