"""Python's multiprocessing on the same workloads as the Rust benchmarks.

    python3 bench.py WORKLOAD [--quick]

Prints one JSON line per measurement series, the same shape as the Rust
worker's: {"workload", "impl": "python", "unit", "samples"}. Standard library
only. Every blocking call has a timeout; the runner also kills this process
group if it overruns.
"""

import json
import multiprocessing as mp
import os
import resource
import sys
import time

TIMEOUT = 60.0


def emit(workload, unit, samples):
    print(json.dumps({"workload": workload, "impl": "python", "unit": unit, "samples": samples}),
          flush=True)


def pick(quick, q, full):
    return q if quick else full


def finish(p):
    p.join(TIMEOUT)
    if p.exitcode is None:
        p.kill()
        p.join(5)
        raise RuntimeError(f"child {p.name} hung and was killed")
    if p.exitcode != 0:
        raise RuntimeError(f"child {p.name} exited with {p.exitcode}")


def pin(cpu):
    os.sched_setaffinity(0, range(os.cpu_count()) if cpu is None else {cpu})


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ start

def noop():
    pass


def start_join(name, method, reps):
    ctx = mp.get_context(method)

    def once():
        t = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        finish(p)
        return (time.perf_counter() - t) * 1e3

    for _ in range(3):
        once()  # starts the fork server, warms caches
    emit(name, "ms", [once() for _ in range(reps)])


# ------------------------------------------------------------------ queue

def q_producer(q, ready, go, n, size):
    msg = 7 if size == 8 else b"\x07" * size
    ready.put(1)
    go.get(timeout=TIMEOUT)
    for _ in range(n):
        q.put(msg)


def q_consumer(q, ready, results):
    ready.put(1)
    count = 0
    get = q.get
    while get(timeout=TIMEOUT) is not None:
        count += 1
    results.put((count, time.monotonic_ns()))


def queue(name, producers, consumers, size, n, reps):
    big = size >= 1 << 20
    n = n // producers * producers
    samples = []
    for _ in range(reps):
        q, ready, go, results = mp.Queue(), mp.Queue(), mp.Queue(), mp.Queue()
        cs = [mp.Process(target=q_consumer, args=(q, ready, results)) for _ in range(consumers)]
        ps = [mp.Process(target=q_producer, args=(q, ready, go, n // producers, size))
              for _ in range(producers)]
        for p in cs + ps:
            p.start()
        for _ in range(producers + consumers):
            ready.get(timeout=TIMEOUT)
        t0 = time.monotonic_ns()
        for _ in ps:
            go.put(1)
        for p in ps:
            finish(p)
        for _ in cs:
            q.put(None)
        got, end = 0, 0
        for _ in cs:
            count, at = results.get(timeout=TIMEOUT)
            got += count
            end = max(end, at)
        for p in cs:
            finish(p)
        if got != n:
            raise RuntimeError(f"consumers got {got} of {n}")
        secs = (end - t0) / 1e9
        samples.append(n * size / secs / 1e6 if big else n / secs)
    emit(name, "MB/s" if big else "msg/s", samples)


# ------------------------------------------------------------------ pipe

def echo(conn, cpu):
    pin(cpu)
    while True:
        if not conn.poll(TIMEOUT):
            raise RuntimeError("echo: no message")
        v = conn.recv()
        if v is None:  # under fork the child holds the parent's end too: no EOF
            return
        conn.send(v)


def roundtrip(name, cpus, reps, batch):
    pin(cpus[0])
    mine, theirs = mp.Pipe()
    p = mp.Process(target=echo, args=(theirs, cpus[1]))
    p.start()
    theirs.close()

    def rounds(n):
        for i in range(n):
            mine.send(i)
            if not mine.poll(TIMEOUT) or mine.recv() != i:
                raise RuntimeError("echo out of order or hung")

    rounds(1000)
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        rounds(batch)
        samples.append((time.perf_counter() - t) * 1e6 / batch)
    mine.send(None)
    mine.close()
    finish(p)
    emit(name, "µs", samples)


def bytes_sender(conn, n):
    buf = b"\x07" * (1 << 20)
    for _ in range(n + 1):
        conn.send_bytes(buf)


def oneway(name, n, reps):
    samples = []
    for _ in range(reps):
        mine, theirs = mp.Pipe()
        p = mp.Process(target=bytes_sender, args=(theirs, n))
        p.start()
        theirs.close()
        mine.poll(TIMEOUT)
        mine.recv_bytes()
        t = time.perf_counter()
        for _ in range(n):
            if not mine.poll(TIMEOUT):
                raise RuntimeError("sender hung")
            if len(mine.recv_bytes()) != 1 << 20:
                raise RuntimeError("short message")
        samples.append(n * (1 << 20) / (time.perf_counter() - t) / 1e6)
        finish(p)
    emit(name, "MB/s", samples)


# ------------------------------------------------------------------ lock

def lock_uncontended(name, n, reps):
    lock = mp.Lock()
    acq, rel = lock.acquire, lock.release
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            acq()
            rel()
        samples.append((time.perf_counter() - t) * 1e9 / n)
    emit(name, "ns", samples)


def event_ponger(ping, pong, n):
    for _ in range(n):
        if not ping.wait(TIMEOUT):
            return
        ping.clear()
        pong.set()


def event_pingpong(name, reps, batch):
    ping, pong = mp.Event(), mp.Event()
    warmup = 200
    p = mp.Process(target=event_ponger, args=(ping, pong, warmup + reps * batch))
    p.start()

    def rounds(n):
        for _ in range(n):
            ping.set()
            if not pong.wait(TIMEOUT):
                raise RuntimeError("ponger did not answer")
            pong.clear()

    rounds(warmup)
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        rounds(batch)
        samples.append((time.perf_counter() - t) * 1e6 / batch)
    p.join(TIMEOUT)
    emit(name, "µs", samples)


def counter_worker(lock, value, ready, go, n, done):
    ready.put(1)
    go.get(timeout=TIMEOUT)
    for _ in range(n):
        with lock:
            value.value += 1
    done.put(time.monotonic_ns())


def lock_counter(name, n, reps):
    samples = []
    for _ in range(reps):
        lock, value = mp.Lock(), mp.Value("i", 0, lock=False)
        ready, go, done = mp.Queue(), mp.Queue(), mp.Queue()
        ps = [mp.Process(target=counter_worker, args=(lock, value, ready, go, n, done))
              for _ in range(2)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.get(timeout=TIMEOUT)
        t0 = time.monotonic_ns()
        for _ in ps:
            go.put(1)
        end = max(done.get(timeout=TIMEOUT) for _ in ps)
        for p in ps:
            finish(p)
        if value.value != 2 * n:
            raise RuntimeError(f"counter is {value.value}, expected {2 * n}")
        samples.append(2 * n / ((end - t0) / 1e9))
    emit(name, "ops/s", samples)


# ------------------------------------------------------------------ manager

def manager_dict_setget(name, reps, batch):
    with mp.Manager() as m:
        d = m.dict()
        for i in range(200):
            d[i] = i
            d[i]
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            for i in range(batch):
                d[i] = i
                if d[i] != i:
                    raise RuntimeError("dict lost a value")
            samples.append((time.perf_counter() - t) * 1e6 / batch)
    emit(name, "µs", samples)


def manager_updater(d, lock, ready, go, n, done):
    ready.put(1)
    go.get(timeout=TIMEOUT)
    for _ in range(n):
        with lock:
            d["n"] = d["n"] + 1
    done.put(time.monotonic_ns())


def manager_shared_updates(name, n, reps):
    samples = []
    with mp.Manager() as m:
        for _ in range(reps):
            d, lock = m.dict(), m.Lock()
            d["n"] = 0
            ready, go, done = mp.Queue(), mp.Queue(), mp.Queue()
            ps = [mp.Process(target=manager_updater, args=(d, lock, ready, go, n, done))
                  for _ in range(2)]
            for p in ps:
                p.start()
            for _ in ps:
                ready.get(timeout=TIMEOUT)
            t0 = time.monotonic_ns()
            for _ in ps:
                go.put(1)
            end = max(done.get(timeout=TIMEOUT * 10) for _ in ps)
            for p in ps:
                finish(p)
            if d["n"] != 2 * n:
                raise RuntimeError(f"counter is {d['n']}, expected {2 * n}")
            samples.append(2 * n / ((end - t0) / 1e9))
    emit(name, "ops/s", samples)


# ------------------------------------------------------------------ idle

def idle_queue(q, ready, results):
    ready.put(1)
    c0, t0 = cpu_self(), time.monotonic()
    q.get(timeout=TIMEOUT)
    results.put((cpu_self() - c0, time.monotonic() - t0))


def idle_recv(conn):
    conn.send((0, 0))
    c0, t0 = cpu_self(), time.monotonic()
    if not conn.poll(TIMEOUT):
        raise RuntimeError("no message")
    conn.recv()
    conn.send((cpu_self() - c0, time.monotonic() - t0))


def idle(name, connection, reps):
    samples = []
    for _ in range(reps):
        if connection:
            mine, theirs = mp.Pipe()
            p = mp.Process(target=idle_recv, args=(theirs,))
            p.start()
            mine.poll(TIMEOUT)
            mine.recv()
            time.sleep(1)
            mine.send(1)
            if not mine.poll(TIMEOUT):
                raise RuntimeError("idle child hung")
            cpu, wall = mine.recv()
        else:
            q, ready, results = mp.Queue(), mp.Queue(), mp.Queue()
            p = mp.Process(target=idle_queue, args=(q, ready, results))
            p.start()
            ready.get(timeout=TIMEOUT)
            time.sleep(1)
            q.put(1)
            cpu, wall = results.get(timeout=TIMEOUT)
        finish(p)
        samples.append(cpu / wall * 100)
    emit(name, "% CPU", samples)


# ------------------------------------------------------------------ pool

def square(x):
    return x * x


def warm_pool():
    pool = mp.Pool(2)
    pool.map(square, range(1000))
    pool.map(square, range(1000), chunksize=1)
    return pool


def pool_map_chunksize1(name, n, reps):
    samples = []
    with warm_pool() as pool:
        for _ in range(reps):
            t = time.perf_counter()
            r = pool.map(square, range(n), chunksize=1)
            samples.append(n / (time.perf_counter() - t))
            if len(r) != n or r[-1] != (n - 1) ** 2:
                raise RuntimeError("wrong map result")
    emit(name, "tasks/s", samples)


def pool_map_100k_ints(name, reps):
    n = 100_000
    samples = []
    with warm_pool() as pool:
        for _ in range(reps):
            t = time.perf_counter()
            r = pool.map(square, range(n))
            samples.append(n / (time.perf_counter() - t))
            if len(r) != n or r[-1] != (n - 1) ** 2:
                raise RuntimeError("wrong map result")
    emit(name, "items/s", samples)


def pool_apply_async_roundtrip(name, reps, batch):
    with warm_pool() as pool:
        def rounds(n):
            for i in range(n):
                if pool.apply_async(square, (i,)).get(timeout=TIMEOUT) != i * i:
                    raise RuntimeError("wrong apply_async result")

        rounds(1000)
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            rounds(batch)
            samples.append((time.perf_counter() - t) * 1e6 / batch)
    emit(name, "µs", samples)


def pool_maxtasksperchild1(name, reps):
    n = 200
    samples = []
    with mp.Pool(2, maxtasksperchild=1) as pool:
        pool.map(square, range(20), chunksize=1)
        for _ in range(reps):
            t = time.perf_counter()
            r = pool.map(square, range(n), chunksize=1)
            samples.append(n / (time.perf_counter() - t))
            if len(r) != n or r[-1] != (n - 1) ** 2:
                raise RuntimeError("wrong map result")
    emit(name, "tasks/s", samples)


def main():
    name = sys.argv[1]
    quick = "--quick" in sys.argv[2:]
    table = {
        "start_join/fork": lambda: start_join(name, "fork", pick(quick, 30, 200)),
        "start_join/forkserver": lambda: start_join(name, "forkserver", pick(quick, 20, 100)),
        "start_join/spawn": lambda: start_join(name, "spawn", pick(quick, 8, 30)),
        "queue/u64_1p1c": lambda: queue(name, 1, 1, 8, pick(quick, 50_000, 200_000), pick(quick, 3, 5)),
        "queue/u64_2p2c": lambda: queue(name, 2, 2, 8, pick(quick, 50_000, 200_000), pick(quick, 3, 5)),
        "queue/1KiB_1p1c": lambda: queue(name, 1, 1, 1024, pick(quick, 50_000, 200_000),
                                         pick(quick, 3, 5)),
        "queue/1MiB_1p1c": lambda: queue(name, 1, 1, 1 << 20, pick(quick, 100, 500), pick(quick, 3, 5)),
        "pipe/roundtrip_small": lambda: roundtrip(name, (None, None), pick(quick, 5, 10),
                                                  pick(quick, 1000, 5000)),
        "pipe/roundtrip_small_same_cpu": lambda: roundtrip(name, (0, 0), pick(quick, 5, 10),
                                                           pick(quick, 1000, 5000)),
        "pipe/roundtrip_small_cross_cpu": lambda: roundtrip(name, (0, 1), pick(quick, 5, 10),
                                                            pick(quick, 1000, 5000)),
        "pipe/oneway_1MiB": lambda: oneway(name, pick(quick, 200, 1000), pick(quick, 3, 5)),
        "lock/uncontended": lambda: lock_uncontended(name, pick(quick, 300_000, 1_000_000),
                                                     pick(quick, 3, 5)),
        "lock/counter_2proc": lambda: lock_counter(name, pick(quick, 50_000, 200_000), pick(quick, 3, 5)),
        "event/pingpong": lambda: event_pingpong(name, pick(quick, 3, 5), pick(quick, 1000, 5000)),
        "idle/consumer_cpu": lambda: idle(name, False, pick(quick, 1, 3)),
        "idle/recv_cpu": lambda: idle(name, True, pick(quick, 1, 3)),
        "pool/map_chunksize1": lambda: pool_map_chunksize1(name, pick(quick, 20_000, 100_000),
                                                           pick(quick, 3, 5)),
        "pool/map_100k_ints": lambda: pool_map_100k_ints(name, pick(quick, 5, 20)),
        "pool/apply_async_roundtrip": lambda: pool_apply_async_roundtrip(name, pick(quick, 5, 10),
                                                                         pick(quick, 2000, 10_000)),
        "manager/dict_setget": lambda: manager_dict_setget(name, pick(quick, 3, 5), pick(quick, 1000, 5000)),
        "manager/shared_updates": lambda: manager_shared_updates(name, pick(quick, 2000, 10_000), pick(quick, 2, 3)),
        "pool/maxtasksperchild1_200": lambda: pool_maxtasksperchild1(name, pick(quick, 2, 5)),
    }
    if name not in table:
        sys.exit(f"unknown workload {name}")
    table[name]()


if __name__ == "__main__":
    main()
