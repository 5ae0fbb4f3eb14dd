"""Losing the scheduler and getting it back (SPEC §7, §13), for one run.

The connection policy itself (backoff, budget, what is retried) is ``_retry.py``; the
client and cluster are the :class:`~._session.Session`'s. :class:`Recovery` decides
*when*: a supervisor notices a lost scheduler (at once when Dask cancels one of the
run's futures, else by a look every :data:`SUPERVISE_INTERVAL` seconds), connects again
within the budget, has the run follow the new scheduler and submit again what it has
not delivered (the task table decides *what*), and sends the signals. Inside a task
the worker's client is not the run's to reconnect: :class:`NoRecovery`.

Everything here runs on the run's loop and is loop-owned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any

import distributed

from .. import signals
from .._run import Run
from ..exceptions import ConnectError
from ._session import Session, scheduler_rpc

__all__ = ["LOST", "NoRecovery", "Recovery", "report_retries"]

# Errors of Dask's comms, and Dask's own cancel of futures when it lost the scheduler:
# never the caller's, they start a reconnect (SPEC §13).
LOST = (OSError, concurrent.futures.CancelledError)

# Seconds between two looks at the client's connection when nothing else raised the alarm.
SUPERVISE_INTERVAL = 0.1
# After a comm error, seconds given to distributed's client to notice a lost scheduler,
# and then to the scheduler to answer when it did not.
NOTICE_TIMEOUT = 1.0
PROBE_TIMEOUT = 2.0


def report_retries(run: Run, log: Any) -> Callable[[str, int, float, BaseException], None]:
    """What a session calls after each failed connection attempt: ``reconnecting``."""

    def on_retry(address: str, attempt: int, delay: float, error: BaseException) -> None:
        run.dispatcher.send(signals.reconnecting, address=address, attempt=attempt, delay=delay)
        log.warning(
            "reconnecting",
            address=address,
            attempt=attempt,
            delay=round(delay, 3),
            error=repr(error),
        )

    return on_retry


class NoRecovery:
    """Inside a task: the worker's client is not the run's to reconnect."""

    recovering = False
    broken: ConnectError | None = None

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def raise_alarm(self) -> bool:
        return False  # Dask cancelled a future: the run cannot get it back

    async def after_lost(self, error: BaseException, since: float) -> None:
        raise ConnectError("the worker's scheduler", 1, error) from error


class Recovery:
    """Notices a lost scheduler, reconnects within the budget, and has the run follow
    the scheduler again (see the module's docstring).

    :param follow: sets up what the run needs on a (new) scheduler: Event, topics.
    :param resubmit: submits again what was not delivered; how many.
    :param give_up: fails every waiting Future with the ConnectError.
    :param wake: sends the work held back meanwhile.
    """

    def __init__(
        self,
        run: Run,
        log: Any,
        session: Session,
        budget: float,
        follow: Callable[[distributed.Client], Awaitable[None]],
        resubmit: Callable[[distributed.Client], int],
        give_up: Callable[[ConnectError], None],
        wake: Callable[[], None],
    ) -> None:
        self.run = run
        self.log = log
        self.session = session
        self.budget = budget
        self._follow = follow
        self._resubmit = resubmit
        self._give_up = give_up
        self._wake = wake
        self.recovering = False  # new work is held back meanwhile
        self.broken: ConnectError | None = None  # once it gave up
        self._alarm = asyncio.Event()
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._comm: Any = None  # the client's scheduler stream when last known good

    def start(self) -> None:
        """Follow the connection of the client the session has now."""
        self._comm = self.session.connected().scheduler_comm
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Stop following; a stop during a reconnect does not wait for it."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            try:
                await supervisor
            except asyncio.CancelledError:
                pass

    def raise_alarm(self) -> bool:
        """Dask cancelled one of the run's futures, not the run: the scheduler went away
        or restarted. True: it will be submitted again once reconnected."""
        if self.broken is not None:
            return False
        self._alarm.set()
        return True

    def connected(self) -> bool:
        """The client is connected to the scheduler it had when we last looked."""
        client = self.session.client
        return (
            client is not None
            and client.status == "running"
            and client.scheduler_comm is self._comm
            and not self._alarm.is_set()
        )

    async def after_lost(self, error: BaseException, since: float) -> None:
        """An operation failed on Dask's comms, or on futures Dask cancelled: the
        scheduler may be going away (SPEC §13). Return once reconnected (the tasks were
        submitted again) or once the scheduler has answered; past the budget, counted
        from ``since``, raise ConnectError."""
        loop = asyncio.get_running_loop()
        client = self.session.client
        if client is not None and loop.time() - since <= self.budget:
            # distributed's client notices a broken stream on its own, in moments.
            notice_by = loop.time() + NOTICE_TIMEOUT
            while self.connected() and loop.time() < notice_by:
                await asyncio.sleep(0.05)
            if self.connected():
                try:
                    await asyncio.wait_for(scheduler_rpc(client).identity(), PROBE_TIMEOUT)
                    return  # it is there: try again
                except Exception:
                    self._alarm.set()
            if await self._ensure_connected():
                return
        if self.broken is not None:
            raise self.broken from error
        raise ConnectError(
            str(self.session.address),
            1,
            error,
            seconds=loop.time() - since,
            tried="results could not be gathered",
        ) from error

    async def _supervise(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._alarm.wait(), SUPERVISE_INTERVAL)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                pass
            try:
                if not await self._ensure_connected():
                    return
            except Exception as exc:  # lost again while following it again: look again
                self.log.warning("reconnect_failed", error=repr(exc))

    async def _ensure_connected(self) -> bool:
        """Reconnect if the scheduler was lost; False when the run has no connection left."""
        async with self._lock:
            if self.broken is not None or self.session.client is None:
                return False
            if not self.connected():
                await self._recover()
            return self.broken is None

    async def _recover(self) -> None:
        """The scheduler was lost: connect again, follow it again, submit again."""
        session = self.session
        client = session.connected()
        address = session.address
        self.recovering = True
        if client.status != "running":
            error = f"the client's connection to the scheduler is {client.status!r}"
        elif client.scheduler_comm is not self._comm:
            error = "the connection to the scheduler broke (distributed reconnected by itself)"
        else:
            error = "the scheduler cancelled this run's tasks (it restarted)"
        self.run.dispatcher.send(signals.connection_lost, address=address, error=error)
        self.log.warning("connection_lost", address=address, error=error)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.budget
        # distributed's client first tries on its own, for up to its timeout; a scheduler
        # back by then keeps the same client.
        while client.status == "connecting" and loop.time() < deadline:
            await asyncio.sleep(0.05)
        on_its_own = loop.time() - started
        try:
            if client.status != "running":
                await session.reconnect(deadline - loop.time())
            client = session.connected()
            self._comm = client.scheduler_comm
            self._alarm.clear()
            await self._follow(client)
        except ConnectError as exc:
            given_up = ConnectError(
                exc.address,
                exc.attempts,
                exc.last_error,
                seconds=loop.time() - started,
                tried=(
                    f"distributed's client tried to reconnect on its own for "
                    f"{on_its_own:.1f} s, then {exc.attempts} new connection attempt(s)"
                ),
            )
            given_up.__cause__ = exc.last_error
            self.broken = given_up
            self.recovering = False
            self.log.error("connection_failed", address=exc.address, error=str(given_up))
            self._give_up(given_up)
            return
        resubmitted = self._resubmit(client)
        self.recovering = False
        self.run.dispatcher.send(signals.reconnected, address=address, resubmitted=resubmitted)
        self.log.warning("reconnected", address=address, resubmitted=resubmitted)
        self._wake()
