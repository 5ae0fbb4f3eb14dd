"""Connections, retries and reconnects (SPEC §7), with real ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1 that the tests start, kill and restart."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import os
import pathlib
import signal
import threading
import time
from typing import Any

import distributed
import pytest
import tasks
from conftest import (
    DaskProcesses,
    Recorder,
    free_port,
    tls_files,
    wait_for_workers,
    wait_until,
)
from distributed.security import Security

from executors import ConnectError, DaskExecutor, signals
from executors._dask._retry import within

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's


class Signals:
    """The reconnect signals of one executor, and task_finished per key."""

    def __init__(self, executor: DaskExecutor) -> None:
        self.lost = Recorder("connection_lost")
        self.retrying = Recorder("reconnecting")
        self.back = Recorder("reconnected")
        self.finished = Recorder("task_finished")
        self._pairs = [
            (signals.connection_lost, self.lost),
            (signals.reconnecting, self.retrying),
            (signals.reconnected, self.back),
            (signals.task_finished, self.finished),
        ]
        for signal_, receiver in self._pairs:
            signal_.connect(receiver, sender=executor)

    def disconnect(self) -> None:
        for signal_, receiver in self._pairs:
            signal_.disconnect(receiver)

    def __enter__(self) -> Signals:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()


def _gathering(dask_scheduler: Any) -> bool:
    """Whether the scheduler is handling a gather (run on the scheduler)."""
    return "gather" in dask_scheduler._comms.values()


def _cut_gathers(dask_scheduler: Any) -> int:
    """Cut the connections of the gathers in progress (run on the scheduler)."""
    cut = [comm for comm, op in list(dask_scheduler._comms.items()) if op == "gather"]
    for comm in cut:
        comm.abort()
    return len(cut)


def _kill(processes: DaskProcesses, which: list[Any]) -> None:
    for process in which:
        processes.end(process, signal.SIGKILL)


def _start_fails(executor: DaskExecutor) -> tuple[ConnectError, float, Signals]:
    """Start ``executor``, which must fail: the error, the seconds it took, the signals."""
    started = time.monotonic()
    with Signals(executor) as recorded, pytest.raises(ConnectError) as raised, executor:
        pass
    return raised.value, time.monotonic() - started, recorded


def _cluster(processes: DaskProcesses, port: int, workers: int = 2) -> list[Any]:
    """A scheduler on ``port`` and ``workers`` one-thread workers; all of their processes."""
    address, scheduler = processes.scheduler(port)
    started = [scheduler] + [processes.worker(address, "--no-nanny") for _ in range(workers)]
    wait_for_workers(address, workers)
    return started


def _served(
    processes: DaskProcesses, workers: int = 2, **settings: Any
) -> tuple[int, list[Any], DaskExecutor]:
    """A scheduler with ``workers`` workers on a free port, and an executor for it: the
    port (to restart the scheduler on), the processes (to kill), the executor."""
    port = free_port()
    started = _cluster(processes, port, workers)
    return port, started, DaskExecutor(address=f"tcp://127.0.0.1:{port}", **settings)


class TestConnecting:
    def test_start_waits_for_a_scheduler_that_comes_up_later(
        self, dask_processes: DaskProcesses
    ) -> None:
        port = free_port()
        executor = DaskExecutor(address=f"tcp://127.0.0.1:{port}", connect_timeout=30)
        later = threading.Timer(2.0, lambda: _cluster(dask_processes, port, workers=1))
        started = time.monotonic()
        later.start()
        try:
            with Signals(executor) as recorded, executor:
                assert time.monotonic() - started >= 2.0
                assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
        finally:
            later.join()
        attempts = [call["attempt"] for call in recorded.retrying.calls]
        assert attempts and attempts == list(range(1, len(attempts) + 1))
        assert all(call["address"] == f"tcp://127.0.0.1:{port}" for call in recorded.retrying.calls)

    def test_nothing_listening_is_a_connect_error_once_the_budget_is_spent(self) -> None:
        address = f"tcp://127.0.0.1:{free_port()}"
        error, seconds, recorded = _start_fails(DaskExecutor(address=address, connect_timeout=3))
        assert 3.0 <= seconds < 10.0
        assert error.address == address and error.attempts >= 2
        assert address in str(error) and f"{error.attempts} attempt(s)" in str(error)
        assert isinstance(error.__cause__, OSError)
        attempts = [call["attempt"] for call in recorded.retrying.calls]
        assert attempts == list(range(1, error.attempts))  # a wait after each but the last
        delays = [call["delay"] for call in recorded.retrying.calls]
        assert all(0 < delay <= 5.0 for delay in delays)


class TestAnAttemptsBound:
    """What bounds one connection attempt: ``within``, which must end an attempt at its
    timeout even when the attempt swallows a cancel, as distributed's connect does on
    Python 3.10 when a cancel meets a refused connection (CPython gh-86296). A CI run
    on 3.10 saw an attempt meant to end at 1 s run distributed's own 3 s instead."""

    def test_an_attempt_that_swallows_a_cancel_still_ends_at_its_timeout(self) -> None:
        swallowed = []

        async def stubborn() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                swallowed.append(True)
            await asyncio.sleep(30)

        async def attempt() -> float:
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await within(stubborn(), 0.2)
            return time.monotonic() - started

        assert asyncio.run(attempt()) < 10.0  # asyncio.wait_for: 30 s, and no error
        assert swallowed == [True]

    def test_an_attempt_s_result_and_error_are_its_own(self) -> None:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        async def refused() -> None:
            await asyncio.sleep(0)
            raise ConnectionRefusedError("refused")

        async def both() -> int:
            with pytest.raises(ConnectionRefusedError, match="refused"):
                await within(refused(), 5.0)
            return await within(answer(), 5.0)

        assert asyncio.run(both()) == 42

    def test_a_cancelled_caller_cancels_its_attempt(self) -> None:
        async def caller() -> asyncio.Future[None]:
            attempt = asyncio.ensure_future(asyncio.sleep(30))
            waiting = asyncio.ensure_future(within(attempt, 30.0))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            return attempt

        assert asyncio.run(caller()).cancelled()


class TestLosingTheScheduler:
    @pytest.mark.parametrize("down_for", [0.0, 6.0], ids=["back-at-once", "back-after-6s"])
    def test_a_killed_and_restarted_scheduler_loses_no_result(
        self, dask_processes: DaskProcesses, down_for: float
    ) -> None:
        # back-at-once: distributed's client reconnects by itself (within its 5 s);
        # back-after-6s: it gave up, and the executor's own retries reconnect.
        port, processes, executor = _served(dask_processes, connect_timeout=40)
        with Signals(executor) as recorded, executor:
            futures = [executor.submit(tasks.sleep_then, 1.0, i) for i in range(20)]
            assert wait_until(lambda: any(f.done() for f in futures), 30)
            _kill(dask_processes, processes)
            time.sleep(down_for)
            _cluster(dask_processes, port)
            assert executor.wait(futures, timeout=90) == list(range(20))
        assert len(recorded.lost.calls) == 1
        assert [call["address"] for call in recorded.back.calls] == [f"tcp://127.0.0.1:{port}"]
        assert recorded.back.calls[0]["resubmitted"] > 0
        per_key = collections.Counter(call["key"] for call in recorded.finished.calls)
        assert sorted(per_key) == sorted(f.key for f in futures)
        assert set(per_key.values()) == {1}  # each result delivered once
        if down_for:
            assert recorded.retrying.calls  # the executor's own attempts

    def test_a_lazy_chunked_map_loses_no_item_to_a_restarted_scheduler(
        self, dask_processes: DaskProcesses
    ) -> None:
        port, processes, executor = _served(dask_processes, connect_timeout=40)
        with Signals(executor) as recorded, executor:
            pulled = itertools.count()
            results = executor.map(
                tasks.sleep_then, itertools.repeat(0.05), pulled, chunksize=5, buffersize=4
            )
            seen = [next(results) for _ in range(10)]
            _kill(dask_processes, processes)
            _cluster(dask_processes, port)
            seen += [next(results) for _ in range(30)]
            results.close()
        assert seen == list(range(40))
        assert len(recorded.back.calls) == 1 and recorded.back.calls[0]["resubmitted"] > 0
        assert next(pulled) <= 40 + 4 * 5  # still read lazily: what was yielded and a buffer

    def test_a_gather_cut_by_a_killed_scheduler_reconnects_and_delivers(
        self, dask_processes: DaskProcesses
    ) -> None:
        port, processes, executor = _served(dask_processes, workers=1, connect_timeout=40)
        with Signals(executor) as recorded, executor:
            future = executor.submit(tasks.inc, 1)
            assert future.exception(timeout=30) is None  # finished; its result is there
            os.kill(processes[0].pid, signal.SIGSTOP)  # the gather waits on it, in flight
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fetch") as pool:
                result = pool.submit(future.result, 90)
                time.sleep(0.5)
                _kill(dask_processes, processes)  # cuts the gather: a CommClosedError
                _cluster(dask_processes, port, workers=1)
                assert result.result(timeout=120) == 2
        assert len(recorded.lost.calls) == 1 and len(recorded.back.calls) == 1

    def test_a_comm_error_of_a_gather_is_never_the_callers(
        self, dask_processes: DaskProcesses
    ) -> None:
        # The scheduler stays: only the gather's own connection is cut, while the
        # scheduler waits for the stopped worker that holds the result.
        _, (_, worker), executor = _served(dask_processes, workers=1, connect_timeout=40)
        address = executor._settings()["address"]
        with (
            executor,
            distributed.Client(address, set_as_default=False, timeout=30) as other,
        ):
            future = executor.submit(tasks.inc, 1)
            assert future.exception(timeout=30) is None
            os.kill(worker.pid, signal.SIGSTOP)
            try:
                with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fetch") as pool:
                    result = pool.submit(future.result, 90)
                    assert wait_until(lambda: other.run_on_scheduler(_gathering), 30)
                    assert other.run_on_scheduler(_cut_gathers) >= 1
                    os.kill(worker.pid, signal.SIGCONT)
                    assert result.result(timeout=60) == 2
            finally:
                os.kill(worker.pid, signal.SIGCONT)

    def test_a_scheduler_gone_for_good_fails_the_pending_futures(
        self, dask_processes: DaskProcesses
    ) -> None:
        _, processes, executor = _served(dask_processes, workers=1, connect_timeout=5)
        with Signals(executor) as recorded, pytest.raises(ConnectError), executor:
            finished = executor.submit(tasks.inc, 1)
            assert wait_until(finished.done, 30)  # its result is still on the cluster
            futures = [executor.submit(tasks.sleep_then, 1.0, i) for i in range(4)]
            _kill(dask_processes, processes)
            killed = time.monotonic()
            try:
                executor.wait(futures, timeout=60)
            finally:
                assert time.monotonic() - killed < 5 + 15
        for future in futures:
            assert isinstance(future.exception(timeout=0), ConnectError)
        error = futures[0].exception(timeout=0)
        assert isinstance(error, ConnectError) and error.seconds is not None
        # What was tried, and for how long: distributed's own reconnect spent most of it.
        assert 4.0 <= error.seconds < 15.0
        assert f"within {error.seconds:.1f} s" in str(error)
        assert "distributed's client tried to reconnect on its own" in str(error)
        with pytest.raises(ConnectError):  # lost with the scheduler
            finished.result(timeout=0)
        assert len(recorded.lost.calls) == 1 and recorded.back.calls == []

    def test_a_stop_during_a_reconnect_returns_promptly(
        self, dask_processes: DaskProcesses
    ) -> None:
        _, processes, executor = _served(dask_processes, workers=1, connect_timeout=60)
        with Signals(executor) as recorded, executor:
            future = executor.submit(tasks.sleep_then, 30.0)
            _kill(dask_processes, processes)
            assert wait_until(lambda: recorded.retrying.calls, 30)  # our own retries
            stopping = time.monotonic()
            executor.cancel("giving up")
        assert time.monotonic() - stopping < 5.0
        assert future.cancelled()


class TestWorkers:
    def test_a_killed_worker_loses_no_result(self, dask_processes: DaskProcesses) -> None:
        _, (_, _, second), executor = _served(dask_processes)
        removed = Recorder("worker_removed")
        with signals.worker_removed.connected_to(removed, sender=executor):
            with executor:
                futures = [executor.submit(tasks.sleep_then, 0.5, i) for i in range(10)]
                assert wait_until(lambda: any(f.done() for f in futures), 30)
                dask_processes.end(second, signal.SIGKILL)
                assert executor.wait(futures, timeout=60) == list(range(10))
        assert [call["expected"] for call in removed.calls] == [False]


class TestTLS:
    @pytest.fixture
    def tls_scheduler(
        self, dask_processes: DaskProcesses, tmp_path: pathlib.Path
    ) -> tuple[str, Any]:
        security = Security.temporary()  # needs cryptography, a test dependency
        options = tls_files(security, tmp_path)
        address, _ = dask_processes.scheduler(None, *options, protocol="tls")
        dask_processes.worker(address, *options)
        return address, security

    def test_the_right_security_connects_and_sees_workers(
        self, tls_scheduler: tuple[str, Any]
    ) -> None:
        address, security = tls_scheduler
        executor = DaskExecutor(address=address, client_kwargs={"security": security})
        added = Recorder("worker_added")
        with signals.worker_added.connected_to(added, sender=executor):
            with executor:
                assert executor.submit(tasks.inc, 1).result(timeout=30) == 2
                assert wait_until(lambda: added.calls, 30)
                executor.cancel("the cancellation Event works over TLS too")
        assert added.calls[0]["worker"].address.startswith("tls://127.0.0.1:")

    def test_no_security_for_a_tls_address_is_a_value_error_at_once(
        self, tls_scheduler: tuple[str, Any]
    ) -> None:
        address, _ = tls_scheduler
        with pytest.raises(ValueError, match="TLS"):
            DaskExecutor(address=address)

    def test_a_certificate_that_does_not_match_fails_at_once_without_retries(
        self, tls_scheduler: tuple[str, Any]
    ) -> None:
        address, _ = tls_scheduler
        stranger = Security.temporary()
        error, seconds, recorded = _start_fails(
            DaskExecutor(address=address, client_kwargs={"security": stranger}, connect_timeout=30)
        )
        assert seconds < 5.0
        assert error.attempts == 1 and recorded.retrying.calls == []
        assert "TLS" in str(error.__cause__) or "certificate" in str(error.__cause__)
