"""Cancelling a DaskExecutor run on real clusters (SPEC §6): the run's distributed.Event,
tasks that do not start, task_cancelled relayed from the workers, should_run()."""

from __future__ import annotations

import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import distributed
import pytest
import tasks
from conftest import (
    SESSION_PIDS,
    TEMPORARY_CLUSTER,
    DaskProcesses,
    Recorder,
    wait_for_workers,
    wait_until,
)

from executors import CancelledError, DaskExecutor, signals

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's

ONE_THREAD = {**TEMPORARY_CLUSTER, "n_workers": 1}


@pytest.fixture(scope="module")
def _one_thread_cluster() -> Iterator[str]:
    processes = DaskProcesses()
    try:
        address, _ = processes.scheduler()
        processes.worker(address)
        SESSION_PIDS.update(p.pid for p in processes.processes)
        wait_for_workers(address, 1)
        yield address
    finally:
        processes.end_all()
        SESSION_PIDS.difference_update(p.pid for p in processes.processes)


def _busy(dask_scheduler: Any) -> int:
    return sum(len(worker.processing) for worker in dask_scheduler.workers.values())


@pytest.fixture
def one_thread_scheduler(_one_thread_cluster: str) -> str:
    """A real scheduler with one real worker process with one thread, shared by the
    tests of this module: each starts with the worker idle."""
    with distributed.Client(_one_thread_cluster, set_as_default=False, timeout=30) as client:
        assert wait_until(lambda: client.run_on_scheduler(_busy) == 0, 30)
    return _one_thread_cluster


@pytest.fixture(params=["temporary", "external"])
def one_thread(request: pytest.FixtureRequest) -> dict[str, Any]:
    """DaskExecutor settings for a cluster with a single worker thread: a temporary
    in-process one, or a scheduler and worker process the executor did not make."""
    if request.param == "temporary":
        return {"cluster_kwargs": ONE_THREAD}
    return {"address": request.getfixturevalue("one_thread_scheduler")}


def _events_on_scheduler(address: str) -> list[str]:
    """The names of the executors' run Events the scheduler holds."""

    def names(dask_scheduler: Any) -> list[str]:
        return [str(name) for name in dask_scheduler.extensions["events"]._events]

    with distributed.Client(address, set_as_default=False, timeout=30) as client:
        return [name for name in client.run_on_scheduler(names) if "executors-run" in name]


def _stopped_at(path: pathlib.Path) -> float:
    return float(path.read_text().split()[0])


class TestCancel:
    def test_queued_tasks_never_run_and_a_cooperative_one_stops(
        self, one_thread: dict[str, Any], tmp_path: pathlib.Path
    ) -> None:
        executor = DaskExecutor(**one_thread)
        cancelled = Recorder("task_cancelled")
        with signals.task_cancelled.connected_to(cancelled, sender=executor):
            with executor:
                blocker = executor.submit(tasks.cooperate, str(tmp_path / "blocker"), 30.0)
                queued = [
                    executor.submit(tasks.touch, str(tmp_path / f"touched-{i}")) for i in range(4)
                ]
                assert wait_until(lambda: (tmp_path / "blocker.started").exists(), 30)
                cancelled_at = time.time()
                assert executor.cancel("enough") is True
                for future in [blocker, *queued]:
                    with pytest.raises(CancelledError, match="enough"):
                        future.result(timeout=5)
                # The running task learns it through should_run() and stops early.
                assert wait_until(lambda: (tmp_path / "blocker").exists(), 10)
        assert _stopped_at(tmp_path / "blocker") - cancelled_at < 1.0
        assert sorted(c["key"] for c in cancelled.calls) == sorted(
            f.key for f in [blocker, *queued]
        )
        if "address" in one_thread:  # the worker stays: let whatever it runs end first
            with distributed.Client(one_thread["address"], set_as_default=False) as client:
                assert wait_until(lambda: client.run_on_scheduler(_busy) == 0, 30)
        assert not list(tmp_path.glob("touched-*"))

    def test_an_async_task_learns_of_the_cancel_through_should_run(
        self, tmp_path: pathlib.Path
    ) -> None:
        with DaskExecutor(cluster_kwargs=ONE_THREAD) as executor:
            running = executor.submit(tasks.acooperate, str(tmp_path / "async"), 30.0)
            assert wait_until(lambda: (tmp_path / "async.started").exists(), 30)
            cancelled_at = time.time()
            executor.cancel("stop it")
            assert wait_until(lambda: (tmp_path / "async").exists(), 10)
            assert running.cancelled()
        assert _stopped_at(tmp_path / "async") - cancelled_at < 1.0

    def test_a_task_not_started_when_cancel_returns_never_starts(
        self, tmp_path: pathlib.Path
    ) -> None:
        # The task's worker read the run's flag a moment ago, so its cached answer is
        # fresh; the subtask is submitted after cancel() returned, from inside the task
        # (Dask's cancel of the run's futures cannot reach a subtask).
        with DaskExecutor(cluster_kwargs=ONE_THREAD) as executor:
            executor.submit(tasks.submit_when_told, executor, str(tmp_path), 30.0)
            assert wait_until(lambda: (tmp_path / "started").exists(), 30)
            executor.cancel("now")
            (tmp_path / "go").write_text("")
            assert wait_until(lambda: (tmp_path / "done").exists(), 30)
            assert (tmp_path / "done").read_text() == "CancelledError"
        assert not (tmp_path / "sub").exists()

    def test_subtasks_of_a_cancelled_run_do_not_start_and_are_reported(
        self, one_thread_scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        # Subtasks submitted from inside a task belong to the worker's client, so
        # cancelling the run's own Dask futures does not reach them: only the run's Event
        # keeps them from starting, and only the event log tells the driver.
        token = uuid.uuid4().hex
        executor = DaskExecutor(address=one_thread_scheduler)
        cancelled = Recorder("task_cancelled")
        with signals.task_cancelled.connected_to(cancelled, sender=executor):
            with executor:
                parent = executor.submit(
                    tasks.cancel_then_touch, executor, str(tmp_path), token, 3, 30.0
                )
                assert wait_until(lambda: (tmp_path / "blocker.started").exists(), 30)
                executor.cancel("enough")
                assert wait_until(lambda: (tmp_path / "blocker").exists(), 10)
                touch_keys = {f"touch-{i}-{token}" for i in range(3)}
                assert wait_until(lambda: touch_keys <= {c["key"] for c in cancelled.calls}, 10)
        assert parent.cancelled()
        keys = [c["key"] for c in cancelled.calls]
        assert len(keys) == len(set(keys))  # each reported once
        assert not list(tmp_path.glob("touched-*"))

    def test_without_the_event_subtasks_still_run(
        self, one_thread_scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        # The same run as above with disable_cancellation_event=True: the blocker is not
        # told to stop (it runs its 1.5 s), and the subtasks then run.
        token = uuid.uuid4().hex
        executor = DaskExecutor(address=one_thread_scheduler, disable_cancellation_event=True)
        with executor:
            executor.submit(tasks.cancel_then_touch, executor, str(tmp_path), token, 3, 1.5)
            assert wait_until(lambda: (tmp_path / "blocker.started").exists(), 30)
            executor.cancel("enough")
        assert wait_until(lambda: len(list(tmp_path.glob("touched-*"))) == 3, 30)
        started = float((tmp_path / "blocker.started").read_text())
        assert _stopped_at(tmp_path / "blocker") - started >= 1.5

    def test_without_the_event_pending_futures_are_still_cancelled(
        self, tmp_path: pathlib.Path
    ) -> None:
        executor = DaskExecutor(cluster_kwargs=ONE_THREAD, disable_cancellation_event=True)
        cancelled = Recorder("task_cancelled")
        with signals.task_cancelled.connected_to(cancelled, sender=executor):
            with executor:
                blocker = executor.submit(tasks.sleep_then, 0.5)
                queued = [
                    executor.submit(tasks.touch, str(tmp_path / f"touched-{i}")) for i in range(3)
                ]
                executor.cancel("enough")
                for future in [blocker, *queued]:
                    with pytest.raises(CancelledError, match="enough"):
                        future.result(timeout=5)
        assert {c["key"] for c in cancelled.calls} == {f.key for f in [blocker, *queued]}
        assert not list(tmp_path.glob("touched-*"))

    def test_leaving_by_an_exception_does_not_wait_for_running_tasks_on_an_external_cluster(
        self, one_thread_scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        executor = DaskExecutor(address=one_thread_scheduler)
        with pytest.raises(ValueError, match="user code failed"):
            with executor:
                blocker = executor.submit(tasks.cooperate, str(tmp_path / "blocker"), 30.0)
                assert wait_until(lambda: (tmp_path / "blocker.started").exists(), 30)
                raise ValueError("user code failed")
        assert blocker.cancelled()
        # The task was told to stop; it stops well before its 30 s.
        assert wait_until(lambda: (tmp_path / "blocker").exists(), 10)


class TestTheEvent:
    def test_each_run_has_its_event_and_stop_clears_it(self, one_thread_scheduler: str) -> None:
        executor = DaskExecutor(address=one_thread_scheduler)
        assert _events_on_scheduler(one_thread_scheduler) == []
        with executor:
            during = _events_on_scheduler(one_thread_scheduler)
        assert len(during) == 1
        assert _events_on_scheduler(one_thread_scheduler) == []  # the scheduler forgot it

    def test_disable_cancellation_event_makes_none(self, one_thread_scheduler: str) -> None:
        with DaskExecutor(address=one_thread_scheduler, disable_cancellation_event=True) as ex:
            assert ex.submit(tasks.inc, 1).result(timeout=30) == 2
            assert _events_on_scheduler(one_thread_scheduler) == []


class TestShouldRun:
    def test_true_in_a_task_of_a_live_run_without_a_round_trip_per_call(
        self, one_thread_scheduler: str
    ) -> None:
        with DaskExecutor(address=one_thread_scheduler) as executor:
            true, seconds, asks = executor.submit(tasks.should_run_calls, 20_000).result(30)
        assert true == 20_000
        # At most one scheduler round trip per refresh interval, not one per call.
        assert asks <= seconds / 0.2 + 2

    def test_stays_true_without_the_event(self, one_thread_scheduler: str) -> None:
        executor = DaskExecutor(address=one_thread_scheduler, disable_cancellation_event=True)
        with executor:
            true, _, _ = executor.submit(tasks.should_run_calls, 100).result(30)
        assert true == 100
