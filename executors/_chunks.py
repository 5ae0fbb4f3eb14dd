"""What a chunk of ``map`` items is: the input read into chunks, the one task that runs
a chunk, and what it comes back as (SPEC §3)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from types import CoroutineType, TracebackType
from typing import Any

from ._calling import run_to_end

__all__ = ["Chunk", "Source", "run_chunk"]

READ_SLICE = 4096  # items read at a time, holding the GIL


def _rebuild_chunk(
    values: list[Any],
    error: BaseException | None,
    traceback_: TracebackType | None,
    run_time: float,
) -> Chunk:
    if error is not None and traceback_ is not None:
        error = error.with_traceback(traceback_)
    return Chunk(values, error, run_time)


class Chunk:
    """What a chunk of map items comes back as: the values of its items, in order, up to
    the first that raised, and that one's error (with its traceback, so that map raises
    it with the item's own frames, from wherever it ran); and how long it ran there, for
    the chunk sizes of ``chunksize="auto"``."""

    __slots__ = ("error", "run_time", "values")

    def __init__(self, values: list[Any], error: BaseException | None, run_time: float) -> None:
        self.values = values
        self.error = error
        self.run_time = run_time

    def __reduce__(self) -> tuple[Any, ...]:
        traceback_ = self.error.__traceback__ if self.error is not None else None
        return (_rebuild_chunk, (self.values, self.error, traceback_, self.run_time))


def run_chunk(
    fn: Callable[..., Any], items: list[Any], spread: bool, budget: float | None = None
) -> Chunk:
    """One task of a chunked map: ``fn`` over each item, in order, up to the first item
    that raises (map raises at that item and ends: the rest are not needed). With
    ``spread``, each item is a tuple of arguments (a map over several iterables); else
    the one argument.

    With a ``budget`` (seconds; auto chunks), the chunk ends early once it has run that
    long, looking after each item (at least one runs): its map submits the items it did
    not reach again. So a size learned from fast first items cannot make a chunk that
    runs slow ones for minutes on one worker."""
    values: list[Any] = []
    clock = time.perf_counter
    started = clock()
    deadline = math.inf if budget is None else started + budget
    for item in items:
        try:
            value = fn(*item) if spread else fn(item)
            if type(value) is CoroutineType:  # an async def function: run it to its end
                value = run_to_end(value)
        except Exception as exc:
            return Chunk(values, exc, clock() - started)
        values.append(value)
        if clock() > deadline:
            break
    return Chunk(values, None, clock() - started)


class Source:
    """The zipped input of a map, read into chunks; an error the input raises is kept
    to be raised in its place, after every item read before it.

    A map without a buffer reads its input at the call, as concurrent.futures does
    (:meth:`read_all`), after its first chunks are on their way; else the input is read
    only as chunks are taken.
    """

    __slots__ = ("_exact", "_items", "error", "exhausted", "length", "spread", "start")

    def __init__(self, iterables: tuple[Iterable[Any], ...]) -> None:
        self.start = 0  # the index of the next item to take
        self.error: BaseException | None = None
        self.exhausted = False
        # One iterable (the usual map): its items as they are. A tuple each would cost a
        # GC-tracked object an item, and a read of 200,000 items 5 times as long.
        self.spread = len(iterables) != 1
        self._items: Iterator[Any] = (
            zip(*iterables, strict=False) if self.spread else iter(iterables[0])
        )
        self.length: int | None = None  # how many items in all, when known
        self._exact = False  # the length is exact: what was read, or a range's len()
        try:
            self.length = min(len(iterable) for iterable in iterables)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            pass  # one of them has no len() (or there is none): a hint only, anyway
        if not self.spread and type(iterables[0]) is range and self.length is not None:
            # Read already, in effect: a range cannot change, and its len() is exact. Not
            # making its numbers at the call saves the read (200,000 items: 3-10 ms, while
            # the first chunks wait for the GIL that the read holds).
            self._exact = True

    def read_all(self) -> None:
        """Read the rest of the input now; an error it raises is kept for its place.

        In slices: a read of C iterators holds the GIL throughout, and the loop thread
        that sends the first chunks meanwhile would wait for it (the first result
        too)."""
        if self._exact:
            return  # a range: nothing to read (see __init__)
        read: list[Any] = []
        if self.error is None:
            try:
                while True:
                    before = len(read)
                    read.extend(itertools.islice(self._items, READ_SLICE))
                    if len(read) - before < READ_SLICE:
                        break
            except Exception as exc:
                self.error = exc
        self.length = self.start + len(read)
        self._exact = True
        self._items = iter(read)
        if not read:
            self.exhausted = True

    @property
    def remaining(self) -> int | None:
        """Items not yet taken, when the input's length is known."""
        return None if self.length is None else max(self.length - self.start, 0)

    def take(self, size: int) -> tuple[int, list[Any]]:
        """The next ``size`` items (fewer at the input's end or at its error), and the
        index of the first. Empty once the input is exhausted."""
        if self.exhausted:
            return self.start, []
        start = self.start
        chunk: list[Any] = []
        try:
            chunk.extend(itertools.islice(self._items, size))
        except Exception as exc:
            self.error = exc
            self.exhausted = True
        self.start = start + len(chunk)
        if len(chunk) < size or (self._exact and self.start == self.length):
            self.exhausted = True
            self.length = self.start
        if self.exhausted:
            self._items = iter(())  # nothing of the input is kept once it has ended
        return start, chunk
