"""``Executor.map`` (``_mapping.py``) on every executor: chunks, a buffer read lazily,
errors at their place, timeouts and cancels (SPEC §3)."""

from __future__ import annotations

import collections
import itertools
import pathlib
import re
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import tasks
from conftest import Kind, Recorder, ctrl_c_once_written, wait_until
from dask.utils import key_split

from executors import (
    CancelledError,
    Executor,
    LocalDaskExecutor,
    LocalExecutor,
    _chunk_sizes,
    signals,
)
from executors._chunk_sizes import BUDGET_FACTOR, MAX_TARGET
from executors._chunks import run_chunk


class _Counted:
    """An endless iterable that counts what was read of it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for n in itertools.count():
            self.pulled += 1
            yield n


class TestChunks:
    @pytest.mark.parametrize("chunksize", [1, 7, 50, 100])
    def test_results_in_order(self, shared_ex: Executor, chunksize: int) -> None:
        results = shared_ex.map(tasks.add, range(50), range(100, 150), chunksize=chunksize)
        assert list(results) == [n + 100 + n for n in range(50)]

    def test_an_error_comes_at_its_place_with_its_own_traceback(self, shared_ex: Executor) -> None:
        results = shared_ex.map(tasks.fail_if_negative, [0, 1, 2, 3, 4, -5, 6, 7], chunksize=3)
        assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(ValueError, match="-5") as raised:
            next(results)
        frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
        assert frames[-1] == "fail_if_negative"
        with pytest.raises(StopIteration):
            next(results)

    def test_each_chunk_is_one_task_named_by_its_items(self, shared_ex: Executor) -> None:
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            assert list(shared_ex.map(tasks.inc, range(25), chunksize=10)) == list(range(1, 26))
            assert wait_until(lambda: len(finished.calls) >= 3, 30)
        keys = [call["key"] for call in finished.calls]
        names = sorted(re.sub(r"-[0-9a-f]{32}$", "", key) for key in keys)
        assert names == ["inc-[0:10]", "inc-[10:20]", "inc-[20:25]"]
        # Dask groups tasks by the name it reads off the key: the function's, so that the
        # dashboard shows one group, and the scheduler keeps one record of it, not one a
        # chunk (an endless map would make them without end).
        assert {key_split(key) for key in keys} == {"inc"}

    def test_async_functions_and_should_run_inside_a_chunk(self, shared_ex: Executor) -> None:
        assert list(shared_ex.map(tasks.ainc, range(6), chunksize=4)) == list(range(1, 7))
        assert list(shared_ex.map(tasks.should_run_of, range(3), chunksize=3)) == [True] * 3


class TestBuffer:
    def test_an_endless_generator_is_read_only_as_far_as_needed(self, shared_ex: Executor) -> None:
        source = _Counted()
        results = shared_ex.map(tasks.inc, source, chunksize=10, buffersize=3)
        assert source.pulled == 30  # the buffer's chunks start at the call, as in cf
        assert [next(results) for _ in range(25)] == list(range(1, 26))
        assert 25 <= source.pulled <= 30 + 3 * 10  # the chunk yielded, and the buffer
        results.close()

    def test_a_range_too_long_for_len_maps_with_a_buffer(self, shared_ex: Executor) -> None:
        results = shared_ex.map(tasks.inc, range(2**64), buffersize=3)  # len() overflows
        assert [next(results) for _ in range(5)] == [1, 2, 3, 4, 5]
        results.close()

    @pytest.mark.parametrize("buffersize", [None, 2])
    @pytest.mark.parametrize("chunksize", ["auto", 3])
    def test_a_range_is_mapped_item_for_item(
        self, shared_ex: Executor, chunksize: int | str, buffersize: int | None
    ) -> None:
        # A range is not read into a list at the call (it cannot change): its length ends
        # the map, whatever its step.
        for numbers in (range(0), range(1), range(7, -8, -3), range(500)):
            results = shared_ex.map(tasks.inc, numbers, chunksize=chunksize, buffersize=buffersize)
            assert list(results) == [n + 1 for n in numbers]

    def test_without_a_buffer_everything_is_submitted_at_the_call(
        self, shared_ex: Executor
    ) -> None:
        source = _Counted()
        results = shared_ex.map(tasks.inc, itertools.islice(source, 40), chunksize=10)
        assert source.pulled == 40
        assert list(results) == list(range(1, 41))

    def test_a_map_never_iterated_still_runs_to_its_end(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        paths = [str(tmp_path / str(n)) for n in range(6)]
        shared_ex.map(tasks.touch, paths, chunksize=2)  # dropped: not a cancel
        assert wait_until(lambda: all(pathlib.Path(path).exists() for path in paths), 30)


class TestTimeoutAndCancel:
    def test_the_timeout_counts_from_the_call(
        self, shared_ex: Executor, tmp_path: pathlib.Path, request: pytest.FixtureRequest
    ) -> None:
        if _kind(request).inline:
            pytest.skip("a LocalExecutor task has ended inside submit")
        go = tmp_path / "go"
        results = shared_ex.map(
            tasks.wait_for_file, [str(go)] * 4, [30.0] * 4, chunksize=2, timeout=0.2
        )
        with pytest.raises(TimeoutError, match=r"timeout of 0\.2 s"):
            next(results)
        go.write_text("")  # what still runs ends

    def test_a_cancel_mid_map_ends_every_chunk_not_yet_run(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        if kind.inline:
            pytest.skip("a LocalExecutor task has ended inside submit")
        started, go = tmp_path / "started", tmp_path / "go"
        touched = tmp_path / "touched"
        touched.mkdir()
        with kind() as ex:
            first = ex.submit(tasks.started_then_wait, str(started), str(go), 30.0)
            items = [str(touched / str(i)) for i in range(20)]
            results = ex.map(tasks.touch_after, [first] * 20, items, chunksize=5, buffersize=1)
            assert wait_until(started.exists, 30)
            ex.cancel("mid-map")
            with pytest.raises(CancelledError):
                next(results)
            go.write_text("")
        assert list(touched.iterdir()) == []

    def test_closing_the_iterator_cancels_what_it_did_not_yield(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        if kind.inline:
            pytest.skip("a LocalExecutor task has ended inside submit")
        started, go = tmp_path / "started", tmp_path / "go"
        with kind() as ex:
            first = ex.submit(tasks.started_then_wait, str(started), str(go), 30.0)
            finished = Recorder("task_finished")
            with signals.task_finished.connected_to(finished, sender=ex):
                results = ex.map(tasks.identity_after, [first] * 9, range(9), chunksize=3)
                assert wait_until(started.exists, 30)
                results.close()
                go.write_text("")
                assert first.result(timeout=30) is None

                def chunks() -> list[dict[str, Any]]:
                    return [call for call in finished.calls if call["key"] != first.key]

                assert wait_until(lambda: len(chunks()) >= 3, 30)  # sent by the dispatcher
        assert [call["state"] for call in chunks()] == ["cancelled"] * 3

    def test_ctrl_c_mid_map_ends_every_chunk_not_yet_run(
        self, tmp_path: pathlib.Path, ctrl_c_raises: None
    ) -> None:
        pid_file = tmp_path / "pid"
        touched = tmp_path / "touched"
        touched.mkdir()
        items = [str(pid_file)] + [str(touched / str(i)) for i in range(11)]
        with pytest.raises(KeyboardInterrupt):
            # A process pool: the cancel terminates the chunk that runs (a thread would
            # go on to its end).
            with LocalDaskExecutor("processes", num_workers=1) as ex:
                results = ex.map(tasks.first_blocks, items, chunksize=3)
                ctrl_c_once_written(pid_file)
                list(results)
        assert list(touched.iterdir()) == []


class TestBadValues:
    @pytest.mark.parametrize(
        ("settings", "named"),
        [
            ({"chunksize": 0}, "chunksize"),
            ({"chunksize": -1}, "chunksize"),
            ({"chunksize": 1.5}, "chunksize"),
            ({"chunksize": True}, "chunksize"),
            ({"chunksize": "2"}, "chunksize"),
            ({"buffersize": 0}, "buffersize"),
            ({"buffersize": -1}, "buffersize"),
            ({"buffersize": 2.5}, "buffersize"),
            ({"buffersize": True}, "buffersize"),
            ({"extra_context": {"key": "k"}}, "'key'"),
            ({"extra_context": {"map_index": 1}}, "'map_index'"),
        ],
    )
    def test_a_bad_value_is_a_value_error_at_the_call(
        self, shared_ex: Executor, settings: dict[str, Any], named: str
    ) -> None:
        source = _Counted()
        with pytest.raises(ValueError, match=re.escape(named)):
            shared_ex.map(tasks.inc, source, **settings)
        assert source.pulled == 0


def _kind(request: pytest.FixtureRequest) -> Kind:
    given: Kind = request.node.callspec.params["shared_ex"]
    return given


# -- chunksize="auto" (the default) -------------------------------------------------------

CHUNK = re.compile(r"^t(?:-\[(?P<start>\d+):(?P<stop>\d+)\]|\[(?P<index>\d+)\])-[0-9a-f]{32}$")


def _chunks(finished: Recorder, items: int, ex: Executor) -> list[tuple[int, int]]:
    """``(start, stop)`` of the items each chunk of a map named ``t`` ran, in order, once
    the ``task_finished`` of every item has come (the dispatcher sends them).

    A chunk that ended early is followed by the rest of its items, named with the same
    stop: ``[a:b]`` then ``[c:b]`` means the first ran ``[a:c]``."""

    def spans() -> list[tuple[int, int]]:
        starts: dict[int, list[int]] = collections.defaultdict(list)
        for call in list(finished.calls):
            match = CHUNK.match(call["key"])
            if match is None:
                continue
            if match["index"] is not None:
                start, stop = int(match["index"]), int(match["index"]) + 1
            else:
                start, stop = int(match["start"]), int(match["stop"])
            starts[stop].append(start)
        found = []
        for stop, firsts in starts.items():
            firsts.sort()
            found += zip(firsts, [*firsts[1:], stop], strict=True)
        return sorted(found)

    assert wait_until(lambda: sum(stop - start for start, stop in spans()) >= items, 30)
    # The rest of a chunk may still be on its way to the receiver: once the dispatcher
    # has delivered what it holds now, it has come.
    run = ex._run
    assert run is not None
    delivered = threading.Event()
    run.dispatcher.call(delivered.set)
    assert delivered.wait(30)
    return spans()


def _slots(ex: Executor) -> int:
    run = ex._run
    assert run is not None
    return run.backend.slots()


NAMED = {"task_name": "t"}


class TestAutoChunks:
    def test_chunks_shrink_when_the_work_slows_down(self, shared_ex: Executor) -> None:
        # A generator and a buffer of one chunk: no known length, so no tail; what
        # follows is the measured pace alone.
        fast, slow = 100, 600
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            results = shared_ex.map(
                tasks.slower_from,
                iter(range(fast + slow)),
                itertools.repeat(fast),
                itertools.repeat(0.0002),
                itertools.repeat(0.005),
                buffersize=1,
                extra_context=NAMED,
            )
            assert list(results) == list(range(fast + slow))
            spans = _chunks(finished, fast + slow, shared_ex)
        fast_runs = [min(stop, fast) - start for start, stop in spans if start < fast]
        assert max(fast_runs) > 1  # the fast items ran in chunks
        # Sized by the fast items, a chunk would hold hundreds of slow ones (seconds on one
        # worker); each ends once it has run its budget, at most twice the largest target
        # (0.5 s): 200 slow items, and the one running when it passed.
        slow_runs = [stop - max(start, fast) for start, stop in spans if stop > fast]
        assert max(slow_runs) <= BUDGET_FACTOR * MAX_TARGET / 0.005 + 1, spans
        assert len(slow_runs) >= 3, spans  # the 3 s of slow items went in pieces

    def test_chunks_grow_when_the_work_speeds_up(self, shared_ex: Executor) -> None:
        slow, fast = 20, 3000
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            results = shared_ex.map(
                tasks.slower_from,
                range(slow + fast),
                itertools.repeat(slow),
                itertools.repeat(0.02),
                itertools.repeat(0.0),
                extra_context=NAMED,
            )
            # (slower_from sleeps `fast` before `start`: here the first items are slow.)
            assert list(results) == list(range(slow + fast))
            spans = _chunks(finished, slow + fast, shared_ex)
        slow_items = [min(stop, slow) - start for start, stop in spans if start < slow]
        fast_sizes = [stop - start for start, stop in spans if start >= slow]
        assert max(slow_items) <= 0.5 / 0.02  # no chunk ran more than 0.5 s of slow items
        assert max(fast_sizes) >= 64

    def test_an_item_of_a_third_of_a_second_is_never_chunked(self, shared_ex: Executor) -> None:
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            results = shared_ex.map(tasks.sleep_then, [0.3] * 8, range(8), extra_context=NAMED)
            assert list(results) == list(range(8))
            spans = _chunks(finished, 8, shared_ex)
        assert spans == [(n, n + 1) for n in range(8)]

    def test_the_tail_of_a_known_length_is_spread_over_every_slot(
        self, shared_ex: Executor
    ) -> None:
        items = 4000
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            assert list(shared_ex.map(tasks.inc, range(items), extra_context=NAMED)) == list(
                range(1, items + 1)
            )
            spans = _chunks(finished, items, shared_ex)
        # Fast items: any chunk size would do, but none takes what two a slot would
        # share, so the last ones spread over every slot.
        assert max(stop - start for start, stop in spans) <= -(-items // (2 * _slots(shared_ex)))
        assert [start for start, _ in spans] == [0, *(stop for _, stop in spans[:-1])]

    def test_an_endless_generator_is_read_only_as_far_as_the_buffer(
        self, shared_ex: Executor
    ) -> None:
        source = _Counted()
        finished = Recorder("task_finished")
        ahead = []
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            results = shared_ex.map(tasks.inc, source, buffersize=3, extra_context=NAMED)
            for consumed in range(1, 3001):
                assert next(results) == consumed
                ahead.append(source.pulled - consumed)
            results.close()
            spans = _chunks(finished, source.pulled, shared_ex)
        largest = max(stop - start for start, stop in spans)
        assert largest > 1  # auto chunks grew
        # What was read and not yielded: the rest of the chunk being yielded, and at
        # most 3 chunks submitted after it.
        assert max(ahead) <= 4 * largest

    def test_a_map_never_iterated_runs_to_its_end_when_the_run_stops(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        paths = [str(tmp_path / str(n)) for n in range(300)]
        with kind() as ex:
            ex.map(tasks.touch, paths)  # its first chunks are single items: most is left
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            str(n) for n in range(300)
        )

    def test_a_map_never_iterated_runs_to_its_end(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        paths = [str(tmp_path / str(n)) for n in range(300)]
        shared_ex.map(tasks.touch, paths)  # dropped: not a cancel
        assert wait_until(lambda: len(list(tmp_path.iterdir())) == 300, 30)


def _input_failing_at(n: int) -> Iterator[int]:
    yield from range(n)
    raise KeyError(f"input item {n}")


def _cut(spans_by_key: list[tuple[int, int]]) -> bool:
    """Whether some chunk ended early: its rest is named with the same stop."""
    stops = [stop for _, stop in spans_by_key]
    return len(stops) != len(set(stops))


def _key_spans(finished: Recorder) -> list[tuple[int, int]]:
    found = []
    for call in list(finished.calls):
        match = CHUNK.match(call["key"])
        if match is not None and match["index"] is None:
            found.append((int(match["start"]), int(match["stop"])))
        elif match is not None:
            found.append((int(match["index"]), int(match["index"]) + 1))
    return found


# A chunk's target is 20 times the overhead measured, within [MIN_TARGET, MAX_TARGET]: on
# a loaded machine it grows. The budget tests fix it, so that one item of SLOW seconds
# passes the budget (twice the target) on any machine. Their first items take no time,
# so that the chunks sized by them hold many items: with the slow ones after, at least
# one such chunk holds two slow items, and ends after the first (its rest goes again).
FIXED_TARGET = 0.005
SLOW = 2.2 * FIXED_TARGET


@pytest.fixture
def fixed_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chunk_sizes, "MIN_TARGET", FIXED_TARGET)
    monkeypatch.setattr(_chunk_sizes, "MAX_TARGET", FIXED_TARGET)


@pytest.mark.usefixtures("fixed_target")
class TestBudgets:
    """An auto chunk ends once it has run its budget, and the rest of its items go
    again, right after it (``_chunks.run_chunk``, ``_feeder.Feeder._send_rest``)."""

    def test_a_chunk_that_ends_early_loses_no_item_and_runs_none_twice(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        record = str(tmp_path / "ran")
        fast, slow = 200, 60
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=shared_ex):
            results = shared_ex.map(
                tasks.record_slow_from,
                range(fast + slow),
                itertools.repeat(fast),
                itertools.repeat(SLOW),
                itertools.repeat(record),
                extra_context=NAMED,
            )
            assert list(results) == list(range(fast + slow))
            _chunks(finished, fast + slow, shared_ex)
            keys = _key_spans(finished)
        # Each slow item ran once (a rest holds only items after a slow one).
        ran = [int(line) for line in pathlib.Path(record).read_text().split()]
        assert sorted(ran) == list(range(fast, fast + slow))
        assert _cut(keys), keys

    def test_a_map_never_iterated_runs_the_rest_of_its_chunks_when_the_run_stops(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        record = str(tmp_path / "ran")
        finished = Recorder("task_finished")
        ex = kind()
        # Connected for the stop too: that is when the rests go.
        with signals.task_finished.connected_to(finished, sender=ex), ex:
            ex.map(
                tasks.record_slow_from,
                range(200),
                itertools.repeat(140),
                itertools.repeat(SLOW),
                itertools.repeat(record),
                extra_context=NAMED,
            )
        ran = [int(line) for line in pathlib.Path(record).read_text().split()]
        assert sorted(ran) == list(range(140, 200))
        assert _cut(_key_spans(finished))

    def test_a_long_chain_of_rests_inside_submit_is_a_loop(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Every chunk ends after one item: a probe of 4,096 items leaves 4,095 rests,
        # each run inside submit on LocalExecutor (as a recursion, past Python's limit).
        monkeypatch.setattr(_chunk_sizes, "MIN_TARGET", 1e-9)
        monkeypatch.setattr(_chunk_sizes, "OVERHEAD_FACTOR", 0.0)
        with LocalExecutor() as ex:
            assert list(ex.map(tasks.inc, range(6000))) == list(range(1, 6001))


class TestRunChunk:
    def test_a_budget_ends_the_chunk_after_the_item_that_passed_it(self) -> None:
        chunk = run_chunk(tasks.sleep_then, [(0.02, n) for n in range(50)], True, 0.05)
        assert chunk.error is None
        assert chunk.values == list(range(len(chunk.values)))
        assert 3 <= len(chunk.values) < 10  # 0.05 s of 0.02 s items, and the one after
        assert chunk.run_time >= 0.05

    def test_one_item_runs_whatever_the_budget(self) -> None:
        assert run_chunk(tasks.inc, [1, 2], False, 0.0).values == [2]

    def test_without_a_budget_every_item_runs(self) -> None:
        assert run_chunk(tasks.sleep_then, [(0.001, n) for n in range(30)], True).values == list(
            range(30)
        )


class TestInputErrors:
    @pytest.mark.parametrize(
        ("chunksize", "buffersize"),
        [("auto", None), ("auto", 3), (10, 3), (10, None), (1, None), (1, 2)],
    )
    def test_an_input_error_comes_at_its_place(
        self, shared_ex: Executor, chunksize: int | str, buffersize: int | None
    ) -> None:
        # 137: within a chunk of 10 (130-136 are read with it); with chunksize=1 and a
        # buffer, one Dask round trip an item, so not the 537 (a minute, loaded).
        results = shared_ex.map(
            tasks.inc, _input_failing_at(137), chunksize=chunksize, buffersize=buffersize
        )
        got = []
        with pytest.raises(KeyError, match="input item 137"):
            for value in results:
                got.append(value)
        assert got == list(range(1, 138))

    def test_an_input_error_before_any_item(self, shared_ex: Executor) -> None:
        results = shared_ex.map(tasks.inc, _input_failing_at(0))
        with pytest.raises(KeyError, match="input item 0"):
            next(results)


class TestCancelWhileIterating:
    @pytest.mark.parametrize("buffersize", [None, 2])
    def test_the_iterator_raises_cancelled_error_whatever_the_moment(
        self, kind: Kind, buffersize: int | None
    ) -> None:
        if kind.inline:
            pytest.skip("a LocalExecutor map has run inside the call")
        # Executors with worker processes or a cluster cost a second or so to start: fewer
        # rounds, over the same span of moments.
        rounds = 8 if kind.id in ("dask-threads", "dask-sync") else 4
        for round_ in range(rounds):
            with kind() as ex:
                results = ex.map(
                    tasks.sleep_then, [0.002] * 5000, range(5000), buffersize=buffersize
                )
                # From another thread, at a moment that moves round to round.
                moment = 0.05 + 0.15 * round_ / rounds
                canceller = threading.Timer(moment, ex.cancel, ("stop",))
                canceller.start()
                try:
                    with pytest.raises(CancelledError):
                        for _ in results:
                            pass
                finally:
                    canceller.join()
