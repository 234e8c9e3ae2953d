//! Hostile input: malformed and hostile bytes written straight to the socket
//! of a real `Connection` (socket-only, as a Listener accepts from a remote
//! peer, and a Pipe), and garbage written into a `Queue`'s shared memory.
//! Receiving must give a value or an error (never a panic, a hang or
//! undefined behaviour), and where the framing survives, the next good
//! message must still arrive.

mod common;

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, rss_kib};
use multiprocess::{
    Client, Connection, GetTimeoutError, Listener, Pipe, Queue, QueueBuilder, RecvError,
    RecvTimeoutError,
};
use proptest::prelude::*;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::{Deserialize, Serialize};

multiprocess::init_before_main!();

const T: Duration = Duration::from_secs(10);

/// A message with plain fields and an optional handle.
#[derive(Debug, Serialize, Deserialize)]
struct Msg {
    id: u64,
    name: String,
    data: Vec<u32>,
    queue: Option<Queue<u64>>,
}

fn msg(id: u64, queue: Option<Queue<u64>>) -> Msg {
    Msg {
        id,
        name: format!("message {id}"),
        data: vec![1, 2, 3],
        queue,
    }
}

/// A fresh abstract socket name (without the leading NUL).
fn abstract_name(tag: &str) -> String {
    format!(
        "multiprocess-hostile-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    )
}

fn raw_connect(name: &str) -> UnixStream {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    UnixStream::connect_addr(&addr).unwrap()
}

/// Writes `bytes` with `fds` attached (`SCM_RIGHTS`) in one `sendmsg`.
fn send_raw(s: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) {
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
    }
    let n =
        rustix::net::sendmsg(s, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL).unwrap();
    assert_eq!(n, bytes.len());
}

/// A frame: the 24-byte header (length, tag, descriptor count, kind) and
/// the payload.
fn frame(len: u64, tag: u64, nfds: u32, kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&nfds.to_le_bytes());
    f.extend_from_slice(&kind.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// The frame a real `Client` sends for `value`: (tag, payload). A raw peer
/// cannot compute type tags, so hostile frames start from recorded ones.
fn capture(value: Msg) -> (u64, Vec<u8>) {
    let name = abstract_name("capture");
    let fake =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let client = Client::connect::<Msg, ()>(format!("\0{name}").as_str(), None).unwrap();
    let (mut raw, _) = fake.accept().unwrap();
    client.send(value).unwrap();
    let mut head = [0u8; 24];
    raw.read_exact(&mut head).unwrap();
    let len = u64::from_le_bytes(head[0..8].try_into().unwrap());
    let tag = u64::from_le_bytes(head[8..16].try_into().unwrap());
    let mut payload = vec![0; len as usize];
    raw.read_exact(&mut payload).unwrap();
    (tag, payload)
}

/// A listener receiving `Msg`s on an abstract name.
struct Server {
    listener: Listener<(), Msg>,
    name: String,
}

impl Server {
    fn new(tag: &str) -> Server {
        let name = abstract_name(tag);
        let listener = Listener::bind(format!("\0{name}").as_str(), None).unwrap();
        Server { listener, name }
    }

    /// A raw peer and the listener's connection to it.
    fn pair(&self) -> (UnixStream, Connection<(), Msg>) {
        let raw = raw_connect(&self.name);
        let conn = self.listener.accept_timeout(T).unwrap();
        (raw, conn)
    }
}

/// Receives until end of stream or a broken stream; every outcome is a
/// value or an error, never a timeout (the writer has closed).
fn recv_to_end(conn: &Connection<(), Msg>) -> Vec<Result<u64, String>> {
    let mut seen = Vec::new();
    for _ in 0..64 {
        match conn.recv_timeout(T) {
            Ok(m) => seen.push(Ok(m.id)),
            Err(RecvTimeoutError::Disconnected) => return seen,
            Err(RecvTimeoutError::Timeout) => panic!("timed out after the writer closed"),
            Err(RecvTimeoutError::Io(e)) => {
                // A broken stream stays broken.
                assert!(matches!(conn.recv_timeout(T), Err(RecvTimeoutError::Io(_))));
                seen.push(Err(e.to_string()));
                return seen;
            }
            Err(other) => seen.push(Err(other.to_string())),
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes, optionally behind a well-formed header with a random
    /// length and tag, some with a descriptor attached.
    #[test]
    fn random_bytes_into_a_socket_connection(
        header in proptest::option::of((any::<u64>(), any::<u64>(), 0u32..3)),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        with_fd in any::<bool>(),
        small_max in any::<bool>(),
    ) {
        let server = Server::new("random");
        let (raw, conn) = server.pair();
        if small_max {
            conn.set_max_message_size(100);
        }
        let mut bytes = match header {
            // Lengths up to 1 GiB (the default maximum) are accepted, and
            // must not be allocated before the bytes arrive.
            Some((len, tag, nfds)) => frame(len % (2 << 30), tag, nfds, 0, &[]),
            None => Vec::new(),
        };
        bytes.extend_from_slice(&body);
        let fds = if with_fd { vec![devnull()] } else { Vec::new() };
        if !bytes.is_empty() {
            send_raw(&raw, &bytes, &fds);
        }
        drop(raw);
        let got = bounded(LIMIT, move || recv_to_end(&conn));
        prop_assert!(got.len() <= 64);
    }
}

#[test]
fn structured_hostile_frames_give_clear_errors() {
    bounded(LIMIT, || {
        let (tag, with_queue) = capture(msg(1, Some(Queue::new().unwrap())));
        let (plain_tag, plain) = capture(msg(2, None));
        assert_eq!(tag, plain_tag, "one type, one tag");
        let good = frame(plain.len() as u64, tag, 0, 0, &plain);
        let server = Server::new("structured");

        // A handle index with no descriptor: a decode error; framing intact.
        let (raw, conn) = server.pair();
        send_raw(
            &raw,
            &frame(with_queue.len() as u64, tag, 0, 0, &with_queue),
            &[],
        );
        send_raw(&raw, &good, &[]);
        match conn.recv_timeout(T) {
            Err(RecvTimeoutError::Decode(e)) => {
                assert!(e.to_string().contains("bad handle index"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);

        // A descriptor that is not a queue where a queue is expected.
        send_raw(
            &raw,
            &frame(with_queue.len() as u64, tag, 1, 0, &with_queue),
            &[devnull()],
        );
        send_raw(&raw, &good, &[]);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::Decode(_))
        ));
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);

        // A descriptor where none is expected: the value arrives and the
        // stray descriptor is closed (not handed to anyone).
        send_raw(
            &raw,
            &frame(plain.len() as u64, tag, 1, 0, &plain),
            &[devnull()],
        );
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);
        // Sent but not announced, then announced by a later header that
        // came without one: the stray is closed, not claimed by that header.
        send_raw(&raw, &good, &[devnull()]);
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);
        let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        for _ in 0..100 {
            send_raw(&raw, &good, &[devnull(), devnull()]);
            assert_eq!(conn.recv_timeout(T).unwrap().id, 2);
        }
        let fds_after = std::fs::read_dir("/proc/self/fd").unwrap().count();
        assert!(
            fds_after < fds_before + 20,
            "{fds_before} -> {fds_after} descriptors"
        );

        // A wrong type tag: WrongType; framing intact.
        send_raw(&raw, &frame(plain.len() as u64, tag ^ 1, 0, 0, &plain), &[]);
        send_raw(&raw, &good, &[]);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::WrongType { .. })
        ));
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);

        // Trailing and missing bytes inside a frame: decode errors.
        let mut long = plain.clone();
        long.push(0);
        send_raw(&raw, &frame(long.len() as u64, tag, 0, 0, &long), &[]);
        send_raw(&raw, &frame(3, tag, 0, 0, &plain[..3]), &[]);
        send_raw(&raw, &good, &[]);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::Decode(_))
        ));
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::Decode(_))
        ));
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);

        // Above the maximum: discarded and reported; framing intact.
        conn.set_max_message_size(64);
        send_raw(&raw, &frame(500, tag, 0, 0, &[0x55; 500]), &[]);
        send_raw(&raw, &good, &[]);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::TooLarge { size: 500, max: 64 })
        ));
        assert_eq!(conn.recv_timeout(T).unwrap().id, 2);
        conn.set_max_message_size(multiprocess::DEFAULT_MAX_MESSAGE_SIZE);

        // A descriptor count with no descriptors: the stream is broken, and
        // says so on every later receive.
        send_raw(&raw, &frame(plain.len() as u64, tag, 2, 0, &plain), &[]);
        for _ in 0..2 {
            match conn.recv_timeout(T) {
                Err(RecvTimeoutError::Io(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    assert!(e.to_string().contains("descriptor"), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        drop((raw, conn));

        // Corrupt headers: an unknown kind, too many descriptors.
        for bad in [frame(1, tag, 0, 7, b"x"), frame(0, tag, 254, 0, b"")] {
            let (raw, conn) = server.pair();
            send_raw(&raw, &bad, &[]);
            match conn.recv_timeout(T) {
                Err(RecvTimeoutError::Io(e)) => assert!(e.to_string().contains("corrupt"), "{e}"),
                other => panic!("{other:?}"),
            }
            assert!(matches!(conn.recv(), Err(RecvError::Io(_))));
        }

        // A huge declared length (within the 1 GiB maximum), then the peer
        // stops: a timeout that keeps the partial frame, then end of stream
        // once it hangs up. Nothing close to 1 GiB is allocated meanwhile.
        let (raw, conn) = server.pair();
        send_raw(&raw, &frame(1 << 30, tag, 0, 0, &[1; 1000]), &[]);
        assert!(matches!(
            conn.recv_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(rss_kib() < 512 * 1024, "RSS {} KiB", rss_kib());
        drop(raw);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::Disconnected)
        ));

        // Truncated header.
        let (mut raw, conn) = server.pair();
        raw.write_all(&good[..10]).unwrap();
        drop(raw);
        assert!(matches!(
            conn.recv_timeout(T),
            Err(RecvTimeoutError::Disconnected)
        ));
    });
}

#[test]
fn garbage_on_a_pipe_socket_is_an_error_not_a_panic() {
    bounded(LIMIT, || {
        let (a, b) = Pipe::new::<Vec<u8>, Vec<u8>>().unwrap();
        // A process holding `a` writes straight to its socket.
        let mut raw = UnixStream::from(a.as_fd().try_clone_to_owned().unwrap());
        raw.write_all(&[0xab; 100]).unwrap();
        // No marker in the ring announces it: nothing to receive yet.
        assert!(matches!(
            b.recv_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout)
        ));
        // A real large message goes through the socket behind the garbage:
        // the receiver reports a corrupt stream.
        a.send(vec![7u8; 100_000]).unwrap();
        match b.recv_timeout(T) {
            Err(RecvTimeoutError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(b.recv_timeout(T), Err(RecvTimeoutError::Io(_))));
    });
}

/// The memfd of a queue created by `make`: the memfd that appears in
/// /proc/self/fd, opened for reading and writing.
fn queue_memory<T>(make: impl FnOnce() -> T) -> (T, std::fs::File) {
    let memfds = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                std::fs::read_link(p).is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:"))
            })
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    };
    let before = memfds();
    let made = make();
    let after = memfds();
    // Other tests may create memfds meanwhile: take the one of the size
    // of a queue with an 8 KiB ring.
    let file = after
        .difference(&before)
        .filter_map(|p| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .ok()
        })
        .find(|f| f.metadata().is_ok_and(|m| m.len() == 4096 + 8192))
        .expect("the queue's memfd");
    (made, file)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// A process holding a queue can write anything into its shared
    /// memory; the others' gets then return a value or an error in bounded
    /// time, never panic or read out of bounds.
    #[test]
    fn garbage_in_queue_memory_is_survived(
        writes in proptest::collection::vec((0usize..4096 + 8192, proptest::collection::vec(any::<u8>(), 1..64)), 1..6),
        header_too in any::<bool>(),
    ) {
        let (q, mem) = queue_memory(|| {
            QueueBuilder::new().capacity_bytes(8192).build::<Msg>().unwrap()
        });
        bounded(LIMIT, move || {
            for i in 0..3 {
                q.put(msg(i, None)).unwrap();
            }
            for (at, bytes) in &writes {
                // The ring data starts after the 4096-byte header page; the
                // header's words (locks, positions) only in some cases.
                let at = if header_too { *at } else { 4096 + at % 8192 };
                let at = at.min(4096 + 8192 - bytes.len());
                mem.write_all_at(bytes, at as u64).unwrap();
            }
            for _ in 0..8 {
                match q.get_timeout(Duration::from_millis(20)) {
                    Ok(_) | Err(GetTimeoutError::Decode(_)) => {}
                    // Garbage in the header's shutdown word reads as a shut
                    // down queue: an error, in bounded time, as wanted.
                    Err(GetTimeoutError::Timeout | GetTimeoutError::ShutDown) => break,
                    Err(other) => panic!("{other:?}"),
                }
            }
        });
    }
}
