"""A DaskExecutor run's cancellation, as the workers see it (SPEC §6).

Each run keeps a ``distributed.Event`` on the scheduler: set while the run may go on,
cleared by ``cancel()``. A worker reads it before a task starts and for ``should_run()``.
A scheduler round trip per task or per call would cost as much as the task itself, so
each worker process keeps one :class:`RunFlag` per run: the first task of a run on a
worker waits for the answer (bounded), later reads take the cached one and, once it is
older than :data:`FRESH` seconds, refresh it in the background on the worker's loop.
A read that fails or times out means "run": a wrong guess costs some work, never a task.
A cached answer could be stale exactly when it matters, so ``cancel()`` does not rely on
it: it tells every worker at once (:func:`mark_cancelled`) and returns only once they
know, so that a task that had not started by then never starts.

A task that does not start raises :class:`NotStarted` on the worker and tells its run
through the scheduler's event log (topic :data:`TOPIC`), so the executor that owns the
run reports it even when that executor did not submit it (a subtask submitted from
inside a task).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from .._context import TaskContext
from ..exceptions import CancelledError

__all__ = [
    "FRESH",
    "TOPIC",
    "NotStarted",
    "RunFlag",
    "flag_for",
    "mark_cancelled",
    "relay_not_started",
]

TOPIC = "executors"  # the scheduler event-log topic of task-cancelled reports
FRESH = 0.2  # seconds a worker trusts the scheduler's last answer
ASK_TIMEOUT = 0.5  # seconds a worker waits for the scheduler's answer
_PRUNE_AT = 1024  # flags kept per worker process before unused ones are dropped
_UNUSED = 300.0  # seconds after which an unused flag may be dropped


class NotStarted(CancelledError):
    """Raised on a worker instead of a task whose run was cancelled before it started."""


class RunFlag:
    """One run's "may go on" flag as one worker process knows it."""

    __slots__ = ("_refresh", "asks", "at", "cancelled", "context", "name", "used_at", "worker")

    def __init__(self, name: str, worker: Any) -> None:
        self.name = name
        self.worker = worker
        self.cancelled = False  # once True, never False again: a run is not un-cancelled
        self.at = 0.0  # when the scheduler last answered; 0.0 means never
        self.asks = 0  # scheduler round trips made, for tests and diagnostics
        self.used_at = time.monotonic()
        self._refresh: Any = None  # the last refresh sent to the worker's loop
        self.context = TaskContext(None, None, self)

    def should_run(self) -> bool:
        """False once the run is known to be cancelled; never a round trip per call."""
        if self.cancelled:
            return False
        if self.at == 0.0:
            self._record(self._ask())
        elif time.monotonic() - self.at > FRESH:
            refresh = self._refresh
            if refresh is None or refresh.done():
                self._refresh_in_background()
        return not self.cancelled

    def _record(self, is_set: bool | None) -> None:
        if is_set is False:
            self.cancelled = True
        self.at = time.monotonic()

    async def ask_once(self) -> None:
        """On the worker's loop (an ``async def`` task): the first answer, awaited, which
        :meth:`should_run` cannot wait for there."""
        if not self.cancelled and self.at == 0.0:
            self._record(await self._aask())

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        loop = getattr(getattr(self.worker, "loop", None), "asyncio_loop", None)
        if not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed():
            return None
        return loop

    async def _aask(self) -> bool | None:
        self.asks += 1
        try:
            answer = await asyncio.wait_for(
                self.worker.scheduler.event_is_set(name=self.name), ASK_TIMEOUT
            )
        except Exception:  # scheduler gone, busy or closing: the task runs
            return None
        return bool(answer)

    def _ask(self) -> bool | None:
        """The Event's state from the scheduler, or None when it cannot be read in time
        (or not at all: on the worker's own loop, which cannot wait for itself)."""
        loop = self._loop()
        if loop is None or _running_loop() is loop:
            return None
        try:
            return asyncio.run_coroutine_threadsafe(self._aask(), loop).result(ASK_TIMEOUT + 0.5)
        except Exception:
            return None

    def _refresh_in_background(self) -> None:
        loop = self._loop()
        if loop is None:
            return

        async def refresh() -> None:
            self._record(await self._aask())

        try:
            if _running_loop() is loop:  # an async def task, on the worker's loop
                self._refresh = loop.create_task(refresh())
            else:
                self._refresh = asyncio.run_coroutine_threadsafe(refresh(), loop)
        except RuntimeError:  # the loop closed meanwhile
            pass


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_flags: dict[str, RunFlag] = {}
_flags_lock = threading.Lock()


def flag_for(name: str, worker: Any) -> RunFlag:
    """This process's flag for the run whose Event is ``name``."""
    flag = _flags.get(name)
    if flag is None:
        with _flags_lock:
            flag = _flags.get(name)
            if flag is None:
                if len(_flags) >= _PRUNE_AT:
                    _prune()
                flag = _flags[name] = RunFlag(name, worker)
    flag.worker = worker  # the one that asked last: an earlier one may have closed
    flag.used_at = time.monotonic()
    return flag


def mark_cancelled(name: str, dask_worker: Any = None) -> None:
    """Run by ``Client.run`` on every worker when the run ``name`` is cancelled: its
    tasks no longer start in this process, whatever the cached answer said."""
    flag_for(name, dask_worker).cancelled = True


def _prune() -> None:
    old = time.monotonic() - _UNUSED
    for name in [name for name, flag in _flags.items() if flag.used_at < old]:
        del _flags[name]


def relay_not_started(worker: Any, name: str, key: str) -> None:
    """Tell the run ``name`` (through the scheduler's event log) that ``key`` did not run."""
    try:
        worker.log_event(TOPIC, {"action": "task-cancelled", "run": name, "key": key})
    except Exception:  # the worker is closing; the run learns from the Future itself
        pass
