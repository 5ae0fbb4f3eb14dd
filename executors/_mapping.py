"""``Executor.map``: the results of a function over many items, in order (SPEC §3).

With ``chunksize=N``, N consecutive items run as one task (:func:`run_chunk`), so tiny
functions are not paid for one scheduler round each (P7); their results come back
together and are yielded one by one. With ``buffersize=K``, at most K chunks are
submitted and not yet yielded: the first K at the call, the rest only as results are
consumed, so an endless generator can be mapped in bounded memory (P8). Without it every
item is submitted at the call, as ``concurrent.futures`` did before Python 3.14.

While it waits for the next chunk, the iterator brings the results of the chunks after
it that have ended too, in the same trip: on Dask, one gather for many chunks.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

from ._calling import run_to_end
from ._future import FINISHED, NOT_FETCHED, PENDING, Future, deadline, remaining
from ._progress import open_count_bar
from ._task import function_name, is_positive_int
from ._waiting import cancel_together, fetch_all

__all__ = ["Chunk", "MapResults", "check_map_arguments", "map_items", "run_chunk"]

T = TypeVar("T")

# How many chunks after the one waited for may come back with it, at most.
PREFETCH = 64


class Submitter(Protocol):
    """What map needs of its executor (``_base.Executor``)."""

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        extra_context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Future[Any]: ...


def check_map_arguments(
    chunksize: Any, buffersize: Any, extra_context: Mapping[str, Any] | None
) -> None:
    """:raises ValueError: for a chunk or buffer size that is not a positive int, or an
    ``extra_context`` that sets what map sets itself."""
    if not is_positive_int(chunksize):
        raise ValueError(f"chunksize must be an int >= 1, got {chunksize!r}")
    if buffersize is not None and not is_positive_int(buffersize):
        raise ValueError(f"buffersize must be None or an int >= 1, got {buffersize!r}")
    for reserved in ("key", "map_index"):
        if extra_context is not None and reserved in extra_context:
            raise ValueError(
                f"map() sets each task's {reserved!r} itself; remove it from extra_context"
            )


def _rebuild_chunk(
    values: list[Any], error: BaseException | None, traceback_: TracebackType | None
) -> Chunk:
    if error is not None and traceback_ is not None:
        error = error.with_traceback(traceback_)
    return Chunk(values, error)


class Chunk:
    """What a chunk of map items comes back as: the values of its items, in order, up to
    the first that raised, and that one's error (with its traceback, so that map raises
    it with the item's own frames, from wherever it ran)."""

    __slots__ = ("error", "values")

    def __init__(self, values: list[Any], error: BaseException | None) -> None:
        self.values = values
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        traceback_ = self.error.__traceback__ if self.error is not None else None
        return (_rebuild_chunk, (self.values, self.error, traceback_))


def run_chunk(fn: Callable[..., Any], items: list[tuple[Any, ...]]) -> Chunk:
    """One task of a chunked map: ``fn`` over each item's arguments, in order, up to the
    first item that raises (map raises at that item and ends: the rest are not needed)."""
    values = []
    for args in items:
        try:
            values.append(run_to_end(fn(*args)))
        except Exception as exc:
            return Chunk(values, exc)
    return Chunk(values, None)


def map_items(
    executor: Submitter,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    timeout: float | None,
    chunksize: int,
    buffersize: int | None,
    extra_context: Mapping[str, Any] | None,
    progress: bool,
) -> MapResults[Any]:
    """Submit what map submits at the call; the iterator of its results (arguments
    checked by :func:`check_map_arguments`)."""
    until = deadline(timeout)
    context = dict(extra_context or {})
    name = context.get("task_full_name") or context.get("task_name") or function_name(fn)

    def submit(start: int, items: list[tuple[Any, ...]]) -> Future[Any]:
        if chunksize == 1:
            context["map_index"] = start  # submit reads the context, it does not keep it
            return executor.submit(fn, *items[0], extra_context=context)
        chunk_context = {**context, "task_full_name": f"{name}-[{start}:{start + len(items)}]"}
        return executor.submit(run_chunk, fn, items, extra_context=chunk_context)

    chunks = _chunks(zip(*iterables, strict=False), chunksize)
    pending: collections.deque[Future[Any]] = collections.deque()
    # Work starts at the call, as in concurrent.futures: every item, or the first
    # ``buffersize`` chunks (the rest as results are consumed).
    total = 0
    for start, items in itertools.islice(chunks, buffersize):
        pending.append(submit(start, items))
        total += len(items)
    _start(pending)
    bar = open_count_bar(total if buffersize is None else None) if progress else None
    results = _results(pending, chunks, submit, buffersize, chunksize > 1, until, timeout, bar)
    return MapResults(results, pending, bar)


class MapResults(Generator[T, None, None]):
    """The iterator ``map`` returns. ``close()`` cancels every task whose results it has
    not yielded, even before the first ``next()`` (a plain generator's close does nothing
    then). Dropped unclosed, it ends as concurrent.futures' map does: once iterated, the
    rest is cancelled; never iterated, the work runs to its end (a dropped map is not a
    cancel, as a dropped Future is not)."""

    __slots__ = ("_bar", "_pending", "_results")

    def __init__(
        self,
        results: Generator[T, None, None],
        pending: collections.deque[Future[Any]],
        bar: Any,
    ) -> None:
        self._results = results
        self._pending = pending
        self._bar = bar

    def send(self, value: None) -> T:
        return self._results.send(value)

    def throw(self, *error: Any) -> T:
        return self._results.throw(*error)

    def close(self) -> None:
        self._results.close()  # a started iterator cancels the rest itself, as it ends
        _cancel(self._pending)  # one never started has not
        if self._bar is not None:
            self._bar.close()


def _chunks(
    items: Iterator[tuple[Any, ...]], chunksize: int
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """``(index of the first, items)`` for each run of ``chunksize`` items, read lazily."""
    start = 0
    while chunk := list(itertools.islice(items, chunksize)):
        yield start, chunk
        start += len(chunk)


def _results(
    pending: collections.deque[Future[Any]],
    chunks: Iterator[tuple[int, list[tuple[Any, ...]]]],
    submit: Callable[[int, list[tuple[Any, ...]]], Future[Any]],
    buffersize: int | None,
    chunked: bool,
    until: float | None,
    timeout: float | None,
    bar: Any,
) -> Generator[Any, None, None]:
    # Nothing of a result stays referenced here once it is yielded: the caller alone
    # keeps what it keeps (CPython issue 14406).
    try:
        while True:
            if buffersize is not None:  # read on only as far as the buffer allows
                more = [
                    submit(start, items)
                    for start, items in itertools.islice(chunks, buffersize - len(pending))
                ]
                _start(more)
                pending.extend(more)
            if not pending:
                return
            _bring(pending, until, timeout)
            if not chunked:
                yield pending.popleft().result()  # no name keeps it once it is yielded
                if bar is not None:
                    bar.update(1)
                continue
            chunk: Chunk = pending.popleft().result()
            values, error = chunk.values, chunk.error
            del chunk
            values.reverse()
            while values:
                yield values.pop()
                if bar is not None:
                    bar.update(1)
            if error is not None:
                raise error
    finally:
        _cancel(pending)
        if bar is not None:
            bar.close()


def _cancel(pending: collections.deque[Future[Any]]) -> None:
    """Cancel what was not yielded, the last first (a chunk that runs is stopped only
    once none after it can start in its place), in one go, and let go of it."""
    cancel_together(reversed(pending))
    pending.clear()


def _start(futures: Sequence[Future[Any]]) -> None:
    """Get ``futures`` going now, as concurrent.futures' map does at the call (a
    LocalDaskExecutor would otherwise hold them until someone waits)."""
    if futures:
        futures[0]._owner.want(futures)


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
