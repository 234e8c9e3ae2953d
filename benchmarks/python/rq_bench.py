"""RQ 3.0 on the remote/rq_* workloads, for the benchmark runner.

    python3 rq_bench.py WORKLOAD [--quick]     # MPBENCH_REDIS_URL=redis://...
    python3 rq_bench.py --ensure               # prints "ok rq X" or "RQ not available: why"

WORKLOAD is remote/rq_1w or remote/rq_2w: N SimpleWorker processes (started
and registered before the clock) serve one queue; the clock runs from the
first enqueue (enqueue_many of all jobs of rq_tasks.square) until every
job's return value has been fetched. Prints one JSON line like bench.py's:
{"workload", "impl": "python", "unit": "tasks/s", "samples"}.

--ensure imports rq and, if that fails, tries one
`pip install --user rq==3.0.0` (quiet, with a time limit).
"""

import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
URL_ENV = "MPBENCH_REDIS_URL"
PIN = "rq==3.0.0"
TIMEOUT = 60.0


def emit(workload, unit, samples):
    print(json.dumps({"workload": workload, "impl": "python", "unit": unit, "samples": samples}),
          flush=True)


def pick(quick, q, full):
    return q if quick else full


def rq_version():
    """rq's version in a fresh interpreter (a user site created by pip
    after this one started is not on this one's path), or why not."""
    p = subprocess.run([sys.executable, "-c", "import rq; print(rq.__version__)"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode == 0:
        return p.stdout.strip(), None
    last = [l for l in p.stderr.splitlines() if l.strip()]
    return None, last[-1] if last else f"exit status {p.returncode}"


def ensure(quick):
    version, why = rq_version()
    if version is None:
        limit = 45 if quick else 100
        base = [sys.executable, "-m", "pip", "install", "--user", "--quiet",
                "--disable-pip-version-check", PIN]
        try:
            p = subprocess.run(base, capture_output=True, text=True, timeout=limit)
            if p.returncode != 0 and "externally-managed" in p.stderr:
                p = subprocess.run(base + ["--break-system-packages"], capture_output=True,
                                   text=True, timeout=limit)
            if p.returncode != 0:
                last = [l for l in p.stderr.splitlines() if l.strip()]
                why = f"{why}; pip install {PIN} failed: {last[-1] if last else p.returncode}"
            else:
                version, why = rq_version()
        except subprocess.TimeoutExpired:
            why = f"{why}; pip install {PIN} took over {limit} s"
    if version is None:
        print(f"RQ not available: {why}", flush=True)
    elif version != PIN.split("==")[1]:
        print(f"ok rq {version} (not the pinned {PIN})", flush=True)
    else:
        print(f"ok rq {version}", flush=True)


def worker(url, queue_name):
    from redis import Redis
    from rq import Queue, SimpleWorker

    conn = Redis.from_url(url)
    w = SimpleWorker([Queue(queue_name, connection=conn)], connection=conn)
    w.work(logging_level="WARNING")


def stop(procs):
    """SIGTERM (RQ's warm shutdown), then SIGKILL: an idle worker blocked
    in its dequeue call may not see the former for seconds."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 0.5
    for p in procs:
        try:
            p.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(name, workers, n, reps):
    from redis import Redis
    from rq import Queue, Worker
    from rq.job import Job

    sys.path.insert(0, HERE)
    from rq_tasks import square

    url = os.environ[URL_ENV]
    conn = Redis.from_url(url)
    qname = f"mpbench-{os.getpid()}"
    q = Queue(qname, connection=conn)
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", url, qname],
                              cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(Worker.all(connection=conn, queue=q)) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} RQ workers did not come up")
            time.sleep(0.02)
        registry = q.finished_job_registry

        def once(k):
            before = registry.get_job_count()
            t = time.perf_counter()
            jobs = q.enqueue_many([Queue.prepare_data(square, (i,)) for i in range(k)])
            deadline = time.monotonic() + TIMEOUT
            while registry.get_job_count() < before + k:
                if time.monotonic() > deadline:
                    raise RuntimeError("RQ jobs did not finish in time")
                time.sleep(0.002)
            done = Job.fetch_many([j.id for j in jobs], connection=conn)
            values = [j.return_value() for j in done]
            elapsed = time.perf_counter() - t
            if values != [i * i for i in range(k)]:
                raise RuntimeError("wrong RQ results")
            return k / elapsed

        once(20)  # warm-up
        samples = [once(n) for _ in range(reps)]
    finally:
        stop(procs)
    emit(name, "tasks/s", samples)


def main():
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    quick = "--quick" in sys.argv[2:]
    if sys.argv[1] == "--ensure":
        ensure(quick)
        return
    name = sys.argv[1]
    table = {
        "remote/rq_1w": lambda: run(name, 1, pick(quick, 200, 2000), pick(quick, 1, 3)),
        "remote/rq_2w": lambda: run(name, 2, pick(quick, 200, 2000), pick(quick, 1, 3)),
    }
    if name not in table:
        sys.exit(f"unknown workload {name}")
    table[name]()


if __name__ == "__main__":
    main()
