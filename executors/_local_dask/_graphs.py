"""The backend of a LocalDaskExecutor run: recorded tasks, the pool, the drivers."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import dask
import dask.config
import dask.local
import dask.multiprocessing
import dask.threaded

from .. import _interruptible as interruptible
from .._context import current_task
from .._future import CANCELLED, ERROR, FINISHED, PENDING, Future
from .._run import Run
from .._task import Task
from .._waiting import block_until_done
from ..exceptions import CancelledError, ProcessDiedError
from ._crashes import ALLOWED_FAILURES, Slots, crashed, key_number
from ._nodes import SKIPPED, Failure, RemoteTraceback, build_graph
from ._pool import chunk_size, run_graph, start_threads, started_process_pool, terminate

__all__ = ["Graphs", "Settings"]


class Settings(Protocol):
    """What a run reads of its LocalDaskExecutor: its checked settings."""

    @property
    def scheduler(self) -> str: ...

    @property
    def num_workers(self) -> int: ...

    _config: dict[str, Any]


class Graphs:
    """The run's side of a LocalDaskExecutor: recorded tasks, the pool, the drivers.

    Each flush hands the recorded tasks, as one graph, to a driver thread that computes
    it with one call of dask's local scheduler. Graphs compute side by side (at most one
    per worker), so a wait on a new task does not queue behind a long graph while
    workers are free; a graph whose tasks depend on another's waits for those first.
    One at a time with the synchronous scheduler, and with ``**dask_config`` (see
    :meth:`compute`).
    """

    def __init__(self, run: Run, executor: Settings) -> None:
        self.run = run
        self.name = f"{id(executor):x}"
        self.scheduler = executor.scheduler
        self.user_config = executor._config
        self.num_workers = executor.num_workers
        self.lock = threading.Lock()
        self.pending: list[Task] = []  # recorded, not yet handed to a driver
        self.live: dict[str, Task] = {}  # every task whose Future has not ended
        # Results held back while the executor's dask config is set (driver-owned).
        self.held: list[tuple[Task, Any]] | None = None
        self.pool: concurrent.futures.Executor | None = None
        self.process_slots: Slots | None = None  # where worker processes say what they run
        self.pool_lock = threading.Lock()  # who replaces a broken process pool
        self.crashes: dict[str, int] = {}  # how often each task killed its process
        self.crashed: dict[int, dict[int, int]] = {}  # by broken pool: what died running
        one_at_a_time = self.scheduler == "synchronous" or bool(self.user_config)
        self.driver_count = 1 if one_at_a_time else self.num_workers
        self.drivers = concurrent.futures.ThreadPoolExecutor(
            self.driver_count, thread_name_prefix=f"executors-compute-{self.name}"
        )
        self.config = _SharedConfig({**self.user_config, "scheduler": self.nested_get})

    # -- the backend contract (see _run.Backend) ---------------------------------------------

    def open(self) -> str | None:
        """Start the drivers and the pool (threads, or worker processes up and warm)."""
        start_threads(self.drivers, self.driver_count)
        if self.scheduler == "threads":
            self.pool = concurrent.futures.ThreadPoolExecutor(
                self.num_workers, thread_name_prefix=f"executors-worker-{self.name}"
            )
            start_threads(self.pool, self.num_workers)
        elif self.scheduler == "processes":
            self.pool, self.process_slots = started_process_pool(self.num_workers)
        return None

    def after_open(self) -> None:
        pass

    def submit(self, task: Task) -> None:
        future = task.future
        key = future._key
        task.backend = self
        with self.lock:
            if self.run.closing or self.run.cancelled.is_set():
                raise RuntimeError(f"{self.run.executor_id} is not taking new work")
            self.live[key] = task  # unique: Run.claim_key checked a key given by the caller
            self.pending.append(task)

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

    def slots(self) -> int:
        return 1 if self.scheduler == "synchronous" else self.num_workers

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

    def compute(self, batch: list[Task]) -> None:
        """Compute ``batch`` (on a driver thread): at once the tasks that need nothing of
        another graph, then, once what they need of others has ended, the rest."""
        now, later = _split_on_others(batch)
        if now:
            self._compute(now)
        if later:
            _wait_for_others(later)
            self._compute(later)

    def _compute(self, batch: list[Task]) -> None:
        """Compute ``batch`` as one graph; when a worker process dies meanwhile, again
        (what is left of it) on a new pool."""
        if self.run.cancelled.is_set():
            return
        # What build_graph rewrites, for a computation again (see _again).
        saved = [(task, task.deps, task.args, task.kwargs) for task in batch]
        pool = self.pool
        graph, tasks = build_graph(batch, self.scheduler == "processes", self.fail)
        if not graph:
            return
        needed = {dep for task in tasks.values() for dep in task.dep_keys}
        for key in needed:
            tasks[key].needed = True
        # Ask dask for the results nobody in the graph takes: it drops the others as
        # soon as their dependents have them.
        leaves = [key for key in graph if key not in needed]
        workers = 1 if self.scheduler == "synchronous" else self.num_workers
        chunksize = chunk_size(len(graph), workers)
        # With the user's dask config, results are held back and settled once it is
        # unset again: ``dask.config.set`` changes the whole process's config, and a
        # caller woken by a result would otherwise still see the user's settings.
        self.held = [] if self.user_config else None
        error: BaseException | None = None
        try:
            with self.config:
                run_graph(self.scheduler, self.pool, graph, leaves, chunksize, tasks, self.deliver)
        except BaseException as exc:  # the pool broke or was stopped
            error = exc
        held, self.held = self.held, None
        for task, result in held or ():
            self._settle(task, result)
        if isinstance(error, BrokenProcessPool) and not self.run.cancelled.is_set():
            self._again(pool, tasks, saved)
        for key, task in tasks.items():  # nothing of this graph stays pending
            self.fail(task, error or RuntimeError(f"task {key!r} was not computed"))

    def _again(
        self,
        pool: concurrent.futures.Executor | None,
        tasks: dict[str, Task],
        saved: list[tuple[Task, Any, Any, Any]],
    ) -> None:
        """A worker process died while ``tasks`` computed: on a new pool, compute again
        those not ended, but the one it died running once that has killed its process
        ``ALLOWED_FAILURES`` times (it fails alone, with ProcessDiedError)."""
        died = self._replace(pool)
        again = []
        for task, deps, args, kwargs in saved:
            if task.key not in tasks or self.live.get(task.key) is not task:
                continue  # ended, or not of this graph's computation
            code = died.get(key_number(task.key))
            if code is not None:
                count = self.crashes[task.key] = self.crashes.get(task.key, 0) + 1
                if count >= ALLOWED_FAILURES:
                    self.fail(task, ProcessDiedError(task.key, count, code))
                    continue
            task.deps, task.args, task.kwargs = deps, args, kwargs
            task.dep_keys, task.needed = (), False
            again.append(task)
        if again:
            self._compute(again)

    def _replace(self, broken: concurrent.futures.Executor | None) -> dict[int, int]:
        """The tasks the processes of ``broken`` died running; a new pool in its place
        (once, whichever graph saw it break first)."""
        with self.pool_lock:
            if self.pool is broken and isinstance(broken, concurrent.futures.ProcessPoolExecutor):
                processes = list((getattr(broken, "_processes", None) or {}).values())
                assert self.process_slots is not None
                died = crashed(processes, self.process_slots)
                self.crashed[id(broken)] = died
                terminate(broken)
                self.pool, self.process_slots = started_process_pool(self.num_workers)
                self.run.log.warning(
                    "worker_process_died", tasks=len(died), exit_codes=sorted(died.values())
                )
            return self.crashed.get(id(broken), {})

    def deliver(self, task: Task, result: Any) -> None:
        """``task`` ended with what :func:`execute` returned: settle its Future (later,
        while the user's dask config is set: see :meth:`compute`)."""
        held = self.held
        if held is not None:
            held.append((task, result))
        else:
            self._settle(task, result)

    def _take(self, task: Task) -> bool:
        """Take ``task`` out of the live tasks; False if it is not there (it ended, or
        was cancelled: a later task may have its key by now)."""
        key = task.key
        with self.lock:
            if self.live.get(key) is not task:
                return False
            del self.live[key]
            return True

    def _settle(self, task: Task, result: Any) -> None:
        if not self._take(task):
            return
        run, future = self.run, task.let_go()
        if result is SKIPPED:
            run.cancel_pending(future, by_run=run.cancelled.is_set())
        elif isinstance(result, Failure):
            error = result.error
            if isinstance(error, CancelledError):
                run.settle(future, CANCELLED, CancelledError(future._key, error.reason))
            else:
                if result.traceback_text is not None:
                    error.__cause__ = RemoteTraceback(result.traceback_text)
                run.settle(future, ERROR, error)
        else:
            run.settle(future, FINISHED, result)

    def fail(self, task: Task, error: BaseException) -> None:
        if not self._take(task):
            return
        future = task.let_go()
        if self.run.cancelled.is_set():
            self.run.cancel_pending(future, by_run=True)
        else:
            self.run.settle(future, ERROR, error)

    def cancel_all(self) -> None:
        with self.lock:
            tasks = list(self.live.values())
            self.pending.clear()
            self.live.clear()
        self.drivers.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.pool, concurrent.futures.ProcessPoolExecutor):
            terminate(self.pool)
        elif self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for task in tasks:
            self.run.cancel_pending(task.let_go(), by_run=True)

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int:
        # A recorded task stays in `pending` (or a driver's batch) until compute() skips
        # it; it lets go of its Future now, so that nothing keeps a cancelled Future alive.
        with self.lock:
            for future in futures:
                task = self.live.get(future._key)
                if task is not None and task.future is future:
                    del self.live[future._key]
                    task.let_go()
        return sum(self.run.cancel_pending(future, by_run=False) for future in futures)

    def close(self, cancelled: bool) -> str | None:
        if cancelled:
            # A thread cannot be stopped: running tasks are left to finish on their own.
            self.drivers.shutdown(wait=False, cancel_futures=True)
            if isinstance(self.pool, concurrent.futures.ProcessPoolExecutor):
                interruptible.shut_down(self.pool, cancel_futures=True)
            elif self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            return None
        self.flush()
        interruptible.shut_down(self.drivers)
        if self.pool is not None:
            interruptible.shut_down(self.pool)
        return None


def _split_on_others(batch: list[Task]) -> tuple[list[Task], list[Task]]:
    """``batch`` in two, in order: the tasks that need nothing another graph computes,
    and those that do (a pending dependency outside the batch, or one of these)."""
    own = {task.key for task in batch}
    now: list[Task] = []
    later: list[Task] = []
    waiting: set[str] = set()
    for task in batch:
        if any(
            dep._key in waiting or (dep._status is PENDING and dep._key not in own)
            for dep in task.deps
        ):
            waiting.add(task.key)
            later.append(task)
        else:
            now.append(task)
    return now, later


def _wait_for_others(batch: list[Task]) -> None:
    """Wait for the dependencies of ``batch`` that another graph computes."""
    own = {task.key for task in batch}
    others = {
        id(dep): dep
        for task in batch
        for dep in task.deps
        if dep._status is PENDING and dep._key not in own
    }
    if others:
        block_until_done(list(others.values()), None)


class _SharedConfig:
    """An executor's ``dask.config.set(config)`` while any of its graphs computes: set by
    the first graph in, unset by the last one out (graphs overlap)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._users = 0

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                _PROCESS_CONFIG.add(self, self._config)
            self._users += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                _PROCESS_CONFIG.remove(self)


class _ProcessConfig:
    """The one owner of the settings every executor's graphs set in dask's global
    config. Two ``dask.config.set`` that end in another order than they began leave the
    first one's settings behind (an executor's ``scheduler``, a bound method that does
    not pickle, then went to every Dask worker process spawned after), so the settings of
    the executors computing now are unset and set again here, the newest on top, and
    the config is as it was once none computes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, dict[str, Any]] = {}  # by owner, oldest first
        self._set: Any = None  # the dask.config.set in force

    def add(self, owner: object, config: dict[str, Any]) -> None:
        with self._lock:
            self._active[id(owner)] = config
            self._apply()

    def remove(self, owner: object) -> None:
        with self._lock:
            del self._active[id(owner)]
            self._apply()

    def _apply(self) -> None:
        if self._set is not None:
            self._set.__exit__(None, None, None)
            self._set = None
        if self._active:
            newest = next(reversed(self._active.values()))
            self._set = dask.config.set(newest)


_PROCESS_CONFIG = _ProcessConfig()
