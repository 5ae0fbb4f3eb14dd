"""The pools of a LocalDaskExecutor run, and how big a chunk of tasks a worker gets."""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing.connection
import threading
from collections.abc import Callable
from typing import Any

import dask
import dask.config
import dask.local
import dask.multiprocessing
import dask.threaded
from dask.callbacks import Callback

from .._pickling import loads, result_error
from .._task import Task
from ._crashes import Slots, new_slots, take_slot
from ._nodes import Failure

__all__ = ["chunk_size", "run_graph", "start_threads", "started_process_pool", "terminate"]

# The most tasks dask's local scheduler hands a worker at once (see chunk_size).
MAX_CHUNKSIZE = 32
# Seconds a terminated worker process gets to end before it is killed.
TERMINATE_TIMEOUT = 5.0
# Seconds the worker processes get to start (each imports dask and distributed: ~1 s).
POOL_START_TIMEOUT = 60.0


def chunk_size(tasks: int, workers: int) -> int:
    """How many tasks dask's local scheduler hands a worker (thread or process) at once.

    About as many tasks per chunk as chunks per worker (the square root of the tasks per
    worker), at most MAX_CHUNKSIZE. So a small graph goes one task at a time and a few
    long tasks run in parallel; a big one pays the pool's round trip (and, for processes,
    a pickle) per chunk instead of per task, and the last chunk of a worker is a small
    part of its work. P4, 10k no-op tasks: threads about 3x faster than one at a time,
    processes about 2x faster than in chunks of 6 (dask's default for processes).
    """
    return max(1, min(MAX_CHUNKSIZE, math.isqrt(tasks // workers)))


def start_threads(pool: concurrent.futures.ThreadPoolExecutor, workers: int) -> None:
    """Start all ``workers`` threads of ``pool`` now.

    A pool starts its threads as work comes, but CPython 3.12.0 to 3.12.2 refuse to
    start a thread once the script has ended (gh-113964), which is when the exit hook
    computes the work of a run left open (SPEC §3)."""
    # Each call waits for all the others, so each finds no idle thread and starts one.
    everyone = threading.Barrier(workers)
    started = [pool.submit(everyone.wait, POOL_START_TIMEOUT) for _ in range(workers)]
    try:
        for future in started:
            future.result()
    except BaseException:
        everyone.abort()
        raise


def _worker_ready() -> None:
    """Runs first in every worker process: unpickling it imports this package there.

    A task that computes a dask collection in a worker process computes it there, in
    its own thread (SPEC §3.2): the process is the worker; a pool of threads in it would
    compete with the other workers."""
    dask.config.set(scheduler="synchronous")


def _worker_start(slots: Slots, counter: Any) -> None:
    """The initializer of every worker process: its slot (see ``_crashes``)."""
    take_slot(slots, counter)
    _worker_ready()


def started_process_pool(workers: int) -> tuple[concurrent.futures.ProcessPoolExecutor, Slots]:
    """A process pool with its workers up and this package imported in them, and the
    slots where they say which task they run (``_crashes``).

    So the start pays for it (about 1 s: each spawned worker imports dask and
    distributed), not the first ``wait()``, which would otherwise find the workers cold.
    """
    context = dask.multiprocessing.get_context()  # type: ignore[no-untyped-call]
    slots, counter = new_slots(context, workers)
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_start, initargs=(slots, counter)
    )
    try:
        # One call per worker: the pool spawns a process for each call that finds none idle.
        done, not_done = concurrent.futures.wait(
            [pool.submit(_worker_ready) for _ in range(workers)], timeout=POOL_START_TIMEOUT
        )
        if not_done:
            raise RuntimeError(
                f"the worker processes of LocalDaskExecutor('processes') did not start within "
                f"{POOL_START_TIMEOUT} s"
            )
        for ready in done:
            ready.result()
    except BaseException:
        terminate(pool)
        raise
    return pool, slots


def terminate(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """End a process pool's workers now, running tasks included, and wait until they
    are gone."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    if not processes:
        return
    sentinels = {process.sentinel: process for process in processes}
    ended = multiprocessing.connection.wait(list(sentinels), timeout=TERMINATE_TIMEOUT)
    for sentinel, process in sentinels.items():
        if sentinel not in ended:
            process.kill()
    # A sentinel fires when the process closes its files, which is before it has
    # finished exiting; join() waits for the exit itself (and reaps it, unless the
    # pool's own thread got there first).
    for process in processes:
        process.join()


def run_graph(
    scheduler: str,
    pool: concurrent.futures.Executor | None,
    graph: dict[str, Any],
    keys: list[str],
    chunksize: int,
    tasks: dict[str, Task],
    deliver: Callable[[Task, Any], None],
) -> None:
    """Compute ``graph`` (the records ``tasks`` by key) with dask's local ``scheduler``
    on ``pool``. A worker process's outcome is ``deliver``-ed in the driver as it comes
    (a thread's, by the task itself: see ``_nodes.execute``)."""
    callbacks = [_in_submission_order(graph)]
    if scheduler == "threads":
        dask.threaded.get(graph, keys, pool=pool, chunksize=chunksize, callbacks=callbacks)
    elif scheduler == "processes":

        def posttask(key: str, result: Any, *_: Any) -> None:
            try:
                outcome = loads(result)
            except Exception as exc:  # it pickled in the worker but does not load here
                outcome = Failure(result_error(key, exc))
            deliver(tasks[key], outcome)

        dask.multiprocessing.get(
            graph,
            keys,
            pool=pool,
            chunksize=chunksize,
            optimize_graph=False,
            callbacks=[*callbacks, Callback(posttask=posttask)._callback],  # type: ignore[no-untyped-call]
        )
    else:
        dask.local.get_sync(graph, keys, chunksize=chunksize, callbacks=callbacks)


def _in_submission_order(graph: dict[str, Any]) -> tuple[Any, ...]:
    """A dask callback that starts the ready tasks of ``graph`` in the order they were
    submitted (its keys' order), as a pool would. dask orders tasks that need nothing by
    their keys, unique names in no useful order: the first submitted often ran last, and
    map's first result came only once all the others had ended."""
    position = {key: index for index, key in enumerate(graph)}

    def start_state(dsk: Any, state: dict[str, Any]) -> None:
        state["ready"].sort(key=position.__getitem__, reverse=True)  # popped from the end

    return Callback(start_state=start_state)._callback  # type: ignore[no-untyped-call]
