"""The event loop a DaskExecutor run lives on, as other threads use it.

:class:`LoopThread` is the one place that starts a thread running an asyncio loop: a
context manager (anyio's blocking portal is the model) whose block is the thread's life.
The loop runs under ``asyncio.run`` on a daemon thread; other threads talk to it only
through :meth:`Loop.call_soon` and :meth:`Loop.run`. Nothing here sets a global event
loop. The one foreign loop used is a Dask worker's (:class:`WorkerLoop`), by an executor
pickled into a task: there the worker's client and its loop exist already.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import distributed
from distributed.threadpoolexecutor import thread_state

from .. import _interruptible as interruptible
from .._logging import get_logger

__all__ = ["Loop", "LoopThread", "WorkerLoop"]

T = TypeVar("T")

_log = get_logger(__name__)

# Seconds the thread gets to start its loop, and to end once told.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# asyncio's debug mode for the loop threads (the tests turn it on); with it, asyncio logs
# every callback that holds the loop longer than this many seconds.
DEBUG = False
SLOW_CALLBACK_SECONDS = 0.5


class Loop:
    """How other threads use an event loop: schedule, or run a coroutine and block."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def in_loop_thread(self) -> bool:
        raise NotImplementedError

    def check_not_in_loop(self) -> None:
        """:raises RuntimeError: on the loop thread, where blocking would deadlock."""
        if self.in_loop_thread():
            raise RuntimeError(
                "a blocking executors call was made from the executor's event-loop thread; "
                "it would deadlock"
            )

    def before_blocking(self) -> None:
        """The calling thread is about to block on the run's Futures."""
        self.check_not_in_loop()

    def call_soon(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop, from any thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and block this thread for its result.

        On timeout or KeyboardInterrupt the coroutine is cancelled before re-raising.

        :raises RuntimeError: when called from the loop thread itself (it would deadlock).
        """
        try:
            self.check_not_in_loop()
        except RuntimeError:
            coroutine.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return interruptible.result(future, timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result after {timeout} s") from None
        except BaseException:
            future.cancel()
            raise


class WorkerLoop(Loop):
    """The running loop of a Dask worker's client, used and never started or stopped."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def before_blocking(self) -> None:
        """In a Dask task, first leave the worker's thread pool (once): the subtasks
        waited for may need that slot to run."""
        super().before_blocking()
        if getattr(thread_state, "proceed", False):
            distributed.secede()


class LoopThread(Loop):
    """An asyncio event loop on a thread of its own, for the life of a ``with`` block.

    Entering starts the thread and returns once its loop runs; leaving ends the loop
    (its pending tasks are cancelled by ``asyncio.run``) and joins the thread, raising
    ``RuntimeError`` when it outlives :data:`STOP_TIMEOUT`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the loop thread is not running"
        return self._loop

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def __enter__(self) -> LoopThread:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=self._name, daemon=True
        )
        self._thread.start()
        ready.result(START_TIMEOUT)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread = self._thread
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if thread is threading.current_thread():
            return
        interruptible.join(thread, STOP_TIMEOUT)
        if thread.is_alive():
            _log.error("loop_join_timeout", thread_name=thread.name, timeout=STOP_TIMEOUT)
            raise RuntimeError(
                f"event-loop thread {thread.name} still running after {STOP_TIMEOUT} s"
            )
        self._thread = None

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
            self._stopping = asyncio.Event()
            ready.set_result(None)
            await self._stopping.wait()

        try:
            asyncio.run(serve(), debug=DEBUG or None)
        except BaseException as exc:
            if ready.done() and isinstance(exc, RuntimeError) and _no_threads_at_exit(exc):
                # The loop served its run to the end; only asyncio.run's clean-up of its
                # default executor, which starts a thread, failed at interpreter exit.
                _log.debug("loop_shutdown_at_exit", error=str(exc))
                return
            if not ready.done():  # pragma: no cover - asyncio.run itself failed
                ready.set_exception(exc)
            raise


def _no_threads_at_exit(error: RuntimeError) -> bool:
    """Whether ``error`` is CPython 3.12.0-3.12.2 refusing to start a thread once the
    script has ended (gh-113964; see ``_run.THREADS_START_AT_EXIT``)."""
    return "interpreter shutdown" in str(error)
