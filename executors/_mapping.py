"""``Executor.map``: the results of a function over many items, in order (SPEC §3).

Items run in chunks, one task each (:func:`~._chunks.run_chunk`), so tiny functions are
not paid for one scheduler round each (P7, P9); a chunk's results come back together
and are yielded one by one. Who submits the chunks, and when, is the feeder's part
(``_feeder.py``); this module checks the arguments, and yields.

While it waits for the next chunk, the iterator brings the results of the chunks after
it that have ended too, in the same trip: on Dask, one gather for many chunks.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._chunks import Chunk
from ._feeder import Feeder
from ._future import FINISHED, NOT_FETCHED, PENDING, Future, deadline, remaining
from ._progress import open_count_bar
from ._task import is_positive_int
from ._waiting import cancel_together, fetch_all

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["MapResults", "check_map_arguments", "map_items"]

T = TypeVar("T")

# How many chunks after the one waited for may come back with it, at most.
PREFETCH = 64


def check_map_arguments(
    chunksize: Any, buffersize: Any, extra_context: Mapping[str, Any] | None
) -> None:
    """:raises ValueError: for a chunk size that is not ``"auto"`` or a positive int, a
    buffer size that is not a positive int, or an ``extra_context`` that sets what map
    sets itself."""
    if chunksize != "auto" and not is_positive_int(chunksize):
        raise ValueError(f"chunksize must be 'auto' or an int >= 1, got {chunksize!r}")
    if buffersize is not None and not is_positive_int(buffersize):
        raise ValueError(f"buffersize must be None or an int >= 1, got {buffersize!r}")
    for reserved in ("key", "map_index"):
        if extra_context is not None and reserved in extra_context:
            raise ValueError(
                f"map() sets each task's {reserved!r} itself; remove it from extra_context"
            )


def map_items(
    run: Run,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    timeout: float | None,
    chunksize: int | str,
    buffersize: int | None,
    extra_context: Mapping[str, Any] | None,
    progress: bool,
) -> MapResults[Any]:
    """Submit what map submits at the call; the iterator of its results (arguments
    checked by :func:`check_map_arguments`)."""
    until = deadline(timeout)
    feeder = Feeder(run, fn, iterables, chunksize, buffersize, extra_context)
    feeder.feed()
    if buffersize is None:
        feeder.read_all()
    bar = open_count_bar(feeder.source.length) if progress else None
    return MapResults(_results(feeder, until, timeout, bar), feeder, bar)


class MapResults(Generator[T, None, None]):
    """The iterator ``map`` returns. ``close()`` cancels every task whose results it has
    not yielded, even before the first ``next()`` (a plain generator's close does nothing
    then). Dropped unclosed, it ends as concurrent.futures' map does: once iterated, the
    rest is cancelled; never iterated, the work runs to its end (a dropped map is not a
    cancel, as a dropped Future is not)."""

    __slots__ = ("_bar", "_feeder", "_results")

    def __init__(self, results: Generator[T, None, None], feeder: Feeder, bar: Any) -> None:
        self._results = results
        self._feeder = feeder
        self._bar = bar

    def send(self, value: None) -> T:
        return self._results.send(value)

    def throw(self, *error: Any) -> T:
        return self._results.throw(*error)

    def close(self) -> None:
        self._results.close()  # a started iterator cancels the rest itself, as it ends
        _cancel(self._feeder)  # one never started has not
        if self._bar is not None:
            self._bar.close()


def _results(
    feeder: Feeder, until: float | None, timeout: float | None, bar: Any
) -> Generator[Any, None, None]:
    # Nothing of a result stays referenced here once it is yielded: the caller alone
    # keeps what it keeps (CPython issue 14406).
    pending = feeder.pending
    unchunked = feeder.fixed == 1
    try:
        while True:
            if feeder.buffersize is not None:  # read on only as far as the buffer allows
                feeder.feed()
            if not pending and not feeder.wait_for_more(until, timeout):
                if feeder.error is not None:
                    raise feeder.error
                return
            _bring(pending, until, timeout)
            if unchunked:
                yield pending.popleft().result()  # no name keeps it once it is yielded
                if bar is not None:
                    bar.update(1)
                continue
            head = pending.popleft()
            chunk: Chunk = head.result()
            hole = feeder.taken(head)  # the rest of a chunk that ended early is queued
            del head
            values, error = chunk.values, chunk.error
            del chunk
            values.reverse()
            while values:
                yield values.pop()
                if bar is not None:
                    bar.update(1)
            if error is not None:
                raise error
            if hole is not None:
                raise hole
    finally:
        _cancel(feeder)
        if bar is not None:
            bar.close()


def _cancel(feeder: Feeder) -> None:
    """Submit nothing more; cancel what was not yielded, the last first (a chunk that
    runs is stopped only once none after it can start in its place), in one go, and let
    go of it."""
    feeder.stop()
    pending = feeder.pending
    cancel_together(reversed(pending))
    pending.clear()


def _bring(
    pending: collections.deque[Future[Any]], until: float | None, timeout: float | None
) -> None:
    """Wait for the first pending result and bring it here, with those after it that
    have ended too, in one trip.

    :raises TimeoutError: naming the map's timeout."""
    head = pending[0]
    try:
        if head._status is PENDING:
            head._owner.prepare((head,))
            head._wait(remaining(until))
        if head._status is FINISHED and head._value is NOT_FETCHED:
            ended = [
                future
                for future in itertools.islice(pending, 0, PREFETCH)
                if future._status is FINISHED and future._value is NOT_FETCHED
            ]
            fetch_all(ended, remaining(until))
    except TimeoutError:
        raise TimeoutError(
            f"map(): the result of {head.key!r} was not ready within the timeout of {timeout} s"
        ) from None
