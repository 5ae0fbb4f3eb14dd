"""``DaskExecutor``: the synchronous facade over dask.distributed (SPEC §3.3, §4), and
its settings.

The caller's threads never touch the Dask client: each run's backend
(``_backend.DaskRun``) owns a loop thread where the client and a temporary cluster live,
and ``submit`` only queues for it. Settings are checked here, at construction, so that
a bad one fails before anything starts.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import dask.config
import distributed
import distributed.comm
from distributed.comm.addressing import parse_address, parse_host_port

from .._base import Executor
from .._dispatch import Dispatcher
from .._main_guard import require_main_guard
from .._run import Run
from ._backend import DaskRun
from ._session import is_local_cluster_class

__all__ = ["DaskExecutor"]


def _in_dask_task() -> bool:
    """True inside a task running on a Dask worker (not merely in a worker's process)."""
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _import_cluster_class(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"cluster_class {path!r} does not import: {exc}; give 'package.module.Class'"
        ) from exc
    if not callable(factory):
        raise ValueError(f"cluster_class {path!r} is not callable")
    return factory  # type: ignore[no-any-return]


def _is_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number of seconds > 0 (a bool is not)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _given(**settings: Any) -> list[str]:
    """The names of the settings that were given (are not None), in order."""
    return [name for name, value in settings.items() if value is not None]


# Client arguments the executor sets itself (SPEC §3.3), and why.
_MANAGED_CLIENT_KWARGS = {
    "address": "the executor connects to address= or cluster= itself",
    "scheduler_file": "give the scheduler's address= instead",
    "asynchronous": "the executor runs the client asynchronously on its own loop thread",
    "set_as_default": "the executor never becomes the process-wide default client",
    "loop": "the client runs on the executor's own loop thread",
    "timeout": "use the executor's connect_timeout= instead",
}


# Managed client arguments that may be given with the value the executor enforces
# (Prefect's docs and prefect-dask pass set_as_default=False): accepted, and dropped.
_ENFORCED_CLIENT_KWARGS = {"set_as_default": False}


def _check_client_kwargs(client_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``client_kwargs`` without the managed arguments given with the value the executor
    enforces.

    :raises ValueError: naming a managed or unknown ``distributed.Client`` argument."""
    client_kwargs = {
        name: value
        for name, value in client_kwargs.items()
        if not (name in _ENFORCED_CLIENT_KWARGS and value is _ENFORCED_CLIENT_KWARGS[name])
    }
    managed = [name for name in client_kwargs if name in _MANAGED_CLIENT_KWARGS]
    if managed:
        reasons = "; ".join(f"{name!r}: {_MANAGED_CLIENT_KWARGS[name]}" for name in managed)
        raise ValueError(
            f"client_kwargs must not set {managed}, which the executor manages ({reasons})"
        )
    parameters = inspect.signature(distributed.Client.__init__).parameters
    valid = sorted(
        name
        for name, parameter in parameters.items()
        if name != "self"
        and parameter.kind is not inspect.Parameter.VAR_KEYWORD
        and name not in _MANAGED_CLIENT_KWARGS
    )
    unknown = sorted(map(str, set(client_kwargs) - set(valid)))
    if unknown:
        raise ValueError(
            f"client_kwargs has {unknown}, which distributed.Client does not take; valid "
            f"names are {valid}"
        )
    return client_kwargs


def _check_address(address: str, client_kwargs: Mapping[str, Any]) -> None:
    if not isinstance(address, str):
        raise ValueError(f"address must be a str like 'tcp://127.0.0.1:8786', got {address!r}")
    try:
        scheme, location = parse_address(address, strict=True)
        distributed.comm.registry.get_backend(scheme)
        if scheme in ("tcp", "tls"):
            _, port = parse_host_port(location)
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not in 1..65535")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"address {address!r} is not a scheduler address ({exc}); "
            "expected e.g. 'tcp://127.0.0.1:8786'"
        ) from exc
    if scheme == "tls" and client_kwargs.get("security") is None:
        raise ValueError(
            f"address {address!r} uses TLS but no security was given: pass "
            "client_kwargs={'security': distributed.security.Security(...)}"
        )


class DaskExecutor(Executor):
    """Runs tasks on dask.distributed: a temporary cluster, a cluster object, or the
    address of a running scheduler.

    :param address: a running scheduler's address (``tcp://host:port``).
    :param cluster: a running cluster object (sync or async); connected to by its
        scheduler address and never closed by the executor.
    :param cluster_class: what makes the temporary cluster: a class, an import string
        (``"package.module.Class"``) or any callable returning a cluster; called with
        ``asynchronous=True`` and ``cluster_kwargs``. ``distributed.LocalCluster`` by
        default. The cluster is closed at stop.
    :param adapt_kwargs: ``cluster.adapt(**adapt_kwargs)`` on the temporary cluster.
    :param client_kwargs: extra arguments for ``distributed.Client`` (``security``, ...).
    :param debug: True turns Dask's loggers to DEBUG; otherwise a temporary
        ``LocalCluster`` is made with ``silence_logs=CRITICAL``.
    :param performance_report_path: write a Dask performance report of the run there at
        stop; its text is then in :attr:`performance_report`.
    :param disable_cancellation_event: do without the run's ``distributed.Event``:
        ``cancel()`` still cancels pending Futures, but tasks no longer check the run
        before they start and ``should_run()`` in a task stays True.
    :param watch_worker_status: False turns ``worker_added``/``worker_removed`` off.
    :param connect_timeout: seconds to reach the scheduler.
    :param no_workers_timeout: seconds that tasks may wait on a cluster with no worker;
        past it the waiting Futures fail with :class:`executors.NoWorkersError`. None
        (the default) waits, as Dask does (an adaptive cluster may scale from zero); a
        WARNING is logged after 30 s either way.
    :raises ValueError: for conflicting settings, an import string that does not import,
        or an invalid address.
    """

    def __init__(
        self,
        address: str | None = None,
        cluster: Any = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        adapt_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        debug: bool | None = None,
        performance_report_path: str | pathlib.Path | None = None,
        disable_cancellation_event: bool = False,
        watch_worker_status: bool | None = None,
        connect_timeout: float = 30.0,
        no_workers_timeout: float | None = None,
    ) -> None:
        super().__init__()
        if address is not None:
            clashes = _given(
                cluster=cluster,
                cluster_class=cluster_class,
                cluster_kwargs=cluster_kwargs,
                adapt_kwargs=adapt_kwargs,
            )
            if clashes:
                raise ValueError(
                    f"address connects to a running scheduler; it cannot go with {clashes}"
                )
        if cluster is not None:
            clashes = _given(
                cluster_class=cluster_class,
                cluster_kwargs=cluster_kwargs,
                adapt_kwargs=adapt_kwargs,
            )
            if clashes:
                raise ValueError(
                    f"cluster is a running cluster; it cannot go with {clashes} (scale or "
                    "adapt it yourself)"
                )
            if not isinstance(getattr(cluster, "scheduler_address", None), str):
                raise ValueError(f"cluster {cluster!r} has no scheduler_address")
        if cluster_kwargs is not None and "asynchronous" in cluster_kwargs:
            raise ValueError(
                "cluster_kwargs must not set 'asynchronous': the executor runs the cluster "
                "asynchronously on its own loop thread"
            )
        if client_kwargs is not None:
            client_kwargs = _check_client_kwargs(client_kwargs) or None
        self._cluster_factory: Callable[..., Any] | None = None
        if isinstance(cluster_class, str):
            self._cluster_factory = _import_cluster_class(cluster_class)
        elif cluster_class is not None:
            if not callable(cluster_class):
                raise ValueError(
                    f"cluster_class must be a class, an import string or a "
                    f"callable, got {cluster_class!r}"
                )
            self._cluster_factory = cluster_class
        if address is not None:
            _check_address(address, client_kwargs or {})
        if not _is_seconds(connect_timeout):
            raise ValueError(
                f"connect_timeout must be a finite number of seconds > 0, got {connect_timeout!r}"
            )
        if no_workers_timeout is not None and not _is_seconds(no_workers_timeout):
            raise ValueError(
                "no_workers_timeout must be None or a finite number of seconds > 0, got "
                f"{no_workers_timeout!r}"
            )
        self._address = address
        self._cluster = cluster
        self._cluster_class = cluster_class
        self._cluster_kwargs = dict(cluster_kwargs) if cluster_kwargs is not None else None
        self._adapt_kwargs = dict(adapt_kwargs) if adapt_kwargs is not None else None
        self._client_kwargs = client_kwargs
        self._debug = debug
        self._performance_report_path = performance_report_path
        self._disable_cancellation_event = disable_cancellation_event
        self._watch_worker_status = watch_worker_status
        self._connect_timeout = float(connect_timeout)
        self._no_workers_timeout = (
            float(no_workers_timeout) if no_workers_timeout is not None else None
        )
        # The budget of each reconnect after a lost scheduler; `executors watch` lifts it
        # (math.inf: it keeps trying until Ctrl-C). Not a setting: not copied or compared.
        self._reconnect_timeout = self._connect_timeout
        self.performance_report: str | None = None
        """The text of the last run's performance report (None when none was asked for)."""

    def _settings(self) -> dict[str, Any]:
        return {
            "address": self._address,
            "cluster": self._cluster,
            "cluster_class": self._cluster_class,
            "cluster_kwargs": self._cluster_kwargs,
            "adapt_kwargs": self._adapt_kwargs,
            "client_kwargs": self._client_kwargs,
            "debug": self._debug,
            "performance_report_path": self._performance_report_path,
            "disable_cancellation_event": self._disable_cancellation_event,
            "watch_worker_status": self._watch_worker_status,
            "connect_timeout": self._connect_timeout,
            "no_workers_timeout": self._no_workers_timeout,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # A cluster object does not travel: the copy connects to its scheduler address.
        rebuild, (cls, settings, executor_id) = super().__reduce__()
        if settings["cluster"] is not None:
            settings = {**settings, "cluster": None, "address": self._cluster.scheduler_address}
        return (rebuild, (cls, settings, executor_id))

    # -- inside a Dask task --------------------------------------------------------------------

    def _running(self) -> Run:
        if self._run is None and _in_dask_task():
            self._bind_to_worker()
        return super()._running()

    def _bind_to_worker(self) -> None:
        """Pickled into a task and used without ``with``: run on the worker's client.

        The run has no end (the task may return any time), so it owns no thread: its
        signals and callbacks are delivered where they happen.
        """
        with self._lifecycle_lock:
            if self._run is not None:
                return
            run = Run(self, Dispatcher.inline(self, self._log))
            backend = DaskRun(run, self, on_worker=True)
            backend.open()
            run.backend = backend
            self._run = run

    # -- hooks --------------------------------------------------------------------------------

    def _backend(self, run: Run) -> DaskRun:
        on_worker = _in_dask_task()
        if self._debug and not on_worker:
            logging.getLogger("distributed").setLevel(logging.DEBUG)
        if not on_worker and self._makes_local_worker_processes():
            method = dask.config.get("distributed.worker.multiprocessing-method")
            require_main_guard("a temporary LocalCluster", method)
        self.performance_report = None
        return DaskRun(run, self, on_worker=on_worker)

    def _makes_local_worker_processes(self) -> bool:
        """Whether start makes a LocalCluster whose workers are processes of this machine."""
        if self._address is not None or self._cluster is not None:
            return False
        if not is_local_cluster_class(self._cluster_factory or distributed.LocalCluster):
            return False  # made by code of its own: it knows where its workers run
        return bool((self._cluster_kwargs or {}).get("processes", True))

    def _closed(self, run: Run, report: str | None) -> None:
        if report is not None:
            self.performance_report = report
