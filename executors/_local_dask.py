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
import math
import multiprocessing.connection
import threading
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import dask
import dask.config
import dask.local
import dask.multiprocessing
import dask.system
import dask.threaded
from dask.callbacks import Callback

from ._base import Executor
from ._calling import call_in_context, run_to_end
from ._context import TaskContext, current_task
from ._future import CANCELLED, ERROR, FINISHED, PENDING, Future, block_until_done
from ._main_guard import require_main_guard
from ._pickling import call_error, dumps, loads, restore_exit_code, result_error
from ._run import Run
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


# The most tasks dask's local scheduler hands a worker at once (see _chunksize).
MAX_CHUNKSIZE = 32
# Seconds a terminated worker process gets to end before it is killed.
TERMINATE_TIMEOUT = 5.0
# Seconds the worker processes get to start (each imports dask and distributed: ~1 s).
POOL_START_TIMEOUT = 60.0


_NOTHING_KNOWN: dict[str, Any] = {}  # shared, never written to


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, as text (its ``__cause__``),
    where the traceback itself could not be pickled."""

    def __str__(self) -> str:
        return str(self.args[0])


def _rebuild_failure(
    error: BaseException, traceback_: TracebackType | None, text: str | None
) -> _Failure:
    error = restore_exit_code(error)
    return _Failure(error.with_traceback(traceback_) if traceback_ is not None else error, text)


class _Failure:
    """A task's error, returned (not raised) so dask goes on with the other tasks.

    From a worker process it travels with its traceback, so the task's own frames are in
    it (tracebacks pickle once distributed has imported tblib's support); where that
    does not pickle, with the traceback as text (``traceback_text``)."""

    __slots__ = ("error", "traceback_text")

    def __init__(self, error: BaseException, traceback_text: str | None = None) -> None:
        self.error = error
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[Any, ...]:
        traceback_ = self.error.__traceback__ if self.traceback_text is None else None
        return (_rebuild_failure, (self.error, traceback_, self.traceback_text))


class _Skipped:
    """Returned by a task that did not run: its run or its Future was cancelled."""

    def __reduce__(self) -> str:
        return "_SKIPPED"


_SKIPPED = _Skipped()


class _Call:
    """One task, as recorded and as its graph node runs it: ``fn`` with its arguments,
    its dependencies, and (once in a graph) the keys of those computed in the same graph
    (``dep_keys``) and the outcome of those that ended before (``known``).

    It also holds its run's :class:`_Graphs` and its Future, to skip a cancelled task
    and to settle the Future the moment the task ends. It is the only object ``submit``
    keeps per task (P4: every object that lives through a big graph costs the garbage
    collector time). For a worker process it travels as bytes (see
    :func:`_execute_remote`), never itself.
    """

    __slots__ = (
        "args",
        "dep_keys",
        "deps",
        "fn",
        "future",
        "graphs",
        "key",
        "known",
        "kwargs",
        "needed",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: tuple[Future[Any], ...],
        graphs: _Graphs,
        future: Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.deps = deps
        self.graphs = graphs
        self.future: Future[Any] = future
        self.key = future._key
        self.dep_keys: tuple[str, ...] = ()
        self.known = _NOTHING_KNOWN
        self.needed = False  # a task of the same graph takes its result

    def let_go(self) -> Future[Any]:
        """The task has ended: keep nothing of it, its Future included (SPEC §3: a
        computed graph keeps no function, argument, result or Future alive); the Future,
        for its settling."""
        future = self.future
        self.future = None  # type: ignore[assignment]
        self.fn = _ended
        self.args = ()
        self.kwargs = {}
        self.deps = ()
        self.known = _NOTHING_KNOWN
        return future


def _ended(*args: Any, **kwargs: Any) -> None:
    """What an ended task's call holds instead of its function."""


_REMOTE_CONTEXT = TaskContext(None)


def _execute(call: _Call, *dep_results: Any) -> Any:
    """Run one task in this process (a pool thread, or the driver thread).

    Returns the value, or a :class:`_Failure` or ``_SKIPPED`` marker that its dependents
    pass on. The Future is settled here, not by a dask callback: that is one call less
    per task (P4), and the caller sees each result as it comes. Any exception, a
    ``SystemExit`` or ``KeyboardInterrupt`` included, ends this task alone: it is never
    raised into dask's scheduler, which would fail every task of the graph.
    """
    values = call.known
    if dep_results:
        values = {**values, **dict(zip(call.dep_keys, dep_results, strict=True))}
    failed = _failed_input(values) if values else None
    graphs, future = call.graphs, call.future
    run = graphs.run
    if future is None:  # it was cancelled and let go meanwhile
        return _SKIPPED
    if failed is not None:
        result = failed
    elif run.cancelled.is_set() or future._status is not PENDING:
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
            result = run_to_end(call.fn(*args, **kwargs))
        except BaseException as exc:
            result = _Failure(exc)
    graphs.deliver(call, result)
    # What dask keeps until the graph is done: only what a dependent of it will take.
    return result if call.needed else None


def _failed_input(values: dict[str, Any]) -> Any:
    """The first dependency that failed or did not run, which its dependents pass on."""
    for value in values.values():
        if value is _SKIPPED or isinstance(value, _Failure):
            return value
    return None


def _execute_remote(payload: bytes, *dep_results: bytes) -> bytes:
    """Run one task in a worker process, from its call pickled on its own by the driver
    (:func:`_remote_payload`); return its outcome pickled on its own, a
    :class:`_Failure` when it raised or its value does not pickle. So a call or a result
    that does not pickle fails its own task, not the chunk dask sends with it."""
    key = "?"
    try:
        key, fn, args, kwargs, dep_keys, known = loads(payload)
        values = known
        if dep_results:
            loaded = [loads(result) for result in dep_results]
            values = {**known, **dict(zip(dep_keys, loaded, strict=True))}
        failed = _failed_input(values) if values else None
        if failed is not None:
            return dumps(failed)
        if values:
            args = resolve_refs(args, values)
            kwargs = resolve_refs(kwargs, values)
        value = call_in_context(_REMOTE_CONTEXT, fn, args, kwargs)
    except BaseException as exc:
        return _pickled_failure(exc)
    try:
        return dumps(value)
    except Exception as exc:
        return _pickled_failure(result_error(key, exc, value))


def _pickled_failure(error: BaseException) -> bytes:
    """``error`` as a pickled :class:`_Failure`: with its traceback, else with the
    traceback as text, else (the error itself does not pickle) as a RuntimeError."""
    try:
        return dumps(_Failure(error))
    except Exception:
        pass
    text = "".join(traceback.format_exception(error))
    try:
        return dumps(_Failure(error, text))
    except Exception:
        return dumps(_Failure(RuntimeError(f"{type(error).__qualname__}: {error}"), text))


def _remote_payload(key: str, call: _Call) -> bytes:
    """What :func:`_execute_remote` takes for ``call``.

    :raises TypeError: naming the key and the value that does not pickle.
    """
    try:
        return dumps((key, call.fn, call.args, call.kwargs, call.dep_keys, call.known))
    except Exception as exc:
        raise call_error(key, call.fn, call.args, call.kwargs, exc) from exc


def _node(key: str, fn: Callable[..., Any], first: Any, dep_keys: tuple[str, ...]) -> Any:
    """The graph node ``fn(first, *results of dep_keys)``: a dask ``Task`` where dask has
    them (2024.12 on), so that dask has no tuple to convert and keep beside it: one
    long-lived object less per task for the garbage collector to walk (P4); else the
    classic tuple."""
    if _DaskTask is None:
        return (fn, first, *dep_keys)
    return _DaskTask(key, fn, first, *[_TaskRef(dep) for dep in dep_keys])


def _as_input(future: Future[Any]) -> Any:
    """A finished dependency, as ``_execute`` takes it."""
    if future._status is FINISHED:
        return future._value
    if future._status is CANCELLED:
        return _Failure(CancelledError(future._key, f"dependency {future._key} was cancelled"))
    return _Failure(future._value)


class _Graphs:
    """The run's side of a LocalDaskExecutor: recorded tasks, the pool, the drivers.

    Each flush hands the recorded tasks, as one graph, to a driver thread that computes
    it with one call of dask's local scheduler. Graphs compute side by side (at most one
    per worker), so a wait on a new task does not queue behind a long graph while
    workers are free; a graph whose tasks depend on another's waits for those first.
    One at a time with the synchronous scheduler, and with ``**dask_config`` (see
    :meth:`compute`).
    """

    def __init__(self, run: Run, executor: LocalDaskExecutor) -> None:
        self.run = run
        self.name = f"{id(executor):x}"
        self.scheduler = executor.scheduler
        self.user_config = executor._config
        self.num_workers = executor.num_workers
        self.lock = threading.Lock()
        self.pending: list[_Call] = []  # recorded, not yet handed to a driver
        self.live: dict[str, _Call] = {}  # every task whose Future has not ended
        # Results held back while the executor's dask config is set (driver-owned).
        self.held: list[tuple[_Call, Any]] | None = None
        self.pool: concurrent.futures.Executor | None = None
        one_at_a_time = self.scheduler == "synchronous" or bool(self.user_config)
        self.drivers = concurrent.futures.ThreadPoolExecutor(
            1 if one_at_a_time else self.num_workers,
            thread_name_prefix=f"executors-compute-{self.name}",
        )
        self.config = _SharedConfig({**self.user_config, "scheduler": self.nested_get})

    # -- the backend contract (see _run.Backend) ---------------------------------------------

    def open(self) -> str | None:
        """Start the pool: threads, or worker processes up and warm."""
        if self.scheduler == "threads":
            self.pool = concurrent.futures.ThreadPoolExecutor(
                self.num_workers, thread_name_prefix=f"executors-worker-{self.name}"
            )
        elif self.scheduler == "processes":
            self.pool = _started_process_pool(self.num_workers)
        return None

    def after_open(self) -> None:
        pass

    def submit(self, task: Task) -> None:
        future = task.future
        key = future._key
        call = _Call(task.fn, task.args, task.kwargs, task.deps, self, future)
        with self.lock:
            if self.run.closing or self.run.cancelled.is_set():
                raise RuntimeError(f"{self.run.executor_id} is not taking new work")
            self.live[key] = call  # unique: Run.claim_key checked a key given by the caller
            self.pending.append(call)

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        context = current_task.get()
        if context is not None and context.run is self.run:
            raise RuntimeError(
                "a task of a LocalDaskExecutor cannot wait for other tasks of its run (it would "
                "wait for itself); pass their Futures to submit() as arguments instead"
            )
        self.flush()

    def want(self, futures: Sequence[Future[Any]]) -> None:
        self.flush()

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        pass  # results are settled here as they come

    def flush(self) -> None:
        """Hand every recorded task to a driver, as one graph."""
        with self.lock:
            if not self.pending:
                return
            batch, self.pending = self.pending, []
            if self.run.cancelled.is_set():
                return
            try:
                self.drivers.submit(self.compute, batch)
            except RuntimeError:  # stopped: close() or cancel_all() ends what is left
                pass

    def nested_get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """The dask scheduler while graphs compute: the executor's own (SPEC §3.2).

        A task that computes a dask collection computes it in its own thread, as the
        worker it is (no second pool, and no wait on a pool its own task fills); any
        other thread uses the executor's pool."""
        if current_task.get() is self.run.task_context or self.scheduler == "synchronous":
            return dask.local.get_sync(dsk, keys, **kwargs)
        if self.scheduler == "threads":
            return dask.threaded.get(dsk, keys, pool=self.pool, **kwargs)
        return dask.multiprocessing.get(dsk, keys, pool=self.pool, **kwargs)

    def compute(self, batch: list[_Call]) -> None:
        """Compute ``batch`` (on a driver thread): at once the tasks that need nothing of
        another graph, then, once what they need of others has ended, the rest."""
        now, later = _split_on_others(batch)
        if now:
            self._compute(now)
        if later:
            _wait_for_others(later)
            self._compute(later)

    def _compute(self, batch: list[_Call]) -> None:
        """Compute ``batch`` as one graph."""
        if self.run.cancelled.is_set():
            return
        graph, calls = self._graph(batch)
        if not graph:
            return
        needed = {dep for call in calls.values() for dep in call.dep_keys}
        for key in needed:
            calls[key].needed = True
        # Ask dask for the results nobody in the graph takes: it drops the others as
        # soon as their dependents have them.
        leaves = [key for key in graph if key not in needed]
        workers = 1 if self.scheduler == "synchronous" else self.num_workers
        chunksize = _chunksize(len(graph), workers)
        try:
            if self.user_config:
                # Settled once the config is unset again: ``dask.config.set`` changes the
                # whole process's config, and a caller woken by a result would otherwise
                # still see the user's settings.
                self.held = []
                try:
                    with self.config:
                        self._get(graph, leaves, chunksize, calls)
                finally:
                    held, self.held = self.held, None
                    for call, result in held:
                        self._settle(call, result)
            else:
                with self.config:
                    self._get(graph, leaves, chunksize, calls)
        except BaseException as exc:  # the pool broke or was stopped
            for call in calls.values():
                self.fail(call, exc)
        for key, call in calls.items():  # nothing of this graph stays pending
            self.fail(call, RuntimeError(f"task {key!r} was not computed"))

    def _graph(self, batch: list[_Call]) -> tuple[dict[str, Any], dict[str, _Call]]:
        """The dask graph of ``batch``, and its tasks by key."""
        remote = self.scheduler == "processes"
        graph: dict[str, Any] = {}
        calls: dict[str, _Call] = {}
        for call in batch:
            future = call.future
            key = future._key
            if future._status is not PENDING:  # cancelled since it was recorded
                continue
            if call.deps:
                # Dependencies in this graph (added before, as submitted before) come
                # from dask; the others have ended, and their outcome is known.
                call.dep_keys = tuple(d._key for d in call.deps if d._key in graph)
                call.known = {d._key: _as_input(d) for d in call.deps if d._key not in graph}
                call.args = to_refs(call.args)
                call.kwargs = to_refs(call.kwargs)
                call.deps = ()
            if not remote:
                graph[key] = _node(key, _execute, call, call.dep_keys)
            else:
                try:
                    payload = _remote_payload(key, call)
                except TypeError as exc:  # this task alone: its dependents learn it as known
                    self.fail(call, exc)
                    continue
                graph[key] = _node(key, _execute_remote, payload, call.dep_keys)
            calls[key] = call
        return graph, calls

    def _get(
        self, graph: dict[str, Any], keys: list[str], chunksize: int, calls: dict[str, _Call]
    ) -> None:
        """Compute ``graph`` (the tasks ``calls``) with dask's local scheduler."""
        if self.scheduler == "threads":
            dask.threaded.get(graph, keys, pool=self.pool, chunksize=chunksize)
        elif self.scheduler == "processes":

            def posttask(key: str, result: Any, *_: Any) -> None:
                # A worker process's outcome is settled in the driver, as it comes.
                try:
                    outcome = loads(result)
                except Exception as exc:  # it pickled in the worker but does not load here
                    outcome = _Failure(result_error(key, exc))
                self.deliver(calls[key], outcome)

            dask.multiprocessing.get(
                graph,
                keys,
                pool=self.pool,
                chunksize=chunksize,
                optimize_graph=False,
                callbacks=[Callback(posttask=posttask)._callback],  # type: ignore[no-untyped-call]
            )
        else:
            dask.local.get_sync(graph, keys, chunksize=chunksize)

    def deliver(self, call: _Call, result: Any) -> None:
        """``call`` ended with what :func:`_execute` returned: settle its Future (later,
        while the user's dask config is set: see :meth:`compute`)."""
        held = self.held
        if held is not None:
            held.append((call, result))
        else:
            self._settle(call, result)

    def _take(self, call: _Call) -> bool:
        """Take ``call`` out of the live tasks; False if it is not there (it ended, or
        was cancelled: a later task may have its key by now)."""
        key = call.key
        with self.lock:
            if self.live.get(key) is not call:
                return False
            del self.live[key]
            return True

    def _settle(self, call: _Call, result: Any) -> None:
        if not self._take(call):
            return
        run, future = self.run, call.let_go()
        if result is _SKIPPED:
            run.cancel_pending(future, by_run=run.cancelled.is_set())
        elif isinstance(result, _Failure):
            error = result.error
            if isinstance(error, CancelledError):
                run.settle(future, CANCELLED, CancelledError(future._key, error.reason))
            else:
                if result.traceback_text is not None:
                    error.__cause__ = _RemoteTraceback(result.traceback_text)
                run.settle(future, ERROR, error)
        else:
            run.settle(future, FINISHED, result)

    def fail(self, call: _Call, error: BaseException) -> None:
        if not self._take(call):
            return
        future = call.let_go()
        if self.run.cancelled.is_set():
            self.run.cancel_pending(future, by_run=True)
        else:
            self.run.settle(future, ERROR, error)

    def cancel_all(self) -> None:
        with self.lock:
            calls = list(self.live.values())
            self.pending.clear()
            self.live.clear()
        self.drivers.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.pool, concurrent.futures.ProcessPoolExecutor):
            _terminate(self.pool)
        elif self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for call in calls:
            self.run.cancel_pending(call.let_go(), by_run=True)

    def cancel_one(self, future: Future[Any]) -> bool:
        with self.lock:  # a recorded one stays in `pending`: compute() skips it
            self.live.pop(future._key, None)
        return self.run.cancel_pending(future, by_run=False)

    def close(self, cancelled: bool) -> str | None:
        if cancelled:
            # A thread cannot be stopped: running tasks are left to finish on their own.
            self.drivers.shutdown(wait=False, cancel_futures=True)
            if self.pool is not None:
                self.pool.shutdown(
                    wait=isinstance(self.pool, concurrent.futures.ProcessPoolExecutor),
                    cancel_futures=True,
                )
            return None
        self.flush()
        self.drivers.shutdown(wait=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        return None


def _split_on_others(batch: list[_Call]) -> tuple[list[_Call], list[_Call]]:
    """``batch`` in two, in order: the tasks that need nothing another graph computes,
    and those that do (a pending dependency outside the batch, or one of these)."""
    own = {call.key for call in batch}
    now: list[_Call] = []
    later: list[_Call] = []
    waiting: set[str] = set()
    for call in batch:
        if any(
            dep._key in waiting or (dep._status is PENDING and dep._key not in own)
            for dep in call.deps
        ):
            waiting.add(call.key)
            later.append(call)
        else:
            now.append(call)
    return now, later


def _wait_for_others(batch: list[_Call]) -> None:
    """Wait for the dependencies of ``batch`` that another graph computes."""
    own = {call.key for call in batch}
    others = {
        id(dep): dep
        for call in batch
        for dep in call.deps
        if dep._status is PENDING and dep._key not in own
    }
    if others:
        block_until_done(list(others.values()), None)


class _SharedConfig:
    """``dask.config.set(config)`` while any graph computes: set by the first graph in,
    unset by the last one out (graphs overlap, and two ``dask.config.set`` that end in
    another order than they began leave the first one's settings behind)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._users = 0
        self._set: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._set = dask.config.set(self._config)
            self._users += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._set.__exit__(None, None, None)
                self._set = None


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
    """Runs first in every worker process: unpickling it imports this package there.

    A task that computes a dask collection in a worker process computes it there, in
    its own thread (SPEC §3.2): the process is the worker; a pool of threads in it would
    compete with the other workers."""
    dask.config.set(scheduler="synchronous")


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

    def _backend(self, run: Run) -> _Graphs:
        if self._scheduler == "processes":
            context = dask.multiprocessing.get_context()  # type: ignore[no-untyped-call]
            require_main_guard('LocalDaskExecutor("processes")', context.get_start_method())
        return _Graphs(run, self)
