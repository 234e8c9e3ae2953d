//! Connection tests, with threads (or the same thread) as the other end.
//! Every wait is bounded: receives use `recv_timeout`.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::*;
use crate::sys::socket::{Wait, send_with_fds};

/// Upper bound for any single wait in these tests.
const LONG: Duration = Duration::from_secs(30);

/// Publishes a marker in the ring, as a sender does before writing a frame
/// on the socket: the next message is whatever frame the socket carries.
fn announce<S, R>(conn: &Connection<S, R>) {
    let Transport::Pipe(pipe) = &conn.transport else {
        panic!("markers exist only on a Pipe connection");
    };
    pipe.rings().push(ring::MARKER, 0, &[]);
}

/// Writes raw bytes to the socket under a connection, bypassing framing.
fn raw_write<S, R>(conn: &Connection<S, R>, bytes: &[u8]) {
    let n = send_with_fds(conn.as_fd(), &[IoSlice::new(bytes)], &[], Wait::Block).unwrap();
    assert_eq!(n, bytes.len());
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { r: f64 },
    Polygon(Vec<(i32, i32)>),
    Empty,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    shape: Shape,
    tags: BTreeMap<String, Option<i8>>,
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn round_trips_several_types() {
    let (a, b) = Pipe::new::<u32, u32>().unwrap();
    a.send(u32::MAX).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), u32::MAX);

    let (a, b) = Pipe::new::<String, String>().unwrap();
    a.send("héllo wörld".into()).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), "héllo wörld");

    let (a, b) = Pipe::new::<Job, Job>().unwrap();
    let job = Job {
        id: 7,
        name: "j".into(),
        shape: Shape::Polygon(vec![(1, 2), (-3, 4)]),
        tags: [("a".to_string(), Some(-1)), ("b".to_string(), None)].into(),
    };
    let job2 = Job {
        id: 8,
        name: String::new(),
        shape: Shape::Circle { r: 0.5 },
        tags: BTreeMap::new(),
    };
    let job3 = Job {
        shape: Shape::Empty,
        ..Job {
            id: 9,
            name: "x".into(),
            shape: Shape::Empty,
            tags: BTreeMap::new(),
        }
    };
    for j in [&job, &job2, &job3] {
        a.send(Job {
            id: j.id,
            name: j.name.clone(),
            shape: match &j.shape {
                Shape::Circle { r } => Shape::Circle { r: *r },
                Shape::Polygon(p) => Shape::Polygon(p.clone()),
                Shape::Empty => Shape::Empty,
            },
            tags: j.tags.clone(),
        })
        .unwrap();
    }
    assert_eq!(b.recv_timeout(LONG).unwrap(), job);
    assert_eq!(b.recv_timeout(LONG).unwrap(), job2);
    assert_eq!(b.recv_timeout(LONG).unwrap(), job3);

    // Duplex with different types each way, from another thread.
    let (a, b) = Pipe::new::<Vec<u64>, (bool, char)>().unwrap();
    let t = thread::spawn(move || {
        let v = b.recv_timeout(LONG).unwrap();
        b.send((v.len() == 3, 'ß')).unwrap();
    });
    a.send(vec![1, 2, 3]).unwrap();
    assert_eq!(a.recv_timeout(LONG).unwrap(), (true, 'ß'));
    t.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn zero_length_messages_are_preserved_in_sequence() {
    let (a, b) = Pipe::new::<(), ()>().unwrap();
    a.send_bytes(b"").unwrap();
    a.send_bytes(b"x").unwrap();
    a.send_bytes(b"").unwrap();
    a.send(()).unwrap(); // a typed unit encodes to zero bytes
    a.send(()).unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"");
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"x");
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"");
    b.recv_timeout(LONG).unwrap();
    b.recv_timeout(LONG).unwrap();
    assert!(matches!(b.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn consecutive_messages_never_merge() {
    let (a, b) = Pipe::new::<String, String>().unwrap();
    for m in ["one", "two", "three"] {
        a.send_bytes(m.as_bytes()).unwrap();
    }
    // All three are in the socket before the first receive, which reads them
    // with a single recvmsg; they must still come out one by one.
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"one");
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"two");
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"three");
    assert!(matches!(
        b.recv_bytes_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    ));
    // Same for typed messages.
    for m in ["a", "bb", "ccc"] {
        a.send(m.into()).unwrap();
    }
    assert_eq!(b.recv_timeout(LONG).unwrap(), "a");
    assert_eq!(b.recv_timeout(LONG).unwrap(), "bb");
    assert_eq!(b.recv_timeout(LONG).unwrap(), "ccc");
    assert!(matches!(b.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn poll_waits_and_never_consumes() {
    let (a, b) = Pipe::new::<u8, u8>().unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    let start = Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "{:?}",
        start.elapsed()
    );

    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        a.send(1).unwrap();
        a.send(2).unwrap();
        a
    });
    assert!(b.poll(Some(LONG)).unwrap());
    let a = t.join().unwrap();
    for _ in 0..3 {
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
    }
    assert_eq!(b.recv_timeout(LONG).unwrap(), 1);
    // The second message was read into the buffer with the first: poll must
    // see it there even though the socket itself is now empty.
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv_timeout(LONG).unwrap(), 2);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    drop(a);
    // End of stream counts as readable; the receive then says Disconnected.
    assert!(b.poll(Some(LONG)).unwrap());
    assert!(matches!(
        b.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected)
    ));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn timeout_mid_message_resumes() {
    let (a, b) = Pipe::new::<String, String>().unwrap();
    let (payload, fds) = codec::encode(&"a message cut in the middle".to_string()).unwrap();
    assert!(fds.is_empty());
    let header = Header {
        len: payload.len() as u64,
        tag: codec::type_tag::<String>(),
        nfds: 0,
    }
    .encode();
    let half = payload.len() / 2;

    // Only part of the header.
    announce(&a);
    raw_write(&a, &header[..10]);
    assert!(matches!(
        b.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    ));
    // The rest of the header and half the payload.
    raw_write(&a, &header[10..]);
    raw_write(&a, &payload[..half]);
    assert!(matches!(
        b.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    ));
    assert!(matches!(b.try_recv(), Err(TryRecvError::Empty)));
    // The rest, from another thread while the receiver waits.
    let rest = payload[half..].to_vec();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        raw_write(&a, &rest);
        a.send("next".into()).unwrap();
        a
    });
    assert_eq!(b.recv_timeout(LONG).unwrap(), "a message cut in the middle");
    assert_eq!(b.recv_timeout(LONG).unwrap(), "next");
    t.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn timeout_mid_large_message_resumes() {
    // A payload larger than the receive buffer takes the direct-read path.
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (payload, _) = codec::encode(&big).unwrap();
    let header = Header {
        len: payload.len() as u64,
        tag: codec::type_tag::<Vec<u8>>(),
        nfds: 0,
    }
    .encode();
    let a = Arc::new(a);
    let writer = Arc::clone(&a);
    let first = payload[..150_000].to_vec();
    let t = thread::spawn(move || {
        announce(&writer);
        raw_write(&writer, &header);
        raw_write(&writer, &first);
    });
    // Drain what is there until the receiver times out waiting for the rest.
    loop {
        match b.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) if t.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("{other:?}"),
        }
    }
    t.join().unwrap();
    raw_write(&a, &payload[150_000..]);
    a.send(vec![1]).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), big);
    assert_eq!(b.recv_timeout(LONG).unwrap(), [1]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn recv_after_peer_drop_is_disconnected() {
    let (a, b) = Pipe::new::<u8, u8>().unwrap();
    a.send(1).unwrap();
    drop(a);
    // What was sent before the close is still delivered.
    assert_eq!(b.recv_timeout(LONG).unwrap(), 1);
    assert!(matches!(b.recv(), Err(RecvError::Disconnected)));
    assert!(matches!(b.recv_bytes(), Err(RecvError::Disconnected)));
    assert!(matches!(b.try_recv(), Err(TryRecvError::Disconnected)));
    assert_eq!(
        b.recv().unwrap_err().to_string(),
        "the other end of the connection is closed"
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn peer_closing_mid_message_is_disconnected() {
    let (a, b) = Pipe::new::<u8, u8>().unwrap();
    let header = Header {
        len: 10,
        tag: codec::type_tag::<u8>(),
        nfds: 0,
    }
    .encode();
    announce(&a);
    raw_write(&a, &header);
    raw_write(&a, b"abc");
    drop(a);
    assert!(matches!(
        b.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected)
    ));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn send_after_peer_drop_hands_value_back() {
    let (a, b) = Pipe::new::<Vec<String>, ()>().unwrap();
    drop(b);
    let err = a.send(vec!["keep me".into()]).unwrap_err();
    assert!(matches!(err, SendError::Disconnected(_)), "{err:?}");
    assert_eq!(err.into_inner(), ["keep me"]);
    assert!(matches!(
        a.send_bytes(b"x"),
        Err(SendError::Disconnected(()))
    ));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn wrong_type_names_expected_type_and_stream_stays_in_sync() {
    let (a, b) = Pipe::new::<String, String>().unwrap();
    a.send("not a number".into()).unwrap();
    let a = a.retype::<u64, u64>();
    a.send(42).unwrap();
    let b = b.retype::<u64, u64>();
    let err = b.recv_timeout(LONG).unwrap_err();
    assert!(
        matches!(
            err,
            RecvTimeoutError::WrongType {
                expected: "u64",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("u64"), "{err}");
    assert_eq!(b.recv_timeout(LONG).unwrap(), 42);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn raw_bytes_received_as_typed_is_an_error_and_vice_versa() {
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    a.send_bytes(&[1, 2, 3]).unwrap();
    a.send(vec![4, 5]).unwrap();
    a.send(vec![6]).unwrap();
    let err = b.recv_timeout(LONG).unwrap_err();
    match &err {
        RecvTimeoutError::WrongType { expected, found } => {
            assert_eq!(*expected, std::any::type_name::<Vec<u8>>());
            assert!(found.contains("raw bytes"), "{found}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("alloc::vec::Vec<u8>"), "{err}");
    // A typed message received as raw bytes is consumed with an error too.
    assert!(matches!(b.recv_bytes(), Err(RecvError::WrongType { .. })));
    assert_eq!(b.recv_timeout(LONG).unwrap(), [6]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn undecodable_payload_is_an_error_naming_the_type() {
    let (a, b) = Pipe::new::<bool, bool>().unwrap();
    // Right tag, but 7 is not a valid postcard bool.
    let header = Header {
        len: 1,
        tag: codec::type_tag::<bool>(),
        nfds: 0,
    }
    .encode();
    announce(&a);
    raw_write(&a, &header);
    raw_write(&a, &[7]);
    a.send(true).unwrap();
    let err = b.recv_timeout(LONG).unwrap_err();
    assert!(matches!(err, RecvTimeoutError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("bool"), "{err}");
    assert!(b.recv_timeout(LONG).unwrap());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn oversized_send_hands_value_back() {
    let (a, b) = Pipe::new::<String, String>().unwrap();
    a.set_max_message_size(16);
    let big = "x".repeat(100);
    let err = a.send(big.clone()).unwrap_err();
    match &err {
        SendError::TooLarge { size, max, .. } => {
            assert_eq!(*max, 16);
            assert!(*size > 16);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.into_inner(), big);
    assert!(matches!(
        a.send_bytes(&[0; 17]),
        Err(SendError::TooLarge { size: 17, .. })
    ));
    // Nothing was written: the connection is still usable.
    a.send("small".into()).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), "small");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn oversized_incoming_is_discarded_and_next_message_arrives() {
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    b.set_max_message_size(1000);
    // Small enough to sit in the receive buffer.
    a.send_bytes(&[1; 5000]).unwrap();
    a.send(vec![2; 10]).unwrap();
    let err = b.recv_timeout(LONG).unwrap_err();
    assert!(
        matches!(
            err,
            RecvTimeoutError::TooLarge {
                size: 5000,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(b.recv_timeout(LONG).unwrap(), [2; 10]);

    // Larger than the receive buffer and the socket buffer: drained in pieces
    // while a thread keeps writing.
    let a = Arc::new(a);
    let writer = Arc::clone(&a);
    let t = thread::spawn(move || {
        writer.send_bytes(&vec![3; 3 << 20]).unwrap();
        writer.send(vec![4; 10]).unwrap();
    });
    let err = b.recv_bytes_timeout(LONG).unwrap_err();
    assert!(
        matches!(err, RecvTimeoutError::TooLarge { size: 3145728, .. }),
        "{err:?}"
    );
    assert_eq!(b.recv_timeout(LONG).unwrap(), [4; 10]);
    t.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn connection_sent_over_connection_works_and_senders_copy_is_closed() {
    let (a, b) = Pipe::new::<Connection<u32>, Connection<u32>>().unwrap();
    let (c1, c2) = Pipe::new::<u32, u32>().unwrap();
    a.send(c1).unwrap(); // moves c1: our copy is closed after the send
    let got = b.recv_timeout(LONG).unwrap();
    got.send(5).unwrap();
    assert_eq!(c2.recv_timeout(LONG).unwrap(), 5);
    c2.send(6).unwrap();
    assert_eq!(got.recv_timeout(LONG).unwrap(), 6);
    drop(got);
    // If the sender's copy of c1 were still open, this would time out.
    assert!(matches!(
        c2.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    ));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn several_handles_in_one_message_from_a_thread() {
    type Msg = (String, Vec<Connection<u8>>);
    let (a, b) = Pipe::new::<Msg, Msg>().unwrap();
    let mut peers = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..5 {
        let (x, y) = Pipe::new::<u8, u8>().unwrap();
        ends.push(x);
        peers.push(y);
    }
    let t = thread::spawn(move || {
        let (label, conns) = b.recv_timeout(LONG).unwrap();
        for (i, c) in conns.iter().enumerate() {
            c.send(i as u8).unwrap();
        }
        label
    });
    a.send(("five".into(), ends)).unwrap();
    assert_eq!(t.join().unwrap(), "five");
    for (i, p) in peers.iter().enumerate() {
        assert_eq!(p.recv_timeout(LONG).unwrap(), i as u8);
        // The thread dropped its copies and ours went with the send.
        assert!(matches!(
            p.recv_timeout(LONG),
            Err(RecvTimeoutError::Disconnected)
        ));
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn many_messages_with_handles_keep_their_descriptors_in_order() {
    // Frames with descriptors interleaved with plain frames, all written
    // before the first receive, so single recvmsg calls span several frames
    // and descriptors must be matched to headers in arrival order.
    type Msg = (u32, Option<Connection<u32>>);
    let (a, b) = Pipe::new::<Msg, Msg>().unwrap();
    let mut peers = Vec::new();
    let t = {
        let mut ends = Vec::new();
        for _ in 0..100 {
            let (x, y) = Pipe::new::<u32, u32>().unwrap();
            ends.push(x);
            peers.push(y);
        }
        thread::spawn(move || {
            for (i, end) in ends.into_iter().enumerate() {
                a.send((i as u32, Some(end))).unwrap();
                a.send((i as u32, None)).unwrap();
            }
        })
    };
    for i in 0..100u32 {
        let (n, conn) = b.recv_timeout(LONG).unwrap();
        assert_eq!(n, i);
        conn.unwrap().send(i).unwrap();
        assert!(matches!(b.recv_timeout(LONG).unwrap(), (n, None) if n == i));
    }
    t.join().unwrap();
    for (i, p) in peers.iter().enumerate() {
        assert_eq!(p.recv_timeout(LONG).unwrap(), i as u32);
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn bad_handle_index_is_an_error_not_a_panic() {
    let (a, b) = Pipe::new::<Connection<u8>, Connection<u8>>().unwrap();
    let (c1, _c2) = Pipe::new::<u8, u8>().unwrap();
    // A payload naming handle 0, sent without any descriptor.
    let (payload, fds) = codec::encode(&c1).unwrap();
    assert_eq!(fds.len(), 3, "the domain, the socket and the shared rings");
    let header = Header {
        len: payload.len() as u64,
        tag: codec::type_tag::<Connection<u8>>(),
        nfds: 0,
    }
    .encode();
    announce(&a);
    raw_write(&a, &header);
    raw_write(&a, &payload);
    let err = b.recv_timeout(LONG).unwrap_err();
    assert!(matches!(err, RecvTimeoutError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("bad handle index 1"), "{err}");
    // The stream is still in sync.
    a.send(c1).unwrap();
    b.recv_timeout(LONG).unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn header_announcing_missing_descriptors_breaks_the_connection() {
    let (a, b) = Pipe::new::<u8, u8>().unwrap();
    let header = Header {
        len: 0,
        tag: BYTES_TAG,
        nfds: 2,
    }
    .encode();
    announce(&a);
    raw_write(&a, &header);
    let err = b.recv_bytes_timeout(LONG).unwrap_err();
    assert!(err.to_string().contains("2 descriptor(s)"), "{err}");
    // Broken is sticky: the stream cannot be trusted any more.
    a.send(1).unwrap();
    assert!(matches!(b.recv_timeout(LONG), Err(RecvTimeoutError::Io(_))));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn big_message_round_trip_256_mib() {
    const SIZE: usize = 256 << 20;
    let (a, b) = Pipe::new::<(), ()>().unwrap();
    let t = thread::spawn(move || {
        let mut data = vec![0u8; SIZE];
        for (i, chunk) in data.chunks_mut(4096).enumerate() {
            chunk[0] = i as u8;
            chunk[chunk.len() - 1] = !(i as u8);
        }
        a.send_bytes(&data).unwrap();
        a.send_bytes(b"after").unwrap();
    });
    let got = b.recv_bytes_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(got.len(), SIZE);
    for (i, chunk) in got.chunks(4096).enumerate() {
        assert_eq!(chunk[0], i as u8);
        assert_eq!(chunk[chunk.len() - 1], !(i as u8));
    }
    drop(got);
    assert_eq!(b.recv_bytes_timeout(LONG).unwrap(), b"after");
    t.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn large_and_small_typed_messages_interleave() {
    let (a, b) = Pipe::new::<Vec<u64>, Vec<u64>>().unwrap();
    let sizes = [0usize, 1, 8191, 8192, 100_000, 3, 500_000, 7, 65_536];
    let sent = sizes.to_vec();
    let t = thread::spawn(move || {
        for n in sent {
            a.send((0..n as u64).collect()).unwrap();
        }
    });
    for &n in &sizes {
        let v = b.recv_timeout(LONG).unwrap();
        assert_eq!(v.len(), n);
        assert!(v.iter().enumerate().all(|(i, x)| *x == i as u64));
    }
    t.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn simplex_directions() {
    let (reader, writer) = Pipe::simplex::<String>().unwrap();
    writer.send("down".into()).unwrap();
    assert_eq!(reader.recv_timeout(LONG).unwrap(), "down");
    // The wrong directions fail at once instead of hanging.
    assert!(matches!(
        reader.send_bytes(b"up"),
        Err(SendError::Disconnected(()))
    ));
    // (Typed `reader.send` and `writer.recv` do not exist: see the
    // compile_fail examples on `Pipe::simplex`.)
    assert!(matches!(writer.recv_bytes(), Err(RecvError::Disconnected)));
    assert!(matches!(
        writer.recv_bytes_timeout(LONG),
        Err(RecvTimeoutError::Disconnected)
    ));
    assert!(writer.poll(Some(Duration::ZERO)).unwrap());
    // The right direction still works afterwards.
    writer.send("again".into()).unwrap();
    assert_eq!(reader.recv_timeout(LONG).unwrap(), "again");
    drop(writer);
    assert!(matches!(
        reader.recv_timeout(LONG),
        Err(RecvTimeoutError::Disconnected)
    ));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn one_thread_sends_while_another_receives() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection<String, Vec<u8>>>();

    let (a, b) = Pipe::new::<u64, u64>().unwrap();
    let a = Arc::new(a);
    let echo = thread::spawn(move || {
        while let Ok(x) = b.recv_timeout(LONG) {
            if b.send(x * 2).is_err() {
                break;
            }
        }
    });
    let sender = Arc::clone(&a);
    let producer = thread::spawn(move || {
        for i in 0..10_000 {
            sender.send(i).unwrap();
        }
    });
    let mut sum = 0;
    for _ in 0..10_000 {
        sum += a.recv_timeout(LONG).unwrap();
    }
    assert_eq!(sum, 2 * (0..10_000).sum::<u64>());
    producer.join().unwrap();
    drop(a);
    echo.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn serializing_a_connection_needs_multiprocess_and_no_buffered_data() {
    let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
    assert!(postcard::to_stdvec(&a).is_err());
    // Small messages wait in the shared ring, which travels with the handle.
    a.send(vec![1]).unwrap();
    a.send(vec![2]).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), [1]);
    let (x, y) = Pipe::new::<Connection<Vec<u8>>, Connection<Vec<u8>>>().unwrap();
    x.send(b).unwrap();
    let b = y.recv_timeout(LONG).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), [2]);
    // Large ones go through the socket; the first receive reads part of the
    // second into b's buffer, and sending b would lose it.
    let big = vec![3u8; ring::INLINE_MAX + 1000];
    a.send(big.clone()).unwrap();
    a.send(big.clone()).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), big);
    let err = x.send(b).unwrap_err();
    assert!(matches!(err, SendError::Encode(..)), "{err:?}");
    let b = err.into_inner();
    assert_eq!(b.recv_timeout(LONG).unwrap(), big);
    x.send(b).unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn error_messages_are_lowercase_without_period() {
    let (a, b) = Pipe::new::<u8, u8>().unwrap();
    let e1 = b.recv_timeout(Duration::ZERO).unwrap_err().to_string();
    drop(b);
    let e2 = a.send(1).unwrap_err().to_string();
    for e in [e1, e2] {
        assert!(e.chars().next().unwrap().is_lowercase(), "{e}");
        assert!(!e.ends_with('.'), "{e}");
    }
}

/// Round trip of a small message between two threads; prints figures.
/// `cargo test --release -p multiprocess --lib bench_ -- --ignored --nocapture`
#[test]
#[ignore = "benchmark; run explicitly in release"]
fn bench_small_round_trip() {
    for spin in [
        Duration::ZERO,
        Duration::from_micros(5),
        Duration::from_micros(50),
    ] {
        let (a, b) = Pipe::new::<u64, u64>().unwrap();
        a.set_spin(spin);
        b.set_spin(spin);
        let echo = thread::spawn(move || {
            while let Ok(x) = b.recv() {
                b.send(x + 1).unwrap();
            }
        });
        let n = 200_000u64;
        for i in 0..10_000 {
            a.send(i).unwrap();
            a.recv().unwrap();
        }
        let start = Instant::now();
        for i in 0..n {
            a.send(i).unwrap();
            assert_eq!(a.recv().unwrap(), i + 1);
        }
        let rtt = start.elapsed() / n as u32;
        drop(a);
        echo.join().unwrap();
        println!("spin {spin:?}: small-message round trip {rtt:?}");
    }
}

/// One-way throughput of 1 MiB raw messages between two threads.
#[test]
#[ignore = "benchmark; run explicitly in release"]
fn bench_1mib_one_way() {
    let (a, b) = Pipe::new::<(), ()>().unwrap();
    let n = 4000;
    let t = thread::spawn(move || {
        let data = vec![7u8; 1 << 20];
        for _ in 0..n {
            a.send_bytes(&data).unwrap();
        }
    });
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(b.recv_bytes().unwrap().len(), 1 << 20);
    }
    let secs = start.elapsed().as_secs_f64();
    t.join().unwrap();
    println!(
        "1 MiB one way: {:.2} GB/s",
        (n as f64 * (1 << 20) as f64) / secs / 1e9
    );
}

/// The floor under `bench_small_round_trip`: raw 8-byte ping-pong on a
/// socket pair with blocking sendmsg/recvmsg, no framing or serde.
#[test]
#[ignore = "benchmark; run explicitly in release"]
fn bench_raw_socket_round_trip() {
    use crate::sys::socket::{recv_with_fds, socketpair};
    let (a, b) = socketpair().unwrap();
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        while recv_with_fds(b.as_fd(), &mut buf, &mut fds, Wait::Block).unwrap() == 8 {
            send_with_fds(b.as_fd(), &[IoSlice::new(&buf)], &[], Wait::Block).unwrap();
        }
    });
    let n = 200_000u32;
    let mut buf = [0u8; 8];
    let mut fds = Vec::new();
    let start = Instant::now();
    for _ in 0..n {
        send_with_fds(a.as_fd(), &[IoSlice::new(&buf.clone())], &[], Wait::Block).unwrap();
        recv_with_fds(a.as_fd(), &mut buf, &mut fds, Wait::Block).unwrap();
    }
    let rtt = start.elapsed() / n;
    drop(a);
    echo.join().unwrap();
    println!("raw socket pair: round trip {rtt:?}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a Connection needs socketpair with SCM_RIGHTS and a shared memfd; Miri emulates neither"
)]
fn steady_state_send_and_recv_do_not_allocate() {
    use crate::sys::count_alloc::allocations;
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Fixed {
        id: u64,
        pos: (f64, f64),
        flag: bool,
    }
    let probe = allocations();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert_eq!(allocations(), probe + 1, "the counting allocator counts");
    let (a, b) = Pipe::new::<Fixed, Fixed>().unwrap();
    let echo = thread::spawn(move || {
        let mut counts = Vec::with_capacity(4);
        for round in 0..4 {
            let before = allocations();
            for i in 0..5_000 {
                let x = b.recv_timeout(LONG).unwrap();
                if round == 0 && i == 0 {
                    // Let the other side sleep once: its receive buffer is
                    // allocated on the first sleep.
                    thread::sleep(Duration::from_millis(20));
                }
                b.send(Fixed { id: x.id + 1, ..x }).unwrap();
            }
            counts.push((round, allocations() - before));
        }
        counts
    });
    let mut counts = Vec::with_capacity(4);
    for round in 0..4 {
        let before = allocations();
        for i in 0..5_000 {
            if round == 0 && i == 0 {
                // Likewise for the echo thread.
                thread::sleep(Duration::from_millis(20));
            }
            let msg = Fixed {
                id: i,
                pos: (1.0, 2.0),
                flag: true,
            };
            a.send(msg).unwrap();
            assert_eq!(a.recv_timeout(LONG).unwrap().id, i + 1);
        }
        counts.push((round, allocations() - before));
    }
    let theirs = echo.join().unwrap();
    // Round 0 warms up (buffers, both sleep paths); later rounds must not
    // allocate.
    for (round, n) in counts.iter().chain(&theirs).filter(|(r, _)| *r > 0) {
        assert_eq!(*n, 0, "round {round}: ours {counts:?}, echo {theirs:?}");
    }
}
