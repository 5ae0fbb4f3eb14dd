"""Connecting to a scheduler with retries (SPEC §7), with tenacity.

Attempts are bounded (``within`` around one ``Client``), waits between them grow
exponentially with jitter from about 0.1 s to 5 s, and no attempt starts once the budget
is spent. Only connection errors are retried: a server that refuses us (a certificate that
does not match, encryption required) fails at once, and cancellation is never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from distributed.comm.core import FatalCommClosedError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from ..exceptions import ConnectError

__all__ = ["BACKOFF", "attempt_timeout", "connect_with_retries", "retryable", "within"]

T = TypeVar("T")

FIRST_WAIT = 0.1  # seconds before the second attempt
MAX_WAIT = 5.0  # the longest wait between attempts
JITTER = 0.1  # up to this many seconds are added to each wait
FIRST_ATTEMPT_TIMEOUT = 1.0  # seconds the first attempt may take; later ones get longer
MAX_ATTEMPT_TIMEOUT = 5.0
RECANCEL_INTERVAL = 0.05  # seconds between the cancels of an attempt that goes on


# The wait after each failed attempt: 0.1 s doubling up to 5 s, with up to 0.1 s of jitter.
BACKOFF = wait_exponential(multiplier=FIRST_WAIT, max=MAX_WAIT - JITTER) + wait_random(0, JITTER)


def attempt_timeout(attempt: int) -> float:
    """How long attempt number ``attempt`` may take: short at first, since a scheduler
    that is not there costs the whole of it, then longer for a slow one."""
    return min(FIRST_ATTEMPT_TIMEOUT + 0.5 * (attempt - 1), MAX_ATTEMPT_TIMEOUT)


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable``, cancelled after ``timeout`` seconds (``asyncio.TimeoutError``).

    Unlike ``asyncio.wait_for``, it cancels again until the awaitable has ended: on
    Python 3.10 a ``wait_for`` inside it (distributed's connect has one) swallows a cancel
    that arrives just as what it waits for fails (CPython gh-86296), and the attempt would
    then run on until distributed's own timeout.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task}, timeout=timeout)
    finally:  # on the timeout, and when we are cancelled ourselves
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL_INTERVAL)
        if not task.cancelled():
            task.exception()  # retrieved: an error nobody awaits would be logged as lost
    if task.cancelled():
        raise asyncio.TimeoutError()
    return task.result()


def retryable(exc: BaseException) -> bool:
    """A connection error that another attempt may cure."""
    if isinstance(exc, FatalCommClosedError):  # a TLS certificate that does not match
        return False
    return isinstance(exc, (OSError, asyncio.TimeoutError))


async def connect_with_retries(
    address: str,
    attempt: Callable[[float], Awaitable[T]],
    budget: float,
    on_retry: Callable[[int, float, BaseException], Any],
) -> T:
    """``await attempt(timeout)`` until it succeeds or ``budget`` seconds have passed.

    :param on_retry: called with (failed attempt number, seconds until the next, error)
        before each wait.
    :raises ConnectError: when the budget is spent or the server refuses us, naming the
        address, the attempts and the last error (raised from it).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget

    def remaining() -> float:
        return deadline - loop.time()

    def wait(state: RetryCallState) -> float:  # BACKOFF, never past the budget
        return max(0.0, min(BACKOFF(state), remaining()))

    def stop(state: RetryCallState) -> bool:
        return remaining() <= 0.0

    def before_sleep(state: RetryCallState) -> None:  # sync: tenacity 8.2 awaits none
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        on_retry(state.attempt_number, delay, error or OSError("unknown"))

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0
    try:
        async for retry_attempt in retrying:
            with retry_attempt:
                attempts = retry_attempt.retry_state.attempt_number
                timeout = max(min(attempt_timeout(attempts), remaining()), 0.1)
                return await attempt(timeout)
    except Exception as exc:
        raise ConnectError(address, attempts, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
