"""Who submits a map's chunks, and when (SPEC §3): the :class:`Feeder`.

- ``chunksize=N`` without a buffer: every chunk at the call, as concurrent.futures does.
- ``buffersize=K``: the consumer, keeping at most K chunks submitted and not yet
  yielded; the input is read only that far (an endless generator works, P8).
- ``chunksize="auto"`` without a buffer: the input is read at the call; the chunks are
  formed as their sizes are learned (``_chunk_sizes.py``), with twice as many in flight
  as the backend has slots. Each chunk that ends submits the next from its done
  callback (the dispatcher thread), so a map nobody iterates still runs to its end; a
  run that stops normally submits what such a map has left first (``Run.stop``).
- An auto chunk that ran past its budget ends early; the items it did not reach go again
  as a chunk of their own, queued right after it (so the results stay in order), by
  whoever learns first that it ended: its done callback or the iterator.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._chunk_sizes import ChunkSizer
from ._chunks import Chunk, Source, run_chunk
from ._future import FINISHED, PENDING, Future, remaining
from ._interruptible import WAKE_SECONDS
from ._task import function_name
from .exceptions import CancelledError

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["Feeder"]


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
        # Auto chunks not yet learned from, by key: first index, items, submitted at.
        self._timing: dict[str, tuple[int, list[Any], float]] = {}
        # The rest of a chunk that ended early could not be sent: raised after its values.
        self._holes: dict[str, BaseException] = {}
        self._first_ended = False  # the map's first chunk has been learned from
        self._feeding = threading.Lock()  # one feed at a time (chunks go in order)
        self.changed = threading.Condition()  # a chunk ended, or the feeding stopped
        # Without a buffer, auto chunks are submitted as chunks end: the run finishes
        # them when it stops, even if nobody iterates this map.
        self._on_ends = self.sizer is not None and buffersize is None
        if self.sizer is not None:
            run.maps.add(self)

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

    def drain(self) -> None:
        """Wait until no chunk of this map is out: each that ends early sends its rest
        from its done callback, and the run waits for that before it stops taking work."""
        with self.changed:
            while self.in_flight and not self.stopped and not self.run.cancelled.is_set():
                self.changed.wait(WAKE_SECONDS)

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
        # Two a slot: one running, one queued behind it. A chunk runs twenty times the
        # overhead of a task (or is a single item that runs longer), so one queued is
        # enough to keep the slot busy while the next is sent. A buffer takes more once a
        # chunk has ended: filled with probes before anything was measured, it would
        # reach the learned size a buffer's length late.
        limited = self._on_ends or not self.sizer.measured
        # The tail goes at once, but only once the first chunk has ended: a flood of
        # pieces sent before would hold up its result, the one the caller waits for.
        tail = tail and self._first_ended
        if limited and not tail and self.in_flight >= 2 * slots:
            return 0, False
        return size, tail

    def _submit(self, start: int, items: list[Any]) -> Future[Any] | None:
        """Submit one chunk and queue its Future; None when it could not be submitted
        (then the map ends there with the reason as its error)."""
        try:
            future = self._send(start, items)
        except Exception as exc:
            self.stopped = True
            self.error = self._why_not(exc, start, len(items))
            return None
        self.pending.append(future)
        if self.sizer is not None and self._measure(future, start, items):
            self._record(future)
        return future

    def _send(self, start: int, items: list[Any]) -> Future[Any]:
        """Submit one chunk (raises what submit raises)."""
        self.run.check_taking_work()
        if self.fixed == 1:  # one task an item, named as a plain submit names it
            context = {**self.context, "map_index": start}
            args = items[0] if self.source.spread else (items[0],)
            return self.run.submit(self.fn, args, {}, context)
        chunk_args: tuple[Any, ...] = (self.fn, items, self.source.spread)
        if self.sizer is not None:
            chunk_args += self.sizer.budget()
            self.sizer.submitted(len(items))
        return self.run.submit(run_chunk, chunk_args, {}, self._chunk_context(start, items))

    def _send_rest(self, chunk: Future[Any], start: int, items: list[Any]) -> Future[Any] | None:
        """``chunk`` ended early: send the items it did not reach, queued right after it
        (first, if the iterator holds it already). The rest's Future if it has ended
        already (it ran inside submit), to be learned from in turn."""
        if self.stopped:
            return None  # closed: the rest is not wanted
        try:
            rest = self._send(start, items)
        except Exception as exc:
            self._holes[chunk._key] = self._why_not(exc, start, len(items))
            return None
        try:
            self.pending.insert(self.pending.index(chunk) + 1, rest)
        except ValueError:  # taken by the iterator, which reads on from the left
            self.pending.appendleft(rest)
        if self._measure(rest, start, items):
            return rest
        _start([rest])
        return None

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

    def _measure(self, future: Future[Any], start: int, items: list[Any]) -> bool:
        """Time a chunk until it ends; True when it has already (it ran inside submit,
        on LocalExecutor): then the caller learns from it."""
        self._timing[future._key] = (start, items, time.perf_counter())
        if future._status is not PENDING:
            return True
        self.in_flight += 1
        future._on_done(self._ended)  # started with the others of its feed (`_start`)
        return False

    def _record(self, future: Future[Any] | None) -> None:
        """Learn from an ended chunk, and send what it did not reach; once (its done
        callback, or the iterator that took it first: a buffered map sizes its next
        chunk then). A loop, not a recursion, over rests that end inside submit."""
        while future is not None:
            future = self._learn(future)

    def _learn(self, future: Future[Any]) -> Future[Any] | None:
        # Its timing goes last, once the rest is queued: `taken` relies on that.
        timing = self._timing.get(future._key)
        chunk = future._value
        if timing is None:
            return None
        if future._status is not FINISHED or not isinstance(chunk, Chunk):
            del self._timing[future._key]
            return None
        assert self.sizer is not None
        start, items, submitted_at = timing
        self._first_ended = self._first_ended or start == 0
        ran = len(chunk.values)
        self.sizer.record(
            ran + (chunk.error is not None),
            chunk.run_time,
            time.perf_counter() - submitted_at,
            submitted_at,
        )
        rest = None
        if chunk.error is None and ran < len(items):
            rest = self._send_rest(future, start + ran, items[ran:])
        del self._timing[future._key]
        return rest

    def taken(self, future: Future[Any]) -> BaseException | None:
        """The iterator has the result of ``future``: learn from it now. What to raise
        after its values, if the rest of it could not be sent."""
        if self.sizer is None:
            return None
        if future._key in self._timing:  # not learned from yet (else no wait for a feed)
            with self._feeding:
                self._record(future)
        return self._holes.pop(future._key, None)

    def _ended(self, future: Future[Any]) -> None:
        """A chunk's done callback, on the dispatcher thread: learn from it, and submit
        the next chunks when this map does so as chunks end."""
        with self._feeding:
            self._record(future)  # before the count drops: a stop drains on it
            self.in_flight -= 1
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
        while True:
            self.feed()  # again after each wake: what held a chunk back may have ended
            with self.changed:
                if self.pending:
                    return True
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


def _start(futures: Sequence[Future[Any]]) -> None:
    """Get ``futures`` going now, as concurrent.futures' map does at the call (a
    LocalDaskExecutor would otherwise hold them until someone waits)."""
    if futures:
        futures[0]._owner.want(futures)
