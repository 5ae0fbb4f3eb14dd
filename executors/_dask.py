"""``DaskExecutor``: the synchronous facade over dask.distributed (SPEC §3.3, §4).

The caller's threads never touch the Dask client. ``submit`` appends to a queue and wakes
the executor's loop thread at most once per batch; the loop thread (see ``_loop.py``)
sends the batch to the scheduler, watches the Dask futures, and settles the executor's
Futures. Results stay on the cluster until someone asks for them; once a result has been
handed over, or its Future dropped, the Dask future is released.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import importlib
import inspect
import logging
import math
import pathlib
import pickle
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.config
import distributed
import distributed.comm
from distributed.comm.addressing import parse_address, parse_host_port
from distributed.threadpoolexecutor import thread_state

from . import signals
from ._base import Executor
from ._cancel import TOPIC, NotStarted, mark_cancelled
from ._context import current_task
from ._dispatch import Dispatcher
from ._future import ERROR, FINISHED, NOT_FETCHED, PENDING, Future, block_until_done
from ._loop import LoopThread, WorkerLoop
from ._main_guard import require_main_guard
from ._on_worker import TaskExit, run_async_task, run_task
from ._pickling import call_error, dumps, restore_exit_code, result_error
from ._run import Run
from ._session import Session, WorkerSession, is_local_cluster_class, scheduler_rpc
from ._structure import Ref, replace_futures
from ._task import Task
from ._workers import WorkerWatcher
from .exceptions import ConnectError

__all__ = ["DaskExecutor"]

# Seconds a stop gives the client and a temporary cluster to close.
CLOSE_TIMEOUT = 60.0
# Seconds cancel() and stop give the scheduler to clear the run's cancellation Event.
CLEAR_TIMEOUT = 5.0
# Seconds between two looks at the client's connection when nothing else raised the alarm.
SUPERVISE_INTERVAL = 0.1
# After a comm error, seconds given to distributed's client to notice a lost scheduler,
# and then to the scheduler to answer when it did not.
NOTICE_TIMEOUT = 1.0
PROBE_TIMEOUT = 2.0
# Errors of Dask's comms, and Dask's own cancel of futures when it lost the scheduler:
# never the caller's, they start a reconnect (SPEC §13).
_LOST = (OSError, concurrent.futures.CancelledError)


def _release(dask_futures: list[distributed.Future[Any]]) -> None:
    for dask_future in dask_futures:
        dask_future.release()


def _in_dask_task() -> bool:
    """True inside a task running on a Dask worker (not merely in a worker's process)."""
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


class _Entry:
    """A task the cluster knows about: its Dask future, the asyncio task watching it,
    and its call, kept to submit it again if the scheduler is lost before the result is
    here.

    The caller's Future is held while the task runs (a Future the caller dropped is
    still a task of the run: it runs to the end, SPEC §3.3), and weakly once it has
    ended: dropping it then releases the Dask future."""

    __slots__ = ("call", "dask_future", "held", "ref", "watcher")

    def __init__(self, task: Task, dask_future: distributed.Future[Any]) -> None:
        self.held: Future[Any] | None = task.future
        self.ref: weakref.ref[Future[Any]] | None = None
        self.dask_future = dask_future
        self.call = (task.fn, task.args, task.kwargs, task.deps, task.options)
        self.watcher: asyncio.Task[None] | None = None

    def future(self) -> Future[Any] | None:
        """The caller's Future; None once it was dropped after its task ended."""
        held = self.held
        if held is not None:
            return held
        assert self.ref is not None
        return self.ref()

    def hold_weakly(self, on_drop: Callable[[weakref.ref[Future[Any]]], None]) -> None:
        """The task has ended: from now on the caller alone keeps the Future alive."""
        if self.held is not None:
            self.ref = weakref.ref(self.held, on_drop)
            self.held = None

    def task(self, future: Future[Any]) -> Task:
        return Task(*self.call, future)


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


def _check_client_kwargs(client_kwargs: Mapping[str, Any]) -> None:
    """:raises ValueError: naming a managed or unknown ``distributed.Client`` argument."""
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
            _check_client_kwargs(client_kwargs)
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
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, (int, float))
            or not math.isfinite(connect_timeout)
            or connect_timeout <= 0
        ):
            raise ValueError(
                f"connect_timeout must be a finite number of seconds > 0, got {connect_timeout!r}"
            )
        self._address = address
        self._cluster = cluster
        self._cluster_class = cluster_class
        self._cluster_kwargs = dict(cluster_kwargs) if cluster_kwargs is not None else None
        self._adapt_kwargs = dict(adapt_kwargs) if adapt_kwargs is not None else None
        self._client_kwargs = dict(client_kwargs) if client_kwargs is not None else None
        self._debug = debug
        self._performance_report_path = performance_report_path
        self._disable_cancellation_event = disable_cancellation_event
        self._watch_worker_status = watch_worker_status
        self._connect_timeout = float(connect_timeout)
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
            backend = _DaskRun(run, self, on_worker=True)
            backend.open()
            run.backend = backend
            self._run = run

    # -- hooks --------------------------------------------------------------------------------

    def _backend(self, run: Run) -> _DaskRun:
        on_worker = _in_dask_task()
        if self._debug and not on_worker:
            logging.getLogger("distributed").setLevel(logging.DEBUG)
        if not on_worker and self._makes_local_worker_processes():
            method = dask.config.get("distributed.worker.multiprocessing-method")
            require_main_guard("a temporary LocalCluster", method)
        self.performance_report = None
        return _DaskRun(run, self, on_worker=on_worker)

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


class _DaskRun:
    """One run's loop thread, session and Future tables. Methods named ``_a*`` and
    ``_on_*`` run on the loop thread; the others are called from the caller's threads."""

    def __init__(self, run: Run, executor: DaskExecutor, on_worker: bool = False) -> None:
        self.run = run
        self.log = executor._log
        self.on_worker = on_worker
        self.loop: LoopThread | WorkerLoop
        self.session: Session | WorkerSession
        self.report_path = executor._performance_report_path
        # The name of the run's cancellation Event, which this run sets and clears unless
        # it only borrows it: inside a task, subtasks belong to the run of that task.
        self.flag_name: str | None = None
        self.owns_flag = False
        self.watch_workers = False
        if on_worker:  # inside a task: the worker's client and loop, never a new cluster
            client = distributed.get_client()
            self.loop = WorkerLoop(getattr(client.loop, "asyncio_loop"))  # noqa: B009
            self.session = WorkerSession(client)
            self.report_path = None
            self.log = self.log.bind(on_worker=True)
            context = current_task.get()
            if context is not None and context.remote is not None:
                self.flag_name = context.remote.name
        else:
            self.loop = LoopThread(f"executors-loop-{id(executor):x}")
            self.session = self._session(executor)
            if not executor._disable_cancellation_event:
                self.flag_name = f"executors-run-{uuid.uuid4().hex}"
                self.owns_flag = True
            self.watch_workers = executor._watch_worker_status is not False
        self.workers: WorkerWatcher | None = None  # loop-owned
        self.flag_cleared = False  # loop-owned
        # Reconnects (loop-owned): the supervisor notices a lost scheduler, `recovering`
        # holds new work back meanwhile, and `broken` is the ConnectError once it gave up.
        self.reconnect_timeout = executor._reconnect_timeout
        self.supervisor: asyncio.Task[None] | None = None
        self.alarm: asyncio.Event | None = None
        self.recovery_lock: asyncio.Lock | None = None
        self.comm: Any = None  # the client's scheduler stream when last known good
        self.recovering = False
        self.broken: ConnectError | None = None
        self.reported: set[str] = set()  # keys reported by task_cancelled; loop-owned
        self.report: Any = None
        self.incoming: collections.deque[Task] = collections.deque()
        self.wake_scheduled = False
        self.live: dict[str, _Entry] = {}  # loop-owned
        self.closed = False

    def _session(self, executor: DaskExecutor) -> Session:
        return Session(
            address=executor._address,
            cluster=executor._cluster,
            cluster_factory=executor._cluster_factory,
            cluster_kwargs=executor._cluster_kwargs or {},
            adapt_kwargs=executor._adapt_kwargs,
            client_kwargs=executor._client_kwargs or {},
            debug=bool(executor._debug),
            connect_timeout=executor._connect_timeout,
            executor_id=executor.executor_id,
            on_retry=self._on_retry,
        )

    # -- caller threads ---------------------------------------------------------------------

    def open(self) -> str | None:
        """Connect (making the temporary cluster first); the dashboard link, if any.
        A start that fails or is interrupted releases whatever was made."""
        if self.on_worker:
            # The worker's client is connected already, and the caller may be on its
            # loop (an async def task), which cannot wait for itself: nothing to await.
            self.comm = self.session.connected().scheduler_comm
            return None
        try:
            self.loop.start()
            self.loop.run(self._aopen())
        except BaseException:
            self.abort()
            raise
        link = self.session.dashboard_link()
        if link:
            self.log.info("dashboard", dashboard_link=link)
        return link

    def abort(self) -> None:
        """A start failed or was interrupted: release whatever was made."""
        self.closed = True
        try:
            if self.loop.thread is not None:
                self.loop.run(self.session.close(), timeout=CLOSE_TIMEOUT)
        finally:
            self.loop.stop()

    def after_open(self) -> None:
        """``executor_started`` is queued: worker events may follow."""
        if self.workers is not None:
            self.loop.call_soon(self.workers.begin)

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        """About to block a thread on Futures. In a Dask task, first leave the worker's
        thread pool (once): the subtasks waited for may need that slot to run."""
        self.loop.check_not_in_loop()
        if self.on_worker and getattr(thread_state, "proceed", False):
            distributed.secede()

    def want(self, futures: Sequence[Future[Any]]) -> None:
        pass  # submitted tasks are sent to the cluster at once

    def submit(self, task: Task) -> None:
        self.incoming.append(task)
        # Wake the loop once per batch: the drain clears the flag before it empties the
        # queue, so a task appended after that point schedules a new drain.
        if not self.wake_scheduled:
            self.wake_scheduled = True
            self.loop.call_soon(self._on_wake)

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        if self.broken is not None:
            raise self.broken  # the result was lost with the scheduler
        if self.closed:
            raise RuntimeError(
                f"the result of {futures[0].key!r} was not fetched before "
                f"{self.run.executor_id} stopped"
            )
        self.loop.run(self._afetch(futures, timeout), timeout)

    def cancel_one(self, future: Future[Any]) -> bool:
        if self.closed:
            return False
        return self.loop.run(self._acancel([future], by_run=False), CLOSE_TIMEOUT) > 0

    def cancel_all(self) -> None:
        if not self.closed and not self.loop.in_loop_thread():
            self.loop.run(self._acancel(None, by_run=True), CLOSE_TIMEOUT)

    def close(self, cancelled: bool) -> str | None:
        """Finish the submitted work (unless cancelled), then close everything.

        Interrupted while it waits for the work (Ctrl-C), it raises with nothing closed:
        the caller cancels the run and closes again."""
        if not cancelled:
            pending = self.loop.run(self._apending())
            block_until_done(pending, None)
            self.loop.run(self._afetch_alive())
        self.closed = True
        try:
            return self.loop.run(self._aclose(), CLOSE_TIMEOUT)
        finally:
            self.loop.stop()

    # -- the loop thread --------------------------------------------------------------------

    async def _aopen(self) -> None:
        try:
            await self.session.connect()
            client = self.session.connected()
            if self.watch_workers:
                self.workers = WorkerWatcher(self.run.dispatcher.send, self.log)
            await self._afollow(client)
            self.alarm = asyncio.Event()
            self.recovery_lock = asyncio.Lock()
            self.supervisor = asyncio.get_running_loop().create_task(self._asupervise())
            if self.report_path is not None:
                self.report = distributed.performance_report(filename=str(self.report_path))
                with client.as_current():
                    await self.report.__aenter__()
        except BaseException:
            await self.session.close()
            raise

    async def _afollow(self, client: distributed.Client) -> None:
        """Set up what this run needs on the scheduler of ``client``: the cancellation
        Event, and the event-log topics (the scheduler forgets both when it restarts)."""
        self.comm = client.scheduler_comm
        if self.owns_flag and not self.run.cancelled.is_set():
            await scheduler_rpc(client).event_set(name=self.flag_name)
            client.subscribe_topic(TOPIC, self._on_relay)
        if self.workers is not None:
            self.workers.open(client)

    def _on_wake(self) -> None:
        self.wake_scheduled = False
        if self.recovering:
            return  # held in `incoming` until the executor is connected again
        tasks = []
        while self.incoming:
            tasks.append(self.incoming.popleft())
        self._send(self.session.client, tasks)

    def _send(
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
                call = self._call_args(task)
            except (TypeError, RuntimeError) as exc:
                self.run.settle(task.future, ERROR, exc)
                continue
            options = task.options
            group = (
                tuple(sorted(options.resources.items())) if options.resources else None,
                options.retries,
                options.priority or 0,
                inspect.iscoroutinefunction(task.fn),
            )
            batches.setdefault(group, []).append((task, call))
            unsent.add(task.future._key)
        return sent + self._send_batches(client, batches)

    def _sendable(self, client: distributed.Client | None, task: Task, again: bool) -> bool:
        """Whether ``task`` still goes to Dask; if not, its Future is settled here. On a
        resubmission a Future that finished but whose result was lost goes again."""
        run, future = self.run, task.future
        if future._status is not PENDING and not (
            again and future._status is FINISHED and future._value is NOT_FETCHED
        ):
            return False
        if self.broken is not None:
            run.settle(future, ERROR, self.broken)
            return False
        if run.cancelled.is_set() or client is None:
            self._cancelled_by_run(future)
            return False
        return True

    def _call_args(self, task: Task) -> tuple[Any, ...]:
        """The arguments of :func:`run_task` for ``task``: its call pickled on its own,
        with the dependencies still on the cluster as :class:`Ref` placeholders, and
        their Dask futures, which Dask resolves on the worker (the data stays there).

        :raises TypeError: naming the key and the value, when the call does not pickle.
        :raises RuntimeError: when a dependency's result is neither here nor there.
        """
        args, kwargs, deps = task.args, task.kwargs, None
        if task.deps:
            deps = {}

            def as_input(dep: Future[Any]) -> Any:
                entry = self.live.get(dep._key)
                if entry is not None:
                    deps[dep._key] = entry.dask_future
                    return Ref(dep._key)
                if dep._value is NOT_FETCHED:
                    raise RuntimeError(
                        f"the result of {dep._key!r}, a dependency of {task.future._key!r}, "
                        "is no longer on the cluster"
                    )
                return dep._value  # handed over already: it travels with the call

            args = replace_futures(args, as_input)
            kwargs = replace_futures(kwargs, as_input)
        try:
            payload = dumps((task.fn, args, kwargs))
        except Exception as exc:
            raise call_error(task.future._key, task.fn, task.args, task.kwargs, exc) from exc
        return (payload, deps or None, self.flag_name)

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
                    key=[task.future._key for task, _ in batch],
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
                self._watch(task, dask_future)
            sent += len(batch)
        return sent

    def _watch(self, task: Task, dask_future: distributed.Future[Any]) -> None:
        key = task.future._key
        entry = _Entry(task, dask_future)
        entry.watcher = self.loop.loop.create_task(self._awatch(key, dask_future))
        self.live[key] = entry

    async def _awatch(self, key: str, dask_future: distributed.Future[Any]) -> None:
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
            if future._callbacks and await self._abring_for_callbacks(future, dask_future):
                return
            self.run.settle(future, FINISHED, NOT_FETCHED)
            # The weak reference's callback, not weakref.finalize: half the cost, and it
            # goes with the entry once the entry is no longer needed.
            entry.hold_weakly(lambda ref: self._dropped(key, ref))
        elif status == "error":
            error = await dask_future.exception()
            traceback = await dask_future.traceback()
            self._forget(key)
            if isinstance(error, NotStarted):
                self._cancelled_by_run(future)
            elif isinstance(error, TaskExit):  # the task's SystemExit or KeyboardInterrupt
                original = restore_exit_code(error.error)
                original = original.with_traceback(original.__traceback__ or traceback)
                self.run.settle(future, ERROR, original)
            else:
                self.run.settle(future, ERROR, error.with_traceback(traceback))
        elif self.run.cancelled.is_set():
            self._forget(key)
            self._cancelled_by_run(future)
        elif self.alarm is not None and self.broken is None:
            # Dask cancelled it, not us: the scheduler went away or restarted. The entry
            # stays, to be submitted again once the supervisor has reconnected.
            self.alarm.set()
        else:
            self._forget(key)
            self.run.cancel_pending(future, by_run=False)

    async def _abring_for_callbacks(
        self, future: Future[Any], dask_future: distributed.Future[Any]
    ) -> bool:
        """A Future with done callbacks (``asyncio.wrap_future``, an ``await``) is read by
        them at once, maybe on an event loop that must not block on a fetch: bring its
        result here first, on this loop. True once it is settled with it."""
        client = self.session.client
        if client is None:
            return False
        try:
            value = (await client.gather([dask_future]))[0]
        except _LOST:
            return False  # the reconnect submits it again, or result() says why not
        except Exception as exc:
            if isinstance(exc, (TypeError, pickle.PickleError)):
                exc = result_error(future._key, exc)
            self._forget(future._key)
            return self.run.settle(future, ERROR, exc)
        self._forget(future._key)
        return self.run.settle(future, FINISHED, value)

    def _cancelled_by_run(self, future: Future[Any]) -> bool:
        """End ``future`` cancelled because its run was; ``task_cancelled`` once per key."""
        if future._key in self.reported or not self.run.cancel_pending(future, by_run=True):
            return False
        self.reported.add(future._key)
        return True

    def _on_relay(self, event: tuple[float, Any]) -> None:
        """A worker did not start a task of this run (called by distributed on the loop)."""
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("run") != self.flag_name:
            return
        key = msg.get("key")
        if not isinstance(key, str) or key in self.reported:
            return
        entry = self.live.get(key)
        future = entry.future() if entry is not None else None
        if future is not None:
            self._forget(key)
            self._cancelled_by_run(future)
        else:  # a subtask submitted from inside a task of this run
            self.reported.add(key)
            self.run.dispatcher.send(signals.task_cancelled, key=key)

    def _forget(self, key: str) -> None:
        entry = self.live.pop(key, None)
        if entry is not None:
            entry.dask_future.release()

    def _dropped(self, key: str, ref: weakref.ref[Future[Any]]) -> None:
        """The caller dropped the Future of an ended task: release its Dask future
        (called from whichever thread dropped it)."""
        if not self.closed:
            try:
                self.loop.call_soon(self._forget_dropped, key, ref)
            except (RuntimeError, AssertionError):  # the loop is gone
                pass

    def _forget_dropped(self, key: str, ref: weakref.ref[Future[Any]]) -> None:
        entry = self.live.get(key)
        if entry is not None and entry.ref is ref:  # not a later task with the same key
            self._forget(key)

    async def _afetch(self, futures: list[Future[Any]], timeout: float | None = None) -> None:
        """Bring the results of ``futures`` here, in one gather; those still pending are
        waited for first, up to ``timeout`` (then they are left for the caller to wait).

        A scheduler lost meanwhile is reconnected to, and the tasks submitted again are
        gathered then; a result that cannot come ends its own Future in error."""
        if any(future._status is PENDING for future in futures):
            self._on_wake()  # send what is queued: then it has a watcher
            watchers = [
                entry.watcher
                for future in futures
                if future._status is PENDING
                and (entry := self.live.get(future._key)) is not None
                and entry.watcher is not None
            ]
            if watchers:
                await asyncio.wait(watchers, timeout=timeout)
        lost_at: float | None = None
        while True:
            wanted = [
                (future, self.live[future._key].dask_future)
                for future in futures
                if future._value is NOT_FETCHED and future._key in self.live
            ]
            if not wanted:
                break
            try:
                await self._agather(self.session.connected(), wanted)
                break
            except _LOST as exc:
                lost_at = asyncio.get_running_loop().time() if lost_at is None else lost_at
                await self._aafter_lost(exc, lost_at)
        lost = [f._key for f in futures if f._status is FINISHED and f._value is NOT_FETCHED]
        if lost:
            if self.broken is not None:
                raise self.broken
            raise RuntimeError(f"the results of {lost} are no longer on the cluster")

    async def _agather(
        self, client: distributed.Client, wanted: list[tuple[Future[Any], Any]]
    ) -> None:
        """Gather the results of ``wanted`` (Future, Dask future) in one trip.

        A result that cannot come here (it does not pickle on its worker, or not load
        here) fails the whole gather: then each is gathered on its own, and the one at
        fault ends its Future in error, once. Errors of Dask's comms are raised."""
        try:
            values = await client.gather([dask_future for _, dask_future in wanted])
        except _LOST:
            raise
        except Exception as exc:
            if len(wanted) > 1:
                for pair in wanted:
                    await self._agather(client, [pair])
                return
            future = wanted[0][0]
            if isinstance(exc, (TypeError, pickle.PickleError)):
                exc = result_error(future._key, exc)
            future._fetch_failed(exc)
            self._forget(future._key)
            return
        for (future, _), value in zip(wanted, values, strict=True):
            future._value = value
            self.live.pop(future._key, None)
        # The caller has the values once this returns; telling Dask that their futures
        # are released can wait until after (it is one message per key).
        asyncio.get_running_loop().call_soon(_release, [d for _, d in wanted])

    async def _aafter_lost(self, error: BaseException, since: float) -> None:
        """A gather failed on Dask's comms, or on futures Dask cancelled: the scheduler
        may be going away (SPEC §13). Return once reconnected (the tasks were submitted
        again) or once the scheduler has answered; past the reconnect budget, counted
        from ``since``, raise ConnectError."""
        loop = asyncio.get_running_loop()
        client = self.session.client
        if self.recovery_lock is not None and client is not None:
            if loop.time() - since <= self.reconnect_timeout:
                # distributed's client notices a broken stream on its own, in moments.
                notice_by = loop.time() + NOTICE_TIMEOUT
                while self._connected() and loop.time() < notice_by:
                    await asyncio.sleep(0.05)
                if self._connected():
                    try:
                        await asyncio.wait_for(scheduler_rpc(client).identity(), PROBE_TIMEOUT)
                        return  # it is there: gather again
                    except Exception:
                        assert self.alarm is not None
                        self.alarm.set()
                if await self._aensure_connected():
                    return
        if self.broken is not None:
            raise self.broken from error
        address = getattr(self.session, "address", None) or "the scheduler"
        raise ConnectError(
            str(address),
            1,
            error,
            seconds=loop.time() - since,
            tried="results could not be gathered",
        ) from error

    async def _apending(self) -> list[Future[Any]]:
        self._on_wake()
        held = [task.future for task in self.incoming]  # while reconnecting
        return held + [
            future
            for entry in self.live.values()
            if (future := entry.future()) is not None and future._status is PENDING
        ]

    # -- reconnects (SPEC §7) ---------------------------------------------------------------

    def _on_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        """A connection attempt failed (called by the retry loop, on the loop thread)."""
        address = self._own_session().address
        self.run.dispatcher.send(
            signals.reconnecting, address=address, attempt=attempt, delay=delay
        )
        self.log.warning(
            "reconnecting",
            address=address,
            attempt=attempt,
            delay=round(delay, 3),
            error=repr(error),
        )

    def _own_session(self) -> Session:
        """The session of a run that connects by itself (not one borrowed in a task)."""
        assert isinstance(self.session, Session)
        return self.session

    def _connected(self) -> bool:
        """The client is connected to the scheduler it had when we last looked."""
        client = self.session.client
        return (
            client is not None
            and client.status == "running"
            and client.scheduler_comm is self.comm
            and not (self.alarm is not None and self.alarm.is_set())
        )

    async def _asupervise(self) -> None:
        """Notice a lost scheduler: at once when Dask cancels one of our futures, and by a
        look at the client every SUPERVISE_INTERVAL seconds (a run may have none)."""
        assert self.alarm is not None
        while True:
            try:
                await asyncio.wait_for(self.alarm.wait(), SUPERVISE_INTERVAL)
            except asyncio.TimeoutError:
                pass
            try:
                if not await self._aensure_connected():
                    return
            except Exception as exc:  # lost again while following it again: look again
                self.log.warning("reconnect_failed", error=repr(exc))

    async def _aensure_connected(self) -> bool:
        """Reconnect if the scheduler was lost; False when the run has no connection left."""
        if self.recovery_lock is None:
            return False  # inside a task: the worker's client is not ours to reconnect
        async with self.recovery_lock:
            if self.broken is not None or self.closed or self.session.client is None:
                return False
            if not self._connected():
                await self._arecover()
            return self.broken is None

    async def _arecover(self) -> None:
        """The scheduler was lost: connect again, follow it again, submit again."""
        assert self.alarm is not None
        session = self._own_session()
        client = session.connected()
        address = session.address
        self.recovering = True
        if client.status != "running":
            error = f"the client's connection to the scheduler is {client.status!r}"
        elif client.scheduler_comm is not self.comm:
            error = "the connection to the scheduler broke (distributed reconnected by itself)"
        else:
            error = "the scheduler cancelled this run's tasks (it restarted)"
        self.run.dispatcher.send(signals.connection_lost, address=address, error=error)
        self.log.warning("connection_lost", address=address, error=error)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.reconnect_timeout
        # distributed's client first tries on its own, for up to its timeout; a scheduler
        # back by then keeps the same client.
        while client.status == "connecting" and loop.time() < deadline:
            await asyncio.sleep(0.05)
        on_its_own = loop.time() - started
        try:
            if client.status != "running":
                await session.reconnect(deadline - loop.time())
            client = session.connected()
            self.alarm.clear()
            await self._afollow(client)
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
            self._break(given_up)
            return
        resubmitted = self._resubmit(client)
        self.recovering = False
        self.run.dispatcher.send(signals.reconnected, address=address, resubmitted=resubmitted)
        self.log.warning("reconnected", address=address, resubmitted=resubmitted)
        self._on_wake()

    def _resubmit(self, client: distributed.Client) -> int:
        """Submit again, in the order first submitted (dependencies first) and with the
        same keys, every task whose result the caller has not received."""
        entries = list(self.live.values())
        self.live.clear()
        for entry in entries:
            entry.dask_future.release()
            if entry.watcher is not None:
                entry.watcher.cancel()
        tasks = [entry.task(f) for entry in entries if (f := entry.future()) is not None]
        return self._send(client, tasks, again=True)

    def _break(self, error: ConnectError) -> None:
        """No connection within the budget: every Future still waiting fails with it."""
        self.broken = error
        self.recovering = False
        self.log.error("connection_failed", address=error.address, error=str(error))
        while self.incoming:
            self.run.settle(self.incoming.popleft().future, ERROR, error)
        for entry in list(self.live.values()):
            future = entry.future()
            if future is not None and future._status is PENDING:
                self.run.settle(future, ERROR, error)

    async def _afetch_alive(self) -> None:
        """Bring here the results still on the cluster, so they outlive the stop. Never
        raises: a result that cannot come is the business of its Future's ``result()``."""
        if self.broken is not None:
            return  # they were lost with the scheduler; result() says so
        alive = [
            future
            for entry in list(self.live.values())
            if (future := entry.future()) is not None and future._value is NOT_FETCHED
        ]
        try:
            await self._afetch(alive)
        except Exception as exc:
            self.log.warning("results_not_fetched_at_stop", tasks=len(alive), error=repr(exc))

    async def _acancel(self, futures: list[Future[Any]] | None, by_run: bool) -> int:
        """Settle pending Futures as cancelled (all of them when ``futures`` is None),
        then cancel their Dask futures. Returns how many ended cancelled.

        A run's cancel also clears its Event before it returns, so that no task starts
        from then on, even one the scheduler has already sent to a worker. The Futures
        are settled first: a running task that stops when told would otherwise finish,
        and its Future with it, before the cancel reached it."""
        run = self.run
        if by_run:
            settle = self._cancelled_by_run
        else:

            def settle(future: Future[Any]) -> bool:
                return run.cancel_pending(future, by_run=False)

        count = 0
        if futures is None:
            while self.incoming:
                count += settle(self.incoming.popleft().future)
            futures = [f for e in self.live.values() if (f := e.future()) is not None]
        to_cancel = []
        for future in futures:
            if settle(future):
                count += 1
                entry = self.live.pop(future._key, None)
                if entry is not None:
                    to_cancel.append(entry.dask_future)
        if by_run:
            await self._aclear_flag()
        client = self.session.client
        if to_cancel and client is not None and client.status == "running":
            await client.cancel(to_cancel)
        return count

    async def _aclear_flag(self) -> None:
        """Clear the run's Event (once): tasks of the run no longer start. Then tell every
        worker at once, and wait until they know: their cached answer may be fresh enough
        to start a task, and a task not started by now must never start (SPEC §6)."""
        if not self.owns_flag or self.flag_cleared:
            return
        self.flag_cleared = True
        client = self.session.client
        if client is None or client.status != "running":
            return  # nobody to tell: a reconnect of a cancelled run does not set it again
        try:
            clearing = scheduler_rpc(client).event_clear(name=self.flag_name)
            await asyncio.wait_for(clearing, CLEAR_TIMEOUT)
            telling = client.run(mark_cancelled, self.flag_name, on_error="return")
            await asyncio.wait_for(telling, CLEAR_TIMEOUT)
        except Exception as exc:
            self.log.warning("cancellation_event_not_cleared", error=repr(exc))

    async def _aclose(self) -> str | None:
        """Stop following the cluster, then close the client and the cluster it made.

        The Event is cleared at every stop: the scheduler then forgets it."""
        text = None
        made_cluster = getattr(self.session, "cluster", None) is not None
        if self.supervisor is not None:  # a stop during a reconnect does not wait for it
            self.supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.supervisor
        client = self.session.client  # after the supervisor: a reconnect may have replaced it
        try:
            if self.report is not None and client is not None:
                with client.as_current():
                    await self.report.__aexit__(None, None, None)
                text = pathlib.Path(str(self.report_path)).read_text()
            for entry in self.live.values():
                if entry.watcher is not None:
                    entry.watcher.cancel()
            self.live.clear()
            if self.workers is not None:
                await self.workers.close()
            await self._aclear_flag()
            if self.owns_flag and client is not None and client.status == "running":
                client.unsubscribe_topic(TOPIC)
        finally:
            await self.session.close()
        if made_cluster and self.workers is not None:
            self.workers.all_removed()
        self.reported.clear()
        return text
