"""``LocalDaskExecutor``: dask's local schedulers, threads, processes or synchronous
(SPEC §3.2).

Lazy: ``submit`` only records the task. The first ``wait()`` or ``result()`` hands every
recorded task, as one flat graph, to one call of dask's local scheduler on the run's
driver thread; the caller just waits on the Futures, so timeouts and cancellation work
while the graph computes. Each graph node calls :func:`_execute` with an opaque
:class:`_Call`, so dask never looks inside the user's arguments (a tuple there is data,
not a task) and builds no ``delayed`` objects.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing.connection
import queue
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import dask
import dask.config
import dask.local
import dask.multiprocessing
import dask.system
import dask.threaded
from dask.callbacks import Callback

from ._base import Executor, Run
from ._context import TaskContext, current_task
from ._future import CANCELLED, ERROR, FINISHED, PENDING, Future
from ._main_guard import require_main_guard
from ._structure import resolve_refs, to_refs
from ._task import Task
from .exceptions import CancelledError

__all__ = ["LocalDaskExecutor"]

_DaskTask: Any = None
_TaskRef: Any = None
try:  # dask >= 2024.12 builds graphs of Task objects; older ones of tuples
    from dask._task_spec import Task as _DaskTask
    from dask._task_spec import TaskRef as _TaskRef
except ImportError:  # pragma: no cover - the oldest supported dask
    pass

SCHEDULERS = {
    "threads": "threads",
    "threading": "threads",
    "processes": "processes",
    "multiprocessing": "processes",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
}

_STOP = object()

# The most tasks dask's local scheduler hands a worker at once (see _chunksize).
MAX_CHUNKSIZE = 32
# Seconds a terminated worker process gets to end before it is killed.
TERMINATE_TIMEOUT = 5.0


_NOTHING_KNOWN: dict[str, Any] = {}  # shared, never written to


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, as text (its ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0])


class _Failure:
    """A task's error, returned (not raised) so dask goes on with the other tasks."""

    __slots__ = ("error", "remote_traceback")

    def __init__(self, error: BaseException, remote_traceback: str | None = None) -> None:
        self.error = error
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[type[_Failure], tuple[BaseException, str | None]]:
        return (_Failure, (self.error, self.remote_traceback))


class _Skipped:
    """Returned by a task that did not run: its run or its Future was cancelled."""

    def __reduce__(self) -> str:
        return "_SKIPPED"


_SKIPPED = _Skipped()


class _Call:
    """One task, as recorded and as its graph node runs it: ``fn`` with its arguments,
    its dependencies, and (once in a graph) the keys of those computed in the same graph
    (``dep_keys``) and the outcome of those that ended before (``known``).

    In the driver's process it also holds its run and Future, to skip a cancelled task
    and to settle the Future the moment the task ends; pickled for a worker process, it
    drops them. It is the only object ``submit`` keeps per task (P4: every object that
    lives through a big graph costs the garbage collector time).
    """

    __slots__ = ("args", "dep_keys", "deps", "fn", "future", "known", "kwargs", "run")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: tuple[Future[Any], ...] = (),
        run: Run | None = None,
        future: Future[Any] | None = None,
        dep_keys: tuple[str, ...] = (),
        known: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.deps = deps
        self.run = run
        self.future = future
        self.dep_keys = dep_keys
        self.known = _NOTHING_KNOWN if known is None else known

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _Call,
            (self.fn, self.args, self.kwargs, (), None, None, self.dep_keys, self.known),
        )


_REMOTE_CONTEXT = TaskContext(None)


def _execute(call: _Call, *dep_results: Any) -> Any:
    """Run one task where dask's scheduler placed it (a thread, a process, or inline).

    Returns the value, or a :class:`_Failure` or ``_SKIPPED`` marker that its dependents
    pass on. In the driver's process the Future is settled here, not by a dask callback:
    that is one call less per task (P4), and the caller sees each result as it comes.
    """
    values = call.known
    if dep_results:
        values = {**values, **dict(zip(call.dep_keys, dep_results, strict=True))}
    failed = _failed_input(values) if values else None
    run, future = call.run, call.future
    if run is None or future is None:  # in a worker process
        return failed if failed is not None else _run_remote(call, values)
    if failed is not None:
        result = failed
    elif run.cancelled.is_set() or future._state is not PENDING:
        result = _SKIPPED
    else:
        # The driver and pool threads belong to this run alone: the context is set once
        # per thread and left set, a set and a reset less per task (P4).
        if current_task.get() is not run.task_context:
            current_task.set(run.task_context)
        args, kwargs = call.args, call.kwargs
        if values:
            args = resolve_refs(args, values)
            kwargs = resolve_refs(kwargs, values)
        try:
            result = call.fn(*args, **kwargs)
        except Exception as exc:
            result = _Failure(exc)
    run.backend.deliver(future._key, result)
    return result


def _failed_input(values: dict[str, Any]) -> Any:
    """The first dependency that failed or did not run, which its dependents pass on."""
    for value in values.values():
        if value is _SKIPPED or isinstance(value, _Failure):
            return value
    return None


def _run_remote(call: _Call, values: dict[str, Any]) -> Any:
    """Run ``call`` in a worker process; an error comes back with its traceback as text."""
    args, kwargs = call.args, call.kwargs
    if values:
        args = resolve_refs(args, values)
        kwargs = resolve_refs(kwargs, values)
    token = current_task.set(_REMOTE_CONTEXT)
    try:
        return call.fn(*args, **kwargs)
    except Exception as exc:
        return _Failure(exc, "".join(traceback.format_exception(exc)))
    finally:
        current_task.reset(token)


def _node(key: str, call: _Call) -> Any:
    """The graph node of ``call``: a dask ``Task`` where dask has them (2024.12 on), so
    that dask has no tuple to convert and keep beside it: one long-lived object less per
    task for the garbage collector to walk (P4); else the classic tuple."""
    if _DaskTask is None:
        return (_execute, call, *call.dep_keys)
    return _DaskTask(key, _execute, call, *[_TaskRef(dep) for dep in call.dep_keys])


def _as_input(future: Future[Any]) -> Any:
    """A finished dependency, as ``_execute`` takes it."""
    if future._state is FINISHED:
        return future._value
    if future._state is CANCELLED:
        return _Failure(CancelledError(future._key, f"dependency {future._key} was cancelled"))
    return _Failure(future._value)


class _Graphs:
    """The run's side of a LocalDaskExecutor: recorded tasks, the pool, the driver."""

    def __init__(self, run: Run, executor: LocalDaskExecutor) -> None:
        self.run = run
        self.scheduler = executor.scheduler
        self.dask_config = executor._config
        self.num_workers = executor.num_workers
        self.lock = threading.Lock()
        self.pending: list[_Call] = []  # recorded, not yet handed to the driver
        self.live: dict[str, _Call] = {}  # every task whose Future has not ended
        self.batches: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pool: concurrent.futures.Executor | None = None
        if self.scheduler == "threads":
            self.pool = concurrent.futures.ThreadPoolExecutor(
                executor.num_workers, thread_name_prefix=f"executors-worker-{id(executor):x}"
            )
        elif self.scheduler == "processes":
            self.pool = _started_process_pool(executor.num_workers)
        self.driver = threading.Thread(
            target=self.drive, name=f"executors-compute-{id(executor):x}", daemon=True
        )
        self.driver.start()

    def record(self, task: Task) -> None:
        future = task.future
        key = future._key
        call = _Call(task.fn, task.args, task.kwargs, task.deps, self.run, future)
        with self.lock:
            if self.run.closing or self.run.cancelled.is_set():
                raise RuntimeError(f"{self.run.executor.executor_id} is not taking new work")
            if self.live.setdefault(key, call) is not call:
                raise ValueError(f"key {key!r} is already used by a pending task of this run")
            self.pending.append(call)

    def flush(self) -> None:
        """Hand every recorded task to the driver, as one graph."""
        with self.lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
        self.batches.put(batch)

    def drive(self) -> None:
        while (batch := self.batches.get()) is not _STOP:
            self.compute(batch)

    def compute(self, batch: list[_Call]) -> None:
        run = self.run
        if run.cancelled.is_set():
            return
        graph: dict[str, Any] = {}
        for call in batch:
            future = call.future
            assert future is not None
            if future._state is not PENDING:  # cancelled since it was recorded
                continue
            if call.deps:
                # Dependencies in this graph (added before, as submitted before) come
                # from dask; the others have ended, and their outcome is known.
                call.dep_keys = tuple(d._key for d in call.deps if d._key in graph)
                call.known = {d._key: _as_input(d) for d in call.deps if d._key not in graph}
                call.args = to_refs(call.args)
                call.kwargs = to_refs(call.kwargs)
                call.deps = ()
            graph[future._key] = _node(future._key, call)
        if not graph:
            return
        keys = list(graph)
        workers = 1 if self.scheduler == "synchronous" else self.num_workers
        chunksize = _chunksize(len(graph), workers)
        try:
            with (
                dask.config.set(self.dask_config) if self.dask_config else contextlib.nullcontext()
            ):
                if self.scheduler == "threads":
                    dask.threaded.get(graph, keys, pool=self.pool, chunksize=chunksize)
                elif self.scheduler == "processes":
                    dask.multiprocessing.get(
                        graph,
                        keys,
                        pool=self.pool,
                        chunksize=chunksize,
                        optimize_graph=False,
                        # A worker process's result is settled in the driver, as it comes.
                        callbacks=[Callback(posttask=self._posttask)._callback],  # type: ignore[no-untyped-call]
                    )
                else:
                    dask.local.get_sync(graph, keys, chunksize=chunksize)
        except BaseException as exc:  # the pool broke or was stopped, or a result did not pickle
            for key in keys:
                self.fail(key, exc)
        for key in keys:  # nothing of this graph stays pending
            self.fail(key, RuntimeError(f"task {key!r} was not computed"))

    def _posttask(self, key: str, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self.deliver(key, result)

    def deliver(self, key: str, result: Any) -> None:
        """Settle the Future of ``key`` with what :func:`_execute` returned."""
        call = self.live.pop(key, None)  # atomic: no lock on this path, once per task
        if call is None:
            return
        run, future = self.run, call.future
        assert future is not None
        if result is _SKIPPED:
            run.cancel_pending(future, by_run=run.cancelled.is_set())
        elif isinstance(result, _Failure):
            error = result.error
            if isinstance(error, CancelledError):
                run.settle(future, CANCELLED, CancelledError(key, error.reason))
            else:
                if result.remote_traceback is not None:
                    error.__cause__ = _RemoteTraceback(result.remote_traceback)
                run.settle(future, ERROR, error)
        else:
            run.settle(future, FINISHED, result)

    def fail(self, key: str, error: BaseException) -> None:
        with self.lock:
            call = self.live.pop(key, None)
        if call is not None and call.future is not None:
            if self.run.cancelled.is_set():
                self.run.cancel_pending(call.future, by_run=True)
            else:
                self.run.settle(call.future, ERROR, error)

    def cancel_all(self) -> None:
        with self.lock:
            calls = list(self.live.values())
            self.pending.clear()
            self.live.clear()
        if isinstance(self.pool, concurrent.futures.ProcessPoolExecutor):
            _terminate(self.pool)
        elif self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for call in calls:
            if call.future is not None:
                self.run.cancel_pending(call.future, by_run=True)

    def cancel_one(self, future: Future[Any]) -> bool:
        with self.lock:  # a recorded one stays in `pending`: compute() skips it
            self.live.pop(future._key, None)
        return self.run.cancel_pending(future, by_run=False)

    def close(self, cancelled: bool) -> None:
        if not cancelled:
            self.flush()
        self.batches.put(_STOP)
        if cancelled:
            # A thread cannot be stopped: running tasks are left to finish on their own.
            if self.pool is not None:
                self.pool.shutdown(
                    wait=isinstance(self.pool, concurrent.futures.ProcessPoolExecutor),
                    cancel_futures=True,
                )
            return
        self.driver.join()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _chunksize(tasks: int, workers: int) -> int:
    """How many tasks dask's local scheduler hands a worker (thread or process) at once.

    About as many tasks per chunk as chunks per worker (the square root of the tasks per
    worker), at most MAX_CHUNKSIZE. So a small graph goes one task at a time and a few
    long tasks run in parallel; a big one pays the pool's round trip (and, for processes,
    a pickle) per chunk instead of per task, and the last chunk of a worker is a small
    part of its work. P4, 10k no-op tasks: threads about 3x faster than one at a time,
    processes about 2x faster than in chunks of 6 (dask's default for processes).
    """
    return max(1, min(MAX_CHUNKSIZE, math.isqrt(tasks // workers)))


def _worker_ready() -> None:
    """Runs first in every worker process: unpickling it imports this package there."""


def _started_process_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool with its workers up and this package imported in them.

    So the start pays for it (about 1 s: each spawned worker imports dask and
    distributed), not the first ``wait()``, which would otherwise find the workers cold.
    """
    pool = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=dask.multiprocessing.get_context(),  # type: ignore[no-untyped-call]
        initializer=_worker_ready,
    )
    try:
        # One call per worker: the pool spawns a process for each call that finds none idle.
        for ready in [pool.submit(_worker_ready) for _ in range(workers)]:
            ready.result()
    except BaseException:
        _terminate(pool)
        raise
    return pool


def _terminate(pool: concurrent.futures.ProcessPoolExecutor) -> None:
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


class LocalDaskExecutor(Executor):
    """Runs tasks with dask's local schedulers, in this process or in a process pool.

    :param scheduler: ``"threads"`` (``"threading"``), ``"processes"``
        (``"multiprocessing"``) or ``"synchronous"`` (``"sync"``,
        ``"single-threaded"``), any case.
    :param num_workers: size of the pool; ``dask.system.CPU_COUNT`` by default.
    :param dask_config: dask configuration applied with ``dask.config.set`` while the
        graph computes (``__`` in a name stands for a dot).
    :raises ValueError: for an unknown scheduler or a bad ``num_workers``.
    """

    def __init__(
        self, scheduler: str = "threads", num_workers: int | None = None, **dask_config: Any
    ) -> None:
        super().__init__()
        name = scheduler.lower() if isinstance(scheduler, str) else None
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
        if num_workers is not None and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
        ):
            raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
        self._scheduler = SCHEDULERS[name]
        self._num_workers = num_workers
        self._dask_config = dask_config
        self._config = {key.replace("__", "."): value for key, value in dask_config.items()}

    @property
    def scheduler(self) -> str:
        """The scheduler's canonical name: ``threads``, ``processes`` or ``synchronous``."""
        return self._scheduler

    @property
    def num_workers(self) -> int:
        """How many threads or processes compute tasks (1 for ``synchronous``)."""
        if self._scheduler == "synchronous":
            return 1
        return self._num_workers or dask.system.CPU_COUNT

    def _settings(self) -> dict[str, Any]:
        return {"scheduler": self._scheduler, "num_workers": self._num_workers, **self._dask_config}

    def _open(self, run: Run) -> str | None:
        if self._scheduler == "processes":
            context = dask.multiprocessing.get_context()  # type: ignore[no-untyped-call]
            require_main_guard('LocalDaskExecutor("processes")', context.get_start_method())
        run.backend = _Graphs(run, self)
        return None

    def _submit(self, run: Run, task: Task) -> None:
        run.backend.record(task)

    def _prepare(self, run: Run, futures: Iterable[Future[Any]]) -> None:
        context = current_task.get()
        if context is not None and context.run is run:
            raise RuntimeError(
                "a task of a LocalDaskExecutor cannot wait for other tasks of its run (it would "
                "wait for itself); pass their Futures to submit() as arguments instead"
            )
        run.backend.flush()

    def _cancel_future(self, run: Run, future: Future[Any]) -> bool:
        return bool(run.backend.cancel_one(future))

    def _cancel_tasks(self, run: Run) -> None:
        run.backend.cancel_all()

    def _close(self, run: Run, cancelled: bool) -> None:
        run.backend.close(cancelled)
