"""Subscribe to Dask worker events while a cluster grows and shrinks: print them, log
them, and raise a (tiny) alert when a worker goes away without being retired.

    python examples/worker_events.py

The executor follows the scheduler's event log, so this works on any cluster, adaptive
ones included, and any number of executors may watch the same one. Receivers run on the
executor's dispatcher thread, one event at a time, in order.
"""

from __future__ import annotations

import logging
import threading

import distributed

from executors import DaskExecutor, WorkerInfo, signals

log = logging.getLogger("worker-events")
workers: set[str] = set()
changed = threading.Condition()
alerts: list[str] = []


def alert(text: str) -> None:
    """Where a real script would page someone, post to a chat, or scale something."""
    alerts.append(text)
    print(f"ALERT: {text}")


def on_added(sender: DaskExecutor, *, worker: WorkerInfo, **extra: object) -> None:
    print(
        f"+ worker {worker.name} at {worker.address}: {worker.nthreads} thread(s), "
        f"memory limit {worker.memory_limit} bytes"
    )
    log.info("worker added: %s at %s", worker.name, worker.address)
    with changed:
        workers.add(worker.address)
        changed.notify_all()


def on_removed(
    sender: DaskExecutor, *, worker: WorkerInfo, expected: bool, **extra: object
) -> None:
    print(
        f"- worker {worker.name} at {worker.address} ({'expected' if expected else 'unexpected'})"
    )
    log.info("worker removed: %s at %s (expected=%s)", worker.name, worker.address, expected)
    if not expected:
        alert(f"worker {worker.name} at {worker.address} left without being retired")
    with changed:
        workers.discard(worker.address)
        changed.notify_all()


def wait_for(count: int) -> None:
    with changed:
        if not changed.wait_for(lambda: len(workers) == count, timeout=60):
            raise TimeoutError(f"expected {count} workers, the events say {len(workers)}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        executor = DaskExecutor(cluster=cluster)
        # Receivers are held weakly by blinker: these are module-level functions.
        signals.worker_added.connect(on_added, sender=executor)
        signals.worker_removed.connect(on_removed, sender=executor)
        with executor:
            wait_for(1)  # workers present at start are announced too
            print("scaling up to 3")
            cluster.scale(3)
            wait_for(3)
            # LocalCluster.scale closes workers without retiring them first, so the
            # scheduler calls their removal unexpected; adaptive scaling retires them.
            print("scaling down to 1")
            cluster.scale(1)
            wait_for(1)
        print(f"done: {len(alerts)} alert(s); the cluster is yours, so it keeps its last worker")


if __name__ == "__main__":  # LocalCluster starts worker processes
    main()
