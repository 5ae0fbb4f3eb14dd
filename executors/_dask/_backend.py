"""One DaskExecutor run: the backend its :class:`~executors._run.Run` calls.

It puts together the run's pieces, each the one owner of its state: the loop it lives
on (``_loop.py``), the session with the client and cluster (``_session.py``), the task
table (``_table.py``), the cancellation Event (``_events.py``), the recovery after a
lost scheduler (``_recovery.py``) and the worker events (``_workers.py``). What it makes,
it makes in an exit stack (one for the loop thread, one on the loop for the rest), so a
start that fails and a stop release the same things, the same way, in reverse order
(STYLE's stop order: the reconnects stop, the report is written, the watchers stop,
the Event is cleared, the client closes, then the cluster, then the loop thread).

The public methods are called from the caller's threads (``submit`` never blocks);
those named ``_a*`` run on the loop.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import distributed
from dask.system import CPU_COUNT

from .._future import Future
from .._run import Run
from .._task import Task
from .._waiting import block_until_done
from ._events import BorrowedRunEvent, NoRunEvent, OwnRunEvent, RunEvent
from ._fetch import fetch, fetch_alive
from ._loop import Loop, LoopThread, WorkerLoop
from ._no_workers import NoWorkers
from ._recovery import Recovery, report_retries
from ._session import Session, WorkerSession
from ._table import TaskTable
from ._workers import WorkerWatcher

__all__ = ["DaskRun", "Settings"]

# Seconds a stop gives the client and a temporary cluster to close, and a cancel to end.
CLOSE_TIMEOUT = 60.0

# Keys a cancel request to the scheduler names at most: distributed handles a request in
# time quadratic in its keys (it releases them all once per key), so that one request for
# 20,000 keys held its loop for 16 s.
CANCEL_SLICE = 100


class Settings(Protocol):
    """What a run reads of its DaskExecutor: its checked settings (``_executor.py``)."""

    @property
    def executor_id(self) -> str: ...

    _log: Any
    _address: str | None
    _cluster: Any
    _cluster_factory: Any
    _cluster_kwargs: dict[str, Any] | None
    _adapt_kwargs: dict[str, Any] | None
    _client_kwargs: dict[str, Any] | None
    _debug: bool | None
    _performance_report_path: Any
    _disable_cancellation_event: bool
    _watch_worker_status: bool | None
    _connect_timeout: float
    _reconnect_timeout: float
    _no_workers_timeout: float | None


class DaskRun:
    """The backend of a DaskExecutor run (see the module's docstring)."""

    def __init__(self, run: Run, executor: Settings, on_worker: bool = False) -> None:
        self.run = run
        self.log = executor._log.bind(on_worker=True) if on_worker else executor._log
        self.closed = False
        self.report_path = None if on_worker else executor._performance_report_path
        self.report: str | None = None
        self.workers: WorkerWatcher | None = None
        self._made_cluster = False
        self._thread = contextlib.ExitStack()  # the loop thread
        self._stack = contextlib.AsyncExitStack()  # what was made on the loop
        self.loop: Loop
        self.session: Session | WorkerSession
        self.event: RunEvent
        if on_worker:  # inside a task: the worker's client and loop, never a new cluster
            client = distributed.get_client()
            self.loop = WorkerLoop(getattr(client.loop, "asyncio_loop"))  # noqa: B009
            self.session = WorkerSession(client)
            self.event = BorrowedRunEvent(run, self.log, _borrowed_event_name())
            self.table = TaskTable(run, self.log, self.loop, self.session, self.event)
            return
        self.loop = LoopThread(f"executors-loop-{id(executor):x}")
        self.session = Session(
            address=executor._address,
            cluster=executor._cluster,
            cluster_factory=executor._cluster_factory,
            cluster_kwargs=executor._cluster_kwargs or {},
            adapt_kwargs=executor._adapt_kwargs,
            client_kwargs=executor._client_kwargs or {},
            debug=bool(executor._debug),
            connect_timeout=executor._connect_timeout,
            executor_id=executor.executor_id,
            on_retry=report_retries(run, self.log),
        )
        if executor._disable_cancellation_event:
            self.event = NoRunEvent(run, self.log)
        else:
            self.event = OwnRunEvent(run, self.log, lambda key: self.table.take(key))
        self.table = TaskTable(run, self.log, self.loop, self.session, self.event)
        if executor._watch_worker_status is not False:
            self.workers = WorkerWatcher(run.dispatcher.send, self.log)
        self._reconnect_timeout = executor._reconnect_timeout
        self.no_workers = NoWorkers(
            run, self.log, self.session, self.table, executor._no_workers_timeout
        )

    # -- the backend contract (see _run.Backend) ---------------------------------------------

    def open(self) -> str | None:
        """Connect (making the temporary cluster first); the dashboard link, if any.
        A start that fails or is interrupted releases whatever was made."""
        if isinstance(self.session, WorkerSession):
            # The worker's client is connected already, and the caller may be on its
            # loop (an async def task), which cannot wait for itself: nothing to await.
            return None
        assert isinstance(self.loop, LoopThread)
        try:
            self._thread.enter_context(self.loop)
            self.loop.run(self._aopen())
        except BaseException:
            self._release()
            raise
        link = self.session.dashboard_link()
        if link:
            self.log.info("dashboard", dashboard_link=link)
        return link

    def after_open(self) -> None:
        """``executor_started`` is queued: worker events may follow."""
        if self.workers is not None:
            self.loop.call_soon(self.workers.begin)

    def submit(self, task: Task) -> None:
        self.table.submit(task)

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        self.loop.before_blocking()

    def want(self, futures: Sequence[Future[Any]]) -> None:
        pass  # submitted tasks go to the cluster at once

    def slots(self) -> int:
        # The worker threads announced so far (an int the loop thread rewrites whole);
        # before the first snapshot, or with worker events off, this machine's cores.
        threads = self.workers.threads if self.workers is not None else 0
        return threads or CPU_COUNT

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        broken = self.table.recovery.broken
        if broken is not None:
            raise broken  # the result was lost with the scheduler
        if self.closed:
            raise RuntimeError(
                f"the result of {futures[0].key!r} was not fetched before "
                f"{self.run.executor_id} stopped"
            )
        self.loop.run(fetch(self.table, futures, timeout), timeout)

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int:
        if self.closed:
            return 0
        return self.loop.run(self._acancel(list(futures), by_run=False), CLOSE_TIMEOUT)

    def cancel_all(self) -> None:
        if not self.closed and not self.loop.in_loop_thread():
            self.loop.run(self._acancel(None, by_run=True), CLOSE_TIMEOUT)

    def close(self, cancelled: bool) -> str | None:
        """Finish the submitted work (unless cancelled), then release everything.

        Interrupted while it waits for the work (Ctrl-C), it raises with nothing
        released: the caller cancels the run and closes again."""
        if not cancelled:
            pending = self.loop.run(self.table.pending())
            block_until_done(pending, None)
            self.loop.run(fetch_alive(self.table))
        self._release()
        return self.report

    # -- the loop ---------------------------------------------------------------------------

    async def _aopen(self) -> None:
        stack = self._stack
        try:
            if self.workers is not None:  # last: the cluster this run made has left
                stack.callback(self._workers_left)
            await stack.enter_async_context(self.session)
            self._made_cluster = self.session.cluster is not None
            client = self.session.connected()
            stack.push_async_callback(self._aclose_event)
            await self.event.follow(client)
            if self.workers is not None:
                stack.push_async_callback(self.workers.close)
                self.workers.open(client)
            stack.callback(self.table.close)
            if self.report_path is not None:
                await stack.enter_async_context(self._performance_report(self.report_path))
            assert isinstance(self.session, Session)
            recovery = Recovery(
                self.run,
                self.log,
                self.session,
                self._reconnect_timeout,
                follow=self._afollow,
                resubmit=self.table.resubmit,
                give_up=self.table.fail_all,
                wake=self.table.on_wake,
            )
            self.table.recovery = recovery
            recovery.start()
            stack.push_async_callback(recovery.stop)
            self.no_workers.start()
            stack.push_async_callback(self.no_workers.stop)
        except BaseException:
            await stack.aclose()
            raise

    async def _afollow(self, client: distributed.Client) -> None:
        """Set up the run again on a new scheduler: its Event and its topics."""
        await self.event.follow(client)
        if self.workers is not None:
            self.workers.open(client)

    async def _aclose_event(self) -> None:
        # After the recovery stopped: a reconnect may have replaced the client.
        await self.event.close(self.session.client)

    def _workers_left(self) -> None:
        if self.workers is not None and self._made_cluster:
            self.workers.all_removed()

    @contextlib.asynccontextmanager
    async def _performance_report(self, path: Any) -> AsyncIterator[None]:
        """The run inside ``distributed.performance_report``, with the run's own client
        made current (it is not the default client); its text kept at the end."""
        report = distributed.performance_report(filename=str(path))
        client = self.session.connected()
        with client.as_current():
            await report.__aenter__()
        try:
            yield
        finally:
            client = self.session.connected()  # a reconnect may have replaced it
            with client.as_current():
                await report.__aexit__(None, None, None)
            self.report = pathlib.Path(str(path)).read_text()

    async def _acancel(self, futures: list[Future[Any]] | None, by_run: bool) -> int:
        """Settle pending Futures as cancelled (all of them when ``futures`` is None),
        then cancel their Dask futures. Returns how many ended cancelled.

        A run's cancel also clears its Event before it returns, so that no task starts
        from then on, even one the scheduler has already sent to a worker. The Futures
        are settled first: a running task that stops when told would otherwise finish,
        and its Future with it, before the cancel reached it."""
        cancelled = self.table.cancel(futures, by_run)
        client = self.session.client
        if by_run:
            await self.event.clear(client)
        to_cancel = [dask_future for dask_future in cancelled if dask_future is not None]
        if to_cancel and client is not None and client.status == "running":
            for start in range(0, len(to_cancel), CANCEL_SLICE):
                await client.cancel(to_cancel[start : start + CANCEL_SLICE])
        return len(cancelled)

    def _release(self) -> None:
        """Release what was made, in reverse order: on the loop, then the loop thread.
        Inside a task nothing was made: the worker's client and loop are not the run's."""
        self.closed = True
        try:
            if isinstance(self.loop, LoopThread) and self.loop.thread is not None:
                self.loop.run(self._stack.aclose(), CLOSE_TIMEOUT)
        finally:
            self._thread.close()


def _borrowed_event_name() -> str | None:
    """The cancellation Event of the task this code runs in, if it has one."""
    from .._context import current_task

    context = current_task.get()
    remote = context.remote if context is not None else None
    return remote.name if remote is not None else None
