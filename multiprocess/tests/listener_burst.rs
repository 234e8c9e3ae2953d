//! A `Listener` with an authkey under load, against real client processes:
//! silent and slow clients do not hold up the others (the handshakes run
//! side by side, each with its own deadline), and a burst of 1,000
//! concurrent authenticated clients is served whole (the listen backlog is
//! the system's maximum, not std's 128). Only loopback addresses.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::bounded;
use multiprocess::{AcceptError, Address, AuthenticationError, Client, Listener, Process};

multiprocess::init_before_main!();

const KEY: &[u8] = b"the burst secret";
/// The watchdog of each test: well beyond what a correct listener needs, far
/// below what the one-at-a-time listener took.
const LIMIT: Duration = Duration::from_secs(120);

/// Child: connects with `key`, sends `id`, expects `id + 1` back.
fn one_client(address: Address, key: Vec<u8>, id: u32) {
    let conn = Client::connect::<u32, u32>(address, Some(&key)).unwrap();
    conn.send(id).unwrap();
    assert_eq!(conn.recv_timeout(Duration::from_secs(30)).unwrap(), id + 1);
}

/// Child: `count` threads connect at once with `key`, each sends its id and
/// expects `id + 1` back. Exits with the number of clients that failed.
fn many_clients(address: Address, key: Vec<u8>, first: u32, count: u32) {
    let threads: Vec<_> = (first..first + count)
        .map(|id| {
            let (address, key) = (address.clone(), key.clone());
            std::thread::spawn(move || {
                let conn = Client::connect::<u32, u32>(address, Some(&key)).ok()?;
                conn.send(id).ok()?;
                (conn.recv_timeout(Duration::from_secs(60)).ok()? == id + 1).then_some(())
            })
        })
        .collect();
    let failed = threads
        .into_iter()
        .map(std::thread::JoinHandle::join)
        .filter(|r| !matches!(r, Ok(Some(()))))
        .count();
    std::process::exit(i32::try_from(failed).unwrap().min(100));
}

/// Accepts until `want` clients are served (each sends a `u32`, gets it plus
/// one back) or `limit` passes; returns how many were served and the
/// authentication errors seen.
fn serve(
    listener: &Listener<u32, u32>,
    want: usize,
    limit: Duration,
) -> (usize, Vec<AuthenticationError>) {
    let until = Instant::now() + limit;
    let (mut served, mut failures) = (0, Vec::new());
    while served < want {
        let left = until.saturating_duration_since(Instant::now());
        match listener.accept_timeout(left) {
            Ok(conn) => {
                let id = conn.recv_timeout(Duration::from_secs(30)).unwrap();
                conn.send(id + 1).unwrap();
                served += 1;
            }
            Err(AcceptError::Authentication(e)) => failures.push(e),
            Err(AcceptError::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    (served, failures)
}

fn tcp_addr(listener: &Listener<u32, u32>) -> SocketAddr {
    match listener.address() {
        Address::Tcp(a) => *a,
        other => unreachable!("{other:?}"),
    }
}

#[test]
fn silent_clients_do_not_delay_an_authenticated_one() {
    bounded(LIMIT, || {
        // The default handshake timeout (20 s) applies.
        let listener = Listener::<u32, u32>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let addr = tcp_addr(&listener);
        let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let p = Process::new(one_client, (listener.address().clone(), KEY.to_vec(), 7));
        let start = Instant::now();
        p.start().unwrap();
        let (served, failures) = serve(&listener, 1, Duration::from_secs(60));
        let took = start.elapsed();
        assert_eq!((served, failures), (1, vec![]));
        assert!(
            took < Duration::from_secs(5),
            "two silent clients delayed an authenticated one by {took:?}"
        );
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        drop(silent);
    });
}

/// Reads one raw-bytes frame (24-byte header, then the payload).
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 24];
    s.read_exact(&mut header).unwrap();
    let len = u64::from_le_bytes(header[..8].try_into().unwrap());
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).unwrap();
    payload
}

/// Sends `payload` as one raw-bytes frame.
fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    let mut frame = (payload.len() as u64).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
}

#[test]
fn slow_wrong_key_clients_do_not_stall_good_ones() {
    bounded(LIMIT, || {
        let listener = Listener::<u32, u32>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let addr = tcp_addr(&listener);
        // Three clients read the challenge, think for 3 s, and answer with
        // a wrong digest: each must get #FAILURE#.
        let wrong: Vec<_> = (0..3)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                std::thread::spawn(move || {
                    let challenge = read_frame(&mut s);
                    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
                    std::thread::sleep(Duration::from_secs(3));
                    let mut digest = b"{sha256}".to_vec();
                    digest.extend_from_slice(&[0u8; 32]);
                    write_frame(&mut s, &digest);
                    read_frame(&mut s)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // Then good clients, in child processes.
        let start = Instant::now();
        let good: Vec<_> = (0..4)
            .map(|id| {
                let p = Process::new(one_client, (listener.address().clone(), KEY.to_vec(), id));
                p.start().unwrap();
                p
            })
            .collect();
        let (served, failures) = serve(&listener, 4, Duration::from_secs(60));
        let took = start.elapsed();
        assert_eq!(served, 4);
        assert!(failures.is_empty(), "{failures:?}");
        assert!(
            took < Duration::from_millis(2500),
            "slow wrong-key clients held good ones for {took:?}"
        );
        for p in good {
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        }
        // The wrong ones fail, one per accept, and are told so.
        let (served, failures) = serve(&listener, 1, Duration::from_secs(10));
        assert_eq!(served, 0);
        assert_eq!(failures, vec![AuthenticationError::WrongDigest; 3]);
        for t in wrong {
            assert_eq!(t.join().unwrap(), b"#FAILURE#");
        }
    });
}

#[test]
fn a_burst_of_1000_authenticated_clients_is_served_whole() {
    bounded(LIMIT, || {
        // Our side holds up to 1,000 sockets at once.
        let (soft, hard) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .zip(rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum)
            .unwrap_or((u64::MAX, u64::MAX));
        if soft < 4096 {
            let raised = rustix::process::Rlimit {
                current: Some(hard.min(4096)),
                maximum: Some(hard),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).unwrap();
        }
        let listener = Listener::<u32, u32>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        const CHILDREN: u32 = 4;
        const EACH: u32 = 250;
        let start = Instant::now();
        let children: Vec<_> = (0..CHILDREN)
            .map(|c| {
                let p = Process::new(
                    many_clients,
                    (listener.address().clone(), KEY.to_vec(), c * EACH, EACH),
                );
                p.start().unwrap();
                p
            })
            .collect();
        let (served, failures) = serve(&listener, 1000, Duration::from_secs(90));
        let took = start.elapsed();
        eprintln!("served {served} of 1000 in {took:?}");
        assert_eq!(served, 1000, "{} handshakes failed", failures.len());
        assert!(failures.is_empty(), "{failures:?}");
        for p in children {
            assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
        }
    });
}
