"""One behaviour suite, run over every executor (SPEC §3, §5, §6)."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import gc
import io
import logging
import pathlib
import pickle
import re
import threading
import traceback
from typing import Any

import pytest
import tasks
from conftest import Kind, Recorder, wait_until

from executors import CancelledError, Executor, Future, as_completed, should_run, signals
from executors._progress import open_progress_bar

KEY = re.compile(r"^(?P<name>.+)-[0-9a-f]{32}$")
Point = collections.namedtuple("Point", "x y")


class _Terminal(io.StringIO):
    """A screen for the progress bar: it draws only where isatty() says yes."""

    def isatty(self) -> bool:
        return True


def _all_signals() -> list[Any]:
    return [getattr(signals, name) for name in signals.__all__ if name != "WorkerInfo"]


class TestLifecycle:
    def test_submit_returns_future_with_result(self, ex: Executor) -> None:
        future = ex.submit(tasks.inc, 1)
        assert isinstance(future, Future)
        assert future.result(timeout=30) == 2

    def test_submit_outside_start_raises_runtime_error(self, kind: Kind) -> None:
        executor = kind()
        with pytest.raises(RuntimeError, match="not running"):
            executor.submit(tasks.inc, 1)

    def test_start_yields_the_executor(self, kind: Kind) -> None:
        executor = kind()
        with executor.start() as started:
            assert started is executor
            assert started.submit(tasks.inc, 2).result(timeout=30) == 3

    def test_starting_a_running_executor_raises(self, ex: Executor) -> None:
        with pytest.raises(RuntimeError, match="already running"):
            ex.__enter__()
        with pytest.raises(RuntimeError, match="already running"):
            with ex.start():
                pass  # pragma: no cover

    def test_can_start_again_after_stop(self, kind: Kind) -> None:
        executor = kind()
        for value in (1, 2):
            with executor:
                assert executor.submit(tasks.inc, value).result(timeout=30) == value + 1
        with pytest.raises(RuntimeError):
            executor.submit(tasks.inc, 1)

    def test_submit_after_stop_raises(self, kind: Kind) -> None:
        executor = kind()
        with executor:
            pass
        with pytest.raises(RuntimeError, match="not running"):
            executor.submit(tasks.inc, 1)

    def test_shutdown_ends_the_run_and_exit_is_then_a_no_op(self, kind: Kind) -> None:
        executor = kind()
        stopped = Recorder("stopped")
        with signals.executor_stopped.connected_to(stopped, sender=executor):
            with executor:
                future = executor.submit(tasks.inc, 1)
                executor.shutdown()
                with pytest.raises(RuntimeError):
                    executor.submit(tasks.inc, 1)
        assert future.result(timeout=0) == 2  # submitted work was finished, not dropped
        assert len(stopped.calls) == 1

    def test_work_left_at_exit_is_finished(self, kind: Kind) -> None:
        with kind() as executor:
            futures = [executor.submit(tasks.inc, i) for i in range(5)]
        assert [f.result(timeout=0) for f in futures] == [1, 2, 3, 4, 5]

    def test_fire_and_forget_runs_every_task(self, kind: Kind, tmp_path: pathlib.Path) -> None:
        # The caller keeps no Future: dropping one is never a cancel (SPEC §3.3).
        with kind() as executor:
            for i in range(100):
                executor.submit(tasks.sleep_then_touch, 0.001 * (i % 10), str(tmp_path / str(i)))
            gc.collect()
        assert sorted(int(path.name) for path in tmp_path.iterdir()) == list(range(100))

    def test_exception_in_block_cancels_run_and_propagates(self, kind: Kind) -> None:
        executor = kind()
        cancelled = Recorder("run_cancelled")
        with signals.run_cancelled.connected_to(cancelled, sender=executor):
            with pytest.raises(KeyError):
                with executor:
                    raise KeyError("oops")
        assert [c["reason"] for c in cancelled.calls] == ["KeyError: 'oops'"]

    def test_keyboard_interrupt_in_block_cancels_and_reraises(self, kind: Kind) -> None:
        executor = kind()
        stopped = Recorder("stopped")
        with signals.executor_stopped.connected_to(stopped, sender=executor):
            with pytest.raises(KeyboardInterrupt):
                with executor:
                    raise KeyboardInterrupt
        assert stopped.calls[0]["cancelled"] is True

    def test_non_callable_fn_raises_type_error(self, ex: Executor) -> None:
        with pytest.raises(TypeError, match="callable"):
            ex.submit(42)  # type: ignore[arg-type]


class TestArguments:
    def test_kwargs_reach_fn_unchanged_whatever_their_names(self, ex: Executor) -> None:
        names = dict(
            key="k", pure=False, resources={"GPU": 1}, retries=3, workers=["w"], priority=9
        )
        assert ex.submit(tasks.echo, 1, **names).result(timeout=30) == ((1,), names)

    def test_future_argument_is_resolved(self, ex: Executor) -> None:
        first = ex.submit(tasks.inc, 1)
        assert ex.submit(tasks.add, first, 10).result(timeout=30) == 12

    def test_nested_futures_are_resolved(self, ex: Executor) -> None:
        a = ex.submit(tasks.inc, 1)
        b = ex.submit(tasks.inc, 2)
        nested = ex.submit(
            tasks.echo, [a, (b, {"k": a})], frozenset({b}), Point(a, 0), deep={"x": [[a]]}
        )
        args, kwargs = nested.result(timeout=30)
        assert args == ([2, (3, {"k": 2})], frozenset({3}), Point(2, 0))
        assert isinstance(args[2], Point)
        assert kwargs == {"deep": {"x": [[2]]}}

    def test_dependent_of_failed_task_fails_with_its_error(
        self, ex: Executor, tmp_path: pathlib.Path
    ) -> None:
        failed = ex.submit(tasks.fail, "first")
        marker = tmp_path / "ran"
        dependent = ex.submit(tasks.touch, str(marker), failed)
        with pytest.raises(ZeroDivisionError, match="first"):
            dependent.result(timeout=30)
        assert not marker.exists()

    def test_pending_future_of_another_executor_is_rejected(
        self, ex: Executor, shared_kind: Kind
    ) -> None:
        if shared_kind.inline:
            pytest.skip("its Futures are never pending")
        other = ex.duplicate()
        with other:
            foreign = other.submit(tasks.inc, 1)
            with pytest.raises(ValueError, match="another executor"):
                ex.submit(tasks.inc, foreign)


class TestKeys:
    def test_key_defaults_to_function_name_and_uuid(self, ex: Executor) -> None:
        assert KEY.match(ex.submit(tasks.inc, 1).key).group("name") == "inc"  # type: ignore[union-attr]

    def test_task_name_and_map_index_name_the_key(self, ex: Executor) -> None:
        future = ex.submit(tasks.inc, 1, extra_context={"task_name": "load", "map_index": 3})
        assert KEY.match(future.key).group("name") == "load[3]"  # type: ignore[union-attr]

    def test_a_map_index_without_a_task_name_keeps_the_function_name(self, ex: Executor) -> None:
        # SPEC §3 puts the index after a task name; Dask reads a key's name as its group.
        future = ex.submit(tasks.inc, 1, extra_context={"map_index": 3})
        assert KEY.match(future.key).group("name") == "inc"  # type: ignore[union-attr]

    def test_task_full_name_is_used_as_given(self, ex: Executor) -> None:
        future = ex.submit(
            tasks.inc, 1, extra_context={"task_full_name": "flow.load", "map_index": 3}
        )
        assert KEY.match(future.key).group("name") == "flow.load"  # type: ignore[union-attr]

    def test_explicit_key_is_used_as_is(self, ex: Executor) -> None:
        assert ex.submit(tasks.inc, 1, extra_context={"key": "my-key"}).key == "my-key"

    def test_keys_are_unique(self, ex: Executor) -> None:
        keys = {ex.submit(tasks.inc, 1).key for _ in range(20)}
        assert len(keys) == 20

    def test_unknown_extra_context_key_raises_naming_it(self, ex: Executor) -> None:
        with pytest.raises(ValueError, match="'colour'"):
            ex.submit(tasks.inc, 1, extra_context={"colour": "red"})

    def test_malformed_resource_tag_raises_naming_it(self, ex: Executor) -> None:
        with pytest.raises(ValueError, match="dask-resource:GPU"):
            ex.submit(tasks.inc, 1, extra_context={"tags": ["dask-resource:GPU"]})

    def test_resource_tags_retries_and_priority_are_accepted(self, ex: Executor) -> None:
        context = {"tags": ["dask-resource:GPU=1", "etl"], "retries": 2, "priority": -1}
        assert ex.submit(tasks.inc, 1, extra_context=context).result(timeout=30) == 2


class TestMapAndWait:
    def test_map_yields_results_in_order(self, ex: Executor) -> None:
        assert list(ex.map(tasks.add, range(5), range(10, 15))) == [10, 12, 14, 16, 18]

    def test_map_names_each_item_with_its_index(self, kind: Kind) -> None:
        ex = kind().__enter__()
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=ex):
            list(ex.map(tasks.inc, range(3), extra_context={"task_name": "step"}))
            ex.submit(tasks.inc, 0).result(timeout=30)
            ex.shutdown()
        names = sorted(KEY.match(c["key"]).group("name") for c in finished.calls)  # type: ignore[union-attr]
        assert names == ["inc", "step[0]", "step[1]", "step[2]"]

    def test_map_rejects_a_key(self, ex: Executor) -> None:
        with pytest.raises(ValueError, match="key"):
            ex.map(tasks.inc, [1], extra_context={"key": "k"})

    def test_wait_returns_the_same_structure(self, ex: Executor) -> None:
        a, b = ex.submit(tasks.inc, 1), ex.submit(tasks.inc, 2)
        result = ex.wait([a, {"b": b, "n": 5}, (a,), Point(b, "y")])
        assert result == [2, {"b": 3, "n": 5}, (2,), Point(3, "y")]
        assert ex.wait(a) == 2
        assert ex.wait({"nothing": 1}) == {"nothing": 1}

    def test_wait_raises_the_task_error_with_its_traceback(self, ex: Executor) -> None:
        ok = ex.submit(tasks.inc, 1)
        bad = ex.submit(tasks.fail_with_own_error, "exact")
        with pytest.raises(tasks.TaskError, match="exact") as info:
            ex.wait([ok, bad])
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert frames[-1] == "fail_with_own_error"  # the task's own frame is kept

    def test_wait_timeout_raises_and_leaves_the_task_running(
        self, ex: Executor, shared_kind: Kind
    ) -> None:
        future = ex.submit(tasks.sleep_then, 0.5, "late")
        if shared_kind.inline:
            assert ex.wait(future, timeout=0) == "late"  # already ran inside submit
            return
        with pytest.raises(TimeoutError, match=r"not done within 0\.05 s"):
            ex.wait([future], timeout=0.05)
        # The message names the timeout given, not what was left of it.
        with pytest.raises(TimeoutError, match=r"no result within 0\.06 s"):
            future.result(timeout=0.06)
        with pytest.raises(TimeoutError, match=r"not done within 0\.07 s"):
            future.exception(timeout=0.07)
        with pytest.raises(TimeoutError, match=r"within the timeout of 0\.08 s"):
            next(ex.map(tasks.sleep_then, [0.5], timeout=0.08))
        assert ex.wait([future], timeout=30) == ["late"]

    def test_result_can_be_read_again(self, ex: Executor) -> None:
        future = ex.submit(tasks.inc, 1)
        assert future.result(timeout=30) == future.result() == 2
        assert future.exception() is None
        assert future.done() and not future.cancelled()

    def test_exception_returns_the_task_error(self, ex: Executor) -> None:
        assert isinstance(ex.submit(tasks.fail).exception(timeout=30), ZeroDivisionError)

    def test_as_completed_yields_every_future(self, ex: Executor) -> None:
        futures = [ex.submit(tasks.inc, i) for i in range(6)]
        assert sorted(f.result() for f in as_completed(futures, timeout=30)) == [1, 2, 3, 4, 5, 6]

    def test_a_progress_bar_counts_every_future_from_task_finished(self, ex: Executor) -> None:
        screen = _Terminal()
        futures = [ex.submit(tasks.inc, i) for i in range(5)]
        futures.append(ex.submit(tasks.fail))
        bar = open_progress_bar(futures, screen)
        assert bar is not None
        with pytest.raises(ZeroDivisionError):
            ex.wait(futures, timeout=30)  # without a bar of its own
        assert wait_until(lambda: bar.counted == 6)  # reported by the signal, not close()
        bar.close()
        assert "6/6" in screen.getvalue() and "failed=1, cancelled=0" in screen.getvalue()
        assert not signals.task_finished.receivers  # else task_finished is sent forever
        # Off a terminal (pytest captures stderr), progress=True changes nothing.
        assert ex.wait(futures[:5], timeout=30, progress=True) == [1, 2, 3, 4, 5]
        assert [f.result() for f in as_completed(futures[:1], progress=True)] == [1]

    def test_finished_future_cannot_be_cancelled_and_keeps_its_result(self, ex: Executor) -> None:
        future = ex.submit(tasks.inc, 1)
        future.result(timeout=30)
        assert future.cancel() is False
        assert future.result() == 2

    def test_pending_future_cancel_keeps_the_task_from_running(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        if kind.inline:
            pytest.skip("its Futures are never pending")
        ex = kind().__enter__()
        marker = tmp_path / "ran"
        blocker = ex.submit(tasks.sleep_then, 0.5)
        future = ex.submit(tasks.touch, str(marker), blocker)  # cannot start before 0.5 s
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=ex):
            assert future.cancel() is True
            with pytest.raises(CancelledError):
                future.result(timeout=30)
            ex.shutdown()
        assert future.cancelled() and not marker.exists()
        states = {c["key"]: c["state"] for c in finished.calls}
        assert states[future.key] == "cancelled"

    def test_done_callback_runs_on_the_dispatcher_with_the_future(self, ex: Executor) -> None:
        seen: list[tuple[Future[Any], str]] = []
        future = ex.submit(tasks.inc, 1)
        future.add_done_callback(lambda f: seen.append((f, threading.current_thread().name)))
        future.result(timeout=30)
        assert wait_until(lambda: seen, 30)
        assert seen[0][0] is future
        assert seen[0][1].startswith("executors-dispatch-")

    def test_submit_and_wait_from_eight_threads(self, ex: Executor) -> None:
        def work(n: int) -> list[int]:
            futures = [ex.submit(tasks.inc, n * 100 + i) for i in range(10)]
            return ex.wait(futures, timeout=60)  # type: ignore[no-any-return]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert results == [[n * 100 + i + 1 for i in range(10)] for n in range(8)]


class TestCancellation:
    def test_cancel_sends_run_cancelled_once_and_refuses_new_work(self, kind: Kind) -> None:
        executor = kind()
        cancelled, stopped = Recorder("run_cancelled"), Recorder("stopped")
        with (
            signals.run_cancelled.connected_to(cancelled, sender=executor),
            signals.executor_stopped.connected_to(stopped, sender=executor),
        ):
            with executor:
                assert executor.cancel("enough") is True
                assert executor.cancel("again") is False
                with pytest.raises(RuntimeError, match="cancelled"):
                    executor.submit(tasks.inc, 1)
        assert [c["reason"] for c in cancelled.calls] == ["enough"]
        assert stopped.calls[0]["cancelled"] is True

    def test_cancel_ends_pending_futures_with_cancelled_error(
        self, kind: Kind, tmp_path: pathlib.Path
    ) -> None:
        if kind.inline:
            pytest.skip("its Futures are never pending")
        executor = kind()
        task_cancelled, finished = Recorder("task_cancelled"), Recorder("task_finished")
        with (
            signals.task_cancelled.connected_to(task_cancelled, sender=executor),
            signals.task_finished.connected_to(finished, sender=executor),
        ):
            with executor:
                blocker = executor.submit(tasks.sleep_then, 0.5)
                futures = [
                    executor.submit(tasks.touch, str(tmp_path / str(i)), blocker) for i in range(3)
                ]
                executor.cancel("stop")
                for future in futures:
                    with pytest.raises(CancelledError, match="stop"):
                        future.result(timeout=30)
                    assert isinstance(future.exception.__self__, Future)
        assert list(tmp_path.iterdir()) == []
        keys = {f.key for f in [blocker, *futures]}
        assert {c["key"] for c in task_cancelled.calls} == keys
        assert {(c["key"], c["state"]) for c in finished.calls} == {(k, "cancelled") for k in keys}

    def test_cancelled_error_is_a_concurrent_futures_cancelled_error(self) -> None:
        assert issubclass(CancelledError, concurrent.futures.CancelledError)
        error = pickle.loads(pickle.dumps(CancelledError("k", "why")))
        assert (error.key, error.reason) == ("k", "why")

    def test_shutdown_with_cancel_futures_cancels_pending(self, kind: Kind) -> None:
        if kind.inline:
            pytest.skip("its Futures are never pending")
        with kind() as executor:
            blocker = executor.submit(tasks.sleep_then, 0.5)
            future = executor.submit(tasks.inc, blocker)
            executor.shutdown(cancel_futures=True)
        assert future.cancelled()

    def test_should_run_is_true_outside_a_task(self) -> None:
        assert should_run() is True

    def test_should_run_turns_false_inside_a_task_once_cancelled(self, kind: Kind) -> None:
        if not kind.cooperative:
            pytest.skip("its tasks run copies of this test's state (see test_dask_cancel.py)")
        seen: list[bool] = []
        with kind() as ex:

            def cooperative() -> None:
                seen.append(should_run())
                ex.cancel("from the task")
                seen.append(should_run())

            future = ex.submit(cooperative)
            if kind.inline:
                future.result(timeout=30)  # it ran to its end inside submit()
            else:
                with pytest.raises(CancelledError):  # pending when its run was cancelled
                    future.result(timeout=30)
        assert seen == [True, False]


class TestSignals:
    def test_started_first_stopped_last_all_before_exit(self, kind: Kind) -> None:
        executor = kind()
        order: list[str] = []
        # connected_to disconnects from every sender: blinker's disconnect(r, sender=...)
        # leaves r in signal.receivers until r is collected, and a task_finished receiver
        # left there made a later test's executor send task_finished for nobody (a CI
        # run: test_task_finished_costs_nothing_without_receivers, 21 sends queued, not 1).
        with contextlib.ExitStack() as connected:
            for signal in _all_signals():

                def receiver(sender: object, _name: str = signal.name, **kwargs: Any) -> None:
                    order.append(_name)

                connected.enter_context(signal.connected_to(receiver, sender=executor))
            with executor:
                executor.wait([executor.submit(tasks.inc, i) for i in range(3)])
                executor.cancel("done")
        assert order[0] == "executor-started"
        assert order[-1] == "executor-stopped"
        assert order.count("task-finished") == 3
        assert order.index("run-cancelled") > order.index("executor-started")

    def test_started_carries_the_dashboard_link(self, kind: Kind) -> None:
        executor = kind()
        started = Recorder("started")
        with signals.executor_started.connected_to(started, sender=executor):
            with executor:
                pass
        [call] = started.calls
        assert call["sender"] is executor
        if kind.dashboard:
            assert call["dashboard_link"].startswith("http://127.0.0.1:")
        else:
            assert call["dashboard_link"] is None

    def test_receivers_run_on_the_dispatcher_thread(self, kind: Kind) -> None:
        executor = kind()
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=executor):
            with executor:
                executor.submit(tasks.inc, 1).result(timeout=30)
        assert finished.calls and all(
            c["thread"].startswith("executors-dispatch-") for c in finished.calls
        )

    def test_task_finished_reports_each_state(self, kind: Kind) -> None:
        executor = kind()
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=executor):
            with executor:
                ok, bad = executor.submit(tasks.inc, 1), executor.submit(tasks.fail)
                executor.wait([ok, bad.exception(timeout=30)])
        states = {c["key"]: c["state"] for c in finished.calls}
        assert states == {ok.key: "finished", bad.key: "error"}

    def test_a_raising_receiver_is_logged_and_others_still_run(
        self, kind: Kind, executor_logs: list[logging.LogRecord]
    ) -> None:
        executor = kind()
        good = Recorder("good")

        def bad(sender: object, **kwargs: Any) -> None:
            raise RuntimeError("receiver broke")

        with (
            signals.task_finished.connected_to(bad, sender=executor),
            signals.task_finished.connected_to(good, sender=executor),
        ):
            with executor:
                executor.submit(tasks.inc, 1).result(timeout=30)
        assert len(good.calls) == 1
        failures = [r for r in executor_logs if r.msg == "receiver_failed"]
        assert failures and failures[0].exc_info is not None
        assert failures[0].executor_id == executor.executor_id  # type: ignore[attr-defined]

    def test_a_receiver_may_submit_and_wait(self, kind: Kind) -> None:
        executor = kind()
        results: list[int] = []
        done = threading.Event()

        def follow_up(sender: Executor, **kwargs: Any) -> None:
            results.append(sender.wait(sender.submit(tasks.inc, 41), timeout=30))
            done.set()

        with signals.executor_started.connected_to(follow_up, sender=executor):
            with executor:
                assert done.wait(30)
        assert results == [42]

    def test_task_finished_costs_nothing_without_receivers(self, kind: Kind) -> None:
        executor = kind()
        started = Recorder("started")
        with signals.executor_started.connected_to(started, sender=executor):
            with executor:
                dispatcher = executor._run.dispatcher  # type: ignore[union-attr]
                executor.wait([executor.submit(tasks.inc, i) for i in range(20)])
                queued = dispatcher.queued
        assert queued == 1  # only executor_started was queued, no task_finished

    def test_receiver_for_another_sender_is_not_called(self, kind: Kind) -> None:
        executor, other = kind(), kind()
        finished = Recorder("task_finished")
        with signals.task_finished.connected_to(finished, sender=other):
            with executor:
                executor.submit(tasks.inc, 1).result(timeout=30)
        assert finished.calls == []


class TestIdentity:
    def test_executor_id_is_class_name_and_uuid_and_stable(self, kind: Kind) -> None:
        executor = kind()
        before = executor.executor_id
        assert re.fullmatch(rf"{type(executor).__name__}: [0-9a-f-]{{36}}", before)
        with executor:
            assert executor.executor_id == before
        assert executor.executor_id == before  # the same after a run, and for the next
        assert kind().executor_id != before

    def test_duplicate_is_a_new_unstarted_equal_executor(self, ex: Executor) -> None:
        copy = ex.duplicate()
        assert copy == ex and copy is not ex
        assert copy.executor_id != ex.executor_id
        with pytest.raises(RuntimeError, match="not running"):
            copy.submit(tasks.inc, 1)

    def test_pickles_when_stopped_and_when_running(self, kind: Kind) -> None:
        executor = kind()
        for state in ("stopped", "running"):
            if state == "running":
                executor.__enter__()
            try:
                copy = pickle.loads(pickle.dumps(executor))
                assert copy == executor and copy.executor_id == executor.executor_id
                with copy:
                    assert copy.submit(tasks.inc, 1).result(timeout=30) == 2
            finally:
                executor.shutdown()


class TestShutdownAndCallbacks:
    def test_shutdown_without_wait_returns_and_finishes_in_background(self, kind: Kind) -> None:
        executor = kind()
        stopped = threading.Event()

        def on_stopped(sender: object, **kwargs: Any) -> None:
            stopped.set()

        with signals.executor_stopped.connected_to(on_stopped, sender=executor):
            executor.__enter__()
            future = executor.submit(tasks.inc, 1)
            executor.shutdown(wait=False)
            assert stopped.wait(30)
        assert future.result(timeout=30) == 2
        with pytest.raises(RuntimeError, match="not running"):
            executor.submit(tasks.inc, 1)

    def test_callback_added_after_stop_runs_at_once(self, kind: Kind) -> None:
        with kind() as executor:
            future = executor.submit(tasks.inc, 1)
        seen: list[int] = []
        future.add_done_callback(lambda f: seen.append(f.result()))
        assert seen == [2]
