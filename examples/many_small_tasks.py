"""Many small tasks: ``map`` in chunks, and an endless input in bounded memory.

    python examples/many_small_tasks.py

A function that takes microseconds costs the Dask scheduler milliseconds per task.
``map`` runs many items as one task and yields their results one by one, in order; it
learns how many from the run times it measures, so no chunk size need be chosen. With
``buffersize``, only a few chunks are in flight at a time and the input is read as the
results are consumed: here, an endless stream of numbers.
"""

from __future__ import annotations

import itertools
import time

from executors import DaskExecutor


def score(n: int) -> int:
    """A tiny function: a hash of ``n`` into 0..999."""
    return (n * 2654435761) % 1000


if __name__ == "__main__":
    cluster = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": False,
        "host": "tcp://127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    with DaskExecutor(cluster_kwargs=cluster) as ex:
        started = time.perf_counter()
        total = sum(ex.map(score, range(100_000)))
        elapsed = time.perf_counter() - started
        print(f"100,000 scores: total {total:,} ({elapsed:.1f} s)")

        # An endless input: read only as far as the results are consumed.
        stream = ex.map(score, itertools.count(), buffersize=4)
        for n, value in enumerate(stream):
            if n >= 50_000 and value == 999:
                break
        stream.close()  # the chunks still in flight are cancelled
        print(f"the first 999 after item 50,000 of an endless stream: item {n:,}")
