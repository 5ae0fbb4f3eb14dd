"""``Executor.map``: the results of a function over many items, in order (SPEC §3).

Items run in chunks, one task each (:func:`~._chunks.run_chunk`), so tiny functions are
not paid for one scheduler round each (P7, P9); a chunk's results come back together
and are yielded one by one. Who submits the chunks, and when:

- ``chunksize=N`` without a buffer: every chunk at the call, as concurrent.futures does.
- ``buffersize=K``: the consumer, keeping at most K chunks submitted and not yet
  yielded; the input is read only that far (an endless generator works, P8).
- ``chunksize="auto"`` without a buffer: the input is read at the call; the chunks are
  formed as their sizes are learned (``_chunk_sizes.py``), with twice as many in flight
  as the backend has slots. Each chunk that ends submits the next from its done
  callback (the dispatcher thread), so a map nobody iterates still runs to its end; a
  run that stops normally submits whatever such a map has left first (``Run.stop``).

While it waits for the next chunk, the iterator brings the results of the chunks after
it that have ended too, in the same trip: on Dask, one gather for many chunks.
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._chunk_sizes import ChunkSizer
from ._chunks import Chunk, Source, run_chunk
from ._future import FINISHED, NOT_FETCHED, PENDING, Future, deadline, remaining
from ._progress import open_count_bar
from ._task import function_name, is_positive_int
from ._waiting import cancel_together, fetch_all
from .exceptions import CancelledError

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["MapResults", "check_map_arguments", "map_items"]

T = TypeVar("T")

# How many chunks after the one waited for may come back with it, at most.
PREFETCH = 64
# How long a wait for the next chunk sleeps at most before it looks again (so that a
# Ctrl-C is taken at once, whichever thread the signal reached).
WAKE_SECONDS = 0.1


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


class Feeder:
    """Submits a map's chunks, in order, and holds those not yet yielded (``pending``,
    which the iterator takes from the left).

    ``feed`` may be called from the caller's thread and from the dispatcher's (a chunk's
    done callback); one at a time, so the chunks are submitted and queued in order."""

    def __init__(
        self,
        run: Run,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        chunksize: int | str,
        buffersize: int | None,
        extra_context: Mapping[str, Any] | None,
    ) -> None:
        self.run = run  # not its executor: nothing of a map keeps that alive
        self.fn = fn
        self.buffersize = buffersize
        self.fixed = chunksize if isinstance(chunksize, int) else None
        self.sizer = None if self.fixed is not None else ChunkSizer(buffersize)
        self.context = dict(extra_context or {})
        self.name = (
            self.context.get("task_full_name") or self.context.get("task_name") or function_name(fn)
        )
        self.source = Source(iterables)
        self.pending: collections.deque[Future[Any]] = collections.deque()
        self.error: BaseException | None = None  # raised once every chunk before it is
        self.stopped = False  # closed, or failed to submit: nothing more is submitted
        self.in_flight = 0  # auto chunks whose done callback has not run yet
        self._feeding = threading.Lock()  # one feed at a time (chunks go in order)
        self.changed = threading.Condition()  # a chunk ended, or the feeding stopped
        # Without a buffer, auto chunks are submitted as chunks end: the run finishes
        # them when it stops, even if nobody iterates this map.
        self._on_ends = self.sizer is not None and buffersize is None

    # -- submitting ------------------------------------------------------------------------

    def feed(self) -> None:
        """Submit as many chunks as the mode allows now (see the module docstring)."""
        with self._feeding:
            submitted: list[Future[Any]] = []
            try:
                while not self.stopped and not self.source.exhausted:
                    size, everything = self._next_size()
                    if size == 0:
                        break
                    if everything:
                        self._submit_all(size, submitted)
                        break
                    if not self._submit_next(size, submitted):
                        break
            finally:
                _start(submitted)
                self._settle_feeding()

    def read_all(self) -> None:
        """Read the rest of the input (the first chunks are on their way), then submit
        what the mode allows of it."""
        with self._feeding:
            self.source.read_all()
        self.feed()

    def submit_rest(self) -> None:
        """The run stops: submit every item left now, in chunks of the size learned so
        far (SPEC §3: a map never iterated still runs to its end)."""
        with self._feeding:
            submitted: list[Future[Any]] = []
            try:
                if self.sizer is not None:
                    slots = self.run.backend.slots()
                    self._submit_all(self.sizer.size(slots, self.source.remaining)[0], submitted)
            finally:
                _start(submitted)
                self._settle_feeding()

    def _submit_all(self, size: int, submitted: list[Future[Any]]) -> None:
        while self._submit_next(size, submitted):
            pass

    def _submit_next(self, size: int, submitted: list[Future[Any]]) -> bool:
        """Submit the next chunk of at most ``size`` items; False when none was."""
        if self.stopped or self.source.exhausted:
            return False
        start, items = self.source.take(size)
        if not items:
            return False
        future = self._submit(start, items)
        if future is None:
            return False
        submitted.append(future)
        return True

    def _next_size(self) -> tuple[int, bool]:
        """How many items the next chunk takes now (0: none now), and whether every
        item left may be submitted at once."""
        if self.buffersize is not None and len(self.pending) >= self.buffersize:
            return 0, False
        if self.sizer is None:
            assert self.fixed is not None
            return self.fixed, self.buffersize is None
        slots = self.run.backend.slots()
        size, tail = self.sizer.size(slots, self.source.remaining)
        # Two a slot: one running, one queued behind it. A chunk runs ten times the
        # overhead of a task (or is a single item that runs longer), so one queued is
        # enough to keep the slot busy while the next is sent.
        if self._on_ends and not tail and self.in_flight >= 2 * slots:
            return 0, False
        return size, tail

    def _submit(self, start: int, items: list[Any]) -> Future[Any] | None:
        """Submit one chunk and queue its Future; None when it could not be submitted
        (then the map ends there with the reason as its error)."""
        try:
            if self.fixed == 1:  # one task an item, named as a plain submit names it
                context = {**self.context, "map_index": start}
                args = items[0] if self.source.spread else (items[0],)
                future = self.run.submit(self.fn, args, {}, context)
            else:
                future = self.run.submit(
                    run_chunk,
                    (self.fn, items, self.source.spread),
                    {},
                    self._chunk_context(start, items),
                )
        except Exception as exc:
            self.stopped = True
            self.error = self._why_not(exc, start, len(items))
            return None
        self.pending.append(future)
        if self.sizer is not None:
            self._measure(future, len(items))
        return future

    def _chunk_context(self, start: int, items: list[Any]) -> dict[str, Any]:
        if len(items) > 1:
            return {**self.context, "task_full_name": f"{self.name}-[{start}:{start + len(items)}]"}
        if "task_name" in self.context or "task_full_name" in self.context:
            return {**self.context, "map_index": start}
        return {**self.context, "task_full_name": self.name}  # not run_chunk's name

    def _why_not(self, error: Exception, start: int, count: int) -> BaseException:
        """What the map raises in place of a chunk that could not be submitted."""
        if isinstance(error, RuntimeError) and self.run.cancelled.is_set():
            # The run was cancelled while the map was read: the map's items are
            # cancelled, whichever was next (SPEC §3), not refused.
            key = f"{self.name}-[{start}:{start + count}]"
            return CancelledError(key, self.run.reason)
        return error

    def _measure(self, future: Future[Any], items: int) -> None:
        submitted_at = time.perf_counter()
        if future._status is not PENDING:  # ran inside submit (LocalExecutor)
            self._record(future, items, submitted_at)
            return
        self.in_flight += 1
        future.add_done_callback(functools.partial(self._ended, items, submitted_at))

    def _record(self, future: Future[Any], items: int, submitted_at: float) -> None:
        chunk = future._value
        if future._status is FINISHED and isinstance(chunk, Chunk):
            assert self.sizer is not None
            self.sizer.record(items, chunk.run_time, time.perf_counter() - submitted_at)

    def _ended(self, items: int, submitted_at: float, future: Future[Any]) -> None:
        """A chunk's done callback, on the dispatcher thread: learn from it, and submit
        the next chunks when this map does so as chunks end."""
        with self._feeding:
            self.in_flight -= 1
            self._record(future, items, submitted_at)
        if self._on_ends:
            self.feed()
        else:
            with self.changed:
                self.changed.notify_all()

    def _settle_feeding(self) -> None:
        """After a feed: a map with nothing more to submit no longer needs its run to
        finish it; whoever waits for a chunk looks again."""
        if self._on_ends:
            if self.stopped or self.source.exhausted:
                self.run.feeders.discard(self)
            else:
                self.run.feeders.add(self)
        with self.changed:
            self.changed.notify_all()

    def stop(self) -> None:
        """Submit nothing more (the iterator was closed)."""
        with self._feeding:
            self.stopped = True
            self._settle_feeding()

    # -- waiting ---------------------------------------------------------------------------

    def wait_for_more(self, until: float | None, timeout: float | None) -> bool:
        """Block until a chunk is queued (True) or none will be (False: the map ends,
        with :attr:`error` if it has one).

        :raises TimeoutError: naming the map's timeout."""
        self.feed()
        with self.changed:
            while not self.pending:
                if self.stopped or self.source.exhausted:
                    if self.error is None and self.source.error is not None:
                        self.error = self.source.error
                    return False
                if self.run.cancelled.is_set():
                    key = f"{self.name}-[{self.source.start}:]"
                    self.error = CancelledError(key, self.run.reason)
                    return False
                left = remaining(until)
                if left == 0:
                    raise TimeoutError(f"map(): no result came within the timeout of {timeout} s")
                self.changed.wait(WAKE_SECONDS if left is None else min(left, WAKE_SECONDS))
        return True


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
