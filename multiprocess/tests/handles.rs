//! `Connection::send_handle`/`recv_handle` (Python's `reduction.send_handle`/
//! `recv_handle`) and `recv_bytes_into` across real processes: a file and a
//! socket passed to a child, TCP refusing, closed peers, handles and other
//! messages never swallowing each other, and `BufferTooShort` keeping the
//! whole message.

mod common;

use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, temp_dir};
use multiprocess::{
    Client, Connection, Listener, Pipe, Process, RecvError, RecvIntoError, RecvTimeoutError,
    SendError,
};

multiprocess::init_before_main!();

const T: Duration = Duration::from_secs(10);

fn abstract_name(tag: &str) -> String {
    format!(
        "\0multiprocess-test-handles-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    )
}

/// The inode of a descriptor (to check two descriptors are the same file).
fn inode(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_ino
}

/// Child: receives a file descriptor and sends back what the file holds.
fn read_received_file(conn: Connection<String, ()>) {
    let mut file = std::fs::File::from(conn.recv_handle().unwrap());
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    conn.send(text).unwrap();
}

#[test]
fn a_file_passed_to_a_child_is_read_by_it() {
    bounded(LIMIT, || {
        let dir = temp_dir("handles-file");
        let path = dir.join("data");
        let mut file = std::fs::File::create_new(&path).unwrap();
        file.write_all(b"written by the parent").unwrap();
        let (ours, theirs) = Pipe::new::<(), String>().unwrap();
        let p = Process::new(read_received_file, (theirs,));
        p.start().unwrap();
        // Unlinked before it is sent: only the descriptor leads to it.
        std::fs::remove_file(&path).unwrap();
        ours.send_handle(&file).unwrap();
        assert_eq!(ours.recv_timeout(T).unwrap(), "written by the parent");
        assert_eq!(p.join().unwrap(), 0);
        // The caller's descriptor was borrowed, not taken.
        file.write_all(b"!").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Child: receives an accepted TCP stream and answers on it in upper case.
fn shout_on_received_socket(conn: Connection<(), ()>) {
    let mut stream = TcpStream::from(conn.recv_handle().unwrap());
    let mut line = [0u8; 5];
    stream.read_exact(&mut line).unwrap();
    stream.write_all(&line.to_ascii_uppercase()).unwrap();
}

#[test]
fn a_socket_passed_to_a_child_is_served_by_it() {
    bounded(LIMIT, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (ours, theirs) = Pipe::new::<(), ()>().unwrap();
        let p = Process::new(shout_on_received_socket, (theirs,));
        p.start().unwrap();
        // An OwnedFd by value: sent, then closed here; the child's copy
        // keeps the connection open.
        ours.send_handle(OwnedFd::from(accepted)).unwrap();
        client.write_all(b"hello").unwrap();
        let mut answer = Vec::new();
        client.set_read_timeout(Some(T)).unwrap();
        // The child's exit closes the last copy: end of stream.
        client.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"HELLO");
        assert_eq!(p.join().unwrap(), 0);
    });
}

#[test]
fn tcp_refuses_a_handle_hands_it_back_and_sends_nothing() {
    bounded(LIMIT, || {
        let listener = Listener::<u8, u8>::bind("127.0.0.1:0", None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<u8, u8>(a, None).unwrap());
        let conn = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        let w = match conn.send_handle(w) {
            Err(SendError::Io(handle, e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
                assert!(e.to_string().contains("TCP"), "{e}");
                handle
            }
            other => panic!("{other:?}"),
        };
        // The handle came back working, and nothing went out: the peer's
        // next message is the one sent after.
        (&w).write_all(b"w").unwrap();
        let mut byte = [0u8; 1];
        (&r).read_exact(&mut byte).unwrap();
        conn.send(5).unwrap();
        assert_eq!(client.recv_timeout(T).unwrap(), 5);
        // A handle cannot arrive over TCP either way.
        assert!(matches!(
            client.recv_handle_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ));
    });
}

#[test]
fn a_handle_crosses_a_unix_socket_connection() {
    bounded(LIMIT, || {
        let name = abstract_name("unix");
        let listener = Listener::<(), ()>::bind(name.as_str(), None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), ()>(a, None).unwrap());
        let conn = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        conn.send_handle(&r).unwrap();
        let r2 = client.recv_handle_timeout(T).unwrap();
        assert_eq!(inode(&r2), inode(&r));
        (&w).write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        (&std::io::PipeReader::from(r2))
            .read_exact(&mut byte)
            .unwrap();
        assert_eq!(&byte, b"x");
    });
}

fn send_a_handle_and_leave(conn: Connection<(), ()>) {
    let (r, _w) = std::io::pipe().unwrap();
    conn.send_handle(&r).unwrap();
}

#[test]
fn closed_peers_are_disconnected_and_hand_the_handle_back() {
    bounded(LIMIT, || {
        // Sending to a closed peer hands the handle back.
        let (a, b) = Pipe::new::<(), ()>().unwrap();
        drop(b);
        let (r, _w) = std::io::pipe().unwrap();
        match a.send_handle(r) {
            Err(SendError::Disconnected(r)) => drop(r),
            other => panic!("{other:?}"),
        }
        // A simplex reader cannot send handles either.
        let (reader, _writer) = Pipe::simplex::<u8>().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        assert!(matches!(
            reader.send_handle(&r),
            Err(SendError::Disconnected(_))
        ));
        // What a child sent before it exited is received; then EOF.
        let (ours, theirs) = Pipe::new::<(), ()>().unwrap();
        let p = Process::new(send_a_handle_and_leave, (theirs,));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        let fd = ours.recv_handle().unwrap();
        assert!(rustix::fs::fstat(&fd).is_ok());
        assert!(matches!(ours.recv_handle(), Err(RecvError::Disconnected)));
    });
}

/// The handles and other messages of one connection, in order, whatever
/// receive call meets them first: `(a, b)` are connected ends of either
/// transport.
fn nothing_is_swallowed(a: Connection<Vec<u8>, Vec<u8>>, b: Connection<Vec<u8>, Vec<u8>>) {
    let (r, w) = std::io::pipe().unwrap();
    // Large enough to travel as a socket frame, not in the ring.
    let big = vec![7u8; 100_000];
    a.send(vec![1]).unwrap();
    a.send_handle(&r).unwrap();
    a.send_bytes(b"raw").unwrap();
    a.send_handle(&w).unwrap();
    a.send(big.clone()).unwrap();
    a.send_handle(&r).unwrap();

    // A value is next: recv_handle leaves it.
    match b.recv_handle() {
        Err(RecvError::WrongType { expected, found }) => {
            assert!(expected.contains("handle"), "{expected}");
            assert!(found.contains("left for recv"), "{found}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv().unwrap(), [1]);
    // A handle is next: recv, recv_bytes and recv_bytes_into leave it (the
    // connection reports it ready and refuses to be sent meanwhile).
    for _ in 0..2 {
        match b.recv() {
            Err(RecvError::WrongType { found, .. }) => {
                assert!(found.contains("handle"), "{found}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(b.recv_bytes(), Err(RecvError::WrongType { .. })));
    assert!(matches!(
        b.recv_bytes_into(&mut [0; 16]),
        Err(RecvIntoError::WrongType { .. })
    ));
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(inode(b.recv_handle().unwrap()), inode(&r));
    // Raw bytes are next: recv_handle leaves them.
    assert!(matches!(
        b.recv_handle_timeout(T),
        Err(RecvTimeoutError::WrongType { .. })
    ));
    assert_eq!(b.recv_bytes().unwrap(), b"raw");
    assert_eq!(inode(b.recv_handle().unwrap()), inode(&w));
    // A large value (a socket frame) is next: recv_handle leaves it whole.
    assert!(matches!(b.recv_handle(), Err(RecvError::WrongType { .. })));
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.recv().unwrap() == big);
    assert_eq!(inode(b.recv_handle().unwrap()), inode(&r));
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());

    // Regression: a frame without descriptors read by the same `recvmsg` as
    // the handle after it (a mid-size value on a Pipe, any value on a
    // socket) took the handle's descriptor and closed it ("a message header
    // announces 1 descriptor(s) but 0 arrived with it").
    let mid = vec![9u8; 40_000];
    for _ in 0..3 {
        a.send(mid.clone()).unwrap();
        a.send_handle(&w).unwrap();
    }
    for _ in 0..3 {
        assert!(b.recv().unwrap() == mid);
        assert_eq!(inode(b.recv_handle().unwrap()), inode(&w));
    }
}

#[test]
fn handles_and_other_messages_never_swallow_each_other_on_a_pipe() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
        nothing_is_swallowed(a, b);
    });
}

#[test]
fn handles_and_other_messages_never_swallow_each_other_on_a_unix_socket() {
    bounded(LIMIT, || {
        let listener =
            Listener::<Vec<u8>, Vec<u8>>::bind(abstract_name("order").as_str(), None).unwrap();
        let addr = listener.address().clone();
        let t =
            std::thread::spawn(move || Client::connect::<Vec<u8>, Vec<u8>>(addr, None).unwrap());
        let a = listener.accept_timeout(T).unwrap();
        let b = t.join().unwrap();
        nothing_is_swallowed(a, b);
    });
}

#[test]
fn a_connection_holding_a_kept_message_cannot_be_sent() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<(), ()>().unwrap();
        let (carrier, dest) = Pipe::new::<Connection<(), ()>, Connection<(), ()>>().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        a.send_handle(&r).unwrap();
        assert!(b.recv_bytes().is_err());
        // The kept handle lives in this process: sending `b` would lose it.
        let b = match carrier.send(b) {
            Err(SendError::Encode(b, e)) => {
                assert!(e.to_string().contains("not yet delivered"), "{e}");
                b
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(inode(b.recv_handle().unwrap()), inode(&r));
        // Delivered: now it can move.
        carrier.send(b).unwrap();
        let b = dest.recv_timeout(T).unwrap();
        a.send_bytes(b"after").unwrap();
        assert_eq!(b.recv_bytes_timeout(T).unwrap(), b"after");
    });
}

#[test]
fn recv_bytes_into_fills_a_buffer_or_returns_the_whole_message() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<u32, ()>().unwrap();
        // In the ring (small), a buffered frame (under 64 KiB) and a frame
        // of its own (large).
        for len in [0usize, 5, 40_000, 200_000] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            // Exactly fits, at an offset.
            let mut buf = vec![0xAA; len + 3];
            a.send_bytes(&msg).unwrap();
            assert_eq!(b.recv_bytes_into(&mut buf[3..]).unwrap(), len);
            assert_eq!(buf[..3], [0xAA; 3]);
            assert!(buf[3..] == msg[..]);
            // Room to spare: the rest is untouched.
            let mut buf = vec![0xAA; len + 10];
            a.send_bytes(&msg).unwrap();
            assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), len);
            assert!(buf[..len] == msg[..] && buf[len..] == [0xAA; 10]);
            // One byte short: the whole message in the error, the buffer
            // untouched, and the next message received normally.
            if len > 0 {
                let mut buf = vec![0xAA; len - 1];
                a.send_bytes(&msg).unwrap();
                a.send_bytes(b"next").unwrap();
                match b.recv_bytes_into(&mut buf) {
                    Err(RecvIntoError::BufferTooShort(whole)) => assert!(whole == msg),
                    other => panic!("{other:?}"),
                }
                assert!(buf.iter().all(|&x| x == 0xAA));
                assert_eq!(b.recv_bytes().unwrap(), b"next");
            }
        }
        // A typed message is consumed with WrongType, as by recv_bytes.
        a.send(3).unwrap();
        assert!(matches!(
            b.recv_bytes_into(&mut [0; 8]),
            Err(RecvIntoError::WrongType { .. })
        ));
        // Too large for this end: discarded, the next one is fine.
        b.set_max_message_size(4);
        a.send_bytes(b"12345").unwrap();
        a.send_bytes(b"1234").unwrap();
        assert!(matches!(
            b.recv_bytes_into(&mut [0; 8]),
            Err(RecvIntoError::TooLarge { size: 5, max: 4 })
        ));
        assert_eq!(b.recv_bytes_into(&mut [0; 8]).unwrap(), 4);
        drop(a);
        assert!(matches!(
            b.recv_bytes_into(&mut [0; 8]),
            Err(RecvIntoError::Disconnected)
        ));
    });
}

#[test]
fn recv_bytes_into_over_tcp() {
    bounded(LIMIT, || {
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), ()>(a, None).unwrap());
        let conn = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        conn.send_bytes(b"hello world").unwrap();
        conn.send_bytes(b"hi").unwrap();
        let mut buf = [0u8; 4];
        match client.recv_bytes_into(&mut buf) {
            Err(RecvIntoError::BufferTooShort(m)) => assert_eq!(m, b"hello world"),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.recv_bytes_into(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
    });
}
