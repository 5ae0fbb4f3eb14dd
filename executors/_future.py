"""``Future``, the handle ``submit`` returns on every executor.

``Future`` is a ``concurrent.futures.Future``, so that ``concurrent.futures.wait`` and
``as_completed``, ``asyncio.wrap_future`` and ``loop.run_in_executor`` take it. Those
read three things of a Future besides its public methods: ``_condition`` (which they
hold while they look), ``_state`` (in concurrent.futures' words) and ``_waiters`` (where
they put a waiter to be told). This module keeps its own state in ``_status``, in one
lock for every Future, and shows those three on demand (see :class:`Future`), so that a
Future nobody waits on through concurrent.futures costs nothing more (P3).
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures._base as _cf
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from . import _interruptible as interruptible

__all__ = [
    "CANCELLED",
    "ERROR",
    "FINISHED",
    "NOT_FETCHED",
    "PENDING",
    "Future",
    "Waiter",
    "deadline",
    "remaining",
]

T = TypeVar("T")

PENDING = "pending"
FINISHED = "finished"
ERROR = "error"
CANCELLED = "cancelled"

# The value of a FINISHED Future whose result is still on the cluster: result() fetches it.
NOT_FETCHED: Any = type("NotFetched", (), {"__repr__": lambda self: "NOT_FETCHED"})()

# One lock for every Future's state change: each critical section is a few attribute
# writes, so sharing it costs less than a lock per Future. Reentrant, and shown to
# concurrent.futures as every Future's ``_condition``: its wait() acquires the condition
# of each Future it is given, one after the other, in one thread.
_state_lock = threading.RLock()
_condition = threading.Condition(_state_lock)

# concurrent.futures' words for our states; an error is a FINISHED Future there.
_CF_STATE = {
    PENDING: _cf.PENDING,
    FINISHED: _cf.FINISHED,
    ERROR: _cf.FINISHED,
    CANCELLED: _cf.CANCELLED_AND_NOTIFIED,
}


class _Owner(Protocol):
    """What a Future needs from the run that made it."""

    def prepare(self, futures: Sequence[Future[Any]]) -> None: ...

    def want(self, futures: Sequence[Future[Any]]) -> None: ...

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None: ...

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int: ...

    def call_soon(self, fn: Callable[..., Any], /, *args: Any) -> None: ...


class Waiter:
    """Wakes one blocked caller when ``count`` Futures are done, or at the first failure."""

    __slots__ = ("_count", "_fail_fast", "_lock", "event", "failed")

    def __init__(self, count: int, fail_fast: bool = False) -> None:
        self._count = count
        self._fail_fast = fail_fast
        self._lock = threading.Lock()
        self.event = threading.Event()
        self.failed: Future[Any] | None = None

    def notify(self, future: Future[Any]) -> None:
        with self._lock:
            self._count -= 1
            if future._status is not FINISHED and self.failed is None:
                self.failed = future
            if self._count <= 0 or (self._fail_fast and self.failed is not None):
                self.event.set()


class Future(concurrent.futures.Future[T]):
    """The result of one submitted task: a ``concurrent.futures.Future``.

    Where it differs from one made by a ``concurrent.futures`` executor: results are
    held once computed (fetched from the cluster when first asked for, on Dask) and can
    be read again; ``add_done_callback`` callbacks run on the executor's dispatcher
    thread, never in the caller's; ``cancel()`` succeeds on a task that has not ended,
    running or not (a Dask task is told through ``should_run()``), so ``running()`` is
    always False; and ``key`` names the task.
    """

    __slots__ = ("_callbacks", "_foreign", "_key", "_owner", "_status", "_value", "_waiter")

    def __init__(self, key: str, owner: _Owner, state: str = PENDING, value: Any = None) -> None:
        # concurrent.futures.Future.__init__ is not called: its lock, list and state
        # are shown on demand by the properties below.
        self._key = key
        self._owner = owner
        self._status = state
        self._value = value
        # None, one waiter, or a list of them: most Futures only ever have the one
        # waiter of a wait() call, and a list each would be 10k objects more for the
        # garbage collector to go through in a 10k-task wait (P4).
        self._waiter: Any = None
        self._foreign: list[Any] | None = None  # concurrent.futures' waiters
        self._callbacks: list[Callable[[Future[T]], Any]] | None = None

    # -- what concurrent.futures.wait/as_completed read --------------------------------

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        return _condition

    @property
    def _state(self) -> str:  # type: ignore[override]
        return _CF_STATE[self._status]

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        """concurrent.futures' waiters, told in :meth:`_settle`; read under the lock.

        concurrent.futures' wait() and as_completed() read it to install a waiter and
        block: as our own blocking calls do, they first get the Future computed (a lazy
        executor starts the work; in a Dask task, the thread leaves the worker's pool)."""
        if self._status is PENDING:
            self._owner.prepare((self,))
        foreign = self._foreign
        if foreign is None:
            foreign = self._foreign = []
        return foreign

    @property
    def key(self) -> str:
        """The task's unique key, ``"{name}-{uuid4 hex}"``."""
        return self._key

    def __repr__(self) -> str:
        return f"<executors.Future {self._key!r} {self._status}>"

    def done(self) -> bool:
        """True once the task finished, failed or was cancelled."""
        return self._status is not PENDING

    def cancelled(self) -> bool:
        """True if the Future ended cancelled."""
        return self._status is CANCELLED

    def cancel(self) -> bool:
        """Cancel the task if it has not ended, running or not; False once it has (its
        result stays)."""
        state = self._status
        if state is not PENDING:
            return state is CANCELLED
        return self._owner.cancel_futures((self,)) > 0

    def running(self) -> bool:
        """Always False: a task that has not ended can still be cancelled (see
        :meth:`cancel`), which is what ``running()`` means in concurrent.futures."""
        return False

    def result(self, timeout: float | None = None) -> T:
        """The task's return value, waiting up to ``timeout`` seconds for it.

        :raises TimeoutError: when the task is not done within ``timeout``.
        :raises executors.CancelledError: when the Future was cancelled.
        :raises Exception: the task's own exception, with its traceback.
        """
        if self._status is PENDING or self._value is NOT_FETCHED:
            try:
                self._bring(timeout)
            except TimeoutError:
                raise TimeoutError(f"task {self._key!r}: no result within {timeout} s") from None
        if self._status is FINISHED:
            return self._value  # type: ignore[no-any-return]
        raise self._value

    def _bring(self, timeout: float | None) -> None:
        """Wait for the task and bring its result here (it may end in error meanwhile)."""
        until = deadline(timeout)
        if self._status is PENDING:
            self._owner.prepare((self,))
            # An executor that fetches results (DaskExecutor) waits for the task and brings
            # its result back in the same trip to its loop: one thread hop less (P2).
            self._owner.fetch([self], timeout)
            self._wait(remaining(until))
        if self._status is FINISHED and self._value is NOT_FETCHED:
            self._owner.fetch([self], remaining(until))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception, or None if it succeeded.

        :raises TimeoutError: when the task is not done within ``timeout``.
        :raises executors.CancelledError: when the Future was cancelled.
        """
        if self._status is PENDING:
            self._owner.prepare((self,))
            try:
                self._wait(timeout)
            except TimeoutError:
                raise TimeoutError(f"task {self._key!r} not done within {timeout} s") from None
        if self._status is CANCELLED:
            raise self._value
        return self._value if self._status is ERROR else None

    def add_done_callback(self, fn: Callable[[Future[T]], Any]) -> None:
        """Call ``fn(future)`` on the dispatcher thread once the Future is done.

        A lazy executor (LocalDaskExecutor) starts computing the Future then: a callback
        is how ``asyncio.wrap_future`` and ``await`` wait for it."""
        if self._on_done(fn):
            self._owner.want((self,))

    def _on_done(self, fn: Callable[[Future[T]], Any]) -> bool:
        """``add_done_callback`` for a caller that starts the Future itself, with others
        (map's chunks: a LocalDaskExecutor then computes them as one graph, not one graph
        each). True if the Future was pending (else ``fn`` is called soon)."""
        with _state_lock:
            pending = self._status is PENDING
            if pending:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
        if not pending:
            self._owner.call_soon(fn, self)
        return pending

    # -- for executors ----------------------------------------------------------------

    def _wait(self, timeout: float | None) -> None:
        """Block until done, or raise TimeoutError; the caller has called ``prepare``
        and words the error (it knows the timeout it was given)."""
        waiter = Waiter(1)
        if self._add_waiter(waiter) and not interruptible.wait(waiter.event, timeout):
            self._remove_waiter(waiter)
            if self._status is PENDING:
                raise TimeoutError

    def _add_waiter(self, waiter: Any) -> bool:
        """Register ``waiter``; False (and not registered) if already done."""
        with _state_lock:
            if self._status is not PENDING:
                return False
            waiters = self._waiter
            if waiters is None:
                self._waiter = waiter
            elif type(waiters) is list:
                waiters.append(waiter)
            else:
                self._waiter = [waiters, waiter]
            return True

    def _remove_waiter(self, waiter: Any) -> None:
        with _state_lock:
            waiters = self._waiter
            if waiters is waiter:
                self._waiter = None
            elif type(waiters) is list and waiter in waiters:
                waiters.remove(waiter)

    def _fetch_failed(self, error: BaseException) -> None:
        """The task finished but its result cannot be brought here: from now on the
        Future holds ``error`` instead, so that it is raised, not fetched again."""
        with _state_lock:
            if self._status is FINISHED and self._value is NOT_FETCHED:
                self._status = ERROR
                self._value = error

    def _settle(self, state: str, value: Any) -> bool:
        """Move to a final state; False if another thread settled it first."""
        with _state_lock:
            if self._status is not PENDING:
                return False
            self._status = state
            self._value = value
            waiters, self._waiter = self._waiter, None
            callbacks, self._callbacks = self._callbacks, None
            if self._foreign:
                # Told under the lock, as concurrent.futures does: its wait() removes its
                # waiter from the list under the lock once it returns.
                for foreign in self._foreign:
                    if state is FINISHED:
                        foreign.add_result(self)
                    elif state is ERROR:
                        foreign.add_exception(self)
                    else:
                        foreign.add_cancelled(self)
        if type(waiters) is list:
            for waiter in waiters:
                waiter.notify(self)
        elif waiters is not None:
            waiters.notify(self)
        if callbacks:
            for fn in callbacks:
                self._owner.call_soon(fn, self)
        return True

    # -- concurrent.futures' executor side, which is the executor's own here ------------

    def set_running_or_notify_cancel(self) -> bool:
        raise RuntimeError("an executors.Future is settled by its executor, not by hand")

    def set_result(self, result: Any) -> None:
        raise RuntimeError("an executors.Future is settled by its executor, not by hand")

    def set_exception(self, exception: BaseException | None) -> None:
        raise RuntimeError("an executors.Future is settled by its executor, not by hand")


def deadline(timeout: float | None) -> float | None:
    """When ``timeout`` seconds from now will have passed (None: never)."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never below 0; None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
