"""Errors that ``executors`` raises, so callers can catch them by type.

::

    Exception
    ├── concurrent.futures.CancelledError
    │   └── CancelledError       a Future ended cancelled (Future.cancel() or the run's cancel)
    └── OSError
        └── ConnectionError
            └── ConnectError     no connection to a scheduler within the budget

Bad arguments raise ``ValueError`` (or ``TypeError``), calls in the wrong state raise
``RuntimeError``, an expired ``timeout`` raises the builtin ``TimeoutError``, and a task's
own exception is re-raised as the task raised it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

__all__ = ["CancelledError", "ConnectError"]


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
