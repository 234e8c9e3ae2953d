//! Measures a [`Pipe`] between two real processes: small-message round trips
//! (unpinned, both on one CPU, on two different CPUs), one-way throughput of
//! 1 MiB messages, and the CPU a process burns while blocked in `recv`.
//!
//! ```text
//! cargo run --release -p multiprocess --example pipe_latency [round_trips]
//! ```
//!
//! Prints one line per measurement, for example
//! `round trip unpinned: median 1.9 µs, min 1.1 µs, max 80.3 µs (20000 round trips)`.

use std::time::{Duration, Instant};

use multiprocess::{Connection, Pipe, Process};
use rustix::thread::CpuSet;

/// Pins the calling thread to `cpu`, or lets it run anywhere.
fn pin(cpu: Option<usize>) {
    let mut set = CpuSet::new();
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    match cpu {
        Some(c) => set.set(c),
        None => (0..online).for_each(|c| set.set(c)),
    }
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// The peer of the round-trip test: echoes each number plus one.
fn echo(conn: Connection<u64, u64>, cpu: Option<usize>) {
    pin(cpu);
    while let Ok(x) = conn.recv() {
        if conn.send(x + 1).is_err() {
            break;
        }
    }
}

/// Round trips of a `u64`, with the parent on `ours` and the child on
/// `theirs`.
fn round_trips(label: &str, ours: Option<usize>, theirs: Option<usize>, n: usize) {
    let (a, b) = Pipe::new::<u64, u64>().expect("pipe");
    let child = Process::new(echo, (b, theirs));
    child.start().expect("start");
    pin(ours);
    for i in 0..(n as u64 / 10).max(100) {
        a.send(i).expect("send");
        assert_eq!(a.recv().expect("recv"), i + 1);
    }
    let mut times = Vec::with_capacity(n);
    let all = Instant::now();
    for i in 0..n as u64 {
        let t = Instant::now();
        a.send(i).expect("send");
        let got = a.recv().expect("recv");
        times.push(t.elapsed());
        assert_eq!(got, i + 1);
    }
    let mean = all.elapsed() / n as u32;
    pin(None);
    drop(a);
    child.join().expect("join");
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "round trip {label}: median {:.2} µs, mean {:.2} µs, min {:.2} µs, p99 {:.2} µs, max {:.1} µs ({n} round trips)",
        us(times[n / 2]),
        us(mean),
        us(times[0]),
        us(times[n * 99 / 100]),
        us(times[n - 1]),
    );
}

/// Sends `count` raw messages of `size` bytes.
fn blast(conn: Connection<(), ()>, size: usize, count: usize) {
    let data = vec![7u8; size];
    for _ in 0..count {
        conn.send_bytes(&data).expect("send_bytes");
    }
}

/// Sends `count` `Vec<u8>`s of `size` bytes.
fn blast_typed(conn: Connection<Vec<u8>, ()>, size: usize, count: usize) {
    let data = vec![7u8; size];
    for _ in 0..count {
        conn.send(data.clone()).expect("send");
    }
}

/// One-way throughput of 1 MiB messages from a child to the parent.
fn one_way(count: usize) {
    let size = 1 << 20;
    let (ours, theirs) = Pipe::new::<(), ()>().expect("pipe");
    let child = Process::new(blast, (theirs, size, count));
    child.start().expect("start");
    // The first message includes the child's start-up; time from there.
    assert_eq!(ours.recv_bytes().expect("recv").len(), size);
    let start = Instant::now();
    for _ in 1..count {
        assert_eq!(ours.recv_bytes().expect("recv").len(), size);
    }
    let secs = start.elapsed().as_secs_f64();
    child.join().expect("join");
    let gbs = (count - 1) as f64 * size as f64 / secs / 1e9;
    println!("one way 1 MiB send_bytes/recv_bytes: {gbs:.2} GB/s ({count} messages)");

    let (ours, theirs) = Pipe::new::<(), Vec<u8>>().expect("pipe");
    let child = Process::new(blast_typed, (theirs, size, count));
    child.start().expect("start");
    assert_eq!(ours.recv().expect("recv").len(), size);
    let start = Instant::now();
    for _ in 1..count {
        assert_eq!(ours.recv().expect("recv").len(), size);
    }
    let secs = start.elapsed().as_secs_f64();
    child.join().expect("join");
    let gbs = (count - 1) as f64 * size as f64 / secs / 1e9;
    println!("one way 1 MiB Vec<u8> send/recv: {gbs:.2} GB/s ({count} messages)");
}

/// Answers quickly a few hundred times, then waits a second before the last
/// answer, so the parent's receive first learns fast arrivals, then idles.
fn fast_then_slow(conn: Connection<u64, u64>) {
    while let Ok(x) = conn.recv() {
        if x == u64::MAX {
            std::thread::sleep(Duration::from_secs(1));
        }
        if conn.send(x).is_err() {
            break;
        }
    }
}

/// CPU used by this process while one `recv` waits 1 s.
fn idle_recv() {
    let (a, b) = Pipe::new::<u64, u64>().expect("pipe");
    let child = Process::new(fast_then_slow, (b,));
    child.start().expect("start");
    for i in 0..1000 {
        a.send(i).expect("send");
        a.recv().expect("recv");
    }
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    a.send(u64::MAX).expect("send");
    let (wall, used) = (Instant::now(), cpu());
    a.recv().expect("recv");
    let (wall, used) = (wall.elapsed(), cpu() - used);
    drop(a);
    child.join().expect("join");
    println!(
        "idle recv: {:.3}% CPU ({:.1} ms CPU in {:.0} ms blocked)",
        used.as_secs_f64() / wall.as_secs_f64() * 100.0,
        used.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e3,
    );
}

fn main() {
    multiprocess::init();
    let n = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cpus} CPUs");
    round_trips("unpinned", None, None, n);
    round_trips("same CPU", Some(0), Some(0), n);
    if cpus > 1 {
        round_trips("cross CPU", Some(0), Some(1), n);
    }
    one_way(2000);
    idle_recv();
}
