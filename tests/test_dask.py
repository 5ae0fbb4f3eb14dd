"""DaskExecutor beyond the shared behaviour: where it runs, what it refuses, and how it
treats the cluster (SPEC §3.3, §4)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import pathlib
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import clusters
import distributed
import psutil
import pytest
import tasks
from conftest import (
    TEMPORARY_CLUSTER,
    DaskProcesses,
    Recorder,
    ctrl_c_once_written,
    wait_for_workers,
    wait_until,
)

from executors import CancelledError, DaskExecutor, signals
from executors._future import NOT_FETCHED

# One worker with one thread: a task that blocks its slot while waiting on subtasks
# would deadlock it, so the nesting tests prove the executor secedes.
ONE_SLOT = {**TEMPORARY_CLUSTER, "n_workers": 1}


def _knows(dask_scheduler: Any, key: str) -> bool:
    return key in dask_scheduler.tasks


def _on_scheduler(address: str, key: str) -> bool:
    """Whether the scheduler at ``address`` still knows ``key``."""
    with distributed.Client(address, set_as_default=False, timeout=30) as client:
        return bool(client.run_on_scheduler(_knows, key=key))


class TestWhereItRuns:
    pytestmark = pytest.mark.one_python  # Dask's behaviour, not the interpreter's

    def test_cluster_class_as_a_class(self) -> None:
        executor = DaskExecutor(
            cluster_class=clusters.RecordingCluster, cluster_kwargs=TEMPORARY_CLUSTER
        )
        with executor:
            assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
        made = clusters.MADE[-1]
        assert made["made_by"] == "class" and made["asynchronous"] is True
        assert made["n_workers"] == 2
        assert made["silence_logs"] == logging.CRITICAL  # debug=None

    def test_cluster_class_as_an_import_string(self) -> None:
        executor = DaskExecutor(
            cluster_class="clusters.RecordingCluster", cluster_kwargs=TEMPORARY_CLUSTER
        )
        before = len(clusters.MADE)
        with executor:
            assert executor.submit(tasks.inc, 2).result(timeout=30) == 3
        assert len(clusters.MADE) == before + 1 and clusters.MADE[-1]["made_by"] == "class"

    def test_cluster_class_as_a_factory(self) -> None:
        executor = DaskExecutor(cluster_class=clusters.make_cluster, cluster_kwargs=ONE_SLOT)
        with executor:
            assert executor.submit(tasks.inc, 3).result(timeout=30) == 4
        made = clusters.MADE[-1]
        assert made["made_by"] == "factory" and made["asynchronous"] is True
        assert "silence_logs" not in made  # only a LocalCluster class is known to take it

    def test_a_cluster_class_with_a_narrower_init_gets_only_what_it_takes(self) -> None:
        executor = DaskExecutor(
            cluster_class=clusters.NarrowCluster, cluster_kwargs={"n_workers": 1}
        )
        with executor:
            assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
        assert clusters.MADE[-1] == {"made_by": "narrow", "n_workers": 1, "asynchronous": True}

    @pytest.mark.parametrize(
        ("cluster_class", "adapted"),
        [
            (clusters.RecordingCluster, {"minimum": 0, "maximum": 1}),
            # dask-kubernetes' operator KubeCluster: scaling starts once it is awaited.
            (clusters.AsyncAdaptCluster, {"awaited": True, "minimum": 0, "maximum": 1}),
        ],
        ids=["adapt", "awaitable-adapt"],
    )
    def test_adapt_kwargs_scale_a_cluster_from_zero_workers(
        self, cluster_class: Any, adapted: dict[str, Any]
    ) -> None:
        executor = DaskExecutor(
            cluster_class=cluster_class,
            cluster_kwargs={**TEMPORARY_CLUSTER, "n_workers": 0},
            adapt_kwargs={"minimum": 0, "maximum": 1},
        )
        with executor:
            # With no worker, this only finishes because adaptive scaling added one.
            assert executor.submit(tasks.inc, 4).result(timeout=60) == 5
        assert clusters.ADAPTED[-1] == adapted

    def test_a_sync_cluster_object_is_used_and_left_running(self) -> None:
        with distributed.LocalCluster(**TEMPORARY_CLUSTER) as cluster:
            executor = DaskExecutor(cluster=cluster)
            with executor:
                assert executor.submit(tasks.inc, 5).result(timeout=30) == 6
            assert cluster.status == distributed.core.Status.running
            with distributed.Client(cluster, set_as_default=False) as client:
                assert client.submit(tasks.inc, 1).result(timeout=30) == 2

    def test_an_async_cluster_object_on_another_loop(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="user-loop", daemon=True)
        thread.start()

        async def make() -> Any:
            return await distributed.LocalCluster(asynchronous=True, **TEMPORARY_CLUSTER)

        async def close(cluster: Any) -> None:
            await cluster.close()

        cluster = asyncio.run_coroutine_threadsafe(make(), loop).result(60)
        try:
            with DaskExecutor(cluster=cluster) as executor:
                assert executor.submit(tasks.inc, 6).result(timeout=30) == 7
            assert cluster.status == distributed.core.Status.running
        finally:
            asyncio.run_coroutine_threadsafe(close(cluster), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    def test_the_address_of_a_running_scheduler(self, dask_processes: DaskProcesses) -> None:
        address, _ = dask_processes.scheduler()
        dask_processes.worker(address)
        wait_for_workers(address, 1)
        with DaskExecutor(address=address) as executor:
            assert executor.wait([executor.submit(tasks.inc, i) for i in range(3)]) == [1, 2, 3]

    @pytest.mark.parametrize("client_kwargs", [None, {"set_as_default": False}])
    def test_never_the_process_wide_default_client(
        self, client_kwargs: dict[str, Any] | None
    ) -> None:
        # set_as_default=False, the value the executor enforces, is accepted: Prefect's
        # docs and prefect-dask pass it.
        executor = DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER, client_kwargs=client_kwargs)
        assert executor == DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER)
        with executor:
            executor.submit(tasks.inc, 1).result(timeout=30)
            with pytest.raises(ValueError, match="No clients found"):
                distributed.default_client()

    def test_debug_turns_dasks_loggers_to_debug(self) -> None:
        logger = logging.getLogger("distributed")
        old = logger.level
        try:
            executor = DaskExecutor(
                cluster_class=clusters.RecordingCluster, cluster_kwargs=ONE_SLOT, debug=True
            )
            with executor:
                executor.submit(tasks.inc, 1).result(timeout=30)
                assert logger.level == logging.DEBUG
            assert "silence_logs" not in clusters.MADE[-1]
        finally:
            logger.setLevel(old)


class TestBadSettings:
    @pytest.mark.parametrize(
        ("settings", "named"),
        [
            ({"address": "tcp://127.0.0.1:8786", "cluster_kwargs": {}}, "cluster_kwargs"),
            ({"address": "tcp://127.0.0.1:8786", "cluster_class": "x.Y"}, "cluster_class"),
            ({"address": "tcp://127.0.0.1:8786", "adapt_kwargs": {}}, "adapt_kwargs"),
            ({"address": "tcp://127.0.0.1:8786", "cluster": object()}, "cluster"),
            ({"cluster_kwargs": {"asynchronous": False}}, "asynchronous"),
            ({"client_kwargs": {"asynchronous": True}}, "asynchronous"),
            ({"cluster_class": "no.such.module.Cluster"}, "no.such.module.Cluster"),
            ({"cluster_class": "distributed.NoSuchCluster"}, "distributed.NoSuchCluster"),
            ({"cluster_class": "distributed.__version__"}, "not callable"),
            ({"cluster_class": 42}, "cluster_class"),
            ({"address": "127.0.0.1:8786"}, "127.0.0.1:8786"),
            ({"address": "nosuch://127.0.0.1:8786"}, "nosuch://"),
            ({"address": "tcp://127.0.0.1"}, "tcp://127.0.0.1"),
            ({"address": 8786}, "8786"),
            ({"address": "tls://127.0.0.1:8786"}, "security"),
            ({"connect_timeout": 0}, "connect_timeout"),
            ({"connect_timeout": True}, "connect_timeout"),
            ({"connect_timeout": float("nan")}, "connect_timeout"),
            ({"connect_timeout": float("inf")}, "connect_timeout"),
            ({"connect_timeout": -1}, "connect_timeout"),
            ({"address": "tcp://127.0.0.1:8786", "connect_timeout": float("nan")}, "nan"),
            ({"address": "tcp://127.0.0.1:99999"}, "99999"),
            ({"address": "tcp://127.0.0.1:0"}, "port 0"),
            ({"client_kwargs": {"no_such_option": 1}}, "no_such_option"),
            ({"client_kwargs": {"set_as_default": True}}, "set_as_default"),
            ({"client_kwargs": {"timeout": 5}}, "connect_timeout"),
            ({"client_kwargs": {"loop": None}}, "loop"),
            ({"client_kwargs": {"address": "tcp://127.0.0.1:8786"}}, "address"),
        ],
    )
    def test_conflicting_or_invalid_settings(self, settings: dict[str, Any], named: str) -> None:
        with pytest.raises(ValueError) as raised:
            DaskExecutor(**settings)
        assert named in str(raised.value)

    def test_a_cluster_object_with_cluster_settings(self) -> None:
        class FakeCluster:
            scheduler_address = "tcp://127.0.0.1:8786"

        for extra in ({"cluster_class": "x.Y"}, {"cluster_kwargs": {}}, {"adapt_kwargs": {}}):
            with pytest.raises(ValueError, match=next(iter(extra))):
                DaskExecutor(cluster=FakeCluster(), **extra)
        with pytest.raises(ValueError, match="scheduler_address"):
            DaskExecutor(cluster=object())

    def test_a_bad_client_argument_is_refused_before_any_connection(self) -> None:
        started = time.monotonic()
        with pytest.raises(ValueError, match=r"distributed\.Client does not take"):
            DaskExecutor(address="tcp://127.0.0.1:9", client_kwargs={"retries": 3})
        assert time.monotonic() - started < 1.0  # no connect was tried, let alone retried

    def test_an_unreachable_address_fails_start_not_construction(self) -> None:
        executor = DaskExecutor(address="tcp://127.0.0.1:9", connect_timeout=1)
        with pytest.raises(OSError):
            executor.__enter__()
        with pytest.raises(RuntimeError, match="not running"):
            executor.submit(tasks.inc, 1)


class TestPickling:
    def test_a_cluster_object_travels_as_its_address(self) -> None:
        with distributed.LocalCluster(**TEMPORARY_CLUSTER) as cluster:
            executor = DaskExecutor(cluster=cluster)
            copy = pickle.loads(pickle.dumps(executor))
            assert copy._settings()["address"] == cluster.scheduler_address
            assert copy._settings()["cluster"] is None
            assert executor.duplicate()._settings()["cluster"] is cluster

    def test_nested_submission_does_not_deadlock_a_one_slot_worker(self) -> None:
        with DaskExecutor(cluster_kwargs=ONE_SLOT) as executor:
            outer = [executor.submit(tasks.fan_out, executor, 4) for _ in range(3)]
            assert executor.wait(outer, timeout=60) == [10, 10, 10]

    def test_a_with_block_inside_a_task_uses_the_workers_client(self) -> None:
        before = len(clusters.MADE)
        executor = DaskExecutor(cluster_class=clusters.RecordingCluster, cluster_kwargs=ONE_SLOT)
        with executor:
            assert executor.submit(tasks.fan_out_in_block, executor, 4).result(timeout=60) == 10
        assert len(clusters.MADE) == before + 1  # no cluster was made on the worker

    def test_an_async_task_submits_subtasks_and_awaits_them(self, scheduler_address: str) -> None:
        with DaskExecutor(address=scheduler_address) as executor:
            assert executor.submit(tasks.afan_out, executor, 4).result(timeout=60) == 10

    def test_nested_submission_from_worker_processes(self, scheduler_address: str) -> None:
        with DaskExecutor(address=scheduler_address) as executor:
            outer = [executor.submit(tasks.fan_out, executor, 3) for _ in range(3)]
            assert executor.wait(outer, timeout=60) == [6, 6, 6]


class TestTheCluster:
    pytestmark = pytest.mark.one_python  # Dask's behaviour, not the interpreter's

    def test_the_tagged_task_runs_on_the_worker_with_the_resource(
        self, dask_processes: DaskProcesses
    ) -> None:
        address, _ = dask_processes.scheduler()
        dask_processes.worker(address, "--resources", "GPU=1")
        dask_processes.worker(address)
        wait_for_workers(address, 2)
        with distributed.Client(address, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        gpu = {a for a, info in workers.items() if info.get("resources", {}).get("GPU")}
        assert len(gpu) == 1
        with DaskExecutor(address=address) as executor:
            tagged = [
                executor.submit(
                    tasks.worker_address, extra_context={"tags": ["dask-resource:GPU=1"]}
                )
                for _ in range(6)
            ]
            assert set(executor.wait(tagged, timeout=60)) == gpu

    def test_retries_reach_dask(self, tmp_path: pathlib.Path) -> None:
        with DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER) as executor:
            once = executor.submit(tasks.fail_once, str(tmp_path / "a"))
            retried = executor.submit(
                tasks.fail_once, str(tmp_path / "b"), extra_context={"retries": 1}
            )
            with pytest.raises(RuntimeError, match="first attempt"):
                once.result(timeout=30)
            assert retried.result(timeout=30) == "second attempt"

    def test_priority_reaches_the_scheduler(self, scheduler_address: str) -> None:
        def user_priority(dask_scheduler: Any, key: str) -> int:
            return -int(dask_scheduler.tasks[key].priority[0])

        with (
            DaskExecutor(address=scheduler_address) as executor,
            distributed.Client(scheduler_address, set_as_default=False) as client,
        ):
            future = executor.submit(tasks.sleep_then, 2, extra_context={"priority": 7})
            assert wait_until(lambda: _on_scheduler(scheduler_address, future.key))
            assert client.run_on_scheduler(user_priority, key=future.key) == 7
            future.result(timeout=30)

    def test_a_dependency_stays_on_the_workers(self) -> None:
        with DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER) as executor:
            first = executor.submit(tasks.inc, 1)
            second = executor.submit(tasks.inc, first)
            assert second.result(timeout=30) == 3
            assert first.done() and first._value is NOT_FETCHED  # never brought here
            assert first.result(timeout=30) == 2

    def test_a_delivered_result_is_released_on_the_scheduler(self, scheduler_address: str) -> None:
        with DaskExecutor(address=scheduler_address) as executor:
            # Whether result() finds the task finished or still pending: both paths.
            done = executor.submit(tasks.inc, 1)
            assert done.exception(timeout=30) is None  # finished, result not fetched
            assert _on_scheduler(scheduler_address, done.key)  # kept for the caller
            assert done.result() == 2
            waited = executor.submit(tasks.inc, 2)
            assert waited.result(timeout=30) == 3
            for key in (done.key, waited.key):
                assert wait_until(lambda key=key: not _on_scheduler(scheduler_address, key))
            assert (done.result(), waited.result()) == (2, 3)  # the values stay here

    def test_a_key_stays_taken_until_its_result_is_here(self, scheduler_address: str) -> None:
        key = f"taken-{uuid.uuid4().hex}"
        with DaskExecutor(address=scheduler_address) as executor:
            first = executor.submit(tasks.inc, 1, extra_context={"key": key})
            assert first.exception(timeout=30) is None  # finished; the result is still there
            with pytest.raises(ValueError, match="already used"):
                executor.submit(tasks.inc, 2, extra_context={"key": key})
            assert first.result() == 2
            again = executor.submit(tasks.inc, 2, extra_context={"key": key})
            assert again.result(timeout=30) == 3

    def test_a_dropped_future_is_released_on_the_scheduler(self, scheduler_address: str) -> None:
        with DaskExecutor(address=scheduler_address) as executor:
            future = executor.submit(tasks.inc, 1)
            assert future.exception(timeout=30) is None  # done; the result is not fetched
            key = future.key
            assert _on_scheduler(scheduler_address, key)  # finished, result not fetched
            del future
            gc.collect()
            assert wait_until(lambda: not _on_scheduler(scheduler_address, key))

    def test_a_result_that_does_not_pickle_never_breaks_the_stop(self) -> None:
        with DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER) as executor:
            bad = executor.submit(tasks.make_lock)
            good = executor.submit(tasks.inc, 1)
            assert bad.exception(timeout=30) is None  # finished; its result not fetched
            assert good.exception(timeout=30) is None
        # The stop brought the leftovers here: the one that cannot come is an error.
        assert good.result(timeout=0) == 2
        with pytest.raises(TypeError, match=bad.key):
            bad.result(timeout=0)

    def test_the_performance_report(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "report.html"
        executor = DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER, performance_report_path=path)
        with executor:
            executor.wait([executor.submit(tasks.inc, i) for i in range(5)], timeout=30)
        text = path.read_text()
        assert "Dask Performance Report" in text
        assert executor.performance_report == text
        with DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER) as plain:
            plain.submit(tasks.inc, 1).result(timeout=30)
        assert plain.performance_report is None


def _graph_updates(dask_scheduler: Any, keys: list[str]) -> int:
    """How many ``update-graph`` messages brought ``keys`` to the scheduler: each is a
    stimulus of its own in the tasks' stories (run on the scheduler)."""
    stimuli = {dask_scheduler.story(key)[0][4] for key in keys}  # released -> waiting
    assert all(str(stimulus).startswith("update-graph") for stimulus in stimuli)
    return len(stimuli)


def _priorities(dask_scheduler: Any, keys: list[str]) -> set[int]:
    return {-int(dask_scheduler.tasks[key].priority[0]) for key in keys}


def _task_prefixes(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.task_prefixes)


def _cancel_requests(client: distributed.Client, since: float) -> list[int]:
    """How many keys each cancel request since ``since`` named (the scheduler's log)."""
    return [
        event["count"]
        for events in client.get_events().values()
        for stamp, event in events
        if stamp >= since and isinstance(event, dict) and event.get("action") == "cancel"
    ]


class TestHowItSubmits:
    pytestmark = pytest.mark.one_python  # Dask's behaviour, not the interpreter's

    @pytest.fixture
    def sides(self, scheduler_address: str) -> Iterator[tuple[DaskExecutor, distributed.Client]]:
        """An executor on the scheduler, and a client of its own to look at the scheduler."""
        with (
            DaskExecutor(address=scheduler_address) as executor,
            distributed.Client(scheduler_address, set_as_default=False) as client,
        ):
            yield executor, client

    def test_a_burst_of_submits_reaches_the_scheduler_in_few_graph_updates(
        self, sides: tuple[DaskExecutor, distributed.Client]
    ) -> None:
        executor, client = sides
        futures = [executor.submit(tasks.sleep_then, 0.1, i) for i in range(200)]
        keys = [f.key for f in futures]
        assert wait_until(lambda: client.run_on_scheduler(_knows, key=keys[-1]))
        # One per task without batching; the loop sends what was queued at once.
        assert client.run_on_scheduler(_graph_updates, keys=keys) <= 20
        executor.cancel()

    def test_the_items_of_a_map_are_one_task_group_on_the_scheduler(
        self, sides: tuple[DaskExecutor, distributed.Client]
    ) -> None:
        # The scheduler keeps a record per name it reads off a key, for good, and sums
        # over a worker's names at every task it hands out: a name per item made maps
        # of 10,000 items stall for minutes and cost the cluster its workers.
        executor, client = sides
        before = set(client.run_on_scheduler(_task_prefixes))
        assert list(executor.map(tasks.inc, range(300))) == list(range(1, 301))
        named = list(executor.map(tasks.inc, range(3), extra_context={"task_name": "load"}))
        assert named == [1, 2, 3]
        new = set(client.run_on_scheduler(_task_prefixes)) - before
        assert new <= {"inc", "load[0]", "load[1]", "load[2]"}  # SPEC's names, when given

    def test_closing_a_map_cancels_what_it_did_not_yield_in_one_request(
        self, sides: tuple[DaskExecutor, distributed.Client]
    ) -> None:
        # One request (up to a hundred keys), not one a Future: a map of 100,000 items
        # left early would otherwise take a trip to the loop for each.
        executor, client = sides
        since = time.time()
        results = executor.map(tasks.sleep_then, [0.2] * 40, range(40), chunksize=1)
        assert next(results) == 0
        results.close()
        assert wait_until(lambda: sum(_cancel_requests(client, since)) >= 30, 30)
        assert len(_cancel_requests(client, since)) == 1

    def test_a_cancel_asks_the_scheduler_in_slices_of_a_hundred_keys(
        self, sides: tuple[DaskExecutor, distributed.Client]
    ) -> None:
        # distributed handles a cancel request in time quadratic in its keys: one for
        # 20,000 keys held the scheduler's loop for 16 s.
        executor, client = sides
        since = time.time()
        futures = [executor.submit(tasks.sleep_then, 0.5, i) for i in range(250)]
        assert wait_until(lambda: client.run_on_scheduler(_knows, key=futures[-1].key))
        executor.cancel()
        cancelled = sum(future.cancelled() for future in futures)
        assert cancelled >= 240
        assert wait_until(lambda: sum(_cancel_requests(client, since)) == cancelled, 30)
        assert max(_cancel_requests(client, since)) == 100

    def test_a_batch_splits_where_options_differ_or_a_dependency_is_in_it(
        self, sides: tuple[DaskExecutor, distributed.Client]
    ) -> None:
        executor, client = sides
        plain = [executor.submit(tasks.sleep_then, 0.2, i) for i in range(5)]
        urgent = [
            executor.submit(tasks.sleep_then, 0.2, i, extra_context={"priority": 5})
            for i in range(5)
        ]
        chained = [executor.submit(tasks.add, f, 10) for f in plain]
        keys = [f.key for f in plain + urgent]
        assert wait_until(lambda: client.run_on_scheduler(_knows, key=urgent[-1].key))
        assert client.run_on_scheduler(_priorities, keys=keys[:5]) == {0}
        assert client.run_on_scheduler(_priorities, keys=keys[5:]) == {5}
        results = executor.wait([plain, urgent, chained], timeout=60)
        assert results == [list(range(5)), list(range(5)), list(range(10, 15))]


class TestThreadsAndInterrupts:
    def test_a_blocking_call_from_the_loop_thread_raises(self) -> None:
        with DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER) as executor:
            future = executor.submit(tasks.sleep_then, 0.5, 1)
            outcome: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

            def block_on_the_loop() -> None:
                try:
                    future.result(timeout=5)
                except BaseException as exc:
                    outcome.set_result(exc)
                else:
                    outcome.set_result(None)

            assert executor._run is not None
            executor._run.backend.loop.call_soon(block_on_the_loop)
            error = outcome.result(30)
            assert isinstance(error, RuntimeError) and "deadlock" in str(error)
            assert future.result(timeout=30) == 1

    def test_cancel_from_eight_threads_at_once(self) -> None:
        executor = DaskExecutor(cluster_kwargs=ONE_SLOT)
        cancelled = Recorder("run_cancelled")
        with signals.run_cancelled.connected_to(cancelled, sender=executor), executor:
            futures = [executor.submit(tasks.sleep_then, 0.2, i) for i in range(20)]
            barrier = threading.Barrier(8)

            def cancel(n: int) -> bool:
                barrier.wait(10)
                return executor.cancel(f"thread {n}")

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(cancel, range(8)))
            assert outcomes.count(True) == 1
            states = []
            for future in futures:
                try:
                    future.result(timeout=30)
                    states.append("finished")
                except CancelledError:
                    states.append("cancelled")
            assert "cancelled" in states
        assert len(cancelled.calls) == 1

    def test_ctrl_c_in_wait_on_a_process_cluster(
        self, tmp_path: pathlib.Path, ctrl_c_raises: None
    ) -> None:
        pid_file = tmp_path / "pid"
        executor = DaskExecutor(
            cluster_kwargs={
                "n_workers": 1,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            }
        )
        cancelled = Recorder("run_cancelled")
        with signals.run_cancelled.connected_to(cancelled, sender=executor):
            with pytest.raises(KeyboardInterrupt):
                with executor:
                    future = executor.submit(tasks.write_pid_and_sleep, str(pid_file), 60)
                    interrupted = ctrl_c_once_written(pid_file)
                    executor.wait(future)
            returned = time.monotonic()
        assert interrupted and returned - interrupted[0] < 5
        assert future.cancelled()
        assert [c["reason"] for c in cancelled.calls] == ["KeyboardInterrupt"]
        pid = int(pid_file.read_text())
        assert wait_until(lambda: not psutil.pid_exists(pid), 5)
