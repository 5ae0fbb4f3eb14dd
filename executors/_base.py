"""The ``Executor`` base class: the API every executor shares (SPEC §3).

The base class owns the lifecycle (start, cancel, stop), validation, the dispatcher and
the signals every executor sends; a subclass says how tasks run through a handful of
``_open``/``_submit``/``_prepare``/``_cancel_*``/``_close`` hooks.
"""

from __future__ import annotations

import abc
import concurrent.futures.process
import concurrent.futures.thread  # noqa: F401 (see _finish_open_runs)
import contextlib
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from . import signals
from ._context import TaskContext
from ._dispatch import Dispatcher
from ._future import (
    CANCELLED,
    ERROR,
    FINISHED,
    NOT_FETCHED,
    PENDING,
    Future,
    _deadline,
    _remaining,
    block_until_done,
    fetch_all,
    prepare_all,
)
from ._logging import get_logger
from ._progress import open_progress_bar
from ._structure import ATOMIC, find_futures, replace_futures
from ._task import Task, task_options
from .exceptions import CancelledError

__all__ = ["Executor", "Run"]

E = TypeVar("E", bound="Executor")
T = TypeVar("T")

# How long stop() waits for the signal receivers to drain before it gives up and says so.
DISPATCHER_JOIN_TIMEOUT = 30.0

# Every run started and not yet ended, for the hook below (guarded by _open_runs_lock).
_open_runs: set[Run] = set()
_open_runs_lock = threading.Lock()


def _finish_open_runs() -> None:
    """At interpreter exit, finish the work of every run still open, then stop it.

    As concurrent.futures does (SPEC §3): a script that ends with a run open, or right
    after ``shutdown(wait=False)``, does not lose its work. A Ctrl-C meanwhile cancels
    what is left; another one stops waiting.

    Registered with threading's exit hooks, which run before threads are joined and in
    reverse order: after concurrent.futures' own (its ``thread`` and ``process`` modules
    are imported above for that), so ours runs first, while its pools still take work.
    """
    with _open_runs_lock:
        runs = list(_open_runs)
    interrupted = False
    for run in runs:
        try:
            if interrupted:
                run.executor._cancel_run(run, "KeyboardInterrupt")
            run.executor._end(None)
        except KeyboardInterrupt:
            if interrupted:
                return
            interrupted = True
            run.executor._cancel_run(run, "KeyboardInterrupt")
            run.executor._end(None)


threading._register_atexit(_finish_open_runs)  # type: ignore[attr-defined]


class Run:
    """One start()..stop() of an executor: what its Futures and tasks refer to."""

    def __init__(self, executor: Executor, dispatcher: Dispatcher) -> None:
        self.executor = executor
        self.dispatcher = dispatcher
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.reason = "cancelled"
        self.closing = False
        self.ended = threading.Event()  # set once stop has released everything
        self.task_context = TaskContext(self.cancelled, self)
        self.backend: Any = None  # the executor's own per-run state
        # Futures by the keys given in extra_context (guarded by `lock`): two live tasks
        # must never share a key (on Dask they would share one task). Weak: a Future the
        # caller dropped is no task of the run once the backend let go of it too.
        self.explicit_keys: weakref.WeakValueDictionary[str, Future[Any]] = (
            weakref.WeakValueDictionary()
        )

    def claim_key(self, future: Future[Any]) -> None:
        """Take ``future``'s explicit key for it.

        :raises ValueError: when a task of the run that is still live has that key (not
            ended, or on Dask ended with its result still on the cluster).
        """
        key = future._key
        with self.lock:
            holder = self.explicit_keys.get(key)
            if holder is not None and (holder._status is PENDING or holder._value is NOT_FETCHED):
                raise ValueError(
                    f"extra_context['key'] {key!r} is already used by a live task of this "
                    "run; give each task its own key (or none: a unique one is made)"
                )
            self.explicit_keys[key] = future

    # -- the Future owner protocol -------------------------------------------------------

    def prepare(self, futures: Iterable[Future[Any]]) -> None:
        self.executor._prepare(self, futures)

    def want(self, futures: Iterable[Future[Any]]) -> None:
        self.executor._want(self, futures)

    def cancel_future(self, future: Future[Any]) -> bool:
        return self.executor._cancel_future(self, future)

    def call_soon(self, fn: Callable[..., Any], /, *args: Any) -> None:
        self.dispatcher.call(fn, *args)

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        self.executor._fetch(self, futures, timeout)

    # -- settling Futures, with their signals --------------------------------------------

    def settle(self, future: Future[Any], state: str, value: Any, by_run: bool = False) -> bool:
        """End ``future`` in ``state``; send ``task_cancelled`` (when ``by_run``) and
        ``task_finished``. False if it had already ended."""
        if not future._settle(state, value):
            return False
        self.announce(future, state, by_run)
        return True

    def announce(self, future: Future[Any], state: str, by_run: bool = False) -> None:
        """Send the signals for a Future that has just ended in ``state``."""
        if by_run:
            self.dispatcher.send(signals.task_cancelled, key=future._key)
        if signals.task_finished.receivers:
            self.dispatcher.send(signals.task_finished, key=future._key, state=state)

    def cancel_pending(self, future: Future[Any], by_run: bool) -> bool:
        reason = self.reason if by_run else "cancelled"
        return self.settle(future, CANCELLED, CancelledError(future._key, reason), by_run)

    def settle_from_deps(self, future: Future[Any], deps: Iterable[Future[Any]]) -> bool:
        """End ``future`` as its first failed dependency ended; False if none failed."""
        for dep in deps:
            if dep._status is ERROR:
                return self.settle(future, ERROR, dep._value)
            if dep._status is CANCELLED:
                return self.settle(
                    future,
                    CANCELLED,
                    CancelledError(future._key, f"dependency {dep._key} was cancelled"),
                )
        return False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rebuild(cls: type[E], settings: dict[str, Any], executor_id: str) -> E:
    executor = cls(**settings)
    executor._executor_id = executor_id
    executor._log = get_logger(cls.__module__, executor_id=executor_id)
    return executor


class Executor(abc.ABC):
    """Run functions somewhere, behind one blocking API.

    Use it as a context manager (``with ex:`` or ``with ex.start():``), ``submit``
    functions, and ``wait`` for their results.
    """

    def __init__(self) -> None:
        self._executor_id = f"{type(self).__name__}: {uuid.uuid4()}"
        self._log = get_logger(type(self).__module__, executor_id=self._executor_id)
        self._lifecycle_lock = threading.Lock()
        self._run: Run | None = None
        self._starting = False

    # -- identity, settings, pickling ------------------------------------------------------

    @property
    def executor_id(self) -> str:
        """``"<ClassName>: <uuid>"``, stable for the instance (and its pickled copies)."""
        return self._executor_id

    @abc.abstractmethod
    def _settings(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this executor."""

    def duplicate(self: E) -> E:
        """A new, unstarted executor with the same settings."""
        return type(self)(**self._settings())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Executor)
        return self._settings() == other._settings()

    def __hash__(self) -> int:
        # Equal executors must hash alike and settings may be unhashable: hash the type.
        return hash(type(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # Threads, pools and clients never travel: the copy is unstarted, same settings.
        return (_rebuild, (type(self), self._settings(), self._executor_id))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        state = "running" if self._run is not None else "stopped"
        return f"<{type(self).__name__}({settings}) {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    @contextlib.contextmanager
    def start(self: E) -> Iterator[E]:
        """Start the executor for the ``with`` block and release everything after it.

        Leaving by an exception (KeyboardInterrupt included) cancels the run first.

        :raises RuntimeError: if the executor is already running.
        """
        self._begin()
        try:
            yield self
        except BaseException as exc:
            self._end(exc)
            raise
        self._end(None)

    def __enter__(self: E) -> E:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End the run, as ``concurrent.futures.Executor.shutdown`` does.

        :param wait: wait for the submitted work to finish and the resources to be
            released; with False, that happens on a background thread.
        :param cancel_futures: cancel the run first: pending Futures are cancelled.
        """
        if cancel_futures:
            self.cancel("shutdown")
        if wait:
            self._end(None)
        elif self._run is not None:
            # Daemon, as the loop and dispatcher threads: the exit hook above waits for
            # the run to end, before concurrent.futures stops taking work.
            threading.Thread(
                target=self._end, args=(None,), name=f"executors-shutdown-{id(self):x}", daemon=True
            ).start()

    def _begin(self) -> None:
        with self._lifecycle_lock:
            if self._run is not None or self._starting:
                raise RuntimeError(
                    f"{self._executor_id} is already running; leave its 'with' block or call "
                    "shutdown() before starting it again"
                )
            self._starting = True
        try:
            dispatcher = Dispatcher(f"executors-dispatch-{id(self):x}", self, self._log)
            run = Run(self, dispatcher)
            try:
                dashboard_link = self._open(run)
            except BaseException:
                dispatcher.close(DISPATCHER_JOIN_TIMEOUT)
                raise
            with self._lifecycle_lock:
                self._run = run
            with _open_runs_lock:
                _open_runs.add(run)
            dispatcher.send(signals.executor_started, dashboard_link=dashboard_link)
            self._log.info("executor_started", dashboard_link=dashboard_link)
            self._after_open(run)
        finally:
            with self._lifecycle_lock:
                self._starting = False

    def _end(self, exc: BaseException | None) -> None:
        """Stop the run: cancel it first if leaving by ``exc``, else finish its work.

        When another thread is stopping it already, wait until that is done (not on
        the dispatcher thread: the stop waits for the dispatcher)."""
        with self._lifecycle_lock:
            run = self._run
            if run is None:
                return
            stopping_elsewhere = run.closing
            run.closing = True
        if stopping_elsewhere:
            if exc is not None:
                self._cancel_run(run, _describe(exc))
            if threading.current_thread() is not run.dispatcher.thread:
                run.ended.wait()
            return
        try:
            if exc is not None:
                self._cancel_run(run, _describe(exc))
            try:
                self._close(run, cancelled=run.cancelled.is_set())
            except KeyboardInterrupt:
                self._cancel_run(run, "KeyboardInterrupt")
                self._close(run, cancelled=True)
                raise
        finally:
            cancelled = run.cancelled.is_set()
            run.dispatcher.send(signals.executor_stopped, cancelled=cancelled)
            self._log.info("executor_stopped", cancelled=cancelled)
            try:
                run.dispatcher.close(DISPATCHER_JOIN_TIMEOUT)
            finally:
                with self._lifecycle_lock:
                    self._run = None
                with _open_runs_lock:
                    _open_runs.discard(run)
                run.ended.set()

    # -- the API ---------------------------------------------------------------------------

    def _running(self) -> Run:
        run = self._run
        if run is None or run.closing:
            raise RuntimeError(
                f"{self._executor_id} is not running: submit inside 'with executor:' "
                "(or 'with executor.start():')"
            )
        if run.cancelled.is_set():
            raise RuntimeError(
                f"the run of {self._executor_id} was cancelled ({run.reason}); it takes no new "
                "work until it is stopped and started again"
            )
        return run

    def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Future[T]:
        """Run ``fn(*args, **kwargs)``; return its Future at once.

        Futures of this run anywhere inside ``args``/``kwargs`` are dependencies: their
        results are passed in their place. ``kwargs`` go to ``fn`` unchanged.

        :param extra_context: ``task_name``, ``task_full_name``, ``map_index``, ``tags``,
            ``key``, ``retries``, ``priority`` (SPEC §3).
        :raises RuntimeError: outside a started executor, or after its run was cancelled.
        :raises ValueError: for bad ``extra_context`` or a Future of another run that is
            not done.
        """
        run = self._running()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        key, options = task_options(fn, extra_context)
        found: dict[Future[Any], None] = {}
        for arg in args:
            if type(arg) not in ATOMIC:
                find_futures(arg, found)
        if kwargs:
            find_futures(kwargs, found)
        for dep in found:
            if dep._owner is not run and (dep._status is PENDING or dep._value is NOT_FETCHED):
                raise ValueError(
                    f"{dep!r} belongs to another executor or run and its result is not here; "
                    "pass Futures of this run, or call its result() first"
                )
        future: Future[T] = Future(key, run)
        if extra_context is not None and "key" in extra_context:
            run.claim_key(future)
        task = Task(fn, args, kwargs, tuple(found), options, future)
        self._submit(run, task)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        extra_context: Mapping[str, Any] | None = None,
    ) -> Iterator[T]:
        """Submit ``fn`` over the zipped ``iterables`` now; yield the results in order.

        Each item's ``map_index`` is its position. Closing the iterator early cancels
        the Futures not yet yielded.

        :raises ValueError: if ``extra_context`` has ``key`` or ``map_index``.
        :raises TimeoutError: when a result is not ready ``timeout`` seconds after the call.
        """
        deadline = _deadline(timeout)
        context = dict(extra_context or {})
        for reserved in ("key", "map_index"):
            if reserved in context:
                raise ValueError(
                    f"map() sets each task's {reserved!r} itself; remove it from extra_context"
                )
        futures = [
            self.submit(fn, *items, extra_context={**context, "map_index": index})
            for index, items in enumerate(zip(*iterables, strict=False))
        ]
        return self._map_results(futures, deadline, timeout)

    @staticmethod
    def _map_results(
        futures: list[Future[T]], deadline: float | None, timeout: float | None
    ) -> Iterator[T]:
        try:
            futures.reverse()
            while futures:
                future = futures[-1]
                try:
                    if future._status is PENDING or future._value is NOT_FETCHED:
                        future._bring(_remaining(deadline))
                except TimeoutError:
                    raise TimeoutError(
                        f"map(): the result of {future.key!r} was not ready within the "
                        f"timeout of {timeout} s"
                    ) from None
                yield future.result()
                futures.pop()
        finally:
            for future in futures:
                future.cancel()

    def wait(self, futures: Any, timeout: float | None = None, progress: bool = False) -> Any:
        """Wait for every Future in ``futures``; return the same structure with results.

        ``futures`` may be a Future or any nesting of lists, tuples, sets and dicts.
        ``progress=True`` draws a progress bar on stderr when it is a terminal (with
        tqdm, the ``progress`` extra).

        :raises TimeoutError: when they are not all done within ``timeout`` (the tasks
            keep running).
        :raises Exception: the first task error, with its own type and traceback.
        :raises executors.CancelledError: when a Future was cancelled.
        """
        deadline = _deadline(timeout)
        found: dict[Future[Any], None] = {}
        find_futures(futures, found)
        bar = open_progress_bar(found) if progress else None
        try:
            return self._wait(futures, found, timeout, deadline)
        finally:
            if bar is not None:
                bar.close()

    def _wait(
        self,
        futures: Any,
        found: dict[Future[Any], None],
        timeout: float | None,
        deadline: float | None,
    ) -> Any:
        pending = []
        for future in found:
            state = future._status
            if state is PENDING:
                pending.append(future)
            elif state is not FINISHED:
                raise future._value
        if pending:
            prepare_all(pending)
            waiter = block_until_done(pending, timeout, fail_fast=True)
            if waiter.failed is not None:
                raise waiter.failed._value
            if not waiter.event.is_set():
                still = sum(1 for future in pending if future._status is PENDING)
                raise TimeoutError(f"{still} of {len(found)} tasks not done within {timeout} s")
        try:
            fetch_all(found, _remaining(deadline))
        except TimeoutError:
            unfetched = sum(1 for future in found if future._value is NOT_FETCHED)
            raise TimeoutError(
                f"the results of {unfetched} of {len(found)} tasks did not arrive within "
                f"{timeout} s"
            ) from None
        return replace_futures(futures, Future.result)

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel the run: tasks not started never start, pending Futures raise
        :class:`executors.CancelledError`, ``run_cancelled`` is sent once.

        The run takes no new work until the executor is stopped and started again.
        Returns False when there was no run to cancel or it was already cancelled.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, got {reason!r}")
        run = self._run
        if run is None:
            return False
        return self._cancel_run(run, reason)

    def _cancel_run(self, run: Run, reason: str) -> bool:
        with run.lock:
            if run.cancelled.is_set():
                return False
            run.reason = reason
            run.cancelled.set()
        run.dispatcher.send(signals.run_cancelled, reason=reason)
        self._log.info("run_cancelled", reason=reason)
        self._cancel_tasks(run)
        return True

    # -- hooks for executors ---------------------------------------------------------------

    def _open(self, run: Run) -> str | None:
        """Create or connect what the run needs; return the dashboard link, if any."""
        return None

    def _after_open(self, run: Run) -> None:
        """Called once ``executor_started`` is queued: start sending run events."""

    @abc.abstractmethod
    def _submit(self, run: Run, task: Task) -> None:
        """Take ``task``; settle ``task.future`` through ``run.settle`` when it ends."""

    def _prepare(self, run: Run, futures: Iterable[Future[Any]]) -> None:
        """Someone is about to block on ``futures``: make sure they will end."""

    def _want(self, run: Run, futures: Iterable[Future[Any]]) -> None:
        """Someone waits for ``futures`` without blocking (a done callback): make sure
        they will end."""

    def _fetch(self, run: Run, futures: list[Future[Any]], timeout: float | None) -> None:
        """Bring the results of ``futures`` (FINISHED, value NOT_FETCHED) here; may wait
        for pending ones first. Nothing to do where every result is held locally."""

    def _cancel_future(self, run: Run, future: Future[Any]) -> bool:
        """Cancel one pending Future (``Future.cancel()``); True if it ended cancelled."""
        return False

    def _cancel_tasks(self, run: Run) -> None:
        """The run was cancelled: stop what has not started, end every pending Future."""

    def _close(self, run: Run, cancelled: bool) -> None:
        """Release what ``_open`` made; unless ``cancelled``, finish the submitted work."""
