//! The OS floors: what the bare kernel and hardware do for each workload,
//! with no library in the way. Children are forked (the worker process is
//! single-threaded), so shared mappings are simply inherited.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::sys::{self, Shm};

/// How long a floor child may take before it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Pins the calling process to `cpu`, or lets it run anywhere for `None`.
pub(crate) fn pin(cpu: Option<usize>) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    match cpu {
        Some(c) => set.set(c),
        None => (0..multiprocess::cpu_count()).for_each(|c| set.set(c)),
    }
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process.
pub(crate) fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn join(pid: i32) -> Result<()> {
    match sys::wait_child(pid, CHILD_TIMEOUT)? {
        0 => Ok(()),
        code => Err(format!("floor child exited with {code}").into()),
    }
}

/// Start floor for Fork and ForkServer: `fork` + `_exit` + `waitpid`, in ms.
pub(crate) fn fork_exit_wait(reps: usize) -> Result<Vec<f64>> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            sys::fork_exit_wait()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// Env var that makes the benchmark binary exit first thing in `main`.
pub(crate) const EXIT_AT_ONCE: &str = "MPBENCH_EXIT_AT_ONCE";

/// Start floor for Spawn: re-execute this binary, which exits at once, in ms.
pub(crate) fn reexec(reps: usize) -> Result<Vec<f64>> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            let status = std::process::Command::new("/proc/self/exe")
                .env(EXIT_AT_ONCE, "1")
                .status()?;
            if !status.success() {
                return Err(format!("re-exec floor: {status}").into());
            }
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// Which ping-pong floor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PingPong {
    /// 8 bytes each way over a `socketpair(AF_UNIX, SOCK_STREAM)`.
    Socketpair,
    /// A shared word flipped with `FUTEX_WAKE`, waited on with `FUTEX_WAIT`.
    Futex,
    /// A shared word flipped and spun on (yielding after 1000 spins, which
    /// only matters when both ends share a CPU).
    Spin,
}

impl PingPong {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PingPong::Socketpair => "socketpair ping-pong",
            PingPong::Futex => "futex ping-pong",
            PingPong::Spin => "spin ping-pong",
        }
    }
}

/// Round-trip time in µs between this process (on `cpus.0`) and a forked
/// child (on `cpus.1`): `reps` samples, each the mean of `batch` round trips.
pub(crate) fn ping_pong(
    kind: PingPong,
    cpus: (Option<usize>, Option<usize>),
    reps: usize,
    batch: usize,
) -> Result<Vec<f64>> {
    pin(cpus.0)?;
    let warmup = batch.min(1000);
    let total = warmup + reps * batch;
    let mut samples = Vec::with_capacity(reps);
    match kind {
        PingPong::Socketpair => {
            let (mut a, mut b) = UnixStream::pair()?;
            let pid = sys::fork_run(|| {
                pin(cpus.1).unwrap();
                let mut buf = [0u8; 8];
                for _ in 0..total {
                    b.read_exact(&mut buf).unwrap();
                    b.write_all(&buf).unwrap();
                }
            })?;
            drop(b);
            let mut buf = [0u8; 8];
            let mut round = |n: usize| -> Result<()> {
                for _ in 0..n {
                    a.write_all(&buf)?;
                    a.read_exact(&mut buf)?;
                }
                Ok(())
            };
            round(warmup)?;
            for _ in 0..reps {
                let t = Instant::now();
                round(batch)?;
                samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
            }
            join(pid)?;
        }
        PingPong::Futex | PingPong::Spin => {
            // Word 0: 0 = the parent's turn, 1 = the child's.
            let shm = Shm::create(4096)?;
            let spin = matches!(kind, PingPong::Spin);
            let pid = sys::fork_run(|| {
                pin(cpus.1).unwrap();
                let turn = shm.u32(0);
                for _ in 0..total {
                    wait_while(turn, 0, spin);
                    turn.store(0, Ordering::Release);
                    if !spin {
                        futex::wake(turn, futex::Flags::empty(), 1).unwrap();
                    }
                }
            })?;
            let turn = shm.u32(0);
            let round = |n: usize| {
                for _ in 0..n {
                    turn.store(1, Ordering::Release);
                    if !spin {
                        futex::wake(turn, futex::Flags::empty(), 1).unwrap();
                    }
                    wait_while(turn, 1, spin);
                }
            };
            round(warmup);
            for _ in 0..reps {
                let t = Instant::now();
                round(batch);
                samples.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
            }
            join(pid)?;
        }
    }
    pin(None)?;
    Ok(samples)
}

/// Waits while `word == value`, spinning or sleeping in the kernel.
fn wait_while(word: &AtomicU32, value: u32, spin: bool) {
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) == value {
        if spin {
            spins += 1;
            if spins.is_multiple_of(1000) {
                rustix::thread::sched_yield();
            }
            std::hint::spin_loop();
        } else {
            // EAGAIN (the word changed) and EINTR just loop.
            let _ = futex::wait(word, futex::Flags::empty(), value, None);
        }
    }
}

/// Messages per second through a single-producer single-consumer ring of
/// fixed-size slots in shared memory, both ends spinning: the floor for
/// small-message throughput between two processes. `reps` samples of `n`
/// messages of `size` bytes each.
pub(crate) fn spsc_ring(size: usize, n: usize, reps: usize) -> Result<Vec<f64>> {
    const SLOTS: usize = 1024;
    let data = 4 * 128; // words: 0 head, 1 tail
    // One discarded run first: it faults the pages in and wakes both CPUs.
    (0..=reps)
        .map(|_| {
            let shm = Shm::create(data + SLOTS * size)?;
            let pid = sys::fork_run(|| {
                let (head, tail) = (shm.u64(0), shm.u64(1));
                let msg = vec![7u8; size];
                for i in 0..=n as u64 {
                    while i - head.load(Ordering::Acquire) == SLOTS as u64 {
                        std::hint::spin_loop();
                    }
                    shm.write(data + (i as usize % SLOTS) * size, &msg);
                    tail.store(i + 1, Ordering::Release);
                }
            })?;
            let (head, tail) = (shm.u64(0), shm.u64(1));
            let mut msg = vec![0u8; size];
            let mut start = Instant::now();
            for i in 0..=n as u64 {
                while tail.load(Ordering::Acquire) == i {
                    std::hint::spin_loop();
                }
                shm.read(data + (i as usize % SLOTS) * size, &mut msg);
                head.store(i + 1, Ordering::Release);
                if i == 0 {
                    start = Instant::now(); // the first message is the warm-up
                }
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            join(pid)?;
            Ok(rate)
        })
        .skip(1)
        .collect()
}

/// Copy bandwidth in MB/s (10^6 bytes) of 1 MiB buffers in one process:
/// `reps` samples of `n` copies.
pub(crate) fn memcpy_1mib(n: usize, reps: usize) -> Vec<f64> {
    let src = vec![1u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst)[i % 7] = 1;
            }
            (n << 20) as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect()
}

/// A bare futex lock word: 0 free, 1 locked, 2 locked with waiters
/// (Drepper, "Futexes Are Tricky", mutex 3). Acquire is one CAS, release one
/// swap.
pub(crate) fn futex_lock(word: &AtomicU32) {
    if word
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    while word.swap(2, Ordering::Acquire) != 0 {
        let _ = futex::wait(word, futex::Flags::empty(), 2, None);
    }
}

pub(crate) fn futex_unlock(word: &AtomicU32) {
    if word.swap(0, Ordering::Release) == 2 {
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }
}

/// ns per uncontended acquire+release of [`futex_lock`].
pub(crate) fn lock_uncontended(n: usize, reps: usize) -> Result<Vec<f64>> {
    let shm = Shm::create(4096)?;
    let word = std::hint::black_box(shm.u32(0));
    Ok((0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                futex_lock(word);
                futex_unlock(std::hint::black_box(word));
            }
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .collect())
}

/// Increments per second of a shared counter under [`futex_lock`] by two
/// forked processes, `n` increments each.
pub(crate) fn lock_counter(n: usize, reps: usize) -> Result<Vec<f64>> {
    (0..reps)
        .map(|_| {
            let shm = Shm::create(4096)?;
            let go = shm.u32(2);
            let work = || {
                while go.load(Ordering::Acquire) == 0 {
                    std::hint::spin_loop();
                }
                for _ in 0..n {
                    futex_lock(shm.u32(0));
                    let c = shm.u64(1);
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    futex_unlock(shm.u32(0));
                }
            };
            let a = sys::fork_run(work)?;
            let b = sys::fork_run(work)?;
            let t = Instant::now();
            go.store(1, Ordering::Release);
            join(a)?;
            join(b)?;
            let elapsed = t.elapsed().as_secs_f64();
            let count = shm.u64(1).load(Ordering::Relaxed);
            if count != 2 * n as u64 {
                return Err(format!("futex counter lost updates: {count}").into());
            }
            Ok(2.0 * n as f64 / elapsed)
        })
        .collect()
}
