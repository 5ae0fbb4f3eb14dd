"""``executors.Future`` (``_future.py``) on every executor: a ``concurrent.futures.Future``
that CPython's own functions take, and that an asyncio program can await (SPEC §3).

The cases follow CPython's concurrent.futures tests (Future, wait, as_completed,
Executor.map), written again for this library. Each executor kind starts once per class
(``shared_ex``); the tests leave it as they found it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import pathlib
import threading
import uuid
import weakref
from typing import Any

import pytest
import tasks
from conftest import Kind, wait_until

import executors
from executors import CancelledError, Executor, Future

SLOW = 30.0  # seconds a blocker waits for its file at most


class _Blocker:
    """Tasks that run until the test lets them end (never a guess at how long).

    ``slots`` of them at once keep every worker of the test executors busy (none has more
    than two), so that a task submitted next stays pending until ``release``."""

    def __init__(
        self, executor: Executor, tmp_path: pathlib.Path, value: object = "slow", slots: int = 1
    ) -> None:
        self.path = tmp_path / f"go-{uuid.uuid4().hex}"
        self.futures = [
            executor.submit(tasks.wait_for_file, str(self.path), SLOW, value) for _ in range(slots)
        ]
        self.future = self.futures[0]

    def release(self) -> Any:
        self.path.write_text("")
        results = [future.result(timeout=SLOW) for future in self.futures]
        return results[0]


EVERY_SLOT = 2


def _inline(executor: Executor) -> bool:
    """A LocalExecutor runs each task inside submit: nothing of it is ever pending."""
    return isinstance(executor, executors.LocalExecutor)


def _needs_two_at_once(executor: Executor) -> None:
    """Skip a test that needs a task to end while another runs."""
    if _inline(executor):
        pytest.skip("a LocalExecutor task has ended inside submit")
    if getattr(executor, "scheduler", None) == "synchronous":
        pytest.skip("the synchronous scheduler runs one task at a time")


class TestItIsAConcurrentFuture:
    def test_isinstance_and_its_states(self, shared_ex: Executor) -> None:
        future = shared_ex.submit(tasks.inc, 1)
        assert isinstance(future, cf.Future) and isinstance(future, Future)
        assert future.result(timeout=30) == 2
        assert future.done() and not future.cancelled() and not future.running()
        assert future.exception(timeout=0) is None
        assert future.key in repr(future)

    def test_it_is_settled_by_its_executor_only(self, shared_ex: Executor) -> None:
        future = shared_ex.submit(tasks.inc, 1)
        for attempt in (
            lambda: future.set_result(3),
            lambda: future.set_exception(ValueError()),
            future.set_running_or_notify_cancel,
        ):
            with pytest.raises(RuntimeError, match="settled by its executor"):
                attempt()
        assert future.result(timeout=30) == 2

    def test_cancel_a_pending_task(self, shared_ex: Executor, tmp_path: pathlib.Path) -> None:
        if _inline(shared_ex):
            assert shared_ex.submit(tasks.inc, 1).cancel() is False  # it has ended
            return
        blocker = _Blocker(shared_ex, tmp_path, slots=EVERY_SLOT)
        queued = shared_ex.submit(tasks.inc, 1)
        assert queued.cancel() is True and queued.cancelled() and queued.done()
        assert queued.cancel() is True  # again: still cancelled
        with pytest.raises(cf.CancelledError):
            queued.result(timeout=0)
        with pytest.raises(CancelledError):
            queued.exception(timeout=0)
        assert blocker.release() == "slow"
        assert blocker.future.cancel() is False  # finished: the result stays
        assert blocker.future.result() == "slow"

    def test_result_and_exception_time_out(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        if _inline(shared_ex):
            pytest.skip("a LocalExecutor task has ended inside submit")
        blocker = _Blocker(shared_ex, tmp_path)
        with pytest.raises(TimeoutError):
            blocker.future.result(timeout=0.05)
        with pytest.raises(TimeoutError):
            blocker.future.exception(timeout=0.05)
        assert blocker.release() == "slow"

    def test_exception_returns_the_task_error(self, shared_ex: Executor) -> None:
        future = shared_ex.submit(tasks.fail_with_own_error, "boom")
        error = future.exception(timeout=30)
        assert isinstance(error, tasks.TaskError) and str(error) == "boom"
        with pytest.raises(tasks.TaskError):
            future.result()

    def test_done_callbacks_run_once_on_the_dispatcher_thread(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        called: list[tuple[Future[Any], str]] = []

        def record(future: Future[Any]) -> None:
            called.append((future, threading.current_thread().name))

        def broken(future: Future[Any]) -> None:
            raise RuntimeError("a callback that raises is logged; the others still run")

        if _inline(shared_ex):
            future = shared_ex.submit(tasks.inc, 1)
        else:
            blocker = _Blocker(shared_ex, tmp_path)
            future = blocker.future
        future.add_done_callback(broken)
        future.add_done_callback(record)
        if not _inline(shared_ex):
            blocker.release()
        future.add_done_callback(record)  # after it ended: called too
        assert wait_until(lambda: len(called) == 2, 30)
        assert [f for f, _ in called] == [future, future]
        assert all(name.startswith("executors-dispatch-") for _, name in called)


class TestConcurrentFuturesWait:
    def test_first_completed(self, shared_ex: Executor, tmp_path: pathlib.Path) -> None:
        _needs_two_at_once(shared_ex)
        blocker = _Blocker(shared_ex, tmp_path)
        fast = shared_ex.submit(tasks.inc, 1)
        done, not_done = cf.wait([blocker.future, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
        assert done == {fast} and not_done == {blocker.future}
        blocker.release()

    def test_first_completed_with_one_already_done(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        finished = shared_ex.submit(tasks.inc, 1)
        assert finished.result(timeout=30) == 2
        if _inline(shared_ex):
            done, not_done = cf.wait([finished], timeout=0, return_when=cf.FIRST_COMPLETED)
            assert done == {finished} and not not_done
            return
        blocker = _Blocker(shared_ex, tmp_path)
        done, not_done = cf.wait([finished, blocker.future], return_when=cf.FIRST_COMPLETED)
        assert done == {finished} and not_done == {blocker.future}
        blocker.release()

    def test_first_exception(self, shared_ex: Executor, tmp_path: pathlib.Path) -> None:
        _needs_two_at_once(shared_ex)
        failing = shared_ex.submit(tasks.fail, "first")
        blocker = _Blocker(shared_ex, tmp_path)
        done, not_done = cf.wait(
            [blocker.future, failing], timeout=30, return_when=cf.FIRST_EXCEPTION
        )
        assert done == {failing} and not_done == {blocker.future}
        assert isinstance(failing.exception(), ZeroDivisionError)
        blocker.release()

    def test_first_exception_without_one_waits_for_all(self, shared_ex: Executor) -> None:
        futures = [shared_ex.submit(tasks.sleep_then, 0.01 * i, i) for i in range(4)]
        done, not_done = cf.wait(futures, timeout=30, return_when=cf.FIRST_EXCEPTION)
        assert done == set(futures) and not not_done

    def test_all_completed(self, shared_ex: Executor) -> None:
        futures = [shared_ex.submit(tasks.inc, i) for i in range(5)] + [
            shared_ex.submit(tasks.fail, "counts as completed")
        ]
        done, not_done = cf.wait(futures, timeout=30, return_when=cf.ALL_COMPLETED)
        assert done == set(futures) and not not_done

    def test_timeout(self, shared_ex: Executor, tmp_path: pathlib.Path) -> None:
        finished = shared_ex.submit(tasks.inc, 1)
        finished.result(timeout=30)
        if _inline(shared_ex):
            assert cf.wait([finished], timeout=0.05) == ({finished}, set())
            return
        blocker = _Blocker(shared_ex, tmp_path)
        done, not_done = cf.wait([finished, blocker.future], timeout=0.1)
        assert done == {finished} and not_done == {blocker.future}
        blocker.release()

    def test_a_cancelled_future_counts_as_done(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        if _inline(shared_ex):
            pytest.skip("a LocalExecutor task has ended inside submit")
        blocker = _Blocker(shared_ex, tmp_path, slots=EVERY_SLOT)
        queued = shared_ex.submit(tasks.inc, 1)
        waiting = cf.ThreadPoolExecutor(1).submit(cf.wait, [queued], 30)
        assert queued.cancel()
        done, not_done = waiting.result(timeout=30)
        assert done == {queued} and not not_done
        blocker.release()


class TestConcurrentFuturesAsCompleted:
    def test_each_once_as_it_ends(self, shared_ex: Executor) -> None:
        finished = shared_ex.submit(tasks.inc, 0)
        finished.result(timeout=30)
        others = [shared_ex.submit(tasks.inc, i) for i in range(1, 4)]
        seen = list(cf.as_completed([finished, *others, finished, others[0]], timeout=30))
        assert len(seen) == 4 and set(seen) == {finished, *others}

    def test_timeout(self, shared_ex: Executor, tmp_path: pathlib.Path) -> None:
        _needs_two_at_once(shared_ex)
        blocker = _Blocker(shared_ex, tmp_path)
        fast = shared_ex.submit(tasks.inc, 1)
        fast.result(timeout=30)  # ended before the wait starts: a loaded machine is slow
        seen = []
        with pytest.raises(cf.TimeoutError):
            for future in cf.as_completed([blocker.future, fast], timeout=0.5):
                seen.append(future)
        assert seen == [fast]
        blocker.release()


class TestMap:
    def test_results_in_order(self, shared_ex: Executor) -> None:
        assert list(shared_ex.map(tasks.add, range(10), range(10, 20))) == list(range(10, 30, 2))

    def test_the_shortest_iterable_ends_it(self, shared_ex: Executor) -> None:
        assert list(shared_ex.map(tasks.add, [1, 2, 3], [10, 20])) == [11, 22]
        assert list(shared_ex.map(tasks.inc, [])) == []

    def test_an_error_comes_at_its_place(self, shared_ex: Executor) -> None:
        results = shared_ex.map(tasks.fail_if_negative, [0, 1, -1, 3])
        assert next(results) == 0 and next(results) == 1
        with pytest.raises(ValueError, match="-1"):
            next(results)

    def test_timeout_counts_from_the_call(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        if _inline(shared_ex):
            pytest.skip("a LocalExecutor task has ended inside submit")
        go = tmp_path / "go"
        results = shared_ex.map(tasks.wait_for_file, [str(go)], [SLOW], timeout=0.2)
        with pytest.raises(TimeoutError, match=r"0\.2 s"):
            next(results)
        go.write_text("")  # the task, cancelled by the iterator's end, may still be running


class TestAsyncio:
    def test_await_a_wrapped_future_and_run_in_executor(self, shared_ex: Executor) -> None:
        async def main() -> list[Any]:
            loop = asyncio.get_running_loop()
            wrapped = asyncio.wrap_future(shared_ex.submit(tasks.inc, 1))
            in_executor = loop.run_in_executor(shared_ex, tasks.add, 2, 3)
            many = [asyncio.wrap_future(shared_ex.submit(tasks.inc, i)) for i in range(10)]
            return [await wrapped, await in_executor, await asyncio.gather(*many)]

        assert asyncio.run(main()) == [2, 5, list(range(1, 11))]

    def test_a_task_error_and_a_cancel_come_through(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        async def main() -> None:
            with pytest.raises(tasks.TaskError, match="far"):
                await asyncio.wrap_future(shared_ex.submit(tasks.fail_with_own_error, "far"))
            if _inline(shared_ex):
                return
            blocker = _Blocker(shared_ex, tmp_path)
            awaiting = asyncio.wrap_future(blocker.future)
            awaiting.cancel()  # cancelling the asyncio side cancels the task
            with pytest.raises(asyncio.CancelledError):
                await awaiting
            for _ in range(1000):  # asyncio tells the source in a callback of its loop
                if blocker.future.cancelled():
                    break
                await asyncio.sleep(0.01)
            assert blocker.future.cancelled()
            blocker.path.write_text("")  # a task already running goes on to its end

        asyncio.run(main())


class TestAsyncDefTasks:
    def test_a_coroutine_function_runs_to_its_end(self, shared_ex: Executor) -> None:
        first = shared_ex.submit(tasks.ainc, 1)
        second = shared_ex.submit(tasks.ainc, first)  # a dependency, as for a plain one
        assert shared_ex.wait([first, second], timeout=30) == [2, 3]
        assert list(shared_ex.map(tasks.ainc, range(3))) == [1, 2, 3]
        assert shared_ex.submit(tasks.ashould_run).result(timeout=30) is True

    def test_its_error_is_the_tasks_error(self, shared_ex: Executor) -> None:
        with pytest.raises(tasks.TaskError, match="async"):
            shared_ex.submit(tasks.afail, "async").result(timeout=30)

    def test_from_inside_an_event_loop_on_a_local_executor(self) -> None:
        async def main() -> int:
            with executors.LocalExecutor() as ex:  # runs in this thread, which has a loop
                return int(ex.submit(tasks.ainc, 41).result())

        assert asyncio.run(main()) == 42


def _freed(ref: weakref.ref[Any]) -> bool:
    """Whether what ``ref`` refers to is freed, within a second: the thread that settled
    a Future holds it until its call returns, which may be just after the caller woke."""
    return wait_until(lambda: gc.collect() >= 0 and ref() is None, 1.0)


class TestNothingKeptAlive:
    """What the library holds never keeps a yielded Future, a yielded map result or a
    computed graph alive (CPython issues 14406, 16284)."""

    def test_as_completed_drops_each_future_it_yielded(self, shared_ex: Executor) -> None:
        futures = [shared_ex.submit(tasks.box, i) for i in range(4)]
        iterator = executors.as_completed(futures)
        del futures
        for _ in range(4):
            ref = weakref.ref(next(iterator))
            assert _freed(ref)

    def test_as_completed_drops_a_yielded_future_however_it_ended(
        self, shared_ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        # CPython's test_as_completed.test_free_reference_yielded_future: pending,
        # cancelled and finished Futures.
        if _inline(shared_ex):
            pytest.skip("a LocalExecutor task has ended inside submit")
        finished = shared_ex.submit(tasks.box, 42)
        finished.result(timeout=30)
        blocker = _Blocker(shared_ex, tmp_path, slots=EVERY_SLOT)
        futures = [shared_ex.submit(tasks.box, i) for i in range(3)]
        cancelled = shared_ex.submit(tasks.box, 9)
        assert cancelled.cancel()
        futures += [cancelled, finished]
        del cancelled, finished

        def take_each(iterator: Any) -> None:
            for future in iterator:
                futures.remove(future)
                ref = weakref.ref(future)
                del future
                assert _freed(ref)

        with pytest.raises(TimeoutError):
            take_each(executors.as_completed(futures, timeout=0.2))
        assert len(futures) == 3
        blocker.release()
        take_each(executors.as_completed(futures, timeout=30))
        assert futures == []

    def test_map_drops_each_result_it_yielded(self, shared_ex: Executor) -> None:
        results = shared_ex.map(tasks.box, range(3))
        for _ in range(3):
            ref = weakref.ref(next(results))
            assert _freed(ref)

    def test_a_computed_task_keeps_nothing_of_its_call(self, shared_ex: Executor) -> None:
        fn, arg = tasks.Unbox(), tasks.Box(7)
        future = shared_ex.submit(fn, arg)
        assert shared_ex.wait(future, timeout=30) == tasks.Box(7)
        refs = [weakref.ref(fn), weakref.ref(arg), weakref.ref(future.result())]
        del fn, arg, future
        assert all(_freed(ref) for ref in refs), [ref() for ref in refs]


def test_a_map_does_not_keep_its_executor_alive(kind: Kind) -> None:
    # CPython's test_shutdown.test_del_shutdown with a map, as Python 3.14's map holds its
    # executor: once the executor is collected its run finishes the map's work and ends
    # (no_leaks checks its threads and processes), and the iterator still gives it all.
    executor = kind().__enter__()
    results = executor.map(abs, range(-5, 5))
    ref = weakref.ref(executor)
    del executor
    gc.collect()
    assert ref() is None
    assert list(results) == [abs(n) for n in range(-5, 5)]


def test_an_executor_nobody_holds_finishes_its_work_and_ends_its_threads(
    kind: Kind, tmp_path: pathlib.Path
) -> None:
    # As a concurrent.futures executor does once collected. The leak check (no_leaks)
    # fails the test if a thread or process of the executor outlives it.
    executor = kind().__enter__()
    future = executor.submit(tasks.sleep_then_touch, 0.2, str(tmp_path / "kept"))
    executor.submit(tasks.sleep_then_touch, 0.2, str(tmp_path / "dropped"))
    ref = weakref.ref(executor)
    del executor
    gc.collect()
    assert ref() is None
    assert future.result(timeout=60) is None
    assert wait_until(lambda: (tmp_path / "dropped").exists(), 30)
