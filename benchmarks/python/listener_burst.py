"""A burst of 1,000 concurrent authenticated clients against Python's
multiprocessing.connection.Listener: the same shape as the Rust test
`a_burst_of_1000_authenticated_clients_is_served_whole`
(multiprocess/tests/listener_burst.rs): 4 child processes of 250 threads
each connect at once with the authkey, send their id and expect id + 1.

Prints how many were served and how long it took (from starting the
children to the last reply), or stops after LIMIT seconds.
Usage: python3 listener_burst.py [runs] [backlog] [limit seconds]
(Python's Listener listens with backlog=1 unless told otherwise.)
"""

import multiprocessing as mp
import sys
import threading
import time
from multiprocessing.connection import Client, Listener, wait

KEY = b"the burst secret"
CHILDREN, EACH = 4, 250
LIMIT = 120.0


def many_clients(address, first, count):
    failed = []

    def one(i):
        try:
            c = Client(address, authkey=KEY)
            c.send(i)
            if c.recv() != i + 1:
                failed.append(i)
            c.close()
        except Exception:
            failed.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(first, first + count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.exit(min(len(failed), 100))


def run(backlog):
    listener = Listener(("127.0.0.1", 0), authkey=KEY, backlog=backlog)
    start = time.monotonic()
    procs = [
        mp.Process(target=many_clients, args=(listener.address, c * EACH, EACH))
        for c in range(CHILDREN)
    ]
    for p in procs:
        p.start()
    served = 0
    deadline = start + LIMIT
    while served < CHILDREN * EACH and time.monotonic() < deadline:
        if not wait([listener._listener._socket], timeout=deadline - time.monotonic()):
            break
        try:
            conn = listener.accept()
        except Exception:
            continue
        i = conn.recv()
        conn.send(i + 1)
        conn.close()
        served += 1
    took = time.monotonic() - start
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    listener.close()
    print(f"python (backlog {backlog}): served {served} of {CHILDREN * EACH} in {took:.3f} s", flush=True)


if __name__ == "__main__":
    mp.set_start_method("fork")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    backlog = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if len(sys.argv) > 3:
        LIMIT = float(sys.argv[3])
    for _ in range(runs):
        run(backlog)
