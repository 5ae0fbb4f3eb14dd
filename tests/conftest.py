"""Fixtures shared by the tests: the executors under test and the leak check."""

from __future__ import annotations

import multiprocessing.resource_tracker
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from executors import Executor, LocalDaskExecutor, LocalExecutor

LEAK_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Kind:
    """An executor under test, and what the behaviour tests may expect of it."""

    id: str
    make: Callable[[], Executor]
    inline: bool  # tasks run inside submit(): a Future is done at once
    in_process: bool  # tasks run in this process: should_run() and memory are shared

    def __call__(self) -> Executor:
        return self.make()


KINDS = [
    Kind("local", LocalExecutor, inline=True, in_process=True),
    Kind("dask-threads", lambda: LocalDaskExecutor("threads", num_workers=2), False, True),
    Kind("dask-sync", lambda: LocalDaskExecutor("synchronous"), False, True),
    Kind("dask-processes", lambda: LocalDaskExecutor("processes", num_workers=2), False, False),
]


@pytest.fixture(params=KINDS, ids=[kind.id for kind in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def ex(kind: Kind) -> Iterator[Executor]:
    """A started executor of each kind."""
    with kind() as executor:
        yield executor


def _helper_pids() -> set[int]:
    """Processes the standard library keeps for the whole interpreter's life."""
    tracker = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
    return {tracker} if tracker else set()


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)} - _helper_pids()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a thread or a child process behind."""
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        children = _children() - children_before
        if not threads and not children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"test leaked threads {[t.name for t in threads]} and child processes {children}")


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
