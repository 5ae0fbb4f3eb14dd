"""Task functions for the tests, importable by worker processes."""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def echo(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, kwargs


def fail(message: str = "boom") -> None:
    raise ZeroDivisionError(message)


def touch(path: str, value: object = None) -> object:
    pathlib.Path(path).write_text(str(os.getpid()))
    return value


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def write_pid_and_sleep(path: str, seconds: float) -> int:
    pathlib.Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def rendezvous(directory: str, name: str, others: int, timeout: float) -> bool:
    """True if ``others`` other tasks check in while this one waits: they ran in parallel."""
    folder = pathlib.Path(directory)
    (folder / name).write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(folder.iterdir())) > others:
            return True
        time.sleep(0.01)
    return False


def fan_out(executor: Any, n: int) -> int:
    """Submit ``n`` subtasks through ``executor`` (pickled into this task) and sum them."""
    futures = [executor.submit(inc, i) for i in range(n)]
    return sum(executor.wait(futures))


def fan_out_in_block(executor: Any, n: int) -> int:
    """Like :func:`fan_out`, inside ``with executor:`` on the worker."""
    with executor:
        futures = [executor.submit(inc, i) for i in range(n)]
        first = futures[0].result()
        return first + sum(executor.wait(futures[1:]))


def worker_address() -> str:
    import distributed

    return str(distributed.get_worker().address)


def fail_once(path: str) -> str:
    """Fail the first time (leaving ``path`` behind), succeed after."""
    marker = pathlib.Path(path)
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt")
    return "second attempt"
