"""The loop thread of a DaskExecutor run (``_dask/_loop.py``), and the guard the tests
keep on it: no callback of ours holds it, no other thread schedules on it unsafely, and
no sign of a misused loop (conftest)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time

import conftest
import distributed
import pytest
from conftest import SLOW_CPU_SECONDS, TEMPORARY_CLUSTER, _trouble

from executors import DaskExecutor
from executors._dask import _loop
from executors._dask._loop import LoopThread


class TestLoopThread:
    def test_its_block_is_the_threads_life(self) -> None:
        with LoopThread("executors-loop-test") as loop:
            assert loop.thread is not None and loop.thread.is_alive()
            assert loop.run(_name_of_this_thread()) == "executors-loop-test"
            thread = loop.thread
        assert not thread.is_alive()

    def test_run_cancels_what_outlives_its_timeout(self) -> None:
        cancelled = threading.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with LoopThread("executors-loop-test") as loop:
            with pytest.raises(TimeoutError):
                loop.run(forever(), timeout=0.05)
            assert cancelled.wait(10)

    def test_a_blocking_call_on_the_loop_thread_raises_instead_of_deadlocking(self) -> None:
        with LoopThread("executors-loop-test") as loop:
            outcome: concurrent.futures.Future[BaseException] = concurrent.futures.Future()

            def block() -> None:
                try:
                    loop.run(asyncio.sleep(0))
                except RuntimeError as exc:
                    outcome.set_result(exc)

            loop.call_soon(block)
            assert "deadlock" in str(outcome.result(10))

    def test_its_debug_mode_is_asyncios(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_loop, "DEBUG", True)
        with LoopThread("executors-loop-test") as loop:
            assert loop.loop.get_debug() is True
            assert loop.loop.slow_callback_duration == _loop.SLOW_CALLBACK_SECONDS


def _compute(seconds: float) -> None:
    """Hold the loop, computing (CPU time, whatever the machine's load)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class TestTheGuard:
    def test_another_thread_that_schedules_without_threadsafe_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_loop, "DEBUG", False)  # the check is the guard's, not asyncio's
        with LoopThread("executors-loop-test") as loop:
            refused = r"call_soon on the loop of executors-loop-test from .*not thread-safe"
            with pytest.raises(RuntimeError, match=refused):
                loop.loop.call_soon(print)
            with pytest.raises(RuntimeError, match=refused.replace("call_soon", "call_at")):
                loop.loop.call_later(0, print)
            assert loop.run(_scheduled_on_the_loop()) is True

    @pytest.mark.loop_trouble_expected
    def test_a_callback_that_computes_on_the_loop_is_caught(self) -> None:
        with LoopThread("executors-loop-test") as loop:
            loop.call_soon(_compute, SLOW_CPU_SECONDS + 0.05)
            loop.run(asyncio.sleep(0))
        assert any("slow callback on executors-loop-test" in found for found in _trouble.found)

    def test_a_callback_that_waits_for_the_machine_is_not(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_loop, "DEBUG", True)  # so that asyncio logs what it saw
        # What a loaded machine does to a callback: it holds the loop by the clock, not
        # by its CPU time (as asyncio's own warning counts it, which the guard ignores).
        seen = _Records()
        logging.getLogger("asyncio").addHandler(seen)
        try:
            with LoopThread("executors-loop-test") as loop:
                loop.call_soon(time.sleep, _loop.SLOW_CALLBACK_SECONDS + 0.1)
                loop.run(asyncio.sleep(0))
        finally:
            logging.getLogger("asyncio").removeHandler(seen)
        assert any(" took " in text for text in seen.texts)  # asyncio saw it
        assert _trouble.found == []

    def test_a_garbage_collection_that_falls_in_a_callback_is_not_counted(self) -> None:
        # Many objects (made here, not in the callback): a full collection of them takes
        # longer than the guard allows a callback, and is the interpreter's work.
        many = [[n] for n in range(3_000_000)]
        spent: list[float] = []

        def collect() -> None:
            started = time.thread_time()
            gc.collect()
            spent.append(time.thread_time() - started)

        with LoopThread("executors-loop-test") as loop:
            loop.call_soon(collect)
            loop.run(asyncio.sleep(0))
        del many
        if spent[0] < SLOW_CPU_SECONDS:
            pytest.skip(f"a full collection took {spent[0]:.3f} s here: nothing to judge")
        assert _trouble.found == []

    @pytest.mark.loop_trouble_expected
    def test_a_callback_that_waits_past_any_load_is_caught(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(conftest, "STALL_SECONDS", 0.3)  # the guard's, not 5 s of test
        with LoopThread("executors-loop-test") as loop:
            loop.call_soon(time.sleep, 0.4)
            loop.run(asyncio.sleep(0), timeout=30)
        assert any("slow callback on executors-loop-test" in found for found in _trouble.found)

    def test_a_clusters_own_slow_start_is_not_counted_as_ours(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_loop, "DEBUG", True)  # so that asyncio logs what it saw
        seen = _Records()
        logging.getLogger("asyncio").addHandler(seen)
        try:
            with DaskExecutor(cluster_class=_SlowToMake, cluster_kwargs=TEMPORARY_CLUSTER) as ex:
                assert ex.submit(int, "3").result(timeout=30) == 3
        finally:
            logging.getLogger("asyncio").removeHandler(seen)
        slow = [text for text in seen.texts if " took " in text]
        assert any("coro=<_start_cluster()" in text for text in slow), slow  # asyncio saw it
        assert _trouble.found == []  # and the guard let it be

    @pytest.mark.loop_trouble_expected
    def test_a_task_destroyed_while_pending_is_caught(self) -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(asyncio.sleep(60))
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        del task
        gc.collect()
        assert any("Task was destroyed but it is pending" in found for found in _trouble.found)


class _SlowToMake(distributed.LocalCluster):
    """A cluster class whose constructor holds the loop longer than a callback may."""

    def __init__(self, **kwargs: object) -> None:
        time.sleep(_loop.SLOW_CALLBACK_SECONDS + 0.1)
        super().__init__(**kwargs)  # type: ignore[arg-type]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


async def _name_of_this_thread() -> str:
    return threading.current_thread().name


async def _scheduled_on_the_loop() -> bool:
    """The same calls, from the loop's own thread, are allowed."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    soon = asyncio.Event()
    loop.call_soon(soon.set)
    loop.call_later(0.01, done.set)
    await soon.wait()
    await done.wait()
    return True
