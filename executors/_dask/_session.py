"""The Dask client and cluster of one DaskExecutor run. Every coroutine here runs on the
run's loop; nothing here is called from any other thread. A session is an async context
manager: entering connects (making the temporary cluster first), leaving closes the
client, then the cluster it made (never a user's)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import distributed

from .._logging import get_logger
from .._run import THREADS_START_AT_EXIT
from ._retry import connect_with_retries, within

__all__ = ["Session", "WorkerSession", "scheduler_rpc"]

# distributed's own connect timeout for our clients, which is also how long a client that
# lost its scheduler tries to reconnect by itself before it closes (and we take over).
CLIENT_TIMEOUT = 5.0
# Seconds given to closing a client that lost its scheduler.
CLOSE_LOST_TIMEOUT = 1.0


def _nothing() -> None:
    pass


async def _start_cluster(factory: Any, kwargs: dict[str, Any]) -> Any:
    """Make and start a cluster: the factory's code (distributed's, or the user's cluster
    class), some of whose steps are long and synchronous, as a cluster starts."""
    cluster = factory(asynchronous=True, **kwargs)
    if inspect.iscoroutine(cluster):
        cluster = await cluster
    if inspect.isawaitable(cluster):
        cluster = await cluster
    return cluster


def _takes(factory: Any, name: str) -> bool:
    """Whether calling ``factory`` accepts the keyword argument ``name``: exactly
    ``LocalCluster`` does; a subclass only if its signature says so (a narrower
    ``__init__`` of a test double or wrapper class does not)."""
    if factory is distributed.LocalCluster:
        return True
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read: do not guess
        return False
    return any(
        parameter.name == name or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def is_local_cluster_class(factory: Any) -> bool:
    """Whether a temporary cluster made by ``factory`` is a ``distributed.LocalCluster``
    (whose options, workers and logs this package knows), not code of the user's own."""
    return isinstance(factory, type) and issubclass(factory, distributed.LocalCluster)


class Session:
    """Creates or connects the cluster and an asynchronous client; closes what it made."""

    def __init__(
        self,
        *,
        address: str | None,
        cluster: Any,
        cluster_factory: Callable[..., Any] | None,
        cluster_kwargs: Mapping[str, Any],
        adapt_kwargs: Mapping[str, Any] | None,
        client_kwargs: Mapping[str, Any],
        debug: bool,
        connect_timeout: float,
        executor_id: str,
        on_retry: Callable[[str, int, float, BaseException], Any] | None = None,
    ) -> None:
        self._address = address
        self._external_cluster = cluster
        self._cluster_factory = cluster_factory
        self._cluster_kwargs = dict(cluster_kwargs)
        self._adapt_kwargs = adapt_kwargs
        self._client_kwargs = dict(client_kwargs)
        self._debug = debug
        self._connect_timeout = connect_timeout
        self._on_retry = on_retry or (lambda address, attempt, delay, error: None)
        self._log = get_logger(__name__, executor_id=executor_id)
        self._target: Any = None
        self.client: distributed.Client | None = None
        self.cluster: Any = None  # only a cluster this session made, and so closes
        self.address: str | None = address

    async def connect(self) -> None:
        """Make the temporary cluster if there is to be one, then connect the client.

        :raises executors.ConnectError: when no connection could be made in time.
        """
        if self._external_cluster is not None:
            self._target = self._external_cluster.scheduler_address
            security = getattr(self._external_cluster, "security", None)
            if security is not None:
                self._client_kwargs.setdefault("security", security)
        elif self._address is not None:
            self._target = self._address
        else:
            self._target = self.cluster = await self._make_cluster()
        target = self._target
        self.address = target if isinstance(target, str) else target.scheduler_address
        self._log.debug("connecting", address=self.address)
        self.client = await self._connect(self._connect_timeout)
        if not THREADS_START_AT_EXIT:
            # distributed (de)serialises big messages on its one offload thread, started
            # with the first: start it now, while threads can start (see _run).
            await distributed.utils.offload(_nothing)

    async def reconnect(self, budget: float) -> None:
        """Replace a client that lost its scheduler by a new one, within ``budget`` s.

        :raises executors.ConnectError: when no connection could be made in time.
        """
        old, self.client = self.client, None
        if old is not None and old.status != "closed":
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), CLOSE_LOST_TIMEOUT)
        self.client = await self._connect(budget)

    async def _connect(self, budget: float) -> distributed.Client:
        if not isinstance(self._target, str):  # the cluster this session made, in-process
            return await self._new_client(max(budget, CLIENT_TIMEOUT))
        assert self.address is not None
        address = self.address

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            self._on_retry(address, attempt, delay, error)

        return await connect_with_retries(address, self._new_client, budget, on_retry)

    async def _new_client(self, timeout: float) -> distributed.Client:
        client = distributed.Client(
            self._target,
            asynchronous=True,
            set_as_default=False,
            timeout=min(self._connect_timeout, CLIENT_TIMEOUT),
            **self._client_kwargs,
        )
        try:
            await within(client, timeout)
        except asyncio.TimeoutError:
            await _close_quietly(client)
            raise TimeoutError(f"no connection to {self.address} within {timeout:.1f} s") from None
        except BaseException:
            await _close_quietly(client)
            raise
        return client

    async def _make_cluster(self) -> Any:
        factory = self._cluster_factory or distributed.LocalCluster
        kwargs = dict(self._cluster_kwargs)
        if is_local_cluster_class(factory):
            if not self._debug and _takes(factory, "silence_logs"):
                kwargs.setdefault("silence_logs", logging.CRITICAL)
            if "security" in self._client_kwargs and _takes(factory, "security"):
                kwargs.setdefault("security", self._client_kwargs["security"])
        # A task of its own, named, so that the time the factory's code takes on this loop
        # is told apart from ours (asyncio's debug mode names the task of a slow step).
        cluster = await asyncio.ensure_future(_start_cluster(factory, kwargs))
        try:
            if self._adapt_kwargs is not None:
                adapting = cluster.adapt(**self._adapt_kwargs)
                if inspect.isawaitable(adapting):  # dask-kubernetes' operator KubeCluster
                    await adapting
        except BaseException:
            await _close(cluster)
            raise
        self._log.debug("cluster_created", cluster=type(cluster).__name__)
        return cluster

    def connected(self) -> distributed.Client:
        """The client; RuntimeError once the session has closed."""
        if self.client is None:
            raise RuntimeError("the executor's Dask client has closed")
        return self.client

    def dashboard_link(self) -> str | None:
        try:
            link = self.client.dashboard_link if self.client is not None else None
        except Exception:  # no dashboard (bokeh missing) or no scheduler info yet
            return None
        return link if isinstance(link, str) else None

    async def __aenter__(self) -> Session:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client, then the cluster this session made (never a user's)."""
        client, self.client = self.client, None
        cluster, self.cluster = self.cluster, None
        try:
            if client is not None:
                if client.status == "running":
                    await client.close()
                else:  # it lost its scheduler: there is nobody to say goodbye to
                    await _close_quietly(client)
        finally:
            if cluster is not None:
                await _close(cluster)


class WorkerSession:
    """Inside a Dask task: the worker's own client, borrowed and never closed."""

    cluster = None
    address = "the worker's scheduler"

    def __init__(self, client: distributed.Client) -> None:
        self.client: distributed.Client | None = client

    async def __aenter__(self) -> WorkerSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        pass

    def connected(self) -> distributed.Client:
        if self.client is None:
            raise RuntimeError("the executor has stopped")
        return self.client

    def dashboard_link(self) -> str | None:
        return None

    async def close(self) -> None:
        self.client = None


def scheduler_rpc(client: distributed.Client) -> Any:
    """The client's RPC handle on its scheduler (``await rpc.identity()``, ...).

    :raises RuntimeError: once the client has closed (distributed would raise an
        AttributeError on None).
    """
    rpc = client.scheduler
    if rpc is None:
        raise RuntimeError("the executor's Dask client has closed")
    return rpc


async def _close_quietly(client: distributed.Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), CLOSE_LOST_TIMEOUT)


async def _close(cluster: Any) -> None:
    result = cluster.close()
    if inspect.isawaitable(result):
        await result
