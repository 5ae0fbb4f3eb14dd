"""Errors that ``executors`` raises, so callers can catch them by type.

::

    Exception
    ├── concurrent.futures.CancelledError
    │   └── CancelledError       a Future ended cancelled (Future.cancel() or the run's cancel)
    ├── ProcessDiedError         a task killed its worker process, again and again
    └── OSError
        ├── ConnectionError
        │   └── ConnectError     no connection to a scheduler within the budget
        └── TimeoutError
            └── NoWorkersError   tasks waited past no_workers_timeout on a cluster with no worker

Bad arguments raise ``ValueError`` (or ``TypeError``), calls in the wrong state raise
``RuntimeError``, an expired ``timeout`` raises the builtin ``TimeoutError``, and a task's
own exception is re-raised as the task raised it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

__all__ = ["CancelledError", "ConnectError", "NoWorkersError", "ProcessDiedError"]


class CancelledError(concurrent.futures.CancelledError):
    """The Future was cancelled, by ``Future.cancel()`` or because its run was cancelled.

    :param key: the task key of the Future.
    :param reason: why; the run's cancel reason, or ``"cancelled"``.
    """

    def __init__(self, key: str, reason: str = "cancelled") -> None:
        super().__init__(f"task {key!r} was cancelled: {reason}")
        self.key = key
        self.reason = reason

    def __reduce__(self) -> tuple[type[CancelledError], tuple[str, str]]:
        return (type(self), (self.key, self.reason))


class ConnectError(ConnectionError):
    """No connection to the scheduler at ``address`` could be made within the budget.

    :param address: the scheduler address.
    :param attempts: how many connection attempts were made.
    :param last_error: the error of the last attempt.
    :param seconds: how long it was tried, when that is not the whole story of the
        attempts (a reconnect after a lost scheduler).
    :param tried: what was tried, in words, when more than new connection attempts.
    """

    def __init__(
        self,
        address: str,
        attempts: int,
        last_error: BaseException | None,
        seconds: float | None = None,
        tried: str | None = None,
    ) -> None:
        detail = f"{type(last_error).__name__}: {last_error}" if last_error else "no attempt"
        within = f" within {seconds:.1f} s" if seconds is not None else ""
        how = f" ({tried})" if tried else f" after {attempts} attempt(s)"
        super().__init__(f"could not connect to {address}{within}{how}; last error: {detail}")
        self.address = address
        self.attempts = attempts
        self.last_error = last_error
        self.seconds = seconds
        self.tried = tried

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.address, self.attempts, self.last_error, self.seconds, self.tried),
        )


class NoWorkersError(TimeoutError):
    """Tasks waited on a cluster that had no worker for longer than the executor's
    ``no_workers_timeout`` (DaskExecutor).

    :param address: the scheduler address.
    :param seconds: how long the cluster had had no worker.
    :param tasks: how many tasks were waiting then.
    """

    def __init__(self, address: str, seconds: float, tasks: int) -> None:
        super().__init__(
            f"the cluster at {address} has had no worker for {seconds:.1f} s while "
            f"{tasks} task(s) waited (no_workers_timeout); start workers, or give a larger "
            "no_workers_timeout (None waits for ever, as Dask does)"
        )
        self.address = address
        self.seconds = seconds
        self.tasks = tasks

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.address, self.seconds, self.tasks))


class ProcessDiedError(Exception):
    """The task's worker process died while it ran, as many times as it was tried
    (LocalDaskExecutor ``processes``: a crash, ``os._exit``, an OOM kill). The other
    tasks ran on a new pool; this one failed alone.

    :param key: the task key.
    :param times: how many times a process died running it.
    :param exit_code: the last dead process's exit code (negative: the signal that
        ended it).
    """

    def __init__(self, key: str, times: int, exit_code: int) -> None:
        how = f"signal {-exit_code}" if exit_code < 0 else f"exit code {exit_code}"
        super().__init__(
            f"task {key!r} killed its worker process {times} time(s) (the last one ended "
            f"with {how}); it is not run again"
        )
        self.key = key
        self.times = times
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.times, self.exit_code))
