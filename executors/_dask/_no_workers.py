"""Tasks waiting on a cluster with no worker: said, and failed past a limit (SPEC §7).

A cluster can lose every worker and keep its scheduler: after a network cut longer than
distributed's comm timeouts each ``dask worker`` closes itself and its nanny, and the
scheduler waits for new ones. So does an adaptive cluster scaled to zero, on purpose.
Dask then waits for ever, in silence. While tasks of the run wait, this asks the
scheduler how many workers it has; after ``WARN_AFTER`` seconds with none it logs a
WARNING, again at doubling intervals, and once more when a worker comes. With
``no_workers_timeout`` the waiting Futures fail once it has passed (so a ``wait`` and
the end of the ``with`` block return).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from .._future import ERROR
from .._run import Run
from ..exceptions import NoWorkersError
from ._session import Session
from ._table import TaskTable

__all__ = ["NoWorkers"]

WARN_AFTER = 30.0  # seconds with no worker before the first warning
CHECK_EVERY = 1.0  # seconds between two looks, while tasks wait
ASK_TIMEOUT = 5.0  # seconds the scheduler gets to say how many workers it has


class NoWorkers:
    """Watches, on the loop, for tasks that wait on a cluster with no worker."""

    def __init__(
        self, run: Run, log: Any, session: Session, table: TaskTable, timeout: float | None
    ) -> None:
        self._run = run
        self._log = log
        self._session = session
        self._table = table
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._since: float | None = None  # when the cluster was first seen with no worker
        self._warnings = 0  # said since then
        self._next_warning = WARN_AFTER  # seconds after `_since`
        self._failed_to_ask = False  # an unexpected error was said (once is enough)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            # How many, not which: nothing here may hold a Future across the await
            # below (a Future the caller dropped must be freed at once).
            waiting = len(self._table.waiting())
            # While tasks wait; and after a warning until a worker came, whether the
            # tasks still wait or not (it is said once more then).
            if not waiting and not self._warnings:
                self._since = None
                continue
            workers = await self._count_workers()
            if workers is None:
                continue  # no answer: the scheduler is going away, a reconnect sees to that
            if workers:
                self._ended(workers)
            elif waiting:
                self._none(waiting)

    async def _count_workers(self) -> int | None:
        client = self._session.client
        if client is None or client.status != "running" or client.scheduler is None:
            return None
        try:
            # `ncores` is in every distributed we support (`identity(n_workers=...)` is
            # not in 2024.8): one entry a worker, no more.
            ncores = await asyncio.wait_for(client.scheduler.ncores(), ASK_TIMEOUT)
        except (OSError, asyncio.TimeoutError):  # going away: the recovery takes over
            return None
        except Exception:  # a closed pool or RPC while closing; or a bug: said, once
            if not self._failed_to_ask:
                self._failed_to_ask = True
                self._log.warning("no_workers_watch_failed", exc_info=True)
            return None
        return len(ncores)

    def _none(self, tasks: int) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            self._next_warning = WARN_AFTER
        seconds = now - self._since
        if seconds >= self._next_warning:  # after 30 s, then 60 s later, 120 s later...
            self._warnings += 1
            self._next_warning = seconds + WARN_AFTER * 2**self._warnings
            self._log.warning(
                "no_workers",
                tasks=tasks,
                seconds=round(seconds),
                address=self._session.address,
                no_workers_timeout=self._timeout,
            )
        if self._timeout is not None and seconds >= self._timeout:
            self._fail(seconds)

    def _ended(self, workers: int) -> None:
        if self._since is not None and self._warnings:
            self._log.warning(
                "workers_back",
                workers=workers,
                seconds=round(time.monotonic() - self._since),
                address=self._session.address,
            )
        self._since = None
        self._warnings = 0

    def _fail(self, seconds: float) -> None:
        """Past ``no_workers_timeout``: every waiting Future fails, and its task leaves
        the cluster (a worker that comes later does not run it)."""
        waiting = self._table.waiting()
        error = NoWorkersError(self._session.address or "?", seconds, len(waiting))
        self._log.error(
            "no_workers_timeout",
            tasks=len(waiting),
            seconds=round(seconds, 1),
            address=self._session.address,
        )
        for future in waiting:
            if self._run.settle(future, ERROR, error):
                self._table.forget(future._key)
        self._since = None
        self._warnings = 0
