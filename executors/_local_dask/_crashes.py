"""A task that kills its worker process fails alone (SPEC §13).

When a process of a ``concurrent.futures.ProcessPoolExecutor`` dies (a crash,
``os._exit``, an OOM kill), the pool breaks: every task in it fails with
``BrokenProcessPool`` and so would every later one. A LocalDaskExecutor replaces the pool
and runs the tasks that were in it again; the one the dead process was running is
counted, and after ``ALLOWED_FAILURES`` (distributed's ``allowed-failures`` default) it
fails with :class:`~executors.exceptions.ProcessDiedError`.

Which task that was: every worker process has a slot in an array shared with the driver,
and writes there a number for the task it runs (a CRC of its key) while it runs it. The
process that died abruptly is the one whose exit code is not the pool's own SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import zlib
from typing import Any

__all__ = ["ALLOWED_FAILURES", "Slots", "crashed", "key_number", "mark", "new_slots", "take_slot"]

ALLOWED_FAILURES = 3
JOIN_TIMEOUT = 5.0  # seconds the broken pool's processes get to be seen ended

# Each slot: the pid of its process, and the number of the task it runs (0: none).
Slots = Any  # a multiprocessing RawArray of 2 * workers signed 64-bit ints

# In a worker process: its slots, and which one is its own (set by take_slot).
_slots: Slots | None = None
_own = -1


def new_slots(context: Any, workers: int) -> tuple[Slots, Any]:
    """The shared slots of a pool of ``workers`` processes, and the counter that hands
    them out (both passed to the processes as they start)."""
    return context.RawArray("q", 2 * workers), context.Value("i", 0)


def take_slot(slots: Slots, counter: Any) -> None:
    """In a new worker process: take the next free slot."""
    global _slots, _own
    with counter.get_lock():
        _own = counter.value
        counter.value += 1
    _slots = slots
    slots[2 * _own] = os.getpid()


def key_number(key: str) -> int:
    """The number a process writes for the task of ``key`` (never 0)."""
    return zlib.crc32(key.encode()) + 1


def mark(key: str | None) -> None:
    """In a worker process: it runs the task of ``key`` now (None: none)."""
    if _slots is not None:
        _slots[2 * _own + 1] = key_number(key) if key is not None else 0


def crashed(processes: list[multiprocessing.process.BaseProcess], slots: Slots) -> dict[int, int]:
    """The tasks the processes of a broken pool died running, by key number, with the
    exit code of each (a process the pool itself terminated is not among them)."""
    for process in processes:
        process.join(JOIN_TIMEOUT)
    by_pid = {slots[2 * i]: slots[2 * i + 1] for i in range(len(slots) // 2)}
    found: dict[int, int] = {}
    for process in processes:
        code = process.exitcode
        if code is None or code == -signal.SIGTERM:
            continue
        number = by_pid.get(process.pid, 0)
        if number:
            found[number] = code
    return found
