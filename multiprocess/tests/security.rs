//! Security properties: shared memory is anonymous (memfd) or a 0600 named
//! segment, every descriptor the library holds is close-on-exec, a child
//! holds only stdio and the descriptors deliberately passed to it, and a
//! peer announcing a gigantic frame before authenticating gets an error
//! within the handshake timeout on either side, without the receiver
//! allocating what it announced.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, rss_kib, temp_dir};
use multiprocess::{
    AcceptError, Array, AuthenticationError, Barrier, BoundedSemaphore, Client, Condition,
    ConnectError, Event, JoinableQueue, Listener, Lock, Pipe, Queue, RLock, RawArray, RawValue,
    Semaphore, SharedMemory, SimpleQueue, StartMethod, Value, get_context,
};

multiprocess::init_before_main!();

const KEY: &[u8] = b"security test key";
const T: Duration = Duration::from_secs(10);

/// `O_CLOEXEC` as /proc/<pid>/fdinfo reports it (octal `flags:`).
const O_CLOEXEC: u32 = 0o2_000_000;

/// Every open descriptor of this process: number → link target.
fn open_fds() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((n, link.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Whether descriptor `n` is close-on-exec (`None`: closed meanwhile).
fn cloexec(n: u32) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    Some(u32::from_str_radix(flags, 8).unwrap() & O_CLOEXEC != 0)
}

#[test]
fn shared_memory_is_memfd_or_0600_and_every_descriptor_is_cloexec() {
    bounded(LIMIT, || {
        let before = open_fds();
        let (a, b) = Pipe::new::<u64, u64>().unwrap();
        let named = SharedMemory::create(None, 4096).unwrap();
        let objects = (
            Queue::<u64>::new().unwrap(),
            JoinableQueue::<u64>::new().unwrap(),
            SimpleQueue::<u64>::new().unwrap(),
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(2).unwrap(),
            BoundedSemaphore::new(2).unwrap(),
            Event::new().unwrap(),
            Condition::new().unwrap(),
            Barrier::new(2).unwrap(),
        );
        let shared = (
            Value::new(1u64).unwrap(),
            Array::<u32>::new(8).unwrap(),
            RawValue::new(1u64).unwrap(),
            RawArray::<u32>::new(8).unwrap(),
        );
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let addr = listener.address().clone();
        let client = std::thread::spawn(move || Client::connect::<(), ()>(addr, Some(KEY)));
        let accepted = listener.accept_timeout(T).unwrap();
        let connected = client.join().unwrap().unwrap();
        // A child started and joined: pidfds, the fork server's socket.
        let p = get_context(StartMethod::ForkServer).process(exit_ok, ());
        p.start().unwrap();
        let running = get_context(StartMethod::Spawn).process(sleep_ms, (2_000u64,));
        running.start().unwrap();
        assert_eq!(p.join_timeout(T).unwrap(), Some(0));

        let after = open_fds();
        let mut memfds = 0;
        for (n, link) in &after {
            if *n <= 2 || before.get(n) == Some(link) {
                continue;
            }
            if let Some(flag) = cloexec(*n) {
                assert!(flag, "descriptor {n} ({link}) is not close-on-exec");
            }
            if link.starts_with("/memfd:") {
                memfds += 1;
            } else {
                assert!(
                    link.starts_with("socket:")
                        || link.starts_with("anon_inode:")
                        || link.starts_with("pipe:")
                        || link.starts_with("/dev/shm/")
                        || link.starts_with("/proc/"),
                    "descriptor {n} is {link}: shared state should be a memfd"
                );
            }
        }
        // Pipe rings, 3 queues, 10 sync objects, 4 shared values (each
        // locked one with its lock).
        assert!(memfds >= 15, "only {memfds} memfds");

        // The named segment is 0600.
        let path = format!("/dev/shm/{}", named.name().trim_start_matches('/'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path} has mode {:o}", mode & 0o777);
        let untracked = SharedMemory::create_untracked(None, 4096).unwrap();
        let path = format!("/dev/shm/{}", untracked.name().trim_start_matches('/'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path} has mode {:o}", mode & 0o777);
        untracked.unlink().unwrap();
        named.unlink().unwrap();

        running.kill().unwrap();
        let _ = running.join_timeout(T);
        drop((a, b, named, objects, shared, accepted, connected));
    });
}

fn exit_ok() {}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Child: writes how many descriptors it holds beyond stdio, and whether
/// each is close-on-exec, to `path`; keeps its arguments alive meanwhile.
fn count_fds_with(path: PathBuf, held: (Queue<u64>, Lock, multiprocess::Connection<u8, u8>)) {
    let fds = open_fds();
    // read_dir held one descriptor while listing; it is closed now.
    let extra: Vec<_> = fds
        .iter()
        .filter(|(n, _)| **n > 2)
        .filter_map(|(n, link)| Some((link.clone(), cloexec(*n)?)))
        .collect();
    std::fs::write(path, format!("{extra:?}")).unwrap();
    drop(held);
}

#[test]
fn a_child_holds_only_stdio_and_what_it_was_given() {
    bounded(LIMIT, || {
        let dir = temp_dir("security-fds");
        for m in [StartMethod::Spawn, StartMethod::ForkServer] {
            let path = dir.join(format!("{m:?}"));
            let (a, _b) = Pipe::new::<u8, u8>().unwrap();
            let held = (Queue::<u64>::new().unwrap(), Lock::new().unwrap(), a);
            let p = get_context(m).process(count_fds_with, (path.clone(), held));
            p.start().unwrap();
            assert_eq!(p.join_timeout(T).unwrap(), Some(0));
            let report = std::fs::read_to_string(&path).unwrap();
            // The queue's and the lock's memfds, the connection's socket and
            // its rings' memfd: four; and the tree's liveness domain twice
            // (the shared descriptor, and the child's own description that
            // holds its id): all close-on-exec.
            let liveness = report.matches("/memfd:multiprocess-liveness").count();
            let memfds = report.matches("/memfd:").count() - liveness;
            let sockets = report.matches("socket:").count();
            assert_eq!(
                (memfds, sockets, liveness),
                (3, 1, 2),
                "{m:?}: the child holds {report}"
            );
            assert!(!report.contains("false"), "{m:?}: {report}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// A raw frame header announcing `len` bytes of raw data.
fn header(len: u64) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..8].copy_from_slice(&len.to_le_bytes());
    h
}

#[test]
fn a_gigantic_frame_before_authentication_is_an_error_on_both_sides() {
    bounded(LIMIT, || {
        let rss = rss_kib();
        // Server side: a client announces 1 TiB (and 1 GiB) and sends a
        // little of it, or reads the challenge and then stops half-way.
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        listener.set_handshake_timeout(Duration::from_millis(300));
        let multiprocess::Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        for len in [1u64 << 40, 1 << 30] {
            let mut raw = TcpStream::connect(addr).unwrap();
            raw.write_all(&header(len)).unwrap();
            raw.write_all(&[0x41; 4096]).unwrap();
            let start = Instant::now();
            match listener.accept_timeout(T) {
                Err(AcceptError::Authentication(
                    AuthenticationError::Timeout | AuthenticationError::Protocol(_),
                )) => {}
                other => panic!("{len}: {other:?}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "accept held too long"
            );
            drop(raw);
        }
        let mut half = TcpStream::connect(addr).unwrap();
        let t = std::thread::spawn(move || {
            let mut challenge = [0u8; 24 + 59];
            half.read_exact(&mut challenge).unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        match listener.accept_timeout(T) {
            Err(AcceptError::Authentication(AuthenticationError::Timeout)) => {}
            other => panic!("half-finished handshake: {other:?}"),
        }
        t.join().unwrap();

        // Client side: a listener that answers with a gigantic frame.
        let fake = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake_addr = fake.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = fake.accept().unwrap();
            let _ = s.write_all(&header(1 << 40));
            let _ = s.write_all(&[0x42; 4096]);
            std::thread::sleep(Duration::from_secs(1));
        });
        match Client::connect_timeout::<(), ()>(fake_addr, Some(KEY), Duration::from_millis(300)) {
            Err(ConnectError::Authentication(
                AuthenticationError::Timeout | AuthenticationError::Protocol(_),
            )) => {}
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
        let grown = rss_kib().saturating_sub(rss);
        assert!(grown < 256 * 1024, "RSS grew by {grown} KiB");
    });
}

#[test]
fn garbage_after_authentication_is_an_error_on_the_client_side() {
    bounded(LIMIT, || {
        // (The listener side is in tests/listener.rs.)
        let listener = Listener::<u64, ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let addr = listener.address().clone();
        let client = std::thread::spawn(move || {
            let conn = Client::connect::<(), u64>(addr, Some(KEY)).unwrap();
            let first = conn.recv_timeout(T);
            let second = conn.recv_timeout(T);
            let broken = matches!(
                &second,
                Err(multiprocess::RecvTimeoutError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData
            );
            (first.map_err(|e| e.to_string()), broken)
        });
        let conn = listener.accept_timeout(T).unwrap();
        conn.send(7).unwrap();
        let mut raw = TcpStream::from(
            std::os::fd::AsFd::as_fd(&conn)
                .try_clone_to_owned()
                .unwrap(),
        );
        raw.write_all(&[0xcd; 64]).unwrap();
        let (first, broken) = client.join().unwrap();
        assert_eq!(first, Ok(7), "the message before the garbage arrives");
        assert!(broken, "the garbage is an InvalidData error");
        drop(conn);
    });
}
