//! Listener and Client across real processes, over TCP, Unix-socket paths
//! and Linux abstract names: echo with an authkey, wrong keys, replayed
//! handshakes, garbage before and after authentication, address reuse,
//! timeouts and close, CPython's issue 14725, handles over TCP. Only
//! loopback addresses.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded};
use multiprocess::{
    AcceptError, Address, AuthenticationError, Client, ConnectError, Connection, Listener, Pipe,
    Process, RecvError, RecvTimeoutError, SendError,
};

multiprocess::init_before_main!();

const KEY: &[u8] = b"the shared secret";
const T: Duration = Duration::from_secs(10);

/// A fresh abstract name per test (abstract names are machine-wide).
fn abstract_name(tag: &str) -> String {
    format!(
        "\0multiprocess-test-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    )
}

/// Child: connects, echoes every string back with a prefix until the
/// listener closes.
fn echo_client(address: Address, key: Option<Vec<u8>>) {
    let conn = Client::connect::<String, String>(address, key.as_deref()).unwrap();
    while let Ok(msg) = conn.recv() {
        conn.send(format!("echo: {msg}")).unwrap();
    }
}

fn echo_through(address: impl Into<Address>, key: Option<&[u8]>) {
    let listener = Listener::<String, String>::bind(address, key).unwrap();
    let p = Process::new(
        echo_client,
        (listener.address().clone(), key.map(<[u8]>::to_vec)),
    );
    p.start().unwrap();
    let conn = listener.accept_timeout(T).unwrap();
    for i in 0..50 {
        conn.send(format!("m{i}")).unwrap();
        assert_eq!(conn.recv_timeout(T).unwrap(), format!("echo: m{i}"));
    }
    // A large message goes through too.
    let big = "x".repeat(3 << 20);
    conn.send(big.clone()).unwrap();
    assert_eq!(conn.recv_timeout(T).unwrap(), format!("echo: {big}"));
    drop(conn);
    assert_eq!(p.join_timeout(T).unwrap(), Some(0));
}

#[test]
fn echo_over_tcp_with_an_authkey() {
    bounded(LIMIT, || echo_through("127.0.0.1:0", Some(KEY)));
}

#[test]
fn echo_over_a_unix_path_with_an_authkey() {
    bounded(LIMIT, || {
        let dir = common::temp_dir("listener-path");
        let path = dir.join("sock");
        echo_through(path.as_path(), Some(KEY));
        // The listener removed its socket file.
        assert!(!path.exists());
    });
}

#[test]
fn echo_over_an_abstract_name_with_an_authkey() {
    bounded(LIMIT, || {
        echo_through(abstract_name("echo").as_str(), Some(KEY))
    });
}

#[test]
fn echo_without_an_authkey_and_with_an_empty_one() {
    bounded(LIMIT, || {
        echo_through("127.0.0.1:0", None);
        echo_through("127.0.0.1:0", Some(b""));
    });
}

/// Child: connects with `key`, which the listener does not share.
fn wrong_key_client(address: Address, key: Vec<u8>) {
    match Client::connect::<(), ()>(address, Some(&key)) {
        Err(ConnectError::Authentication(AuthenticationError::Rejected)) => {}
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[test]
fn a_wrong_authkey_fails_on_both_ends() {
    bounded(LIMIT, || {
        for address in ["127.0.0.1:0".to_string(), abstract_name("wrong")] {
            let listener = Listener::<(), ()>::bind(address.as_str(), Some(KEY)).unwrap();
            let p = Process::new(
                wrong_key_client,
                (listener.address().clone(), b"not the key".to_vec()),
            );
            p.start().unwrap();
            match listener.accept_timeout(T) {
                Err(AcceptError::Authentication(AuthenticationError::WrongDigest)) => {}
                other => panic!("expected WrongDigest, got {other:?}"),
            }
            assert_eq!(p.join_timeout(T).unwrap(), Some(0));
            // The listener is still usable.
            let t = std::thread::spawn({
                let a = listener.address().clone();
                move || Client::connect::<(), ()>(a, Some(KEY)).map(drop)
            });
            listener.accept_timeout(T).unwrap();
            t.join().unwrap().unwrap();
        }
    });
}

/// Copies bytes from `from` to `to` until EOF, recording them.
fn pump(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

#[test]
fn a_replayed_handshake_is_rejected() {
    bounded(LIMIT, || {
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let Address::Tcp(server) = listener.address().clone() else {
            unreachable!()
        };
        // A recording proxy between a real client and the listener.
        let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_addr = proxy.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        let proxy_thread = std::thread::spawn(move || {
            let (client_side, _) = proxy.accept().unwrap();
            let server_side = TcpStream::connect(server).unwrap();
            let up = {
                let (c, s, r) = (
                    client_side.try_clone().unwrap(),
                    server_side.try_clone().unwrap(),
                    rec.clone(),
                );
                std::thread::spawn(move || pump(c, s, r))
            };
            pump(server_side, client_side, Arc::new(Mutex::new(Vec::new())));
            up.join().unwrap();
        });
        let client = std::thread::spawn(move || {
            let conn = Client::connect::<(), ()>(proxy_addr, Some(KEY)).unwrap();
            drop(conn);
        });
        let conn = listener.accept_timeout(T).unwrap();
        client.join().unwrap();
        drop(conn);
        proxy_thread.join().unwrap();
        let recorded = recorded.lock().unwrap().clone();
        assert!(!recorded.is_empty());

        // Replay everything the client sent against a fresh challenge.
        let replay = std::thread::spawn(move || {
            let mut s = TcpStream::connect(server).unwrap();
            let _ = s.write_all(&recorded);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            sink
        });
        match listener.accept_timeout(T) {
            Err(AcceptError::Authentication(AuthenticationError::WrongDigest)) => {}
            other => panic!("a replayed handshake was not rejected: {other:?}"),
        }
        let from_server = replay.join().unwrap();
        assert!(
            from_server.windows(9).any(|w| w == b"#FAILURE#"),
            "the listener answered the replay without #FAILURE#"
        );
    });
}

#[test]
fn garbage_before_authentication_is_an_error_not_a_panic() {
    bounded(LIMIT, || {
        let listener = Listener::<(), ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        let garbage: [&[u8]; 3] = [
            b"GET / HTTP/1.0\r\n\r\nand some more bytes to fill a header",
            &[0xff; 64],
            // A well-formed raw-bytes frame that is not a digest.
            &[
                5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'h', b'e',
                b'l', b'l', b'o',
            ],
        ];
        for bytes in garbage {
            let t = std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(bytes);
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            });
            match listener.accept_timeout(T) {
                Err(AcceptError::Authentication(AuthenticationError::Protocol(_))) => {}
                other => panic!("garbage {bytes:?} gave {other:?}"),
            }
            t.join().unwrap();
        }
        // A client that says nothing is given up on after the handshake
        // timeout; one that hangs up is reported as such.
        listener.set_handshake_timeout(Duration::from_millis(200));
        let silent = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        match listener.accept_timeout(T) {
            Err(AcceptError::Authentication(AuthenticationError::Timeout)) => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
        drop(silent);
        drop(TcpStream::connect(addr).unwrap());
        match listener.accept_timeout(T) {
            Err(AcceptError::Authentication(AuthenticationError::Disconnected)) => {}
            other => panic!("{other:?}"),
        }
        // A garbage-speaking *listener* is an error for the client too.
        let fake = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake_addr = fake.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = fake.accept().unwrap();
            let _ = s.write_all(&[0xee; 100]);
            let mut sink = [0u8; 64];
            let _ = s.read(&mut sink);
        });
        match Client::connect::<(), ()>(fake_addr, Some(KEY)) {
            Err(ConnectError::Authentication(AuthenticationError::Protocol(_))) => {}
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
    });
}

/// Child: authenticates, then writes a malformed frame straight to the
/// socket.
fn garbage_after_auth(address: Address) {
    let conn = Client::connect::<(), u8>(address, Some(KEY)).unwrap();
    let mut raw = TcpStream::from(conn.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(&[0xab; 48]).unwrap();
    // Wait for the listener to hang up.
    let _ = conn.recv_timeout(T);
}

#[test]
fn garbage_after_authentication_is_a_recv_error() {
    bounded(LIMIT, || {
        let listener = Listener::<u8, ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let p = Process::new(garbage_after_auth, (listener.address().clone(),));
        p.start().unwrap();
        let conn = listener.accept_timeout(T).unwrap();
        match conn.recv_timeout(T) {
            Err(RecvTimeoutError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
            other => panic!("{other:?}"),
        }
        // The stream stays broken, with the same kind of error.
        assert!(matches!(conn.recv(), Err(RecvError::Io(_))));
        drop(conn);
        assert_eq!(p.join_timeout(T).unwrap(), Some(0));
    });
}

#[test]
fn binding_an_address_in_use_fails() {
    bounded(LIMIT, || {
        let tcp = Listener::<()>::bind("127.0.0.1:0", None).unwrap();
        let err = Listener::<()>::bind(tcp.address(), None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        let name = abstract_name("twice");
        let _a = Listener::<()>::bind(name.as_str(), None).unwrap();
        let err = Listener::<()>::bind(name.as_str(), None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        let path = common::temp_dir("listener-twice").join("sock");
        let _p = Listener::<()>::bind(path.as_path(), None).unwrap();
        let err = Listener::<()>::bind(path.as_path(), None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    });
}

#[test]
fn accept_timeout_and_close() {
    bounded(LIMIT, || {
        let listener = Arc::new(Listener::<()>::bind("127.0.0.1:0", Some(KEY)).unwrap());
        let start = Instant::now();
        assert!(matches!(
            listener.accept_timeout(Duration::from_millis(100)),
            Err(AcceptError::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(100));
        let start = Instant::now();
        assert!(matches!(
            listener.accept_timeout(Duration::ZERO),
            Err(AcceptError::Timeout)
        ));
        assert!(start.elapsed() < Duration::from_secs(1));

        // close() wakes an accept blocked in another thread.
        let l = listener.clone();
        let blocked = std::thread::spawn(move || l.accept().map(drop));
        std::thread::sleep(Duration::from_millis(100));
        listener.close();
        assert!(matches!(blocked.join().unwrap(), Err(AcceptError::Closed)));
        assert!(matches!(listener.accept(), Err(AcceptError::Closed)));
        // Clients are refused once it is closed.
        assert!(matches!(
            Client::connect::<(), ()>(listener.address(), Some(KEY)),
            Err(ConnectError::Io(_))
        ));
    });
}

/// Child: connects, sends, and exits before the listener accepts.
fn hit_and_run(address: Address) {
    let conn = Client::connect::<String, ()>(address, None).unwrap();
    conn.send("sent before accept".into()).unwrap();
}

#[test]
fn a_client_that_connects_writes_and_closes_before_accept_is_received() {
    // CPython issue 14725.
    bounded(LIMIT, || {
        for address in ["127.0.0.1:0".to_string(), abstract_name("14725")] {
            let listener = Listener::<(), String>::bind(address.as_str(), None).unwrap();
            let p = Process::new(hit_and_run, (listener.address().clone(),));
            p.start().unwrap();
            assert_eq!(p.join_timeout(T).unwrap(), Some(0));
            let conn = listener.accept_timeout(T).unwrap();
            assert_eq!(conn.recv_timeout(T).unwrap(), "sent before accept");
            assert!(matches!(
                conn.recv_timeout(T),
                Err(RecvTimeoutError::Disconnected)
            ));
        }
    });
}

#[test]
fn handles_cannot_cross_tcp_but_cross_unix_sockets() {
    bounded(LIMIT, || {
        type Inner = Connection<u8, u8>;
        // TCP: a clear error, the value handed back.
        let listener = Listener::<Inner, ()>::bind("127.0.0.1:0", None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), Inner>(a, None).unwrap());
        let conn = listener.accept_timeout(T).unwrap();
        let _client = t.join().unwrap();
        let (x, y) = Pipe::new::<u8, u8>().unwrap();
        let x = match conn.send(x) {
            Err(SendError::Encode(value, e)) => {
                assert!(e.to_string().contains("TCP"), "{e}");
                value
            }
            other => panic!("{other:?}"),
        };
        // The value came back working.
        x.send(1).unwrap();
        assert_eq!(y.recv_timeout(T).unwrap(), 1);

        // Unix socket: the handle travels.
        let listener = Listener::<Inner, ()>::bind(abstract_name("fds").as_str(), None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), Inner>(a, None).unwrap());
        let conn = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        conn.send(x).unwrap();
        let x = client.recv_timeout(T).unwrap();
        x.send(2).unwrap();
        assert_eq!(y.recv_timeout(T).unwrap(), 2);
    });
}

/// Child: echoes on a connection accepted by its parent.
fn serve(conn: Connection<String>) {
    while let Ok(msg) = conn.recv() {
        conn.send(format!("child: {msg}")).unwrap();
    }
}

#[test]
fn an_accepted_connection_can_be_handed_to_a_child() {
    bounded(LIMIT, || {
        let listener = Listener::<String>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let a = listener.address().clone();
        let t =
            std::thread::spawn(move || Client::connect::<String, String>(a, Some(KEY)).unwrap());
        let accepted = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        let p = Process::new(serve, (accepted,));
        p.start().unwrap();
        client.send("hi".into()).unwrap();
        assert_eq!(client.recv_timeout(T).unwrap(), "child: hi");
        drop(client);
        assert_eq!(p.join_timeout(T).unwrap(), Some(0));
    });
}

#[test]
fn an_unbounded_handshake_timeout_does_not_overflow() {
    bounded(LIMIT, || {
        let listener = Listener::<()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        listener.set_handshake_timeout(Duration::MAX);
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), ()>(a, Some(KEY)).map(drop));
        listener.accept_timeout(T).unwrap();
        t.join().unwrap().unwrap();
    });
}

#[test]
fn a_key_on_one_side_only_fails_without_hanging() {
    bounded(LIMIT, || {
        // The client expects a challenge that never comes.
        let open = Listener::<(), ()>::bind("127.0.0.1:0", None).unwrap();
        match Client::connect_timeout::<(), ()>(
            open.address(),
            Some(KEY),
            Duration::from_millis(100),
        ) {
            Err(ConnectError::Authentication(AuthenticationError::Timeout)) => {}
            other => panic!("{other:?}"),
        }
        // The listener challenges a client that has no key and just talks.
        let guarded = Listener::<(), ()>::bind("127.0.0.1:0", Some(KEY)).unwrap();
        let a = guarded.address().clone();
        let t = std::thread::spawn(move || {
            let conn = Client::connect::<(), ()>(a, None).unwrap();
            let _ = conn.send(());
            let _ = conn.recv_timeout(T);
        });
        match guarded.accept_timeout(T) {
            Err(AcceptError::Authentication(AuthenticationError::Protocol(_))) => {}
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
    });
}

#[test]
fn socket_only_connections_keep_poll_and_message_boundaries() {
    bounded(LIMIT, || {
        let listener = Listener::<(), ()>::bind(abstract_name("poll").as_str(), None).unwrap();
        let a = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<(), ()>(a, None).unwrap());
        let server = listener.accept_timeout(T).unwrap();
        let client = t.join().unwrap();
        assert!(!server.poll(Some(Duration::ZERO)).unwrap());
        let start = Instant::now();
        assert!(!server.poll(Some(Duration::from_millis(50))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(50));
        client.send_bytes(b"").unwrap();
        client.send_bytes(b"one").unwrap();
        client.send_bytes(b"").unwrap();
        client.send(()).unwrap();
        assert!(server.poll(Some(T)).unwrap());
        assert!(server.poll(None).unwrap());
        assert_eq!(server.recv_bytes().unwrap(), b"");
        assert_eq!(server.recv_bytes().unwrap(), b"one");
        assert_eq!(server.recv_bytes().unwrap(), b"");
        server.recv().unwrap();
        assert!(!server.poll(Some(Duration::ZERO)).unwrap());
        drop(client);
        assert!(server.poll(Some(T)).unwrap());
        assert!(matches!(server.recv(), Err(RecvError::Disconnected)));
    });
}

/// Regression (found while adding `send_handle`): over a Unix socket
/// connection, a message without handles and the message with handles after
/// it arrive in one `recvmsg` when the receiver is behind; the first one's
/// header took the descriptors, closed them, and the second failed with "a
/// message header announces 2 descriptor(s) but 0 arrived with it",
/// breaking the connection.
#[test]
fn a_value_then_a_connection_in_one_read_keep_their_descriptors() {
    bounded(LIMIT, || {
        type Msg = Option<Connection<u8, u8>>;
        let listener = Listener::<Msg, Msg>::bind(abstract_name("merge").as_str(), None).unwrap();
        let addr = listener.address().clone();
        let t = std::thread::spawn(move || Client::connect::<Msg, Msg>(addr, None).unwrap());
        let a = listener.accept_timeout(T).unwrap();
        let b = t.join().unwrap();
        let (x, y) = Pipe::new::<u8, u8>().unwrap();
        a.send(None).unwrap();
        a.send(Some(x)).unwrap();
        assert!(b.recv_timeout(T).unwrap().is_none());
        let x = b.recv_timeout(T).unwrap().expect("the connection");
        x.send(4).unwrap();
        assert_eq!(y.recv_timeout(T).unwrap(), 4);
    });
}
