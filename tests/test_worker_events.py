"""worker_added / worker_removed on real clusters (SPEC §5): scaling, killed workers,
adaptive clusters, several executors on one scheduler."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import distributed
import pytest
import tasks
from conftest import TEMPORARY_CLUSTER, DaskProcesses, wait_until

from executors import DaskExecutor, WorkerInfo, signals

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's


class Events:
    """Every lifecycle and worker signal of one executor, in the order delivered."""

    def __init__(self, executor: DaskExecutor) -> None:
        self.executor = executor
        self.log: list[tuple[str, Any]] = []

    def _started(self, sender: object, **kwargs: Any) -> None:
        self.log.append(("started", None))

    def _stopped(self, sender: object, **kwargs: Any) -> None:
        self.log.append(("stopped", None))

    def _added(self, sender: object, *, worker: WorkerInfo, **kwargs: Any) -> None:
        self.log.append(("added", worker))

    def _removed(self, sender: object, *, worker: WorkerInfo, expected: bool, **kw: Any) -> None:
        self.log.append(("removed", (worker, expected)))

    @contextlib.contextmanager
    def recording(self) -> Iterator[Events]:
        pairs = [
            (signals.executor_started, self._started),
            (signals.executor_stopped, self._stopped),
            (signals.worker_added, self._added),
            (signals.worker_removed, self._removed),
        ]
        with contextlib.ExitStack() as stack:
            for signal_, receiver in pairs:
                stack.enter_context(signal_.connected_to(receiver, sender=self.executor))
            yield self

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]

    @property
    def added(self) -> list[WorkerInfo]:
        return [payload for kind, payload in self.log if kind == "added"]

    @property
    def removed(self) -> list[tuple[WorkerInfo, bool]]:
        return [payload for kind, payload in self.log if kind == "removed"]


def _scheduler_workers(address: str) -> set[str]:
    with distributed.Client(address, set_as_default=False, timeout=30) as client:
        return set(client.scheduler_info(n_workers=-1)["workers"])


def _removal_verdicts(address: str) -> dict[str, bool]:
    """The ``expected`` flag of every remove-worker event in the scheduler's log."""
    with distributed.Client(address, set_as_default=False, timeout=30) as client:
        return {
            msg["worker"]: msg["expected"]
            for _, msg in client.get_events("all")
            if msg.get("action") == "remove-worker"
        }


class TestATemporaryCluster:
    def test_its_workers_are_announced_after_started_and_removed_before_stopped(self) -> None:
        executor = DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER)
        with Events(executor).recording() as events:
            with executor:
                assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
        assert events.kinds == ["started", "added", "added", "removed", "removed", "stopped"]
        assert sorted(info.name for info in events.added) == ["0", "1"]
        for info in events.added:
            assert info.address.startswith("tcp://127.0.0.1:")
            assert info.nthreads == 1
            assert info.resources == {"GPU": 1}
            assert isinstance(info.memory_limit, int) and info.memory_limit > 0
        assert {info for info, _ in events.removed} == set(events.added)
        assert all(expected for _, expected in events.removed)  # the executor closed it

    def test_watch_worker_status_false_sends_no_worker_events(self) -> None:
        executor = DaskExecutor(cluster_kwargs=TEMPORARY_CLUSTER, watch_worker_status=False)
        with Events(executor).recording() as events:
            with executor:
                assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
        assert events.kinds == ["started", "stopped"]

    def test_an_adaptive_cluster_scales_up_for_a_burst_and_back_down(self) -> None:
        executor = DaskExecutor(
            cluster_kwargs={**TEMPORARY_CLUSTER, "n_workers": 0},
            adapt_kwargs={"minimum": 0, "maximum": 2, "interval": "100ms", "wait_count": 3},
        )
        with Events(executor).recording() as events:
            with executor:
                assert events.added == []  # it starts with no worker
                futures = [executor.submit(tasks.sleep_then, 0.2, i) for i in range(12)]
                assert executor.wait(futures, timeout=60) == list(range(12))
                assert 1 <= len(events.added) <= 2
                # After the burst, adaptive scaling (which needs the cluster manager's own
                # view of the workers, untouched by our watching) retires them all.
                assert wait_until(lambda: len(events.removed) == len(events.added), 30)
                assert all(expected for _, expected in events.removed)
        assert events.kinds[0] == "started" and events.kinds[-1] == "stopped"


class TestAClusterObject:
    def test_scaling_up_and_down_is_reported_in_order(self) -> None:
        with distributed.LocalCluster(**{**TEMPORARY_CLUSTER, "n_workers": 1}) as cluster:
            executor = DaskExecutor(cluster=cluster)
            with Events(executor).recording() as events:
                with executor:
                    assert wait_until(lambda: len(events.added) == 1)
                    cluster.scale(3)
                    assert wait_until(lambda: len(events.added) == 3, 30)
                    cluster.scale(1)
                    assert wait_until(lambda: len(events.removed) == 2, 30)
                    left = _scheduler_workers(cluster.scheduler_address)
            assert events.kinds == [
                "started",
                "added",
                "added",
                "added",
                "removed",
                "removed",
                "stopped",  # a cluster the executor did not make keeps its worker
            ]
            assert len({info.address for info in events.added}) == 3
            gone = {info.address for info, _ in events.removed}
            assert gone | left == {info.address for info in events.added} and not gone & left
            # `expected` is the scheduler's own verdict. (LocalCluster.scale closes workers
            # without retiring them first, so distributed calls these unexpected.)
            verdicts = _removal_verdicts(cluster.scheduler_address)
            assert all(verdicts[info.address] is expected for info, expected in events.removed)

    def test_a_worker_joining_while_executors_start_is_announced_once(self) -> None:
        with distributed.LocalCluster(**{**TEMPORARY_CLUSTER, "n_workers": 0}) as cluster:
            executors = [DaskExecutor(cluster=cluster) for _ in range(3)]
            recorders = [Events(executor) for executor in executors]

            def grow() -> None:
                for n in range(1, 7):
                    cluster.scale(n)

            with contextlib.ExitStack() as stack:
                for recorder in recorders:
                    stack.enter_context(recorder.recording())
                grower = threading.Thread(target=grow)
                grower.start()
                try:
                    for executor in executors:  # each starts while workers are joining
                        stack.enter_context(executor)
                finally:
                    grower.join(60)
                assert wait_until(
                    lambda: len(_scheduler_workers(cluster.scheduler_address)) == 6, 30
                )
                everyone = _scheduler_workers(cluster.scheduler_address)
                for recorder in recorders:
                    assert wait_until(
                        lambda r=recorder: {i.address for i in r.added} == everyone,
                        15,  # type: ignore[misc]
                    )
            for recorder in recorders:
                counts = collections.Counter(info.address for info in recorder.added)
                assert set(counts.values()) == {1}, counts


class TestWorkerProcesses:
    def test_joining_workers_and_a_killed_one(self, dask_processes: DaskProcesses) -> None:
        address, _ = dask_processes.scheduler()
        executor = DaskExecutor(address=address)
        with Events(executor).recording() as events:
            with executor:
                dask_processes.worker(
                    address,
                    "--name",
                    "alpha",
                    "--nthreads",
                    "2",
                    "--memory-limit",
                    "1GB",
                    "--resources",
                    "GPU=2",
                )
                assert wait_until(lambda: len(events.added) == 1, 60)
                beta = dask_processes.worker(address, "--name", "beta", "--no-nanny")
                assert wait_until(lambda: len(events.added) == 2, 60)
                os.kill(beta.pid, signal.SIGKILL)
                assert wait_until(lambda: len(events.removed) == 1, 30)
        alpha, beta_info = events.added
        assert (alpha.name, alpha.nthreads, alpha.memory_limit) == ("alpha", 2, 1_000_000_000)
        assert alpha.resources == {"GPU": 2}
        assert beta_info.name == "beta" and beta_info.resources == {}
        assert events.removed == [(beta_info, False)]  # a crash
        assert events.kinds == ["started", "added", "added", "removed", "stopped"]

    def test_two_executors_on_one_scheduler_both_receive_every_event(
        self, dask_processes: DaskProcesses
    ) -> None:
        address, _ = dask_processes.scheduler()
        first, second = DaskExecutor(address=address), DaskExecutor(address=address)
        with Events(first).recording() as one, Events(second).recording() as two:
            with first, second:
                worker = dask_processes.worker(address, "--name", "shared", "--no-nanny")
                assert wait_until(lambda: len(one.added) == len(two.added) == 1, 60)
                os.kill(worker.pid, signal.SIGKILL)
                assert wait_until(lambda: len(one.removed) == len(two.removed) == 1, 30)
        assert one.added == two.added and one.added[0].name == "shared"
        assert one.removed == two.removed == [(one.added[0], False)]


@pytest.mark.parametrize("watch", [None, True])
def test_watching_is_on_unless_turned_off(watch: bool | None) -> None:
    executor = DaskExecutor(
        cluster_kwargs={**TEMPORARY_CLUSTER, "n_workers": 1}, watch_worker_status=watch
    )
    with Events(executor).recording() as events:
        with executor:
            pass
    assert events.kinds == ["started", "added", "removed", "stopped"]
