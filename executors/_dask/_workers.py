"""``worker_added`` / ``worker_removed`` from the scheduler's event log (SPEC §5).

The scheduler publishes ``add-worker`` and ``remove-worker`` on its ``"all"`` topic, which
any number of clients may follow (unlike the single-subscriber worker-status stream that
cluster managers and adaptive scaling depend on). Events are not replayed, so the watcher
subscribes first, makes sure the subscription is in force, then takes a snapshot of the
workers; events for workers the snapshot already had are dropped, so a worker joining in
between is announced exactly once. Everything here runs on the executor's loop thread;
the signals go to the dispatcher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import distributed

from .. import signals
from ..signals import WorkerInfo
from ._session import scheduler_rpc

__all__ = ["WorkerWatcher", "worker_info"]

ALL_TOPIC = "all"
# How long start waits for proof that the subscription is in force before it goes on.
BARRIER_TIMEOUT = 10.0


def worker_info(address: str, identity: Mapping[str, Any]) -> WorkerInfo:
    """A :class:`WorkerInfo` from one entry of the scheduler's ``identity()["workers"]``."""
    memory_limit = identity.get("memory_limit")
    name = identity.get("name")
    return WorkerInfo(
        address=address,
        name=str(name) if name is not None else address,
        nthreads=int(identity.get("nthreads") or 0),
        memory_limit=int(memory_limit) if memory_limit else None,
        resources=dict(identity.get("resources") or {}),
    )


class WorkerWatcher:
    """Follows the workers of one scheduler and sends their signals in order."""

    def __init__(self, send: Callable[..., None], log: Any) -> None:
        self._send = send
        self._log = log
        self._client: distributed.Client | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._seen: dict[str, WorkerInfo] = {}  # the scheduler's last answer, by address
        self._consumer: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()  # the snapshot was announced
        self.known: dict[str, WorkerInfo] = {}  # announced and not yet removed
        self.threads = 0  # their threads in all, for other threads to read (map's chunks)

    def open(self, client: distributed.Client) -> None:
        """Subscribe: from now on the events are queued.

        Called again after a reconnect (the scheduler forgets subscriptions when it
        restarts): then the workers are compared with a new snapshot, and those gone are
        reported removed (unexpected), the new ones added.
        """
        self._client = client
        client.subscribe_topic(ALL_TOPIC, self._on_event)
        if self._consumer is not None:
            self._consumer.cancel()
            self._consumer = asyncio.get_running_loop().create_task(self._consume(True))

    def begin(self) -> None:
        """Announce the workers and follow the events (after ``executor_started``).

        This happens in the background: a start does not wait for it."""
        self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def close(self) -> None:
        """Stop following; the client is still open. A run shorter than the first
        snapshot still announces its workers: the snapshot is waited for."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(self._synced.wait(), BARRIER_TIMEOUT)
            except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                pass
            consumer.cancel()
            try:
                await consumer
            except asyncio.CancelledError:
                pass
        client, self._client = self._client, None
        if client is not None and client.status == "running":
            client.unsubscribe_topic(ALL_TOPIC)

    def all_removed(self) -> None:
        """The cluster this run made was closed: its workers left, as expected."""
        for info in self.known.values():
            self._send(signals.worker_removed, worker=info, expected=True)
        self.known.clear()
        self.threads = 0

    # -- the loop ---------------------------------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        # Called by distributed on the loop, in the order the scheduler published.
        _, msg = event
        if isinstance(msg, dict) and msg.get("action") in ("add-worker", "remove-worker"):
            self._events.put_nowait(msg)

    async def _barrier(self, client: distributed.Client) -> None:
        """Return once a message logged after ``subscribe_topic`` comes back to us.

        ``subscribe_topic`` travels on the client's batched stream, the snapshot on an RPC
        that may overtake it; a worker joining in that gap would be in neither. The marker
        goes to this client's own topic, subscribed on the same stream after ``"all"``.
        """
        token = uuid.uuid4().hex
        arrived = asyncio.Event()

        def on_own(event: tuple[float, Any]) -> None:
            msg = event[1]
            if isinstance(msg, dict) and msg.get("token") == token:
                arrived.set()

        own_topic = str(client.id)
        client.subscribe_topic(own_topic, on_own)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BARRIER_TIMEOUT
        delay = 0.002  # the stream flushes within its 10 ms interval; follow it closely
        try:
            while not arrived.is_set():
                if loop.time() > deadline:
                    self._log.warning("worker_events_unconfirmed", timeout=BARRIER_TIMEOUT)
                    return
                await scheduler_rpc(client).log_event(
                    topic=own_topic, msg={"action": "executors-subscribed", "token": token}
                )
                try:
                    await asyncio.wait_for(arrived.wait(), delay)
                except asyncio.TimeoutError:  # not the builtin one before Python 3.11
                    delay = min(delay * 1.5, 0.5)
        finally:
            client.unsubscribe_topic(own_topic)

    async def _ask_workers(self) -> dict[str, WorkerInfo]:
        assert self._client is not None
        # No argument: distributed 2024.8 takes none, and newer ones default to every worker.
        identity = await scheduler_rpc(self._client).identity()
        self._seen = {
            address: worker_info(address, entry)
            for address, entry in identity.get("workers", {}).items()
        }
        return self._seen

    async def _consume(self, reconcile: bool = False) -> None:
        assert self._client is not None
        try:
            await self._barrier(self._client)
            present = await self._ask_workers()
            if reconcile:
                for gone in [address for address in self.known if address not in present]:
                    self._on_remove(gone, expected=False)
            for info in list(present.values()):
                self._added(info)
        except Exception as exc:  # the connection broke
            self._log.warning("worker_snapshot_failed", error=repr(exc))
        finally:
            self._synced.set()
        while True:
            msg = await self._events.get()
            address = msg.get("worker")
            if not isinstance(address, str):
                continue
            if msg["action"] == "add-worker":
                await self._on_add(address)
            else:
                self._on_remove(address, expected=bool(msg.get("expected")))

    async def _on_add(self, address: str) -> None:
        if address in self.known:
            return  # the snapshot had it
        info = self._seen.get(address)
        if info is None:
            try:
                info = (await self._ask_workers()).get(address)
            except Exception as exc:  # the connection broke
                self._log.warning("worker_info_failed", worker=address, error=repr(exc))
                return
        if info is None:  # gone before we could ask: its removal is dropped too
            self._log.debug("worker_came_and_went", worker=address)
            return
        self._added(info)

    def _on_remove(self, address: str, expected: bool) -> None:
        self._seen.pop(address, None)
        removed = self.known.pop(address, None)
        if removed is not None:
            self.threads -= removed.nthreads
            self._send(signals.worker_removed, worker=removed, expected=expected)
            self._log.info("worker_removed", worker=address, expected=expected)

    def _added(self, info: WorkerInfo) -> None:
        if info.address in self.known:
            return
        self.known[info.address] = info
        self.threads += info.nthreads
        self._send(signals.worker_added, worker=info)
        self._log.info("worker_added", worker=info.address, worker_name=info.name)
