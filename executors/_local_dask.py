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
from ._structure import resolve_refs, to_refs
from ._task import Task
from .exceptions import CancelledError

__all__ = ["LocalDaskExecutor"]

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

# Seconds a terminated worker process gets to end before it is killed.
TERMINATE_TIMEOUT = 5.0


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
    """One graph node's work: ``fn`` with its arguments and the dependency results
    computed in earlier graphs (``known``)."""

    __slots__ = ("args", "context", "dep_keys", "fn", "known", "remote", "skip")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        dep_keys: tuple[str, ...],
        known: dict[str, Any],
        context: TaskContext,
        skip: Callable[[], bool] | None,
        remote: bool,
    ) -> None:
        self.fn = fn
        self.args = (args, kwargs)
        self.dep_keys = dep_keys
        self.known = known
        self.context = context
        self.skip = skip
        self.remote = remote

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the processes scheduler pickles a call; there nothing can be skipped.
        return (
            _Call,
            (self.fn, *self.args, self.dep_keys, self.known, TaskContext(None), None, True),
        )


def _execute(call: _Call, *dep_results: Any) -> Any:
    """Run one task where dask's scheduler placed it (a thread, a process, or inline)."""
    values = call.known
    if dep_results:
        values = {**values, **dict(zip(call.dep_keys, dep_results, strict=True))}
    for value in values.values():
        if value is _SKIPPED or isinstance(value, _Failure):
            return value
    if call.skip is not None and call.skip():
        return _SKIPPED
    args, kwargs = call.args
    if values:
        args = resolve_refs(args, values)
        kwargs = resolve_refs(kwargs, values)
    token = current_task.set(call.context)
    try:
        return call.fn(*args, **kwargs)
    except Exception as exc:
        return _Failure(exc, "".join(traceback.format_exception(exc)) if call.remote else None)
    finally:
        current_task.reset(token)


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
        self.lock = threading.Lock()
        self.pending: dict[str, Task] = {}  # recorded, not yet handed to the driver
        self.live: dict[str, Task] = {}  # every task whose Future has not ended
        self.batches: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pool: concurrent.futures.Executor | None = None
        if self.scheduler == "threads":
            self.pool = concurrent.futures.ThreadPoolExecutor(
                executor.num_workers, thread_name_prefix=f"executors-worker-{id(executor):x}"
            )
        elif self.scheduler == "processes":
            self.pool = concurrent.futures.ProcessPoolExecutor(
                executor.num_workers,
                mp_context=dask.multiprocessing.get_context(),  # type: ignore[no-untyped-call]
            )
        self.driver = threading.Thread(
            target=self.drive, name=f"executors-compute-{id(executor):x}", daemon=True
        )
        self.driver.start()

    def record(self, task: Task) -> None:
        key = task.future._key
        with self.lock:
            if self.run.closing or self.run.cancelled.is_set():
                raise RuntimeError(f"{self.run.executor.executor_id} is not taking new work")
            if key in self.live:
                raise ValueError(f"key {key!r} is already used by a pending task of this run")
            self.pending[key] = task
            self.live[key] = task

    def flush(self) -> None:
        """Hand every recorded task to the driver, as one graph."""
        with self.lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, {}
        self.batches.put(batch)

    def drive(self) -> None:
        while (batch := self.batches.get()) is not _STOP:
            self.compute(batch)

    def compute(self, batch: dict[str, Task]) -> None:
        run = self.run
        if run.cancelled.is_set():
            return
        tasks = [task for task in batch.values() if task.future._state is PENDING]
        in_graph = {task.future._key for task in tasks}
        remote = self.scheduler == "processes"
        graph: dict[str, Any] = {}
        for task in tasks:
            future = task.future
            args, kwargs = task.args, task.kwargs
            dep_keys: tuple[str, ...] = ()
            known: dict[str, Any] = {}
            if task.deps:
                dep_keys = tuple(d._key for d in task.deps if d._key in in_graph)
                known = {d._key: _as_input(d) for d in task.deps if d._key not in in_graph}
                args = to_refs(args)
                kwargs = to_refs(kwargs)
            skip = None if remote else _skip_check(run, future)
            call = _Call(task.fn, args, kwargs, dep_keys, known, run.task_context, skip, remote)
            graph[future._key] = (_execute, call, *dep_keys)
        if not graph:
            return
        keys = list(graph)
        callbacks = [Callback(posttask=self._posttask)._callback]  # type: ignore[no-untyped-call]
        try:
            with (
                dask.config.set(self.dask_config) if self.dask_config else contextlib.nullcontext()
            ):
                if self.scheduler == "threads":
                    dask.threaded.get(graph, keys, pool=self.pool, callbacks=callbacks)
                elif self.scheduler == "processes":
                    dask.multiprocessing.get(
                        graph,
                        keys,
                        pool=self.pool,
                        chunksize=1,
                        optimize_graph=False,
                        callbacks=callbacks,
                    )
                else:
                    dask.local.get_sync(graph, keys, callbacks=callbacks)
        except BaseException as exc:  # the pool broke or was stopped, or a result did not pickle
            for key in keys:
                self.fail(key, exc)
        for key in keys:  # nothing of this graph stays pending
            self.fail(key, RuntimeError(f"task {key!r} was not computed"))

    def _posttask(self, key: str, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        with self.lock:
            task = self.live.pop(key, None)
        if task is None:
            return
        run, future = self.run, task.future
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
            task = self.live.pop(key, None)
        if task is not None:
            if self.run.cancelled.is_set():
                self.run.cancel_pending(task.future, by_run=True)
            else:
                self.run.settle(task.future, ERROR, error)

    def cancel_all(self) -> None:
        with self.lock:
            tasks = list(self.live.values())
            self.pending.clear()
            self.live.clear()
        if isinstance(self.pool, concurrent.futures.ProcessPoolExecutor):
            _terminate(self.pool)
        elif self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for task in tasks:
            self.run.cancel_pending(task.future, by_run=True)

    def cancel_one(self, future: Future[Any]) -> bool:
        with self.lock:
            self.pending.pop(future._key, None)
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


def _skip_check(run: Run, future: Future[Any]) -> Callable[[], bool]:
    cancelled = run.cancelled
    return lambda: cancelled.is_set() or future._state is not PENDING


def _terminate(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """End a process pool's workers now, running tasks included, and wait until they
    are gone (the pool's own thread reaps them)."""
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
