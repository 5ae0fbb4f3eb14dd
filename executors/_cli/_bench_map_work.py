"""The workloads of P9 (SPEC §11): ``map`` with ``chunksize="auto"`` against the best
fixed chunk size and against joblib's dask backend, on one cluster, in one run.

Each function here times one map over a cluster or pool that the caller made and keeps
for the whole bar, so that the variants take turns on the same workers.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import distributed

from .. import DaskExecutor, Executor, LocalDaskExecutor
from ._bench_work import CLUSTER, LOCAL_WORKERS, noop

__all__ = [
    "FUNCTIONS",
    "busy_100us",
    "first_result",
    "joblib_seconds",
    "map_seconds",
    "round_trip",
    "screen",
    "sides",
    "sleep_10ms",
]


def busy_100us(x: Any = None) -> Any:
    """100 µs of CPU an item."""
    end = time.perf_counter() + 100e-6
    while time.perf_counter() < end:
        pass
    return x


def sleep_10ms(x: Any = None) -> Any:
    """10 ms of waiting an item."""
    time.sleep(0.01)
    return x


# P9's functions, and how many items each maps over.
FUNCTIONS: dict[str, tuple[Callable[[Any], Any], int]] = {
    "no-op": (noop, 200_000),
    "100 µs busy loop": (busy_100us, 20_000),
    "10 ms sleep": (sleep_10ms, 400),
}


@contextlib.contextmanager
def sides(kind: str) -> Iterator[tuple[Executor, distributed.Client | None]]:
    """The executor under test, started, and for ``"dask"`` a sync client of the same
    LocalCluster 2x1 for joblib (made the default client: joblib's dask backend finds it
    so)."""
    if kind == "processes":
        with LocalDaskExecutor("processes", num_workers=LOCAL_WORKERS) as ex:
            ex.submit(noop).result()
            yield ex, None
        return
    with distributed.LocalCluster(**CLUSTER) as cluster:
        with DaskExecutor(address=cluster.scheduler_address) as ex:
            with distributed.Client(cluster) as client:
                ex.submit(noop).result()  # the workers are up
                client.submit(noop, pure=False).result()
                yield ex, client


def map_seconds(
    ex: Executor,
    fn: Callable[[Any], Any],
    items: int,
    chunksize: int | str,
    cap: float | None = None,
) -> float:
    """Seconds an item to map ``fn`` over ``range(items)`` and consume every result; with
    ``cap``, stop after that many seconds (a screening: the rate of the items done)."""
    started = time.perf_counter()
    results = ex.map(fn, range(items), chunksize=chunksize)
    done = 0
    for done, _ in enumerate(results, 1):
        if cap is not None and done % 100 == 0 and time.perf_counter() - started > cap:
            break
    results.close()
    return (time.perf_counter() - started) / done


def first_result(ex: Executor, fn: Callable[[Any], Any], items: int) -> float:
    """Seconds from the call of an auto map to its first result (the rest is consumed
    after, untimed)."""
    started = time.perf_counter()
    results = ex.map(fn, range(items))
    next(results)
    seconds = time.perf_counter() - started
    for _ in results:
        pass
    return seconds


def round_trip(ex: Executor, calls: int = 50) -> float:
    """Median seconds of one small task's submit and result (P2's round trip)."""
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        ex.submit(noop, i).result()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def joblib_seconds(fn: Callable[[Any], Any], items: int) -> float | None:
    """Seconds an item for joblib's dask backend, ``batch_size="auto"``, on the default
    client's cluster; None without joblib."""
    try:
        import joblib
    except ImportError:
        return None
    started = time.perf_counter()
    with joblib.parallel_config(backend="dask"):
        joblib.Parallel(batch_size="auto")(joblib.delayed(fn)(x) for x in range(items))
    return (time.perf_counter() - started) / items


def screen(
    ex: Executor, fn: Callable[[Any], Any], items: int, sizes: tuple[int, ...], cap: float
) -> dict[int, float]:
    """Seconds an item for each fixed chunk size, over at most 50 chunks and ``cap``
    seconds: one task an item on 200,000 no-ops would take minutes, and its rate is
    steady long before."""
    return {size: map_seconds(ex, fn, min(items, 50 * size), size, cap) for size in sizes}
