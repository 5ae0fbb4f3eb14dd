"""Run a script's functions on a cluster that is already running.

    dask scheduler --host 127.0.0.1 --port 8786 &
    dask worker tcp://127.0.0.1:8786 --host 127.0.0.1 &
    python examples/existing_cluster.py tcp://127.0.0.1:8786

The executor connects (retrying with backoff for up to ``connect_timeout`` seconds),
runs the work, and leaves the cluster as it found it: only its own client goes away.
"""

from __future__ import annotations

import socket
import sys

from executors import DaskExecutor, WorkerInfo, signals


def where_am_i(n: int) -> tuple[int, str]:
    return n * n, socket.gethostname()


def on_added(sender: DaskExecutor, *, worker: WorkerInfo, **extra: object) -> None:
    print(f"worker {worker.name} at {worker.address} with {worker.nthreads} thread(s)")


def main(address: str) -> None:
    executor = DaskExecutor(address=address, connect_timeout=10)
    signals.worker_added.connect(on_added, sender=executor)  # the workers already there
    with executor:
        results = executor.wait([executor.submit(where_am_i, n) for n in range(8)])
    print(f"squares: {[square for square, _ in results]}")
    print(f"ran on: {sorted({host for _, host in results})}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/existing_cluster.py SCHEDULER_ADDRESS")
    main(sys.argv[1])
