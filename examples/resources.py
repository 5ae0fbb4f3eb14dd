"""Ask for worker resources with tags: a task tagged ``dask-resource:GPU=1`` runs only
where a GPU is free, however many threads the workers have.

    python examples/resources.py

Two workers with two threads each and one "GPU" each: plain tasks run four at a time,
GPU tasks at most two at a time (one per worker).
"""

from __future__ import annotations

import time

from executors import DaskExecutor


def busy(seconds: float) -> tuple[float, float]:
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans that overlap."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def main() -> None:
    executor = DaskExecutor(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 2,
            "resources": {"GPU": 1},  # each worker declares one
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
    )
    with executor:
        gpu = {"tags": ["dask-resource:GPU=1"], "task_name": "on-gpu"}
        plain = executor.wait([executor.submit(busy, 0.5) for _ in range(8)])
        on_gpu = executor.wait([executor.submit(busy, 0.5, extra_context=gpu) for _ in range(8)])
    print(f"plain tasks at once: {most_at_once(plain)}")  # 4: every thread
    print(f"GPU tasks at once: {most_at_once(on_gpu)}")  # 2: one per worker's GPU


if __name__ == "__main__":  # LocalCluster starts worker processes
    main()
