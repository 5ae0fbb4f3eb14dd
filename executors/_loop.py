"""``LoopThread``: the one place that starts a thread running an asyncio event loop.

The loop runs under ``asyncio.run`` on a daemon thread the executor owns; other threads
talk to it only through :meth:`LoopThread.call_soon` and :meth:`LoopThread.run`. Nothing
here sets a global event loop. The one foreign loop used is a Dask worker's, through
:class:`WorkerLoop`, by an executor pickled into a task: there the worker's client and
its loop already exist, and the executor must not start another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._logging import get_logger

__all__ = ["LoopThread", "WorkerLoop"]

T = TypeVar("T")

_log = get_logger(__name__)


class _Loop:
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

    def call_soon(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop, from any thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the loop; a concurrent Future for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

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
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result after {timeout} s") from None
        except BaseException:
            future.cancel()
            raise


class WorkerLoop(_Loop):
    """The running loop of a Dask worker's client, used and never started or stopped."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def thread(self) -> None:
        return None

    def in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class LoopThread(_Loop):
    """An asyncio event loop on a thread of its own, started and stopped explicitly."""

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

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and return once its loop runs."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(ready,), name=self._name, daemon=True
        )
        self._thread.start()
        ready.result(timeout)

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            ready.set_result(None)
            await self._stopping.wait()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # pragma: no cover - asyncio.run itself failed
            if not ready.done():
                ready.set_exception(exc)
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """End the loop (its pending tasks are cancelled by ``asyncio.run``) and join.

        :raises RuntimeError: when the thread outlives ``timeout``.
        """
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
        thread.join(timeout)
        if thread.is_alive():
            _log.error("loop_join_timeout", thread=thread.name, timeout=timeout)
            raise RuntimeError(f"event-loop thread {thread.name} still running after {timeout} s")
        self._thread = None
