"""The workloads of the benchmarks (SPEC §11): each executor and the peer it is measured
against, doing the same work. ``_bench.py`` runs them interleaved and judges the ratios.

Every function here sets up what it measures, times only the work the bar names, and
tears everything down again, so that samples can be taken in any order.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import json
import logging
import resource
import statistics
import sys
import time
from typing import Any

import dask
import dask.local
import dask.multiprocessing
import dask.threaded
import distributed

from .. import DaskExecutor, Future, LocalDaskExecutor, LocalExecutor

# The cluster of P1, P2, P5 and P6, for the executor and its peer alike: a LocalCluster
# with 2 worker processes of 1 thread each, on loopback.
CLUSTER: dict[str, Any] = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
    "silence_logs": logging.CRITICAL,  # in the worker processes; quiet_dask() here
}
# Threads or processes of LocalDaskExecutor and of dask's own local schedulers (P4).
LOCAL_WORKERS = 2
# How long P5 waits for released futures to leave the executor's and the client's tables.
SETTLE_SECONDS = 10.0


def quiet_dask() -> None:
    """Keep distributed's INFO lines out of the benchmark's output, in this process.

    ``silence_logs`` alone is not enough here: a cluster restores the level it found when
    it closes, and P2 closes one cluster while another is still closing."""
    logging.getLogger("distributed").setLevel(logging.ERROR)


def noop(x: Any = None) -> Any:
    """The task of every bar: as little work as a task can be."""
    return x


def _raw_cluster() -> tuple[distributed.LocalCluster, distributed.Client]:
    cluster = distributed.LocalCluster(**CLUSTER)
    return cluster, distributed.Client(cluster, set_as_default=False)


# -- P1: throughput on a temporary LocalCluster -------------------------------------------


def p1_executor(tasks: int) -> float:
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex:
        started = time.perf_counter()
        ex.wait([ex.submit(noop, i) for i in range(tasks)])
        return time.perf_counter() - started


def p1_client_submit(tasks: int) -> float:
    cluster, client = _raw_cluster()
    with cluster, client:
        started = time.perf_counter()
        client.gather([client.submit(noop, i, pure=False) for i in range(tasks)])
        return time.perf_counter() - started


def p1_client_map(tasks: int) -> float:
    cluster, client = _raw_cluster()
    with cluster, client:
        started = time.perf_counter()
        client.gather(client.map(noop, range(tasks), pure=False))
        return time.perf_counter() - started


# -- P2: latency of one small task --------------------------------------------------------


def p2_round_trips(calls: int) -> tuple[list[float], list[float]]:
    """Seconds per round trip, executor and raw client alternating call by call (each
    on its own cluster, both idle while the other works)."""
    ours: list[float] = []
    raw: list[float] = []
    cluster, client = _raw_cluster()
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex, cluster, client:
        for i in range(3):  # warm both up: imports, first connections to the workers
            ex.submit(noop, i).result()
            client.submit(noop, i, pure=False).result()
        for i in range(calls):
            order = (ours, raw) if i % 2 == 0 else (raw, ours)
            for samples in order:
                started = time.perf_counter()
                if samples is ours:
                    ex.submit(noop, i).result()
                else:
                    client.submit(noop, i, pure=False).result()
                samples.append(time.perf_counter() - started)
    return ours, raw


# -- P3: LocalExecutor against a direct call ----------------------------------------------


def p3_direct(calls: int) -> float:
    """Seconds per direct call of the no-op, loop included."""
    call = noop
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def p3_executor(calls: int) -> float:
    """Seconds per ``submit(noop).result()`` on a running LocalExecutor, loop included."""
    with LocalExecutor() as ex:
        submit = ex.submit
        started = time.perf_counter()
        for _ in range(calls):
            submit(noop).result()
        return (time.perf_counter() - started) / calls


# -- P4: LocalDaskExecutor against dask's own local scheduler -----------------------------


def p4_executor(scheduler: str, tasks: int) -> float:
    with LocalDaskExecutor(scheduler, num_workers=LOCAL_WORKERS) as ex:
        started = time.perf_counter()
        ex.wait([ex.submit(noop, i) for i in range(tasks)])
        return time.perf_counter() - started


def p4_flat_graph(scheduler: str, tasks: int) -> float:
    """dask's local ``get`` on a hand-built flat dict graph of the same tasks; the
    processes scheduler gets a pool made beforehand and kept (as the executor does)."""
    pool: concurrent.futures.Executor | None = None
    if scheduler == "processes":
        pool = concurrent.futures.ProcessPoolExecutor(
            LOCAL_WORKERS,
            mp_context=dask.multiprocessing.get_context(),  # type: ignore[no-untyped-call]
        )
        pool.submit(noop).result()  # the workers are up, as after the executor's start
    try:
        started = time.perf_counter()
        graph = {f"noop-{i}": (noop, i) for i in range(tasks)}
        keys = list(graph)
        if scheduler == "threads":
            dask.threaded.get(graph, keys, num_workers=LOCAL_WORKERS)
        elif scheduler == "processes":
            dask.multiprocessing.get(graph, keys, pool=pool)
        else:
            dask.local.get_sync(graph, keys)
        return time.perf_counter() - started
    finally:
        if pool is not None:
            pool.shutdown()


def p4_delayed(scheduler: str, tasks: int) -> float:
    """For reference: ``dask.compute`` over one ``dask.delayed`` per task."""
    started = time.perf_counter()
    dask.compute(  # type: ignore[attr-defined,no-untyped-call]
        *[dask.delayed(noop)(i) for i in range(tasks)],  # type: ignore[attr-defined]
        scheduler=scheduler,
        num_workers=LOCAL_WORKERS,
    )
    return time.perf_counter() - started


# -- P5: driver memory (run in a process of its own: peak RSS is per process) -------------


def _peak_rss() -> int:
    """The peak resident set of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss() -> int:
    """The resident set of this process now, in bytes (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return _peak_rss()


def _count(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


def p5_memory(variant: str, batches: int, batch: int) -> dict[str, Any]:
    """Submit ``batches`` times ``batch`` no-op tasks, waiting for each batch and dropping its
    Futures; return the peak RSS, the RSS before the first task, and (for the executor)
    what its tables and the Dask client still hold once the Futures are dropped."""
    if variant == "executor":
        return _p5_executor(batches, batch)
    cluster, client = _raw_cluster()
    with cluster, client:
        before = _rss()
        for b in range(batches):
            futures = [client.submit(noop, b * batch + i, pure=False) for i in range(batch)]
            client.gather(futures)
            del futures
        return {"peak_rss": _peak_rss(), "rss_before": before}


def _p5_executor(batches: int, batch: int) -> dict[str, Any]:
    # The cluster is made here, as the peer's is, so that a client of its own can ask the
    # scheduler what it still holds: public API only, nothing of the executor's insides.
    cluster, observer = _raw_cluster()
    with cluster, observer, DaskExecutor(cluster=cluster) as ex:
        before = _rss()
        for b in range(batches):
            futures = [ex.submit(noop, b * batch + i) for i in range(batch)]
            ex.wait(futures)
            del futures
        peak = _peak_rss()

        def retained() -> dict[str, int]:
            gc.collect()
            return {
                "executor_futures": _count(Future),
                "scheduler_tasks": int(observer.run_on_scheduler(_tasks_held)),
            }

        deadline = time.monotonic() + SETTLE_SECONDS
        counts = retained()
        while any(counts.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
            counts = retained()
    return {"peak_rss": peak, "rss_before": before, "retained": counts}


def _tasks_held(dask_scheduler: Any) -> int:
    """How many tasks the scheduler holds (run on the scheduler)."""
    return len(dask_scheduler.tasks)


# -- P6: start and stop of a temporary cluster --------------------------------------------


def p6_executor() -> float:
    started = time.perf_counter()
    with DaskExecutor(cluster_kwargs=CLUSTER):
        pass
    return time.perf_counter() - started


def p6_raw() -> float:
    started = time.perf_counter()
    cluster, client = _raw_cluster()
    with cluster, client:
        pass
    return time.perf_counter() - started


# -- P7: many tiny tasks, in chunks ------------------------------------------------------


def p7_executor(items: int, chunksize: int) -> float:
    """Seconds to map a no-op over ``items`` in chunks and consume every result."""
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex:
        ex.submit(noop).result()  # the workers are up: their start is not the map's
        started = time.perf_counter()
        for _ in ex.map(noop, range(items), chunksize=chunksize):
            pass
        return time.perf_counter() - started


def p7_client_map(items: int) -> float:
    """Seconds for ``Client.map`` of one task per item, and the gather."""
    cluster, client = _raw_cluster()
    with cluster, client:
        client.submit(noop, pure=False).result()
        started = time.perf_counter()
        client.gather(client.map(noop, range(items), pure=False))
        return time.perf_counter() - started


def p7_process_pool(items: int, chunksize: int) -> float:
    """Seconds for ``ProcessPoolExecutor(2).map`` in chunks (the local limit)."""
    with concurrent.futures.ProcessPoolExecutor(LOCAL_WORKERS) as pool:
        list(pool.map(noop, range(LOCAL_WORKERS)))  # the processes are up
        started = time.perf_counter()
        for _ in pool.map(noop, range(items), chunksize=chunksize):
            pass
        return time.perf_counter() - started


def p7_ray(items: int) -> float | None:
    """Seconds for Ray ``remote`` + ``get`` of one task per item; None without Ray."""
    try:
        import ray
    except ImportError:
        return None
    ray.init(num_cpus=LOCAL_WORKERS, include_dashboard=False, log_to_driver=False)
    try:
        remote_noop = ray.remote(noop)
        ray.get(remote_noop.remote(0))
        started = time.perf_counter()
        ray.get([remote_noop.remote(i) for i in range(items)])
        return time.perf_counter() - started
    finally:
        ray.shutdown()


# -- P8: an endless generator in bounded memory (its own process: peak RSS) -------------


def p8_memory(small: int, large: int, chunksize: int | str, buffersize: int) -> dict[str, Any]:
    """Map a no-op over an endless generator with a buffer: the peak RSS once ``small``
    items were consumed, once ``large`` were, and the seconds each took."""
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex:
        ex.submit(noop).result()
        results = ex.map(noop, itertools.count(), chunksize=chunksize, buffersize=buffersize)
        started = time.perf_counter()
        before = _rss()
        seen = {}
        for n, _ in enumerate(results, 1):
            if n == small:
                seen["small"] = {"peak_rss": _peak_rss(), "seconds": time.perf_counter() - started}
            if n == large:
                break
        seen["large"] = {"peak_rss": _peak_rss(), "seconds": time.perf_counter() - started}
        results.close()
    return {"rss_before": before, **seen}


def _generator_map(
    ex: DaskExecutor, items: int, chunksize: int | str, buffersize: int | None
) -> float:
    """Seconds to map a no-op over ``items`` of a generator and consume every result."""
    started = time.perf_counter()
    source = (n for n in range(items))
    for _ in ex.map(noop, source, chunksize=chunksize, buffersize=buffersize):
        pass
    return time.perf_counter() - started


def p8_map(items: int, chunksize: int | str, buffersize: int | None) -> float:
    """Seconds to map a no-op over ``items`` of a generator, with or without a buffer."""
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex:
        ex.submit(noop).result()
        return _generator_map(ex, items, chunksize, buffersize)


def p8_bound(items: int, chunksize: int, buffersize: int, trips: int) -> tuple[float, float]:
    """The fixed-chunk buffered map: its seconds over ``items``, and the median round
    trip of one chunk of ``chunksize`` no-ops (submit to result), on one cluster: with
    ``buffersize`` chunks in flight no map beats ``buffersize * chunksize / trip``."""
    with DaskExecutor(cluster_kwargs=CLUSTER) as ex:
        ex.submit(noop).result()
        seconds = _generator_map(ex, items, chunksize, buffersize)
        samples = []
        for _ in range(trips):
            started = time.perf_counter()
            list(ex.map(noop, range(chunksize), chunksize=chunksize))
            samples.append(time.perf_counter() - started)
        return seconds, statistics.median(samples)


if __name__ == "__main__":  # P5 and P8's memory run here, one process per sample
    quiet_dask()
    if sys.argv[1] == "p8":  # p8 SMALL LARGE CHUNKSIZE BUFFERSIZE
        small, large, chunk, buffer = sys.argv[2:6]
        chunksize = chunk if chunk == "auto" else int(chunk)
        print(json.dumps(p8_memory(int(small), int(large), chunksize, int(buffer))))
    else:  # VARIANT BATCHES BATCH
        print(json.dumps(p5_memory(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
