"""Fixtures shared by the tests: the executors under test and the leak check."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import multiprocessing.resource_tracker
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import executors
from executors import DaskExecutor, Executor, LocalDaskExecutor, LocalExecutor
from executors._dask import _loop

LEAK_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Kind:
    """An executor under test, and what the behaviour tests may expect of it."""

    id: str
    make: Callable[[], Executor]
    inline: bool  # tasks run inside submit(): a Future is done at once
    cooperative: bool  # should_run() inside a running task sees its run's cancel
    dashboard: bool = False  # executor_started carries a dashboard link

    def __call__(self) -> Executor:
        return self.make()


# A temporary LocalCluster with in-process workers: a real scheduler and real workers,
# quick to start for every test.
TEMPORARY_CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": False,
    "host": "tcp://127.0.0.1",  # loopback only, over TCP (the in-process default binds 0.0.0.0)
    "dashboard_address": "127.0.0.1:0",
    "resources": {"GPU": 1},
}

KINDS = [
    Kind("local", LocalExecutor, inline=True, cooperative=True),
    Kind("dask-threads", lambda: LocalDaskExecutor("threads", num_workers=2), False, True),
    Kind("dask-sync", lambda: LocalDaskExecutor("synchronous"), False, True),
    Kind("dask-processes", lambda: LocalDaskExecutor("processes", num_workers=2), False, False),
    # A Dask task runs a pickled copy of the test's closure, so the shared test below cannot
    # watch it; test_dask_cancel.py tests should_run() on Dask.
    Kind(
        "distributed-temporary",
        lambda: DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER),
        False,
        False,
        dashboard=True,
    ),
    # The address kind's factory is bound to the scheduler fixture in `kind` below.
    Kind(
        "distributed-address", lambda: DaskExecutor(address="unset"), False, False, dashboard=True
    ),
]


# tox runs some kinds in some environments only (tox.ini): EXECUTORS_TEST_KINDS names the
# kinds this run tests, by id, separated by commas; unset, every kind.
if os.environ.get("EXECUTORS_TEST_KINDS"):
    _wanted = os.environ["EXECUTORS_TEST_KINDS"].split(",")
    _unknown = set(_wanted) - {kind.id for kind in KINDS}
    assert not _unknown, f"EXECUTORS_TEST_KINDS names no kind {sorted(_unknown)}"
    KINDS = [kind for kind in KINDS if kind.id in _wanted]


def _bound(given: Kind, request: pytest.FixtureRequest) -> Kind:
    """``given``, with the address kind bound to the shared scheduler."""
    if given.id != "distributed-address":
        return given
    address = request.getfixturevalue("scheduler_address")
    return Kind(
        given.id,
        lambda: DaskExecutor(address=address),
        given.inline,
        given.cooperative,
        given.dashboard,
    )


@pytest.fixture(params=KINDS, ids=[kind.id for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    return _bound(request.param, request)


@pytest.fixture(scope="module", params=KINDS, ids=[kind.id for kind in KINDS])
def shared_ex(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """A started executor of each kind, shared by the tests of a module: for tests that
    leave it as they found it (no cancel, no stop), so that each kind starts once."""
    with _bound(request.param, request)() as executor:
        SHARED_THREADS.add(f"{id(executor):x}")
        # Warm: the threads of a temporary cluster's workers start with their first task,
        # and their names do not say whose they are.
        executor.wait([executor.submit(time.sleep, 0.1) for _ in range(4)], timeout=60)
        try:
            yield executor
        finally:
            SHARED_THREADS.discard(f"{id(executor):x}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaskProcesses:
    """Real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1, ended by pid."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dask"), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_with_tests_importable(),
        )
        self.processes.append(process)
        return process

    def scheduler(
        self, port: int | None = None, *extra: str, protocol: str = "tcp"
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = port or free_port()
        process = self._spawn(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--protocol",
            protocol,
            "--dashboard-address",
            f"127.0.0.1:{free_port()}",
            "--no-show",
            *extra,
        )
        address = f"{protocol}://127.0.0.1:{port}"
        wait_for_port(port)
        return address, process

    def worker(self, address: str, *extra: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            "worker",
            address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--nworkers",
            "1",
            *extra,
        )

    def end(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            os.kill(process.pid, sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(15)

    def end_all(self) -> None:
        for process in reversed(self.processes):
            self.end(process)


def _with_tests_importable() -> dict[str, str]:
    """The environment for Dask processes: they unpickle functions from ``tasks.py``."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def wait_for_workers(address: str, count: int, timeout: float = 60.0) -> None:
    import distributed

    with distributed.Client(address, timeout=timeout, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture(scope="session")
def scheduler_address() -> Iterator[str]:
    """A real scheduler with two one-thread workers, shared by the tests that need one."""
    processes = DaskProcesses()
    try:
        address, _ = processes.scheduler()
        processes.worker(address, "--resources", "GPU=1")
        processes.worker(address, "--resources", "GPU=1")
        SESSION_PIDS.update(p.pid for p in processes.processes)
        wait_for_workers(address, 2)
        yield address
    finally:
        processes.end_all()


@pytest.fixture
def dask_processes() -> Iterator[DaskProcesses]:
    """Start scheduler/worker processes for one test; all are ended after it."""
    processes = DaskProcesses()
    try:
        yield processes
    finally:
        processes.end_all()


@pytest.fixture
def ex(shared_ex: Executor) -> Executor:
    """A started executor of each kind, shared by the tests of a module (``shared_ex``):
    a test that stops or cancels it, or needs a fresh one, starts its own from ``kind``."""
    return shared_ex


@pytest.fixture
def shared_kind(request: pytest.FixtureRequest, shared_ex: Executor) -> Kind:
    """What the behaviour tests may expect of ``shared_ex`` (its :class:`Kind`)."""
    given: Kind = request.node.callspec.params["shared_ex"]
    return given


# Threads that live as long as the interpreter once started (distributed's own leak check
# allows them too).
PROCESS_WIDE_THREADS = ("Dask-Offload", "asyncio_", "TCP-Executor")


def _helper_pids() -> set[int]:
    """Processes the standard library keeps for the whole interpreter's life."""
    tracker = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
    return {tracker} if tracker else set()


# multiprocessing's resource tracker lives as long as the interpreter, with a pipe of its
# own: started here, not by whichever test first starts a process.
multiprocessing.resource_tracker.ensure_running()

# Processes of session-scoped fixtures: they outlive single tests on purpose.
SESSION_PIDS: set[int] = set()
# The id (hex, as in their thread names) of executors shared by several tests, whose
# threads outlive single tests on purpose (a pool starts its threads as work comes).
SHARED_THREADS: set[str] = set()


def _session_pids() -> set[int]:
    pids = set()
    for pid in SESSION_PIDS:
        try:
            process = psutil.Process(pid)
            pids |= {pid} | {child.pid for child in process.children(recursive=True)}
        except psutil.NoSuchProcess:
            continue
    return pids


def _children() -> set[int]:
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    return mine - _helper_pids() - _session_pids()


# multiprocessing's shared-memory heap, where a process pool's slots live (_crashes): its
# arenas are made once and reused for the interpreter's life, as the resource tracker is.
PROCESS_WIDE_FILES = ("/dev/shm/pym-",)


def _fds() -> dict[int, str]:
    """This process's open file descriptors, with what each is (a file, pipe, socket)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            what = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (the one listdir itself used, say)
            continue
        if not what.startswith(PROCESS_WIDE_FILES):
            found[int(name)] = what
    return found


# xdist hands out whole files (`--dist loadfile`) in collection order: the longest first,
# so that a long file never starts last while the other worker has nothing left to do.
LONGEST_FILES_FIRST = [
    "test_mapping.py",
    "test_reconnect.py",
    "test_conformance.py",
    "test_examples.py",
    "test_base.py",
    "test_bench.py",
    "test_future.py",
    "test_dask.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread, a child process or a file descriptor behind.

    Not file descriptors where the test shares an executor with others: its pooled
    connections outlive single tests on purpose."""
    threads_before = set(threading.enumerate())
    children_before = _children()
    count_fds = "shared_ex" not in request.fixturenames and os.path.isdir("/proc/self/fd")
    fds_before = _fds() if count_fds else {}
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before
            and t.is_alive()
            and not t.name.startswith(PROCESS_WIDE_THREADS)
            and not any(shared in t.name for shared in SHARED_THREADS)
        ]
        children = _children() - children_before
        fds = {}
        if count_fds:
            fds = {fd: what for fd, what in _fds().items() if fds_before.get(fd) != what}
        if not threads and not children and not fds:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(
        f"test leaked threads {[t.name for t in threads]}, child processes {children} and "
        f"file descriptors {fds}"
    )


# Two checks asyncio's debug mode makes, kept on the executors' loop threads without the
# mode itself: that mode records a stack for every callback, task and future made, and
# makes a round trip through a temporary cluster, whose scheduler and workers run on the
# executor's loop, four to five times slower. The guard below times callbacks, and
# `_owner_checked` raises, as debug mode does, when another thread schedules a callback
# on the loop without call_soon_threadsafe (STYLE, threading rule 1).
def _owner_checked(schedule: Callable[..., asyncio.Handle]) -> Callable[..., asyncio.Handle]:
    def checked(loop: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> asyncio.Handle:
        owner = loop._thread_id  # type: ignore[attr-defined]
        if owner is not None and owner != threading.get_ident():
            names = {thread.ident: thread.name for thread in threading.enumerate()}
            if names.get(owner, "").startswith("executors-loop"):
                raise RuntimeError(
                    f"{schedule.__name__} on the loop of {names[owner]} from "
                    f"{threading.current_thread().name}: not thread-safe"
                )
        return schedule(loop, *args, **kwargs)

    return checked


# EXECUTORS_TEST_ASYNCIO_DEBUG=1 runs the loop threads in the mode itself, for what else it
# says (where each task and future was made), at its cost.
_loop.DEBUG = os.environ.get("EXECUTORS_TEST_ASYNCIO_DEBUG") == "1"
asyncio.BaseEventLoop.call_soon = _owner_checked(asyncio.BaseEventLoop.call_soon)  # type: ignore[method-assign]
asyncio.BaseEventLoop.call_at = _owner_checked(asyncio.BaseEventLoop.call_at)  # type: ignore[method-assign]


class _LoopTrouble(logging.Handler):
    """Collects what asyncio says when a loop is misused: a callback that held an
    executors loop thread too long, a task destroyed while pending, a closed loop."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if trouble := loop_trouble(record):
            self.found.append(trouble)


# Where the callbacks that must not hold a loop are written: the package and its tests.
# (A temporary cluster's scheduler runs on the executor's loop too: its callbacks are
# distributed's, and under load some take longer.)
OUR_CODE = (
    os.path.dirname(executors.__file__) + os.sep,
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
)


def loop_trouble(record: logging.LogRecord) -> str | None:
    """What is wrong, if ``record`` says that a loop was misused (see _LoopTrouble).

    asyncio's own "Executing ... took" warnings time a callback by the clock, and on a
    loaded machine a callback waits for a CPU: the guard below times our callbacks by
    the CPU time they use instead."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {record.exc_info[1]!r}"
    for words in ("Task was destroyed but it is pending", "Event loop is closed"):
        if words in text:
            return text
    return None


# A callback of ours on an executors loop that computes this long holds the loop, however
# loaded the machine (STYLE, threading rule 2). One that waits (a sleep, a lock) uses no
# CPU: it is caught once it holds the loop STALL_SECONDS by the clock, longer than load
# on this 2-core machine has held a callback (0.7 s seen).
SLOW_CPU_SECONDS = 0.2
STALL_SECONDS = 5.0


class _GarbageCollection(threading.local):
    """CPU seconds each thread has spent collecting garbage: a full collection in a test
    process that has run a thousand tests takes a few tenths of a second, in whichever
    callback happened to allocate, and is not that callback's work."""

    started = 0.0
    total = 0.0


_collecting = _GarbageCollection()


def _count_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _collecting.started = time.thread_time()
    else:
        _collecting.total += time.thread_time() - _collecting.started


gc.callbacks.append(_count_collection)


def _code_run_by(handle: asyncio.Handle) -> tuple[str, str]:
    """The name and file of the code a handle runs: a task's outermost coroutine (a step
    of the task), else the callback's own function."""
    callback = handle._callback  # type: ignore[attr-defined]
    while isinstance(callback, functools.partial):
        callback = callback.func
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        callback = owner.get_coro()
    code = (
        getattr(callback, "cr_code", None)
        or getattr(callback, "gi_code", None)
        or getattr(getattr(callback, "__func__", callback), "__code__", None)
    )
    if code is None:
        return repr(callback), ""
    return code.co_name, code.co_filename


def _guarded_run(run: Callable[[asyncio.Handle], None]) -> Callable[[asyncio.Handle], None]:
    def timed(handle: asyncio.Handle) -> None:
        thread = threading.current_thread().name
        if not thread.startswith("executors-loop"):
            return run(handle)
        cpu, clock, collecting = time.thread_time(), time.monotonic(), _collecting.total
        try:
            return run(handle)
        finally:
            cpu = time.thread_time() - cpu - (_collecting.total - collecting)
            clock = time.monotonic() - clock
            if cpu >= SLOW_CPU_SECONDS or clock >= STALL_SECONDS:
                name, path = _code_run_by(handle)
                # A cluster's own start is distributed's code, not ours: see _session. A
                # builtin (no path: time.sleep, say) is counted, whoever scheduled it.
                if (not path or path.startswith(OUR_CODE)) and name != "_start_cluster":
                    _trouble.found.append(
                        f"slow callback on {thread}: {name} ({path}) used {cpu:.3f} s of "
                        f"CPU in {clock:.3f} s"
                    )

    return timed


asyncio.Handle._run = _guarded_run(asyncio.Handle._run)  # type: ignore[method-assign]


_trouble = _LoopTrouble()
logging.getLogger("asyncio").addHandler(_trouble)


@pytest.fixture(autouse=True)
def no_loop_trouble(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which asyncio said a loop was misused (see loop_trouble)."""
    _trouble.found.clear()
    yield
    if _trouble.found and "loop_trouble_expected" not in request.keywords:
        pytest.fail(f"asyncio said: {_trouble.found}")


class Recorder:
    """A blinker receiver that records (signal name, kwargs, thread name) per call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[dict[str, Any]] = []

    def __call__(self, sender: object, **kwargs: Any) -> None:
        self.calls.append(
            {
                "signal": self.name,
                "thread": threading.current_thread().name,
                "sender": sender,
                **kwargs,
            }
        )


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def executor_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``executors`` loggers during the test.

    Not ``caplog``: since pytest 9.2 its handlers also sit on the non-propagating
    ``distributed`` logger, and a LocalCluster's ``silence_logs`` turns those shared
    handlers to CRITICAL for the cluster's life, hiding our records.
    """
    handler = _ListHandler()
    logger = logging.getLogger("executors")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def sigint_as_in_a_terminal() -> None:
    """For a child process (``preexec_fn``): SIGINT as in a terminal. Started from a
    background job, the tests would pass on an ignored SIGINT, and a Python child keeps
    an ignored SIGINT ignored: its Ctrl-C would never come."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, as in a terminal.

    A shell starting a job in the background (``cmd &``) ignores SIGINT in it, and Python
    then keeps it ignored; the Ctrl-C tests must not depend on how pytest was launched.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_for_pid(path: Path, timeout: float = 30.0) -> int:
    """The pid a task wrote to ``path``, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"no pid in {path} after {timeout} s")


def ctrl_c_once_written(path: Path, timeout: float = 60.0) -> list[float]:
    """Send this process a real Ctrl-C (SIGINT) from a thread once a task has written its
    pid to ``path``. The returned list gets the time it was sent."""
    sent: list[float] = []

    def interrupt() -> None:
        try:
            wait_for_pid(path, timeout)
        except AssertionError:
            return  # the test then finds nothing was sent
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    return sent


def tls_files(security: Any, directory: Path) -> list[str]:
    """The ``--tls-*`` options that make a CLI scheduler or worker use ``security``."""
    paths = {}
    for name, text in (
        ("ca", security.tls_ca_file),
        ("cert", security.tls_scheduler_cert),
        ("key", security.tls_scheduler_key),
    ):
        path = directory / f"{name}.pem"
        path.write_text(text)
        paths[name] = str(path)
    return [
        "--tls-ca-file",
        paths["ca"],
        "--tls-cert",
        paths["cert"],
        "--tls-key",
        paths["key"],
    ]
