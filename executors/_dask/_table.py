"""The task table of a DaskExecutor run: what was submitted, and what the cluster has.

``submit`` (from any thread) appends to a queue and wakes the loop at most once per
batch; on the loop, the batch goes to Dask as few graph updates as possible (what goes
in one is ``_batches.py``), and each task the cluster has gets an entry: its Dask future
and an asyncio task watching it. The table settles the run's Futures as their tasks
end, forgets a task once its result is here (``_fetch.py`` brings it) or its Future was
dropped after it ended, and submits again what a lost scheduler took.

Everything but :meth:`TaskTable.submit` runs on the run's loop; the table is loop-owned.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Any

import distributed

from .._future import ERROR, FINISHED, NOT_FETCHED, PENDING, Future
from .._pickling import restore_exit_code
from .._run import Run
from .._task import Task
from ._batches import batch_key, call_args
from ._events import RunEvent
from ._fetch import bring_for_callbacks
from ._flag import NotStarted
from ._loop import Loop
from ._on_worker import TaskExit, run_async_task, run_task
from ._recovery import NoRecovery, Recovery
from ._session import Session, WorkerSession

__all__ = ["TaskTable"]


class _Entry:
    """A task the cluster has: its record, its Dask future, the asyncio task watching it.

    The task's Future is held (in the record) while the task runs: a Future the caller
    dropped is still a task of the run, which runs to its end (SPEC §3.3). Once it has
    ended, only weakly (:attr:`ref`): dropping it then releases the Dask future."""

    __slots__ = ("dask_future", "ref", "task", "watcher")

    def __init__(self, task: Task, dask_future: distributed.Future[Any]) -> None:
        self.task = task
        self.dask_future = dask_future
        self.ref: weakref.ref[Future[Any]] | None = None
        self.watcher: asyncio.Task[None] | None = None

    def future(self) -> Future[Any] | None:
        """The task's Future; None once it was dropped after its task ended."""
        future = self.task.future
        if future is not None:
            return future
        assert self.ref is not None
        return self.ref()

    def hold_weakly(self, on_drop: Any) -> None:
        """The task has ended: from now on the caller alone keeps the Future alive."""
        if self.task.future is not None:
            self.ref = weakref.ref(self.task.future, on_drop)
            self.task.future = None  # type: ignore[assignment]

    def held_again(self) -> Task | None:
        """The record, to submit again, with its Future held again; None if dropped."""
        future = self.future()
        if future is None:
            return None
        self.task.future = future
        return self.task


class TaskTable:
    """The run's submitted tasks and the cluster's entries for them (loop-owned)."""

    def __init__(
        self, run: Run, log: Any, loop: Loop, session: Session | WorkerSession, event: RunEvent
    ) -> None:
        self.run = run
        self.log = log
        self.loop = loop
        self.session = session
        self.event = event
        self.recovery: Recovery | NoRecovery = NoRecovery()
        self.incoming: collections.deque[Task] = collections.deque()  # any thread appends
        self.wake_scheduled = False
        self.live: dict[str, _Entry] = {}

    # -- from the caller's threads ----------------------------------------------------------

    def submit(self, task: Task) -> None:
        self.incoming.append(task)
        # Wake the loop once per batch: the drain clears the flag before it empties the
        # queue, so a task appended after that point schedules a new drain.
        if not self.wake_scheduled:
            self.wake_scheduled = True
            self.loop.call_soon(self.on_wake)

    # -- sending --------------------------------------------------------------------------------

    def on_wake(self) -> None:
        """Send what was submitted, unless a reconnect holds it back meanwhile."""
        self.wake_scheduled = False
        if self.recovery.recovering:
            return
        tasks = []
        while self.incoming:
            tasks.append(self.incoming.popleft())
        self.send(self.session.client, tasks)

    def send(
        self, client: distributed.Client | None, tasks: list[Task], again: bool = False
    ) -> int:
        """Submit ``tasks`` to Dask as few graph updates as possible; how many were sent.

        Each ``Client.submit`` is one ``update-graph`` message that the scheduler handles
        on its own, so the batch goes as one ``Client.map`` per set of Dask options. A
        task whose dependency is still in the unsent batch closes it first: it needs the
        dependency's Dask future. Each task's call is pickled on its own first, so one
        that does not pickle fails alone (SPEC §13), not its batch. ``again``: a
        resubmission (see :meth:`_sendable`)."""
        batches: dict[tuple[Any, ...], list[tuple[Task, tuple[Any, ...]]]] = {}
        unsent: set[str] = set()
        sent = 0
        for task in tasks:
            if not self._sendable(client, task, again):
                continue
            if task.deps and not unsent.isdisjoint(dep._key for dep in task.deps):
                sent += self._send_batches(client, batches)
                batches, unsent = {}, set()
            if task.deps and self.run.settle_from_deps(task.future, task.deps):
                continue
            try:
                call = call_args(task, self.live, self.event.name)
            except (TypeError, RuntimeError) as exc:
                self.run.settle(task.future, ERROR, exc)
                continue
            batches.setdefault(batch_key(task), []).append((task, call))
            unsent.add(task.key)
        return sent + self._send_batches(client, batches)

    def _sendable(self, client: distributed.Client | None, task: Task, again: bool) -> bool:
        """Whether ``task`` still goes to Dask; if not, its Future is settled here. On a
        resubmission a Future that finished but whose result was lost goes again."""
        future = task.future
        if future._status is not PENDING and not (
            again and future._status is FINISHED and future._value is NOT_FETCHED
        ):
            return False
        broken = self.recovery.broken
        if broken is not None:
            self.run.settle(future, ERROR, broken)
            return False
        if self.run.cancelled.is_set() or client is None:
            self.event.cancelled_by_run(future)
            return False
        return True

    def _send_batches(
        self,
        client: distributed.Client | None,
        batches: dict[tuple[Any, ...], list[tuple[Task, tuple[Any, ...]]]],
    ) -> int:
        assert client is not None or not batches
        sent = 0
        for (resources, retries, priority, is_async), batch in batches.items():
            try:
                dask_futures = client.map(  # type: ignore[union-attr]
                    run_async_task if is_async else run_task,
                    *zip(*(call for _, call in batch), strict=True),
                    key=[task.key for task, _ in batch],
                    pure=False,
                    resources=dict(resources) if resources else None,
                    retries=retries,
                    priority=priority,
                )
            except Exception as exc:  # never leave a Future pending: fail it instead
                self.log.exception("submit_failed", keys=len(batch))
                for task, _ in batch:
                    self.run.settle(task.future, ERROR, exc)
                continue
            for (task, _), dask_future in zip(batch, dask_futures, strict=True):
                entry = _Entry(task, dask_future)
                entry.watcher = self.loop.loop.create_task(self._watch(task.key, dask_future))
                self.live[task.key] = entry
            sent += len(batch)
        return sent

    # -- watching -----------------------------------------------------------------------------

    async def _watch(self, key: str, dask_future: distributed.Future[Any]) -> None:
        # What distributed's own as_completed awaits for each future.
        state = dask_future._state
        if state is not None:
            await state.wait()
        entry = self.live.get(key)
        if entry is None or entry.dask_future is not dask_future:
            return
        future = entry.future()
        assert future is not None  # held until the task has ended
        status = dask_future.status
        if status == "finished":
            if future._callbacks and await bring_for_callbacks(self, future, dask_future):
                return
            self.run.settle(future, FINISHED, NOT_FETCHED)
            # The weak reference's callback, not weakref.finalize: half the cost, and it
            # goes with the entry once the entry is no longer needed.
            entry.hold_weakly(lambda ref: self._dropped(key, ref))
        elif status == "error":
            error = await dask_future.exception()
            traceback = await dask_future.traceback()
            self.forget(key)
            if isinstance(error, NotStarted):
                self.event.cancelled_by_run(future)
            elif isinstance(error, TaskExit):  # the task's SystemExit or KeyboardInterrupt
                original = restore_exit_code(error.error)
                original = original.with_traceback(original.__traceback__ or traceback)
                self.run.settle(future, ERROR, original)
            else:
                self.run.settle(future, ERROR, error.with_traceback(traceback))
        elif self.run.cancelled.is_set():
            self.forget(key)
            self.event.cancelled_by_run(future)
        elif not self.recovery.raise_alarm():
            # Dask cancelled it, not us, and there is no reconnect to bring it back (with
            # one, the entry stays, to be submitted again once reconnected).
            self.forget(key)
            self.run.cancel_pending(future, by_run=False)

    # -- forgetting -----------------------------------------------------------------------------

    def forget(self, key: str) -> None:
        """The cluster may forget ``key``'s task (its result is here, or not wanted)."""
        entry = self.live.pop(key, None)
        if entry is not None:
            entry.dask_future.release()

    def take(self, key: str) -> Future[Any] | None:
        """A worker did not start ``key``: forget it; its Future, if it is the table's."""
        entry = self.live.get(key)
        future = entry.future() if entry is not None else None
        if future is not None:
            self.forget(key)
        return future

    def _dropped(self, key: str, ref: weakref.ref[Future[Any]]) -> None:
        """The caller dropped the Future of an ended task: release its Dask future
        (called from whichever thread dropped it)."""
        try:
            self.loop.call_soon(self._forget_dropped, key, ref)
        except (RuntimeError, AssertionError):  # the loop is gone
            pass

    def _forget_dropped(self, key: str, ref: weakref.ref[Future[Any]]) -> None:
        entry = self.live.get(key)
        if entry is not None and entry.ref is ref:  # not a later task with the same key
            self.forget(key)

    def waiting(self) -> list[Future[Any]]:
        """Every Future whose task has not ended, as it stands (nothing is sent)."""
        held = [task.future for task in self.incoming]
        return held + [
            future
            for entry in self.live.values()
            if (future := entry.future()) is not None and future._status is PENDING
        ]

    async def pending(self) -> list[Future[Any]]:
        """Every Future whose task has not ended (those held back included)."""
        self.on_wake()
        return self.waiting()  # the held back ones too, while reconnecting

    # -- cancelling, and what a lost scheduler needs -----------------------------------------

    def cancel(self, futures: list[Future[Any]] | None, by_run: bool) -> list[Any]:
        """Settle pending Futures as cancelled (all of them when ``futures`` is None); the
        Dask futures of those that ended cancelled, for the caller to cancel."""
        if by_run:
            settle = self.event.cancelled_by_run
        else:

            def settle(future: Future[Any]) -> bool:
                return self.run.cancel_pending(future, by_run=False)

        cancelled = []
        if futures is None:
            while self.incoming:
                settle(self.incoming.popleft().future)
            futures = [f for e in self.live.values() if (f := e.future()) is not None]
        for future in futures:
            if settle(future):
                entry = self.live.pop(future._key, None)
                cancelled.append(entry.dask_future if entry is not None else None)
        return cancelled

    def resubmit(self, client: distributed.Client) -> int:
        """Submit again, in the order first submitted (dependencies first) and with the
        same keys, every task whose result the caller has not received."""
        entries = list(self.live.values())
        self.live.clear()
        tasks = []
        for entry in entries:
            entry.dask_future.release()
            if entry.watcher is not None:
                entry.watcher.cancel()
            task = entry.held_again()
            if task is not None:
                tasks.append(task)
        return self.send(client, tasks, again=True)

    def fail_all(self, error: BaseException) -> None:
        """No connection within the budget: every Future still waiting fails with it."""
        while self.incoming:
            self.run.settle(self.incoming.popleft().future, ERROR, error)
        for entry in list(self.live.values()):
            future = entry.future()
            if future is not None and future._status is PENDING:
                self.run.settle(future, ERROR, error)

    def close(self) -> None:
        """Stop watching: the run stops."""
        for entry in self.live.values():
            if entry.watcher is not None:
                entry.watcher.cancel()
        self.live.clear()
