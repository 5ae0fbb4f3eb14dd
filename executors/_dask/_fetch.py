"""Bringing a DaskExecutor run's results here, when they are asked for.

Results stay on the cluster until then (SPEC §3.3). A fetch waits for the tasks still
running, gathers every result in one trip, and lets the cluster forget what it handed
over; a result that cannot come ends its own Future in error, once; a scheduler lost
meanwhile is reconnected to (the recovery submits the tasks again) before it gathers
again. Everything here runs on the run's loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import distributed

from .._future import ERROR, FINISHED, NOT_FETCHED, PENDING, Future
from .._run import Run
from ._batches import fetch_error
from ._recovery import LOST, NoRecovery, Recovery
from ._session import Session, WorkerSession


class TaskTable(Protocol):
    """What a fetch needs of the run's task table (``_table.py``)."""

    run: Run
    log: Any
    session: Session | WorkerSession
    recovery: Recovery | NoRecovery
    live: dict[str, Any]

    def on_wake(self) -> None: ...

    def forget(self, key: str) -> None: ...


def release(dask_futures: list[distributed.Future[Any]]) -> None:
    """Tell Dask that the run no longer needs these futures."""
    for dask_future in dask_futures:
        dask_future.release()


__all__ = ["bring_for_callbacks", "fetch", "fetch_alive"]


async def fetch(table: TaskTable, futures: list[Future[Any]], timeout: float | None = None) -> None:
    """Bring the results of ``futures`` here, in one gather; those still pending are
    waited for first, up to ``timeout`` (then they are left for the caller to wait).

    A scheduler lost meanwhile is reconnected to, and the tasks submitted again are
    gathered then; a result that cannot come ends its own Future in error."""
    if any(future._status is PENDING for future in futures):
        table.on_wake()  # send what is queued: then it has a watcher
        watchers = [
            entry.watcher
            for future in futures
            if future._status is PENDING
            and (entry := table.live.get(future._key)) is not None
            and entry.watcher is not None
        ]
        if watchers:
            await asyncio.wait(watchers, timeout=timeout)
    lost_at: float | None = None
    while True:
        wanted = [
            (future, table.live[future._key].dask_future)
            for future in futures
            if future._value is NOT_FETCHED and future._key in table.live
        ]
        if not wanted:
            break
        try:
            await _gather(table, table.session.connected(), wanted)
            break
        except LOST as exc:
            lost_at = asyncio.get_running_loop().time() if lost_at is None else lost_at
            await table.recovery.after_lost(exc, lost_at)
    lost = [f._key for f in futures if f._status is FINISHED and f._value is NOT_FETCHED]
    if lost:
        if table.recovery.broken is not None:
            raise table.recovery.broken
        raise RuntimeError(f"the results of {lost} are no longer on the cluster")


async def _gather(
    table: TaskTable, client: distributed.Client, wanted: list[tuple[Future[Any], Any]]
) -> None:
    """Gather the results of ``wanted`` (Future, Dask future) in one trip.

    A result that cannot come here (it does not pickle on its worker, or not load
    here) fails the whole gather: then each is gathered on its own, and the one at
    fault ends its Future in error, once. Errors of Dask's comms are raised."""
    try:
        values = await client.gather([dask_future for _, dask_future in wanted])
    except LOST:
        raise
    except Exception as exc:
        if len(wanted) > 1:
            for pair in wanted:
                await _gather(table, client, [pair])
            return
        future = wanted[0][0]
        future._fetch_failed(fetch_error(future, exc))
        table.forget(future._key)
        return
    for (future, _), value in zip(wanted, values, strict=True):
        future._value = value
        table.live.pop(future._key, None)
    # The caller has the values once this returns; telling Dask that their futures
    # are released can wait until after (it is one message per key).
    asyncio.get_running_loop().call_soon(release, [d for _, d in wanted])


async def fetch_alive(table: TaskTable) -> None:
    """Bring here the results still on the cluster, so they outlive the stop. Never
    raises: a result that cannot come is the business of its Future's ``result()``."""
    if table.recovery.broken is not None:
        return  # they were lost with the scheduler; result() says so
    alive = [
        future
        for entry in list(table.live.values())
        if (future := entry.future()) is not None and future._value is NOT_FETCHED
    ]
    try:
        await fetch(table, alive)
    except Exception as exc:
        table.log.warning("results_not_fetched_at_stop", tasks=len(alive), error=repr(exc))


async def bring_for_callbacks(
    table: TaskTable, future: Future[Any], dask_future: distributed.Future[Any]
) -> bool:
    """A Future with done callbacks (``asyncio.wrap_future``, an ``await``) is read by
    them at once, maybe on an event loop that must not block on a fetch: bring its
    result here first, on this loop. True once it is settled with it."""
    client = table.session.client
    if client is None:
        return False
    try:
        value = (await client.gather([dask_future]))[0]
    except LOST:
        return False  # the reconnect submits it again, or result() says why not
    except Exception as exc:
        table.forget(future._key)
        return table.run.settle(future, ERROR, fetch_error(future, exc))
    table.forget(future._key)
    return table.run.settle(future, FINISHED, value)
