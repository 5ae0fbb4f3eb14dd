"""The rule of ``chunksize="auto"`` (``_chunk_sizes.py``), fed measurements directly:
what the executors' map tests cannot pin down, because real run times vary."""

from __future__ import annotations

import math

import pytest

from executors._chunk_sizes import (
    BUDGET_FACTOR,
    BUFFERED_ITEMS,
    MAX_TARGET,
    MIN_TARGET,
    OVERHEAD_FACTOR,
    PROBE_GROWTH,
    PROBE_MAX,
    ChunkSizer,
)

OVERHEAD = 0.015  # a Dask round trip


def _sizer(
    items: int, run_time: float, round_trip: float, buffersize: int | None = None
) -> ChunkSizer:
    sizer = ChunkSizer(buffersize)
    sizer.record(items, run_time, round_trip)
    return sizer


class TestProbes:
    def test_the_first_chunk_is_one_item(self) -> None:
        assert ChunkSizer().size(2, 1_000_000) == (1, False)
        assert ChunkSizer(8).size(2, None) == (1, False)

    def test_before_any_chunk_ended_each_probe_grows_from_the_largest_sent(self) -> None:
        sizer = ChunkSizer()
        sizes = []
        for _ in range(6):
            size = sizer.size(2, None)[0]
            sizes.append(size)
            sizer.submitted(size)
        assert sizes == [min(PROBE_GROWTH**n, PROBE_MAX) for n in range(6)]

    def test_a_probe_runs_on_the_smallest_budget(self) -> None:
        assert ChunkSizer().budget() == (BUDGET_FACTOR * MIN_TARGET,)

    def test_once_a_chunk_ended_the_size_is_the_learned_one_at_once(self) -> None:
        # One no-op measured: no creeping up; the budget makes a wrong guess harmless.
        sizer = _sizer(1, 1e-6, OVERHEAD)
        target = sizer.target
        assert target == pytest.approx(OVERHEAD_FACTOR * OVERHEAD, rel=1e-3)
        assert sizer.size(2, None) == (int(target / 1e-6), False)
        assert sizer.budget() == (BUDGET_FACTOR * target,)

    def test_a_chunk_aims_at_ten_times_the_overhead(self) -> None:
        sizer = ChunkSizer()
        for _ in range(100):
            sizer.record(1000, 1000 * 1e-4, 1000 * 1e-4 + OVERHEAD)  # 100 µs an item
        target = OVERHEAD_FACTOR * OVERHEAD
        assert sizer.target == target
        assert sizer.size(2, None)[0] == int(target / 1e-4)

    def test_the_target_stays_within_its_bounds(self) -> None:
        assert _sizer(1, 0.001, 0.001).target == MIN_TARGET  # no overhead: a local call
        assert _sizer(1, 0.001, 10.0).target == MAX_TARGET  # a very slow round trip


class TestFollowing:
    def test_an_item_of_seconds_stays_alone(self) -> None:
        sizer = _sizer(1, 0.5, 0.5 + OVERHEAD)
        for _ in range(20):
            sizer.record(1, 0.5, 0.5 + OVERHEAD)
        assert sizer.size(2, None)[0] == 1
        assert MAX_TARGET <= 0.5  # so even with the largest target

    def test_a_slowdown_is_followed_at_once(self) -> None:
        sizer = ChunkSizer()
        for _ in range(50):
            sizer.record(500, 500 * 1e-4, 500 * 1e-4 + OVERHEAD)
        fast = sizer.size(2, None)[0]
        sizer.record(500, 500 * 1e-2, 500 * 1e-2 + OVERHEAD)  # 100 times slower
        slow = sizer.size(2, None)[0]
        assert slow == int(sizer.target / 1e-2) < fast / 50

    def test_a_chunk_older_than_the_slowdown_does_not_undo_it(self) -> None:
        sizer = ChunkSizer()
        sizer.record(100, 100 * 1e-4, 100 * 1e-4 + OVERHEAD, order=1.0)
        sizer.record(100, 100 * 1e-2, 100 * 1e-2 + OVERHEAD, order=3.0)  # slow, submitted later
        slow = sizer.size(2, None)[0]
        sizer.record(100, 100 * 1e-4, 100 * 1e-4 + OVERHEAD, order=2.0)  # fast, before it
        assert sizer.size(2, None)[0] == slow
        sizer.record(100, 100 * 1e-4, 100 * 1e-4 + OVERHEAD, order=4.0)  # fast, after it
        assert sizer.size(2, None)[0] > slow

    def test_a_speedup_is_followed_step_by_step(self) -> None:
        sizer = ChunkSizer()
        for _ in range(50):
            sizer.record(10, 10 * 1e-2, 10 * 1e-2 + OVERHEAD)
        sizes = []
        for _ in range(6):
            sizer.record(10, 10 * 1e-4, 10 * 1e-4 + OVERHEAD)
            sizes.append(sizer.size(2, None)[0])
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
        assert sizes[0] <= 2 * int(sizer.target / 1e-2)  # not all at once


class TestTail:
    def test_chunks_shrink_as_the_end_nears(self) -> None:
        sizer = ChunkSizer()
        for _ in range(100):
            sizer.record(1000, 1000 * 1e-4, 1000 * 1e-4 + OVERHEAD)  # 100 µs an item
        by_time = int(sizer.target / 1e-4)
        assert sizer.size(2, 1_000_000) == (by_time, False)
        assert sizer.size(2, 4 * by_time) == (by_time, False)
        assert sizer.size(2, 3 * by_time) == (math.ceil(3 * by_time / 4), False)

    def test_the_last_round_is_submitted_at_once_in_small_pieces(self) -> None:
        sizer = ChunkSizer()
        for _ in range(100):
            sizer.record(1000, 1000 * 1e-4, 1000 * 1e-4 + OVERHEAD)
        # What is left is one target's work a slot, as measured: all now, an eighth each.
        left = 2 * int(sizer.target / 1e-4)
        assert sizer.size(2, left) == (math.ceil(left / 8), True)
        assert sizer.size(4, 5) == (1, True)

    def test_far_from_the_end_there_is_no_tail(self) -> None:
        sizer = _sizer(1, 1e-4, OVERHEAD)
        assert sizer.size(2, 1_000_000)[1] is False
        assert sizer.size(2, None)[1] is False


class TestBuffer:
    def test_a_buffer_bounds_the_items_in_flight(self) -> None:
        for buffersize in (1, 8, 100):
            sizer = ChunkSizer(buffersize)
            for _ in range(100):
                sizer.record(BUFFERED_ITEMS, 1e-3, OVERHEAD)
            assert sizer.size(2, None)[0] * buffersize <= max(BUFFERED_ITEMS, buffersize)
