"""Blocking waits that a Ctrl-C can end, on the main thread (SPEC §3, §4).

A process-directed SIGINT may be taken by any thread that does not block it
(multiprocessing blocks it around a spawn, for one). CPython then only sets a flag for the
main thread, and a main thread parked in an untimed ``Event.wait`` or ``Thread.join`` is
not woken to raise ``KeyboardInterrupt``: a script's Ctrl-C is lost until the wait ends.
These waits look again every ``WAKE_SECONDS`` on the main thread, so the interrupt is
raised there at once; on other threads they wait as the standard library does.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["WAKE_SECONDS", "join", "result", "shut_down", "wait"]

T = TypeVar("T")

WAKE_SECONDS = 0.1


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _slices(timeout: float | None) -> Iterator[float]:
    """The lengths of the waits that make up one of ``timeout`` seconds (None: for
    ever), each at most ``WAKE_SECONDS``; at least one."""
    until = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAKE_SECONDS if until is None else min(WAKE_SECONDS, until - time.monotonic())
        yield max(left, 0.0)
        if until is not None and time.monotonic() >= until:
            return


def wait(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``."""
    if not _on_main_thread():
        return event.wait(timeout)
    return any(event.wait(part) for part in _slices(timeout))


def result(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)``."""
    if not _on_main_thread():
        return future.result(timeout)
    for part in _slices(timeout):
        try:
            return future.result(part)
        except concurrent.futures.TimeoutError as exc:
            last = exc
    raise last


def join(thread: threading.Thread, timeout: float | None = None) -> None:
    """``thread.join(timeout)``."""
    if not _on_main_thread():
        thread.join(timeout)
        return
    for part in _slices(timeout):
        if not thread.is_alive():
            return
        thread.join(part)


def shut_down(pool: concurrent.futures.Executor, cancel_futures: bool = False) -> None:
    """``pool.shutdown(wait=True, cancel_futures=cancel_futures)``: its queued work is done
    (unless cancelled) and its threads have ended when it returns."""
    # What shutdown(wait=True) waits for, read before shutdown(wait=False) forgets it (the
    # same private names in CPython 3.10 to 3.14): a thread pool's workers; a process
    # pool's manager thread, which ends once its processes have, and its result queue.
    if isinstance(pool, concurrent.futures.ThreadPoolExecutor):
        threads = list(pool._threads)
        result_queue = None
    else:
        manager = getattr(pool, "_executor_manager_thread", None)
        threads = [manager] if manager is not None else []
        result_queue = getattr(pool, "_result_queue", None)
    pool.shutdown(wait=False, cancel_futures=cancel_futures)
    for thread in threads:
        join(thread)
    if result_queue is not None:
        result_queue.close()
