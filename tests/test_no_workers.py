"""A cluster that lost every worker while tasks wait (``_dask/_no_workers.py``, SPEC §7):
a real ``dask scheduler`` whose ``dask worker`` processes are ended by pid."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import time

import pytest
import tasks
from conftest import DaskProcesses, wait_for_workers, wait_until

from executors import DaskExecutor, NoWorkersError
from executors._dask import _no_workers

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's


@pytest.fixture
def warn_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first warning after 0.5 s, not 30: the same rule, a test's length."""
    monkeypatch.setattr(_no_workers, "WARN_AFTER", 0.5)


def _said(logs: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [record for record in logs if record.msg == event]


def _lose_the_workers(
    dask_processes: DaskProcesses,
    ex: DaskExecutor,
    tmp_path: pathlib.Path,
    logs: list[logging.LogRecord],
) -> tuple[float, list[object]]:
    """Tasks running on two workers, then the workers ended: the tasks wait again. When
    the ending began, and the Futures."""
    address = ex._address
    assert address is not None
    workers = [dask_processes.worker(address) for _ in range(2)]
    wait_for_workers(address, 2)
    started = tmp_path / "started"
    started.mkdir()
    futures = [
        ex.submit(tasks.started_then_wait, str(started / str(i)), str(tmp_path / "go"), 60.0)
        for i in range(2)
    ]
    futures += [ex.submit(tasks.inc, i) for i in range(3)]  # queued behind them
    assert wait_until(lambda: len(list(started.iterdir())) == 2, 30)
    ending = time.monotonic()
    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    # Gone from the scheduler at once; their processes linger until the running tasks
    # end, and those are told to now (the scheduler ignores what a removed worker says).
    assert wait_until(lambda: len(_said(logs, "worker_removed")) == 2, 30)
    (tmp_path / "go").write_text("")
    for worker in workers:
        dask_processes.end(worker)
    return ending, futures


@pytest.mark.timeout(120)
def test_past_no_workers_timeout_the_waiting_futures_fail_and_the_exit_returns(
    dask_processes: DaskProcesses,
    tmp_path: pathlib.Path,
    executor_logs: list[logging.LogRecord],
    warn_soon: None,
) -> None:
    address, _ = dask_processes.scheduler()
    ex = DaskExecutor(address=address, no_workers_timeout=3)
    with ex:
        lost, futures = _lose_the_workers(dask_processes, ex, tmp_path, executor_logs)
        for future in futures:
            with pytest.raises(NoWorkersError, match="no worker for") as raised:
                future.result(timeout=60)  # type: ignore[attr-defined]
        assert raised.value.address == address and raised.value.tasks == 5
        assert 3 <= time.monotonic() - lost < 45
        warnings = _said(executor_logs, "no_workers")
        assert warnings and warnings[0].levelno == logging.WARNING
        assert warnings[0].tasks == 5 and warnings[0].address == address  # type: ignore[attr-defined]
        assert ex.submit(tasks.inc, 1) is not None  # the run still takes work
        exited = time.monotonic()
    assert time.monotonic() - exited < 30  # the exit's wait ended: nothing was left waiting
    assert _said(executor_logs, "no_workers_timeout")


@pytest.mark.timeout(120)
def test_without_a_limit_it_waits_says_so_and_every_result_comes_with_a_new_worker(
    dask_processes: DaskProcesses,
    tmp_path: pathlib.Path,
    executor_logs: list[logging.LogRecord],
    warn_soon: None,
) -> None:
    address, _ = dask_processes.scheduler()
    with DaskExecutor(address=address) as ex:
        _, futures = _lose_the_workers(dask_processes, ex, tmp_path, executor_logs)
        assert wait_until(lambda: len(_said(executor_logs, "no_workers")) >= 2, 30)  # again
        assert not any(future.done() for future in futures)  # type: ignore[attr-defined]
        dask_processes.worker(address)
        assert ex.wait(futures, timeout=60) == [None, None, 1, 2, 3]
        assert wait_until(lambda: _said(executor_logs, "workers_back"), 10)
    assert not _said(executor_logs, "no_workers_timeout")


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "5"])
def test_a_bad_no_workers_timeout_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="no_workers_timeout"):
        DaskExecutor(no_workers_timeout=value)  # type: ignore[arg-type]


def test_the_error_pickles_with_what_it_says() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(NoWorkersError("tcp://127.0.0.1:1", 3.5, 7)))
    assert (error.address, error.seconds, error.tasks) == ("tcp://127.0.0.1:1", 3.5, 7)
    assert isinstance(error, TimeoutError) and "no_workers_timeout" in str(error)
