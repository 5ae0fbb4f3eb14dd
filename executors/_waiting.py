"""Waiting on many Futures at once: ``as_completed``, and what ``wait`` is made of.

Waits of every kind are told by the Futures themselves (``Future._settle``); nothing
here polls. Futures of several runs may be waited on together: each run is asked in
turn to get its own computed (``prepare_all``) and fetched (``fetch_all``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from . import _interruptible as interruptible
from ._future import FINISHED, NOT_FETCHED, PENDING, Future, Waiter, deadline, remaining
from ._progress import open_progress_bar
from ._structure import find_futures, replace_futures

__all__ = [
    "as_completed",
    "block_until_done",
    "cancel_together",
    "fetch_all",
    "prepare_all",
    "wait_for",
]

T = TypeVar("T")


class _QueueWaiter:
    """Collects Futures as they finish, for ``as_completed``."""

    __slots__ = ("_done", "_event", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._done: list[Future[Any]] = []

    def notify(self, future: Future[Any]) -> None:
        with self._lock:
            self._done.append(future)
            self._event.set()

    def take(self, timeout: float | None) -> list[Future[Any]]:
        interruptible.wait(self._event, timeout)
        with self._lock:
            done, self._done = self._done, []
            self._event.clear()
        return done


def block_until_done(
    futures: list[Future[Any]], timeout: float | None, fail_fast: bool = False
) -> Waiter:
    """Block until every one of ``futures`` is done (or, with ``fail_fast``, one failed),
    or ``timeout`` passed; the waiter tells which (``event`` set, ``failed``)."""
    waiter = Waiter(len(futures), fail_fast)
    if not futures:
        waiter.event.set()
        return waiter
    for future in futures:
        if not future._add_waiter(waiter):
            waiter.notify(future)
    if not interruptible.wait(waiter.event, timeout):
        for future in futures:
            future._remove_waiter(waiter)
    return waiter


def _by_owner(
    futures: Iterable[Future[Any]], wanted: Callable[[Future[Any]], bool]
) -> Iterable[tuple[Any, list[Future[Any]]]]:
    """The ``wanted`` ones of ``futures``, by the run that owns them."""
    groups: dict[int, tuple[Any, list[Future[Any]]]] = {}
    for future in futures:
        if wanted(future):
            groups.setdefault(id(future._owner), (future._owner, []))[1].append(future)
    return groups.values()


def prepare_all(futures: Iterable[Future[Any]]) -> None:
    """Ask each run to get its pending Futures computed (lazy executors need this)."""
    for owner, pending in _by_owner(futures, lambda future: future._status is PENDING):
        owner.prepare(pending)


def fetch_all(futures: Iterable[Future[Any]], timeout: float | None) -> None:
    """Fetch the results still on the cluster, in one round trip per run."""
    for owner, unfetched in _by_owner(futures, lambda future: future._value is NOT_FETCHED):
        owner.fetch(unfetched, timeout)


def cancel_together(futures: Iterable[Future[Any]]) -> None:
    """Cancel the pending ones of ``futures``, in their order, in one go per run (on Dask
    one trip to the loop, not one a Future)."""
    for owner, pending in _by_owner(futures, lambda future: future._status is PENDING):
        owner.cancel_futures(pending)


def as_completed(
    futures: Iterable[Future[T]], timeout: float | None = None, progress: bool = False
) -> Iterator[Future[T]]:
    """Yield the Futures as they finish (those already done first).

    ``progress=True`` draws a progress bar on stderr when it is a terminal (with tqdm,
    the ``progress`` extra), until the iteration ends.

    :raises TimeoutError: when some are not done within ``timeout`` seconds of the call.
    """
    until = deadline(timeout)
    unique = list(dict.fromkeys(futures))
    prepare_all(unique)
    waiter = _QueueWaiter()
    pending: set[Future[T]] = set()
    ready: list[Future[T]] = []
    for future in unique:
        (pending.add(future) if future._add_waiter(waiter) else ready.append(future))
    completed = _yield_completed(ready, pending, waiter, until, timeout, len(unique))
    return _with_progress_bar(completed, unique) if progress else completed


def _with_progress_bar(
    completed: Iterator[Future[T]], futures: list[Future[T]]
) -> Iterator[Future[T]]:
    bar = open_progress_bar(futures, user_frame=2)  # the user's next() is 2 frames up
    try:
        yield from completed
    finally:
        if bar is not None:
            bar.close()


def _yield_completed(
    ready: list[Future[T]],
    pending: set[Future[T]],
    waiter: _QueueWaiter,
    until: float | None,
    timeout: float | None,
    total: int,
) -> Iterator[Future[T]]:
    # Each Future is popped from every list and set before it is yielded, and no name is
    # bound to it here: once the caller drops it, nothing of ours keeps it alive
    # (CPython issue 16284).
    try:
        ready.reverse()
        while ready:
            yield ready.pop()
        while pending:
            done = waiter.take(remaining(until))
            if not done and until is not None and time.monotonic() >= until:
                raise TimeoutError(f"{len(pending)} of {total} futures not done within {timeout} s")
            done.reverse()
            while done:
                pending.discard(done[-1])
                yield done.pop()
    finally:
        for future in pending:
            future._remove_waiter(waiter)


def wait_for(futures: Any, timeout: float | None, progress: bool) -> Any:
    """``Executor.wait``: the structure ``futures`` with every Future replaced by its
    result, each run asked for its results in one trip."""
    until = deadline(timeout)
    found: dict[Future[Any], None] = {}
    find_futures(futures, found)
    bar = open_progress_bar(found, user_frame=3) if progress else None  # via Executor.wait
    try:
        pending = []
        for future in found:
            state = future._status
            if state is PENDING:
                pending.append(future)
            elif state is not FINISHED:
                raise future._value
        if pending:
            prepare_all(pending)
            waiter = block_until_done(pending, timeout, fail_fast=True)
            if waiter.failed is not None:
                raise waiter.failed._value
            if not waiter.event.is_set():
                still = sum(1 for future in pending if future._status is PENDING)
                raise TimeoutError(f"{still} of {len(found)} tasks not done within {timeout} s")
        try:
            fetch_all(found, remaining(until))
        except TimeoutError:
            unfetched = sum(1 for future in found if future._value is NOT_FETCHED)
            raise TimeoutError(
                f"the results of {unfetched} of {len(found)} tasks did not arrive within "
                f"{timeout} s"
            ) from None
        return replace_futures(futures, Future.result)
    finally:
        if bar is not None:
            bar.close()
