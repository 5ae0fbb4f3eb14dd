"""The ``Executor`` base class: the API every executor shares (SPEC §3).

The base class owns the API (start, submit, map, wait, cancel, shutdown) and checks its
arguments; each start makes a :class:`Run` (``_run.py``), and a subclass says how the
run's tasks run by the :class:`Backend` it makes for it (:meth:`Executor._backend`).
"""

from __future__ import annotations

import abc
import contextlib
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._dispatch import Dispatcher
from ._future import Future
from ._logging import get_logger
from ._mapping import check_map_arguments, map_items
from ._run import Backend, Run, not_running
from ._waiting import wait_for

__all__ = ["Executor"]

E = TypeVar("E", bound="Executor")
T = TypeVar("T")


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
            run = Run(self, Dispatcher(f"executors-dispatch-{id(self):x}", self, self._log))
            run.open(self._backend)
            with self._lifecycle_lock:
                self._run = run
            run.opened(self)
        finally:
            with self._lifecycle_lock:
                self._starting = False

    def _end(self, exc: BaseException | None) -> None:
        """Stop the run: cancel it first if leaving by ``exc``, else finish its work."""
        run = self._run
        if run is not None:
            run.stop(exc)

    def _closed(self, run: Run, report: str | None) -> None:
        """``run``'s backend has closed; ``report`` is what its ``close`` returned."""

    def _forget(self, run: Run) -> None:
        """``run`` has ended: the executor can be started again."""
        with self._lifecycle_lock:
            if self._run is run:
                self._run = None

    # -- the API ---------------------------------------------------------------------------

    def _running(self) -> Run:
        """The run, if it takes work.

        :raises RuntimeError: when there is none, or it is stopping or was cancelled."""
        run = self._run
        if run is None:
            raise RuntimeError(not_running(self._executor_id))
        if run.closing or run.cancelled.is_set():  # inline: submit's hot path (P3)
            run.check_taking_work()
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
        return self._running().submit(fn, args, kwargs, extra_context)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | str = "auto",
        buffersize: int | None = None,
        extra_context: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> Generator[T, None, None]:
        """``fn`` over the zipped ``iterables``; yield the results in order, as
        ``concurrent.futures.Executor.map`` does (Python 3.14's).

        Each item's ``map_index`` is its position. Closing the iterator early cancels
        the tasks whose results it has not yielded.

        :param timeout: seconds from the call within which each result must be ready.
        :param chunksize: run this many consecutive items as one task, yielding their
            results one by one; an item that raises is raised at its place.
        :param buffersize: keep at most this many chunks submitted and not yet yielded,
            reading the iterables only as results are consumed (an endless generator
            works); without it, every item is submitted at the call.
        :param progress: draw a progress bar of the items on stderr, on a terminal.
        :raises ValueError: for a chunk or buffer size that is not a positive int, or an
            ``extra_context`` with ``key`` or ``map_index``.
        :raises TimeoutError: when a result is not ready ``timeout`` seconds after the call.
        """
        check_map_arguments(chunksize, buffersize, extra_context)
        return map_items(
            self._running(), fn, iterables, timeout, chunksize, buffersize, extra_context, progress
        )

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
        return wait_for(futures, timeout, progress)

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
        return run.cancel(reason)

    # -- what an executor kind says -------------------------------------------------------

    @abc.abstractmethod
    def _backend(self, run: Run) -> Backend:
        """The backend of ``run``, not yet opened (see ``_run.Backend``)."""
