//! Bad input to the remote layer: each case gets a clear error and loses
//! nothing. Every test starts its own `redis-server` (or a fake one).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use multiprocess::remote::{BackendError, Cluster, LocalServer};
use multiprocess::{PoolError, TaskError};

multiprocess::init_before_main!();

fn echo(v: Vec<u8>) -> usize {
    v.len()
}

fn panics(x: u64) -> u64 {
    if x == 2 {
        panic!("two is not allowed");
    }
    x
}

multiprocess::remote_task!(echo, panics);

#[test]
fn a_malformed_url_is_refused() {
    for url in [
        "not a url",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
    ] {
        match Cluster::connect(url) {
            Err(BackendError::BadUrl { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn a_server_that_is_down_is_unreachable_within_the_connect_timeout() {
    // A port nobody listens on: refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let e = Cluster::connect(&format!("redis://127.0.0.1:{port}/0")).unwrap_err();
    assert!(matches!(e, BackendError::Unreachable { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A listener that never answers (its backlog accepts the connection):
    // the call gives up within the call timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}/0",
        silent.local_addr().unwrap().port()
    );
    let t = Instant::now();
    let e = Cluster::builder(&url)
        .connect_timeout(Duration::from_millis(300))
        .call_timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(
        matches!(
            e,
            BackendError::Timeout(_) | BackendError::Unreachable { .. }
        ),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}

/// A TCP server that answers each line with `reply` (for a port that is
/// not Redis) and closes.
fn fake_server(reply: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(reply);
        }
    });
    port
}

#[test]
fn a_port_that_is_not_redis_is_named_so() {
    let port = fake_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let e = Cluster::builder(&format!("redis://127.0.0.1:{port}/0"))
        .call_timeout(Duration::from_millis(500))
        .connect()
        .unwrap_err();
    assert!(
        matches!(
            e,
            BackendError::NotRedis { .. } | BackendError::Disconnected(_)
        ),
        "{e:?}"
    );
}

/// A RESP server that says it is Redis `version`: `+OK` to everything but
/// `INFO`.
fn old_redis(version: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    // *N, then N × ($len, data).
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let n: usize = line.trim()[1..].parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let mut len = String::new();
                        let mut data = String::new();
                        r.read_line(&mut len).unwrap();
                        r.read_line(&mut data).unwrap();
                        args.push(data.trim().to_uppercase());
                    }
                    let reply = if args.first().map(String::as_str) == Some("INFO") {
                        let body = format!("# Server\r\nredis_version:{version}\r\n");
                        format!("${}\r\n{body}\r\n", body.len())
                    } else {
                        "+OK\r\n".to_owned()
                    };
                    if w.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_redis_older_than_7_is_refused_with_its_version() {
    let port = old_redis("6.2.14");
    match Cluster::connect(&format!("redis://127.0.0.1:{port}/0")) {
        Err(BackendError::TooOld { version, .. }) => assert_eq!(version, "6.2.14"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_or_missing_password_is_refused() {
    let server = LocalServer::builder().password("s3cret").start().unwrap();
    let port = server.port();
    for url in [
        format!("redis://:wrong@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        match Cluster::connect(&url) {
            Err(e @ BackendError::Auth { .. }) => {
                assert!(!e.to_string().contains("wrong"), "password in {e}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let c = Cluster::connect(server.url()).unwrap();
    assert!(!c.url().contains("s3cret"), "{}", c.url());
}

/// A copy of this test binary with one byte appended: the same code, a
/// different SHA-256, so a different build.
fn other_build() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mp-other-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker");
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.push(0);
    std::fs::write(&path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_worker_of_another_build_gives_no_workers_naming_both_builds() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::connect(server.url()).unwrap();
    let pool = c.pool("builds").unwrap();
    // No worker at all.
    match pool.map(echo, [vec![1u8]]) {
        Err(PoolError::NoWorkers { why }) => assert!(why.contains("no live worker"), "{why}"),
        other => panic!("{other:?}"),
    }
    let exe = other_build();
    let _worker = Killed(
        std::process::Command::new(&exe)
            .env("MULTIPROCESS_WORKER", server.url())
            .env("MULTIPROCESS_WORKER_POOL", "builds")
            .env("MULTIPROCESS_WORKER_PARENT", std::process::id().to_string())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.workers().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the other build's worker never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let theirs = pool.workers().unwrap()[0].build.clone();
    let ours = multiprocess::remote::build_id();
    assert_ne!(&theirs, &ours.0);
    match pool.map(echo, [vec![1u8]]) {
        Err(PoolError::NoWorkers { why }) => {
            assert!(why.contains(ours.short()), "{why}");
            assert!(why.contains(&theirs[..16]), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
}

#[test]
fn a_payload_over_max_payload_is_refused_before_sending() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::builder(server.url())
        .max_payload(1024)
        .connect()
        .unwrap();
    let pool = c.pool("big").unwrap();
    pool.spawn_local_workers(1).unwrap();
    match pool.apply(echo, (vec![7u8; 4096],)) {
        Err(PoolError::Backend(BackendError::TooLarge { size, max: 1024 })) => {
            assert!(size > 4096)
        }
        other => panic!("{other:?}"),
    }
    // Nothing reached the task stream, and small work still runs.
    assert_eq!(pool.apply(echo, (vec![7u8; 10],)).unwrap(), 10);
}

#[test]
fn a_server_out_of_memory_fails_the_call_and_the_pool_goes_on() {
    let server = LocalServer::builder().maxmemory("3mb").start().unwrap();
    let c = Cluster::connect(server.url()).unwrap();
    let pool = c.pool("oom").unwrap();
    pool.spawn_local_workers(1).unwrap();
    // Far more than 3 MB of arguments in one call.
    let items: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 256 << 10]).collect();
    match pool.with_chunksize(1).map(echo, items) {
        Err(PoolError::Backend(BackendError::OutOfMemory(text))) => {
            assert!(text.contains("OOM") || text.contains("memory"), "{text}")
        }
        other => panic!("{other:?}"),
    }
    // The chunks that did go in were withdrawn or ran; the pool still works.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match pool.apply(echo, (vec![7u8; 10],)) {
            Ok(n) => {
                assert_eq!(n, 10);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("still full: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_panicking_task_fails_only_its_item() {
    let server = LocalServer::start().unwrap();
    let c = Cluster::connect(server.url()).unwrap();
    let pool = c.pool("panics").unwrap();
    pool.spawn_local_workers(1).unwrap();
    let got: Vec<_> = pool.imap(panics, 0..5u64).unwrap().collect();
    assert_eq!(got.len(), 5);
    for (i, r) in got.into_iter().enumerate() {
        match (i, r) {
            (2, Err(TaskError::Panicked { message, .. })) => {
                assert!(message.contains("two is not allowed"), "{message}")
            }
            (i, Ok(v)) => assert_eq!(v, i as u64),
            other => panic!("{other:?}"),
        }
    }
}
