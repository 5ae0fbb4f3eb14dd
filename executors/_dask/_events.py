"""A run's cancellation Event, as the driver keeps it (SPEC §6).

A run that owns its Event (:class:`OwnRunEvent`) sets it on the scheduler at start,
clears it at cancel (and at stop, so the scheduler forgets it) and tells every worker at
once; its tasks check it before they start (``_flag.py``). A task that did not start
says so through the scheduler's event log; the run reports it with ``task_cancelled``
once per key. A run inside a task borrows its task's Event (:class:`BorrowedRunEvent`);
``disable_cancellation_event=True`` gives a run none (:class:`NoRunEvent`).

Every coroutine here runs on the run's loop; the classes are loop-owned.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import distributed

from .. import signals
from .._future import Future
from .._run import Run
from ._flag import TOPIC, mark_cancelled
from ._session import scheduler_rpc

__all__ = ["BorrowedRunEvent", "NoRunEvent", "OwnRunEvent", "RunEvent"]

# Seconds cancel() and stop give the scheduler to clear the Event and the workers to know.
CLEAR_TIMEOUT = 5.0


class RunEvent:
    """What the tasks of a run check before they start: the Event named :attr:`name`
    (None: they do not check), and the reports of those that did not start."""

    name: str | None = None

    def __init__(self, run: Run, log: Any) -> None:
        self.run = run
        self.log = log
        self._reported: set[str] = set()  # keys reported by task_cancelled

    async def follow(self, client: distributed.Client) -> None:
        """Set the Event up on the scheduler of ``client`` (again after a reconnect:
        the scheduler forgets it when it restarts)."""

    async def clear(self, client: distributed.Client | None) -> None:
        """The run is cancelled: from now on its tasks do not start."""

    async def close(self, client: distributed.Client | None) -> None:
        """The run stops: the scheduler may forget the Event."""
        self._reported.clear()

    def cancelled_by_run(self, future: Future[Any]) -> bool:
        """End ``future`` cancelled because its run was; ``task_cancelled`` once a key."""
        if future._key in self._reported or not self.run.cancel_pending(future, by_run=True):
            return False
        self._reported.add(future._key)
        return True


class NoRunEvent(RunEvent):
    """``disable_cancellation_event=True``: tasks do not check anything before they
    start, and ``should_run()`` inside them stays True."""


class BorrowedRunEvent(RunEvent):
    """Inside a task: subtasks belong to the run of that task, and check its Event,
    which only that run sets and clears."""

    def __init__(self, run: Run, log: Any, name: str | None) -> None:
        super().__init__(run, log)
        self.name = name


class OwnRunEvent(RunEvent):
    """The run's own Event, made at start.

    :param take: the task table's way to hand over the Future of a key that a worker did
        not start (None when the key is not one of the table's: a subtask)."""

    def __init__(self, run: Run, log: Any, take: Callable[[str], Future[Any] | None]) -> None:
        super().__init__(run, log)
        self.name = f"executors-run-{uuid.uuid4().hex}"
        self._take = take
        self._cleared = False
        # distributed's unsubscribe_topic keeps the handler until the scheduler has the
        # message: reports may still come after close, and are dropped then.
        self._closed = False

    async def follow(self, client: distributed.Client) -> None:
        if not self.run.cancelled.is_set():
            await scheduler_rpc(client).event_set(name=self.name)
            client.subscribe_topic(TOPIC, self._on_relay)

    async def clear(self, client: distributed.Client | None) -> None:
        """Clear the Event (once), then tell every worker at once and wait until they
        know: their cached answer may be fresh enough to start a task, and a task not
        started by now must never start (SPEC §6)."""
        if self._cleared:
            return
        self._cleared = True
        if client is None or client.status != "running":
            return  # nobody to tell: a reconnect of a cancelled run does not set it again
        try:
            clearing = scheduler_rpc(client).event_clear(name=self.name)
            await asyncio.wait_for(clearing, CLEAR_TIMEOUT)
            telling = client.run(mark_cancelled, self.name, on_error="return")
            await asyncio.wait_for(telling, CLEAR_TIMEOUT)
        except Exception as exc:
            self.log.warning("cancellation_event_not_cleared", error=repr(exc))

    async def close(self, client: distributed.Client | None) -> None:
        await self.clear(client)
        self._closed = True
        if client is not None and client.status == "running":
            client.unsubscribe_topic(TOPIC)
        await super().close(client)

    def _on_relay(self, event: tuple[float, Any]) -> None:
        """A worker did not start a task of this run (called by distributed on the loop)."""
        msg = event[1]
        if self._closed or not isinstance(msg, dict) or msg.get("run") != self.name:
            return
        key = msg.get("key")
        if not isinstance(key, str) or key in self._reported:
            return
        future = self._take(key)
        if future is not None:
            self.cancelled_by_run(future)
        else:  # a subtask submitted from inside a task of this run
            self._reported.add(key)
            self.run.dispatcher.send(signals.task_cancelled, key=key)
