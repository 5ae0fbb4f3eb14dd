"""Adaptive scaling: the temporary cluster starts empty, grows while there is work and
shrinks back when it is idle; the worker events show it happen.

    python examples/adaptive.py
"""

from __future__ import annotations

import threading
import time

from executors import DaskExecutor, WorkerInfo, signals

workers: set[str] = set()
changed = threading.Condition()


def on_added(sender: DaskExecutor, *, worker: WorkerInfo, **extra: object) -> None:
    print(f"+ worker {worker.name}")
    with changed:
        workers.add(worker.address)
        changed.notify_all()


def on_removed(
    sender: DaskExecutor, *, worker: WorkerInfo, expected: bool, **extra: object
) -> None:
    print(f"- worker {worker.name} ({'retired' if expected else 'lost'})")
    with changed:
        workers.discard(worker.address)
        changed.notify_all()


def slow_square(n: int) -> int:
    time.sleep(0.5)
    return n * n


def main() -> None:
    executor = DaskExecutor(
        cluster_kwargs={
            "n_workers": 0,
            "threads_per_worker": 1,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        },
        # Checked every half second; a worker idle for two checks in a row is retired.
        adapt_kwargs={"minimum": 0, "maximum": 2, "interval": "500ms", "wait_count": 2},
    )
    signals.worker_added.connect(on_added, sender=executor)
    signals.worker_removed.connect(on_removed, sender=executor)
    with executor:
        print("submitting 12 tasks to an empty cluster")
        squares = executor.wait([executor.submit(slow_square, n) for n in range(12)])
        print(f"sum of squares: {sum(squares)}")
        print("idle now: waiting for the cluster to shrink")
        with changed:
            if not changed.wait_for(lambda: not workers, timeout=60):
                raise TimeoutError(f"still {len(workers)} workers after a minute idle")
    print("done")


if __name__ == "__main__":  # LocalCluster starts worker processes
    main()
