"""LocalDaskExecutor specifics (SPEC §3.2)."""

from __future__ import annotations

import pathlib
import pickle
import threading
import time
import traceback
from typing import Any

import dask
import dask.system
import psutil
import pytest
import tasks
from conftest import ctrl_c_once_written, wait_for_pid, wait_until

from executors import CancelledError, LocalDaskExecutor, ProcessDiedError, signals
from executors._local_dask._graphs import Graphs
from executors._local_dask._pool import chunk_size


class TestSettings:
    @pytest.mark.parametrize(
        ("given", "canonical"),
        [
            ("threads", "threads"),
            ("threading", "threads"),
            ("THREADS", "threads"),
            ("processes", "processes"),
            ("multiprocessing", "processes"),
            ("synchronous", "synchronous"),
            ("sync", "synchronous"),
            ("Single-Threaded", "synchronous"),
        ],
    )
    def test_scheduler_aliases(self, given: str, canonical: str) -> None:
        assert LocalDaskExecutor(given).scheduler == canonical

    def test_unknown_scheduler_lists_the_valid_names(self) -> None:
        with pytest.raises(ValueError, match=r"scheduler must be one of .*'processes'.*got 'gpu'"):
            LocalDaskExecutor("gpu")

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
    def test_bad_num_workers(self, bad: object) -> None:
        with pytest.raises(ValueError, match="num_workers"):
            LocalDaskExecutor(num_workers=bad)  # type: ignore[arg-type]

    def test_num_workers_defaults_to_cpu_count(self) -> None:
        assert LocalDaskExecutor("threads").num_workers == dask.system.CPU_COUNT
        assert LocalDaskExecutor("threads", num_workers=3).num_workers == 3

    def test_equality_compares_canonical_settings(self) -> None:
        assert LocalDaskExecutor("threading") == LocalDaskExecutor("threads")
        assert LocalDaskExecutor("threads") != LocalDaskExecutor("processes")
        assert LocalDaskExecutor(foo=1) != LocalDaskExecutor(foo=2)

    def test_dask_config_is_applied_while_computing(self) -> None:
        with LocalDaskExecutor("threads", executors_test__value=7) as ex:
            future = ex.submit(dask.config.get, "executors_test.value", None)
            assert future.result(timeout=30) == 7
        assert dask.config.get("executors_test.value", None) is None

    def test_the_dask_config_is_gone_when_wait_returns(self) -> None:
        with LocalDaskExecutor("threads", num_workers=2, executors_test__flag="on") as ex:
            fast = ex.submit(dask.config.get, "executors_test.flag", None)
            slow = ex.submit(tasks.sleep_then, 0.5, "slow")  # computing when fast ends
            assert ex.wait(fast, timeout=30) == "on"
            assert dask.config.get("executors_test.flag", None) is None
            assert slow.result(timeout=30) == "slow"

    def test_two_executors_computing_at_once_leave_the_dask_config_as_it_was(
        self, tmp_path: pathlib.Path
    ) -> None:
        # Each sets its scheduler in dask's global config while its graphs compute; here
        # the first to start ends first. Left behind, the setting (a bound method that
        # does not pickle) broke every Dask worker process spawned after.
        before = dask.config.get("scheduler", None)
        started_a, started_b = tmp_path / "started-a", tmp_path / "started-b"
        go_a, go_b = tmp_path / "go-a", tmp_path / "go-b"
        with LocalDaskExecutor("threads", num_workers=1) as a:
            with LocalDaskExecutor("threads", num_workers=1) as b:
                first = a.map(tasks.started_then_wait, [str(started_a)], [str(go_a)], [30.0])
                assert wait_until(started_a.exists, 30)
                second = b.map(tasks.started_then_wait, [str(started_b)], [str(go_b)], [30.0])
                assert wait_until(started_b.exists, 30)
                go_a.write_text("")
                assert list(first) == [None]
                go_b.write_text("")
                assert list(second) == [None]
        assert dask.config.get("scheduler", None) == before


class TestLaziness:
    def test_submit_records_and_wait_computes(self) -> None:
        calls: list[int] = []
        with LocalDaskExecutor("threads") as ex:
            future = ex.submit(calls.append, 1)
            recorded = ex._run.backend.pending  # type: ignore[union-attr]
            assert [task.future for task in recorded] == [future]  # recorded, not handed on
            assert calls == [] and not future.done()
            ex.wait(future)
            assert calls == [1]

    def test_one_wait_computes_everything_pending(self, tmp_path: pathlib.Path) -> None:
        with LocalDaskExecutor("threads") as ex:
            first = ex.submit(tasks.inc, 1)
            other = ex.submit(tasks.touch, str(tmp_path / "other"))
            first.result(timeout=30)
            deadline = time.monotonic() + 10
            while not (tmp_path / "other").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # 'other' is never waited for: only the shared graph runs it
            assert (tmp_path / "other").exists()
            assert other.result(timeout=30) is None

    def test_a_task_computes_once_however_many_waits_reach_it(self) -> None:
        calls: list[int] = []
        with LocalDaskExecutor("threads") as ex:
            future = ex.submit(calls.append, 1)
            later = ex.submit(tasks.echo, future)
            for _ in range(3):
                ex.wait([future, later])
            assert ex.submit(tasks.echo, future).result(timeout=30) == ((None,), {})
        assert calls == [1]

    def test_the_chunks_a_map_submits_at_once_compute_as_one_graph(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Not a graph a chunk: a chunk alone in its graph leaves its worker idle from its
        # end to the next graph's start (P9, processes, no-op: 0.8x the best fixed chunk
        # size with a graph a chunk, 0.98x now).
        graphs: list[int] = []
        compute = Graphs._compute

        def recorded(self: Graphs, batch: list[Any]) -> None:
            graphs.append(len(batch))
            compute(self, batch)

        monkeypatch.setattr(Graphs, "_compute", recorded)
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            assert list(ex.map(tasks.inc, range(2000))) == list(range(1, 2001))
        assert graphs[0] > 1  # the first chunks, sent before any has ended
        assert len(graphs) < sum(graphs)

    @pytest.mark.parametrize("scheduler", ["synchronous", "threads", "processes"])
    def test_tasks_start_in_the_order_they_were_submitted(
        self, scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        ran = tmp_path / "ran"
        with LocalDaskExecutor(scheduler, num_workers=1) as ex:
            ex.wait([ex.submit(tasks.append_line, str(ran), n) for n in range(40)])
            # map's chunks too: its first results come first
            assert list(ex.map(tasks.append_line, [str(ran)] * 40, range(40, 80), chunksize=4))
        assert ran.read_text().split() == [str(n) for n in range(80)]

    def test_a_task_waiting_on_its_own_run_raises(self) -> None:
        with LocalDaskExecutor("threads") as ex:
            inner = ex.submit(lambda: ex.wait(ex.submit(tasks.inc, 1)))
            with pytest.raises(RuntimeError, match="cannot wait for other tasks"):
                inner.result(timeout=30)


class TestChunks:
    @pytest.mark.parametrize(
        ("tasks_", "workers", "chunk"),
        [(1, 2, 1), (2, 2, 1), (7, 2, 1), (8, 2, 2), (100, 2, 7), (2048, 2, 32), (10**5, 2, 32)],
    )
    def test_a_chunk_is_about_as_big_as_the_chunks_per_worker_are_many(
        self, tasks_: int, workers: int, chunk: int
    ) -> None:
        assert chunk_size(tasks_, workers) == chunk

    @pytest.mark.parametrize("scheduler", ["threads", "processes"])
    def test_a_big_graph_in_chunks_computes_every_task_once(
        self, scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        with LocalDaskExecutor(scheduler, num_workers=2) as ex:
            futures = [ex.submit(tasks.inc, i) for i in range(3000)]
            last = ex.submit(tasks.touch, str(tmp_path / "last"), futures[-1])
            assert ex.wait(futures) == list(range(1, 3001))
            assert last.result(timeout=60) == 3000


class TestProcesses:
    def test_start_brings_the_worker_processes_up(self) -> None:
        def workers() -> int:
            children = psutil.Process().children()
            return sum(1 for child in children if "spawn_main" in " ".join(child.cmdline()))

        with LocalDaskExecutor("processes", num_workers=2):
            assert workers() == 2  # before any task: the first wait() finds them warm

    def test_small_workloads_are_not_chunked(self, tmp_path: pathlib.Path) -> None:
        with LocalDaskExecutor("processes", num_workers=2) as ex:
            met = ex.wait(
                [ex.submit(tasks.rendezvous, str(tmp_path), name, 1, 20) for name in "ab"]
            )
        assert met == [True, True]  # both ran at once, in two processes

    def test_a_task_error_keeps_the_tasks_own_frames(self) -> None:
        with LocalDaskExecutor("processes", num_workers=1) as ex:
            error = ex.submit(tasks.fail_with_own_error, "far away").exception(timeout=60)
        assert isinstance(error, tasks.TaskError) and str(error) == "far away"
        frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        assert frames[-1] == "fail_with_own_error"

    def test_cancel_terminates_running_task_processes(self, tmp_path: pathlib.Path) -> None:
        pid_file = tmp_path / "pid"
        with LocalDaskExecutor("processes", num_workers=1) as ex:
            future = ex.submit(tasks.write_pid_and_sleep, str(pid_file), 30)
            ex._run.backend.flush()  # type: ignore[union-attr]
            pid = wait_for_pid(pid_file)
            ex.cancel("stop now")
            with pytest.raises(CancelledError):
                future.result(timeout=10)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    def test_ctrl_c_in_wait_ends_the_task_process_within_3_s(
        self, tmp_path: pathlib.Path, ctrl_c_raises: None
    ) -> None:
        pid_file = tmp_path / "pid"
        executor = LocalDaskExecutor("processes", num_workers=1)
        cancelled: list[str] = []

        def on_cancel(sender: object, *, reason: str, **extra: object) -> None:
            cancelled.append(reason)

        with signals.run_cancelled.connected_to(on_cancel, sender=executor):
            with pytest.raises(KeyboardInterrupt):
                with executor:
                    future = executor.submit(tasks.write_pid_and_sleep, str(pid_file), 30)
                    ctrl_c_once_written(pid_file)
                    executor.wait(future)
            interrupted = time.monotonic()
        pid = int(pid_file.read_text())
        while psutil.pid_exists(pid) and time.monotonic() - interrupted < 3:
            time.sleep(0.02)
        assert not psutil.pid_exists(pid)
        assert future.cancelled() and cancelled == ["KeyboardInterrupt"]


class TestACrashedProcess:
    """A task that kills its worker process fails alone (SPEC §13): the pool is replaced,
    the tasks in flight run again, the crasher fails after 3 tries."""

    def test_one_crash_fails_one_task_and_the_executor_goes_on(self) -> None:
        before = {child.pid for child in _pool_processes()}
        with LocalDaskExecutor("processes", num_workers=2) as ex:
            futures = [ex.submit(tasks.exit_at, i, 150) for i in range(400)]
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(future.result(timeout=120))
                except ProcessDiedError as error:
                    outcomes.append(error)
            died = [o for o in outcomes if isinstance(o, ProcessDiedError)]
            assert len(died) == 1 and died[0].key == futures[150].key
            assert outcomes[:150] + outcomes[151:] == list(range(150)) + list(range(151, 400))
            assert died[0].times == 3 and died[0].exit_code == 1
            assert "killed its worker process 3 time(s)" in str(died[0])
            assert ex.submit(tasks.inc, 1).result(timeout=60) == 2  # and the run goes on
            # The broken pools' processes are gone: the new pool's two are left.
            assert len({child.pid for child in _pool_processes()} - before) == 2

    def test_in_a_chunked_map_the_error_comes_at_its_place(self) -> None:
        with LocalDaskExecutor("processes", num_workers=2) as ex:
            results = ex.map(tasks.exit_at, range(400), [150] * 400, chunksize=10)
            got = []
            with pytest.raises(ProcessDiedError, match=r"exit_at-\[150:160\]"):
                for value in results:
                    got.append(value)
            assert got == list(range(150))
            assert list(ex.map(tasks.inc, range(5))) == [1, 2, 3, 4, 5]

    def test_a_kill_by_signal_is_named(self) -> None:
        with LocalDaskExecutor("processes", num_workers=1) as ex:
            future = ex.submit(tasks.kill_self, 9)
            with pytest.raises(ProcessDiedError, match="signal 9") as raised:
                future.result(timeout=120)
        error = pickle.loads(pickle.dumps(raised.value))
        assert (error.key, error.times, error.exit_code) == (future.key, 3, -9)


def _pool_processes() -> list[psutil.Process]:
    """This process's children that are pool workers (not multiprocessing's tracker)."""
    return [
        child
        for child in psutil.Process().children()
        if "resource_tracker" not in " ".join(child.cmdline())
    ]


class TestThreads:
    def test_cancel_drops_queued_tasks(self, tmp_path: pathlib.Path) -> None:
        started, go, ended = (str(tmp_path / name) for name in ("started", "go", "ended"))
        touched = tmp_path / "touched"
        touched.mkdir()
        with LocalDaskExecutor("threads", num_workers=1) as ex:
            blocker = ex.submit(tasks.started_then_wait, started, go, 30.0, ended)
            queued = [ex.submit(tasks.touch, str(touched / str(i)), blocker) for i in range(5)]
            ex._run.backend.flush()  # type: ignore[union-attr]
            assert wait_until(lambda: pathlib.Path(started).exists(), 30)
            ex.cancel()
        pathlib.Path(go).write_text("")  # the running task ends; nothing queued starts
        assert wait_until(lambda: pathlib.Path(ended).exists(), 30)
        assert blocker.cancelled() and all(f.cancelled() for f in queued)
        assert list(touched.iterdir()) == []


class TestGraphsSideBySide:
    @pytest.mark.parametrize("scheduler", ["threads", "processes"])
    def test_a_new_task_does_not_wait_behind_a_graph_while_workers_are_free(
        self, scheduler: str, tmp_path: pathlib.Path
    ) -> None:
        go = tmp_path / "go"
        with LocalDaskExecutor(scheduler, num_workers=2) as ex:
            slow = ex.submit(tasks.wait_for_file, str(go), 30.0, 1)
            with pytest.raises(TimeoutError):
                slow.result(timeout=0.05)  # its graph is computing now
            dependent = ex.submit(tasks.inc, slow)  # a later graph that needs the first
            fast = ex.submit(tasks.inc, 1)
            assert fast.result(timeout=10) == 2  # a free worker took it
            assert not dependent.done()
            go.write_text("")
            assert ex.wait([slow, dependent], timeout=30) == [1, 2]


class TestNestedDask:
    @pytest.mark.parametrize("scheduler", ["threads", "synchronous", "processes"])
    def test_a_task_computes_a_collection_with_the_executors_scheduler(
        self, scheduler: str
    ) -> None:
        # In the task's own thread, as the worker it is: no second pool, and no wait on
        # a pool that its own task fills.
        before = {thread.name for thread in threading.enumerate()}
        with LocalDaskExecutor(scheduler, num_workers=2) as ex:
            total, outer, inner = ex.submit(tasks.nested_compute, 5).result(timeout=60)
            new = {thread.name for thread in threading.enumerate()} - before
        assert total == 10 and inner == outer
        assert not [name for name in new if name.startswith("ThreadPoolExecutor")]

    def test_nested_computes_of_every_worker_at_once_do_not_deadlock(self) -> None:
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            totals = ex.wait([ex.submit(tasks.nested_compute, 20) for _ in range(8)], timeout=60)
        assert [total for total, _, _ in totals] == [190] * 8
