"""One run of an executor (``start()`` to stop): its state, its signals, its end.

A :class:`Run` is what the run's Futures and tasks refer to; it holds its executor
weakly, so that an executor nobody holds any more can be collected while it runs, as a
``concurrent.futures`` executor can: its run is then stopped, its work finished (SPEC
§3). The executor kind's part of a run is its :class:`Backend`, which the run calls.
Runs still open when the interpreter exits are finished first, as concurrent.futures
finishes its work (an exit hook at the end of this module).
"""

from __future__ import annotations

# Imported before the exit hook below is registered: concurrent.futures' own hooks then
# run after ours, while its pools still take work.
import concurrent.futures.process
import concurrent.futures.thread  # noqa: F401
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from . import _interruptible as interruptible
from . import signals
from ._context import TaskContext
from ._dispatch import Dispatcher
from ._future import CANCELLED, ERROR, NOT_FETCHED, PENDING, Future
from ._logging import get_logger
from ._structure import ATOMIC, find_futures
from ._task import Task, task_options
from .exceptions import CancelledError

__all__ = ["Backend", "Owner", "Run", "describe", "not_running"]

_log = get_logger(__name__)

# How long a stop waits for the signal receivers to drain before it gives up and says so.
DISPATCHER_JOIN_TIMEOUT = 30.0


class Owner(Protocol):
    """What a run needs of its executor (``_base.Executor``)."""

    @property
    def executor_id(self) -> str: ...

    @property
    def _log(self) -> Any: ...

    def _closed(self, run: Run, report: str | None) -> None:
        """The run's backend has closed; ``report`` is what its ``close`` returned."""

    def _forget(self, run: Run) -> None:
        """The run has ended: the executor can be started again."""


class Backend(Protocol):
    """What an executor kind does for one run; the :class:`Run` calls it.

    Every method but ``submit`` may block the calling thread; none is called on a
    thread the backend owns, except where said."""

    def open(self) -> str | None:
        """Create or connect what the run needs; the dashboard link, if any. When it
        fails, whatever it made is released before it raises."""

    def after_open(self) -> None:
        """``executor_started`` is queued: run events may follow it now."""

    def submit(self, task: Task) -> None:
        """Take ``task`` (never blocks); settle ``task.future`` through the run."""

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        """The calling thread is about to block on ``futures``: make sure they end."""

    def want(self, futures: Sequence[Future[Any]]) -> None:
        """Someone waits for ``futures`` without blocking (a done callback)."""

    def slots(self) -> int:
        """How many tasks run at once now, about (map's auto chunks keep twice as
        many in flight). Any thread; never blocks."""

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        """Bring the results of ``futures`` here (those whose value is NOT_FETCHED);
        may wait for pending ones first, up to ``timeout``."""

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int:
        """Cancel these pending Futures, in their order, in one go (``Future.cancel()``,
        and map's unyielded rest); how many ended cancelled."""

    def cancel_all(self) -> None:
        """The run was cancelled: stop what has not started, end every pending Future."""

    def close(self, cancelled: bool) -> str | None:
        """Release what ``open`` made; unless ``cancelled``, finish the submitted work
        first. The run's performance report, if one was asked for."""


def not_running(executor_id: str) -> str:
    return (
        f"{executor_id} is not running: submit inside 'with executor:' "
        "(or 'with executor.start():')"
    )


def describe(exc: BaseException) -> str:
    """``"Type: message"``: an exception as a cancel reason."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Run:
    """One start()..stop() of an executor: what its Futures and tasks refer to."""

    def __init__(self, executor: Owner, dispatcher: Dispatcher) -> None:
        self._executor = weakref.ref(executor)
        self.executor_id = executor.executor_id
        self.log = executor._log
        self.dispatcher = dispatcher
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.reason = "cancelled"
        self.closing = False
        self.ended = threading.Event()  # set once stop has released everything
        self.task_context = TaskContext(self.cancelled, self)
        self.backend: Backend = None  # type: ignore[assignment]  # set by Executor._begin
        self._abandoned: weakref.finalize[Any, Any] | None = None
        # Auto-chunked maps that submit more as their chunks end (``_mapping.Feeder``):
        # a stop that finishes the work submits what they have left first.
        self.feeders: set[Any] = set()
        # Every auto-chunked map of the run, while anything holds it (a chunk out holds
        # it): a stop waits until none has a chunk out, so that what a chunk that ended
        # early leaves is sent while the run still takes work.
        self.maps: weakref.WeakSet[Any] = weakref.WeakSet()
        self._dashboard_link: str | None = None
        # Futures by the keys given in extra_context (guarded by `lock`): two live tasks
        # must never share a key (on Dask they would share one task). Weak: a Future the
        # caller dropped is no task of the run once the backend let go of it too.
        self.explicit_keys: weakref.WeakValueDictionary[str, Future[Any]] = (
            weakref.WeakValueDictionary()
        )

    @property
    def executor(self) -> Owner | None:
        """The executor, while anybody holds it."""
        return self._executor()

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

    # -- taking work ---------------------------------------------------------------------

    def check_taking_work(self) -> None:
        """:raises RuntimeError: when the run is stopping, or was cancelled."""
        if self.closing:
            raise RuntimeError(not_running(self.executor_id))
        if self.cancelled.is_set():
            raise RuntimeError(
                f"the run of {self.executor_id} was cancelled ({self.reason}); it takes no new "
                "work until it is stopped and started again"
            )

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        extra_context: Mapping[str, Any] | None,
    ) -> Future[Any]:
        """``Executor.submit`` of this run (see there), once :meth:`check_taking_work`
        passed; map submits its chunks here, so that it holds the run and not the
        executor (an executor nobody holds is stopped when it is collected, its work
        finished, as concurrent.futures does)."""
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
            if dep._owner is not self and (dep._status is PENDING or dep._value is NOT_FETCHED):
                raise ValueError(
                    f"{dep!r} belongs to another executor or run and its result is not here; "
                    "pass Futures of this run, or call its result() first"
                )
        future: Future[Any] = Future(key, self)
        if extra_context is not None and "key" in extra_context:
            self.claim_key(future)
        self.backend.submit(Task(fn, args, kwargs, tuple(found), options, future))
        return future

    # -- what a Future asks of its run ---------------------------------------------------

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        self.backend.prepare(futures)

    def want(self, futures: Sequence[Future[Any]]) -> None:
        self.backend.want(futures)

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        self.backend.fetch(futures, timeout)

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int:
        return self.backend.cancel_futures(futures)

    def call_soon(self, fn: Callable[..., Any], /, *args: Any) -> None:
        self.dispatcher.call(fn, *args)

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

    def settle_from_deps(self, future: Future[Any], deps: Sequence[Future[Any]]) -> bool:
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

    # -- its life ------------------------------------------------------------------------

    def open(self, backend: Callable[[Run], Backend]) -> None:
        """Make the run's backend and open it; a start that fails delivers its signals
        and ends the dispatcher before it raises."""
        try:
            self.backend = backend(self)
            dashboard_link = self.backend.open()
        except BaseException:
            self.dispatcher.close(DISPATCHER_JOIN_TIMEOUT)
            raise
        self._dashboard_link = dashboard_link

    def opened(self, executor: Owner) -> None:
        """The run is the executor's now: ``executor_started`` goes first, the backend's
        events after it. Finish the run at interpreter exit, or when ``executor`` is
        collected while it runs."""
        with _open_runs_lock:
            _open_runs.add(self)
        self._abandoned = weakref.finalize(executor, _stop_abandoned, self)
        self._abandoned.atexit = False  # the exit hook below finishes it first
        self.dispatcher.send(signals.executor_started, dashboard_link=self._dashboard_link)
        self.log.info("executor_started", dashboard_link=self._dashboard_link)
        self.backend.after_open()

    def cancel(self, reason: str) -> bool:
        """Cancel the run once: ``run_cancelled``, then the backend cancels its tasks."""
        with self.lock:
            if self.cancelled.is_set():
                return False
            self.reason = reason
            self.cancelled.set()
        self.dispatcher.send(signals.run_cancelled, reason=reason)
        self.log.info("run_cancelled", reason=reason)
        if self.backend is not None:
            self.backend.cancel_all()
        return True

    def stop(self, exc: BaseException | None = None) -> None:
        """Stop the run: cancel it first if leaving by ``exc``, else finish its work;
        release everything; ``executor_stopped`` last.

        When another thread is stopping it already, wait until that is done (not on
        the dispatcher thread: the stop waits for the dispatcher)."""
        interrupted: BaseException | None = None
        if exc is None and not self.cancelled.is_set():
            try:
                self._finish_maps()
            except KeyboardInterrupt as error:  # leave as by Ctrl-C: cancel, then raise
                interrupted = exc = error
        with self.lock:
            stopping_elsewhere = self.closing
            self.closing = True
        if stopping_elsewhere:
            if exc is not None:
                self.cancel(describe(exc))
            if threading.current_thread() is not self.dispatcher.thread:
                interruptible.wait(self.ended)
            if interrupted is not None:
                raise interrupted
            return
        if self._abandoned is not None:
            self._abandoned.detach()
        report = None
        try:
            if exc is not None:
                self.cancel(describe(exc))
            try:
                report = self.backend.close(self.cancelled.is_set())
            except KeyboardInterrupt:
                self.cancel("KeyboardInterrupt")
                report = self.backend.close(True)
                raise
        finally:
            executor = self.executor
            if executor is not None:
                executor._closed(self, report)
            cancelled = self.cancelled.is_set()
            self.dispatcher.send(signals.executor_stopped, cancelled=cancelled)
            self.log.info("executor_stopped", cancelled=cancelled)
            try:
                self.dispatcher.close(DISPATCHER_JOIN_TIMEOUT)
            finally:
                if executor is not None:
                    executor._forget(self)
                with _open_runs_lock:
                    _open_runs.discard(self)
                self.ended.set()
        if interrupted is not None:
            raise interrupted

    def _finish_maps(self) -> None:
        """Before `closing`, while the run still takes work: submit what the maps have
        left, and wait until none has a chunk out (not on the dispatcher thread, which
        runs the chunks' callbacks)."""
        for feeder in list(self.feeders):
            feeder.submit_rest()
        if threading.current_thread() is not self.dispatcher.thread:
            for feeder in list(self.maps):
                feeder.drain()


def _stop_abandoned(run: Run) -> None:
    """The executor of an open run was collected (nobody held it any more): finish the
    run's work and release it, as concurrent.futures does for a collected executor.

    On a thread of its own: a collection may happen on any thread, the run's own ones
    included, and a stop waits for those."""
    run.log.info("executor_abandoned")
    threading.Thread(target=run.stop, name=f"executors-abandoned-{id(run):x}", daemon=True).start()


# Whether a thread can start once the script has ended, in the exit hook below: not in
# CPython 3.12.0 to 3.12.2 (gh-113964, fixed in 3.12.3). Backends start early the threads
# their work needs, where they can.
THREADS_START_AT_EXIT = not ((3, 12) <= sys.version_info[:3] < (3, 12, 3))

# Every run open and not yet ended, for the hook below (guarded by _open_runs_lock).
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
    if not runs:
        return
    interrupted = False
    try:
        ids = [run.executor_id for run in runs]
        _log.info("finishing_open_runs", runs=len(runs), executors=ids)
    except KeyboardInterrupt:
        interrupted = True
    for run in runs:
        try:
            if interrupted:
                run.cancel("KeyboardInterrupt")
            run.stop()
        except KeyboardInterrupt:
            if interrupted:
                return
            interrupted = True
            run.cancel("KeyboardInterrupt")
            run.stop()


threading._register_atexit(_finish_open_runs)  # type: ignore[attr-defined]
