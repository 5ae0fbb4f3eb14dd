"""Task functions for the tests, importable by worker processes."""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any


def write(path: str | pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` whole, at once: the tests wait for a file to exist and
    then read it, and ``write_text`` makes it exist empty before the text is in it."""
    path = pathlib.Path(path)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_text(text)
    os.replace(part, path)


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def echo(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, kwargs


def fail(message: str = "boom") -> None:
    raise ZeroDivisionError(message)


def fail_if_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def raise_this(error: BaseException) -> None:
    raise error


def make_lock() -> Any:
    """A result that does not pickle."""
    import threading

    return threading.Lock()


class TaskError(Exception):
    """An exception class of the tests' own: tblib's pickling support, which distributed
    installs for the classes that exist when it is imported, was not installed for it."""


def fail_with_own_error(message: str) -> None:
    raise TaskError(message)


def touch(path: str, value: object = None) -> object:
    write(path, str(os.getpid()))
    return value


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def sleep_then_touch(seconds: float, path: str) -> None:
    time.sleep(seconds)
    write(path, str(os.getpid()))


def write_pid_and_sleep(path: str, seconds: float) -> int:
    write(path, str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def rendezvous(directory: str, name: str, others: int, timeout: float) -> bool:
    """True if ``others`` other tasks check in while this one waits: they ran in parallel."""
    folder = pathlib.Path(directory)
    write(folder / name, str(os.getpid()))
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
        write(marker, "failed once")
        raise RuntimeError("first attempt")
    return "second attempt"


def cooperate(path: str, limit: float) -> int:
    """Work in small steps while ``should_run()``, for at most ``limit`` seconds; then
    write to ``path`` when it stopped and how many steps it made."""
    from executors import should_run

    started = time.time()
    write(path + ".started", str(started))
    steps = 0
    while should_run() and time.time() - started < limit:
        steps += 1
        time.sleep(0.001)
    write(path, f"{time.time()} {steps}")
    return steps


def should_run_calls(n: int) -> tuple[int, float, int]:
    """Call ``should_run()`` ``n`` times in a Dask task; return how many said True, the
    seconds taken, and how many scheduler round trips the run's flag made meanwhile."""
    from executors import should_run
    from executors._context import current_task

    context = current_task.get()
    flag: Any = context.remote if context is not None else None
    asks_before = flag.asks if flag is not None else 0
    started = time.perf_counter()
    true = sum(should_run() for _ in range(n))
    elapsed = time.perf_counter() - started
    return true, elapsed, (flag.asks if flag is not None else 0) - asks_before


def cancel_then_touch(executor: Any, directory: str, token: str, n: int, limit: float) -> None:
    """Inside a task: submit a cooperative blocker and ``n`` tasks that each touch a file
    in ``directory`` (keys ``touch-<i>-<token>``), then wait for all of them."""
    blocker = executor.submit(
        cooperate, f"{directory}/blocker", limit, extra_context={"key": f"blocker-{token}"}
    )
    touches = [
        executor.submit(
            touch, f"{directory}/touched-{i}", blocker, extra_context={"key": f"touch-{i}-{token}"}
        )
        for i in range(n)
    ]
    executor.wait(touches)


def submit_when_told(executor: Any, directory: str, limit: float) -> None:
    """Inside a task: read ``should_run()`` (so the worker has a fresh answer), say so,
    wait for the driver's ``go`` file, then submit a subtask that touches ``sub`` and
    wait for it; write how that ended to ``done``."""
    from executors import should_run

    folder = pathlib.Path(directory)
    should_run()
    write(folder / "started", "")
    deadline = time.monotonic() + limit
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    sub = executor.submit(touch, str(folder / "sub"))
    try:
        executor.wait(sub)
        outcome = "finished"
    except Exception as exc:
        outcome = type(exc).__name__
    write(folder / "done", outcome)


class Box:
    """A value that can be watched with a weak reference (ints and strs cannot)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Box) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def box(value: object) -> Box:
    return Box(value)


class Unbox:
    """A callable object that can be watched with a weak reference."""

    def __call__(self, boxed: Box) -> Box:
        return Box(boxed.value)


def wait_for_file(path: str, limit: float, value: object = None) -> object:
    """Return ``value`` once ``path`` exists (at most ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not pathlib.Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return value


async def ainc(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.001)
    return x + 1


async def afail(message: str) -> None:
    import asyncio

    await asyncio.sleep(0.001)
    raise TaskError(message)


async def ashould_run() -> bool:
    import asyncio

    from executors import should_run

    await asyncio.sleep(0.001)
    return should_run()


async def afan_out(executor: Any, n: int) -> int:
    """Inside an async task: submit ``n`` subtasks and await them all."""
    import asyncio

    futures = [executor.submit(inc, i) for i in range(n)]
    results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    return sum(results)


def nested_compute(n: int) -> tuple[int, str, str]:
    """Compute a small dask collection inside a task: its sum, the thread the task ran
    in and the thread that ran the collection's pieces."""
    import threading

    import dask

    outer = threading.current_thread().name
    seen: list[str] = []

    def piece(i: int) -> int:
        seen.append(threading.current_thread().name)
        return i

    total = sum(dask.compute(*[dask.delayed(piece)(i) for i in range(n)]))
    return total, outer, seen[0]


async def acooperate(path: str, limit: float) -> int:
    """:func:`cooperate` as an ``async def`` task, on the worker's event loop."""
    import asyncio

    from executors import should_run

    started = time.time()
    write(path + ".started", str(started))
    steps = 0
    while should_run() and time.time() - started < limit:
        steps += 1
        await asyncio.sleep(0.001)
    write(path, f"{time.time()} {steps}")
    return steps


def started_then_wait(started: str, go: str, limit: float, ended: str | None = None) -> None:
    """Say it started (``started``), wait for the test's ``go`` file, then say it ended."""
    write(started, str(os.getpid()))
    wait_for_file(go, limit)
    if ended is not None:
        write(ended, "")


def should_run_of(_: object) -> bool:
    from executors import should_run

    return should_run()


def touch_after(_: object, path: str) -> None:
    """Touch ``path`` (after its first argument, a dependency, has ended)."""
    write(path, "")


def identity_after(_: object, value: object) -> object:
    return value


def first_blocks(path: str) -> None:
    """Map's first item writes its pid to ``path`` and sleeps; the others touch ``path``."""
    if pathlib.Path(path).name == "pid":
        write_pid_and_sleep(path, 30)
    else:
        write(path, "")


def append_line(path: str, line: object) -> None:
    """Append ``line`` to the file at ``path``: a record of the order tasks ran in."""
    with open(path, "a") as file:
        file.write(f"{line}\n")


def slower_from(x: int, start: int, fast: float, slow: float) -> int:
    """Sleep ``fast`` seconds for items before ``start``, ``slow`` from it on: a map
    whose work changes pace half-way."""
    seconds = fast if x < start else slow
    if seconds:
        time.sleep(seconds)
    return x


def exit_at(x: int, bad: int) -> int:
    """Kill this process (as a crash or an OOM kill would) at item ``bad``."""
    if x == bad:
        os._exit(1)
    return x


def kill_self(signum: int) -> None:
    """End this process by a signal, as an OOM kill does."""
    os.kill(os.getpid(), signum)
    time.sleep(10)


def record_slow_from(x: int, start: int, slow: float, path: str) -> int:
    """``x`` at once before ``start``; from it on, append ``x`` to ``path`` (a record
    that it ran), then sleep ``slow`` seconds before returning it."""
    if x >= start:
        append_line(path, x)
        time.sleep(slow)
    return x
