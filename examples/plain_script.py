"""A plain blocking script: the same code on every executor, switched with one line.

    python examples/plain_script.py [local|threads|processes|synchronous|dask]

It loads five chunks, squares each (fan-out), adds them up (fan-in) and checks the
answer. Nothing in it knows about asyncio, Dask futures or clusters.
"""

from __future__ import annotations

import sys

from executors import DaskExecutor, Executor, LocalDaskExecutor, LocalExecutor


def load(n: int) -> list[int]:
    return list(range(n * 1000, (n + 1) * 1000))


def square(numbers: list[int]) -> list[int]:
    return [x * x for x in numbers]


def total(parts: list[list[int]]) -> int:
    return sum(sum(part) for part in parts)


def make_executor(name: str) -> Executor:
    """The one line that changes: where the functions run."""
    if name == "local":
        return LocalExecutor()  # in this thread, at once: for debugging
    if name == "dask":  # a temporary distributed.LocalCluster, closed at the end
        return DaskExecutor(
            cluster_kwargs={
                "n_workers": 2,
                "threads_per_worker": 1,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            }
        )
    return LocalDaskExecutor(name)  # dask's threads, processes or synchronous scheduler


def main(name: str) -> None:
    executor = make_executor(name)
    with executor:
        chunks = [
            executor.submit(load, n, extra_context={"task_name": "load", "map_index": n})
            for n in range(5)
        ]
        squares = [executor.submit(square, chunk) for chunk in chunks]  # dependencies
        answer = executor.submit(total, squares)
        # Same structure back, results in place; a bar on a terminal with the extra.
        results = executor.wait({"answer": answer, "first": squares[0]}, progress=True)
    expected = sum(x * x for x in range(5000))
    print(f"{type(executor).__name__} ({name}): sum of squares below 5000 = {results['answer']:,}")
    print("correct" if results["answer"] == expected else f"WRONG: expected {expected:,}")


if __name__ == "__main__":  # needed by the processes scheduler and by LocalCluster
    main(sys.argv[1] if len(sys.argv) > 1 else "threads")
