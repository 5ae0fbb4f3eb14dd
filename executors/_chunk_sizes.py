"""How many items ``map(chunksize="auto")`` puts in its next chunk, and how long that
chunk may run (SPEC §3, P9).

The rule, learned from what each ended chunk measured (its run time on the worker, and
its round trip from submit to the driver):

- A chunk should run long enough to hide the backend's cost of a task: ``OVERHEAD_FACTOR``
  times the smallest overhead seen (round trip minus run time), so that cost is a
  twentieth or less of the work even where it is not hidden behind other chunks (a
  LocalDaskExecutor computes one graph a driver at a time). On Dask the overhead is
  10-20 ms, on a local pool 0.1-3 ms. A function of half a second or more an item stays
  at one item a task.
- Every chunk has a budget, ``BUDGET_FACTOR`` times that target: it ends early once it
  has run that long, and its map submits the items it did not reach again
  (``run_chunk``). So a size is never a risk: fast first items cannot make a chunk that
  runs slow ones for minutes on one worker (joblib issue 1220: batches that run away on
  no-ops), and the sizes need not creep up to the learned one.
- So the first chunks, before any has ended, are probes: one item (the first result
  comes after one round trip), then ``PROBE_GROWTH`` times the previous, each on the
  smallest budget; from the first ended chunk on, the learned size.
- A slowdown is followed at once (the item time is the latest chunk's when it is longer
  than the estimate); a speedup step by step (the estimate halves towards it).
- Near the end of an input of known length the rest is split over every worker slot,
  twice over, so the last items do not wait behind one long chunk while slots are idle.
- With a buffer of K chunks, a chunk holds at most ``BUFFERED_ITEMS / K`` items, so the
  items in flight stay bounded however small the work (P8).
"""

from __future__ import annotations

import math

__all__ = ["ChunkSizer"]

OVERHEAD_FACTOR = 20.0
MIN_TARGET = 0.002  # seconds: no chunk aims lower, whatever the measured overhead
MAX_TARGET = 0.5  # seconds: nor higher, so an item of half a second or more runs alone
BUDGET_FACTOR = 2.0  # a chunk ends once it has run this many times its target
PROBE_GROWTH = 8  # each chunk sent before any has ended, times the one before
PROBE_MAX = 4096  # items, at most, in such a chunk
BUFFERED_ITEMS = 2**17


class ChunkSizer:
    """The learned part of an auto-chunked map. Not thread-safe: its map calls it under
    its own lock."""

    __slots__ = ("_buffersize", "_item_time", "_newest", "_overhead", "_probe")

    def __init__(self, buffersize: int | None = None) -> None:
        self._buffersize = buffersize
        self._item_time: float | None = None  # seconds an item, estimated
        self._overhead: float | None = None  # seconds a task costs beyond its run time
        self._newest = 0.0  # the order of the chunk that set the item time last
        self._probe = 0  # the largest chunk submitted before any ended

    @property
    def measured(self) -> bool:
        """Whether a chunk has ended (before that, chunks are probes)."""
        return self._item_time is not None

    def record(self, items: int, run_time: float, round_trip: float, order: float = 0.0) -> None:
        """A chunk ended having run ``items`` items: it ran ``run_time`` seconds where it
        ran, and came back ``round_trip`` seconds after it was submitted; ``order`` grows
        with the submission (chunks may end out of it)."""
        latest = max(run_time, 1e-9) / max(items, 1)
        if self._item_time is None or latest > self._item_time:
            self._item_time = latest
            self._newest = max(self._newest, order)
        elif order >= self._newest:  # a chunk older than the one that set it says nothing
            self._item_time = (self._item_time + latest) / 2
            self._newest = order
        overhead = max(round_trip - run_time, 0.0)
        if self._overhead is None or overhead < self._overhead:
            self._overhead = overhead

    def submitted(self, items: int) -> None:
        """A chunk of ``items`` was submitted (the probes grow from it)."""
        if self._item_time is None:
            self._probe = max(self._probe, items)

    @property
    def target(self) -> float:
        """Seconds a chunk should run."""
        overhead = self._overhead or 0.0
        return min(max(OVERHEAD_FACTOR * overhead, MIN_TARGET), MAX_TARGET)

    def budget(self) -> tuple[float]:
        """How long the next chunk may run (the extra arguments of its ``run_chunk``)."""
        return (BUDGET_FACTOR * self.target,)

    def size(self, slots: int, remaining: int | None) -> tuple[int, bool]:
        """The next chunk's size, and whether the input's tail has come: then every item
        left should be submitted now, in chunks of that size.

        :param slots: how many tasks the backend runs at once.
        :param remaining: items left to submit, when the input's length is known.
        """
        cap = max(1, BUFFERED_ITEMS // self._buffersize) if self._buffersize else None
        if self._item_time is None:
            size = min(PROBE_GROWTH * self._probe, PROBE_MAX) if self._probe else 1
        else:
            size = max(1, int(self.target / self._item_time))
        if cap is not None:
            size = min(size, cap)
        if remaining is None:
            return size, False
        slots = max(slots, 1)
        # The rest is one round of target-long chunks a slot, as measured: all of it
        # now, in pieces small enough that the slots end together.
        piece = math.ceil(remaining / (4 * slots))
        if cap is not None:
            piece = min(piece, cap)
        if (
            self._item_time is not None and remaining * self._item_time <= slots * self.target
        ) or remaining <= 2 * slots:
            return max(piece, 1), True
        # Else chunks shrink as the end nears (each at most a quarter of a slot's share).
        return max(1, min(size, math.ceil(remaining / (2 * slots)))), False
