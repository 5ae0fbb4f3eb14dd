"""The dispatcher: one thread per running executor that runs all user callbacks.

Signal receivers and ``Future.add_done_callback`` callbacks never run where the event
happened (the caller's ``submit``/``wait``, a worker thread, an event loop): the event is
queued here and delivered in order on the dispatcher thread. So a receiver may call the
executor's blocking API, and a slow receiver stalls nobody but later receivers.
"""

from __future__ import annotations

import inspect
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal

from . import _interruptible as interruptible
from ._logging import get_logger

__all__ = ["Dispatcher"]

_STOP = object()


class Dispatcher:
    """A FIFO of signals and callbacks, delivered one by one on a thread of its own."""

    def __init__(self, name: str, sender: object, logger: Any = None) -> None:
        # Weakly: its thread must not keep the executor alive (an executor nobody holds
        # is stopped, see _run.py). Once it is gone, nobody can listen to it either.
        self._sender = weakref.ref(sender)
        self._sender_name = str(getattr(sender, "executor_id", sender))
        self._log = logger if logger is not None else get_logger(__name__)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Guards _closed, so nothing is queued behind the _STOP marker.
        self._lock = threading.Lock()
        self._closed = False
        self._inline = False
        self.queued = 0  # items ever queued: how tests see that an unheard signal is free
        self._thread: threading.Thread | None = threading.Thread(
            target=self._deliver_all, name=name, daemon=True
        )
        self._thread.start()

    @classmethod
    def inline(cls, sender: object, logger: Any = None) -> Dispatcher:
        """A dispatcher with no thread, delivering where the event happens.

        For an executor bound to a Dask worker's client inside a task: that run has no
        end at which a thread could be joined, so it must not own one.
        """
        dispatcher = cls.__new__(cls)
        dispatcher._sender = weakref.ref(sender)
        dispatcher._sender_name = str(getattr(sender, "executor_id", sender))
        dispatcher._log = logger if logger is not None else get_logger(__name__)
        dispatcher._lock = threading.Lock()
        dispatcher._closed = True
        dispatcher._inline = True
        dispatcher.queued = 0
        dispatcher._thread = None
        return dispatcher

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def send(self, signal: NamedSignal, /, **kwargs: Any) -> None:
        """Queue ``signal`` with ``kwargs``, unless nobody listens to it at all, or it is
        muted (blinker's ``Signal.muted()``) while it happens."""
        if signal.receivers and not signal.is_muted:
            if self._inline:
                self._send(signal, kwargs)
            else:
                self._put((signal, kwargs))

    def call(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Call ``fn(*args)`` on the dispatcher; inline when the dispatcher has closed."""
        if not self._put((fn, args)):
            self._invoke(fn, args)

    def _put(self, item: tuple[Any, Any]) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._queue.put(item)
            self.queued += 1
            return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver everything queued, then end the thread.

        Called from the dispatcher thread itself (a receiver stopping its executor), it
        returns at once and the thread ends after the current delivery.

        :raises RuntimeError: when the deliveries outlast ``timeout``.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if self._thread is None or threading.current_thread() is self._thread:
            return
        interruptible.join(self._thread, timeout)
        if self._thread.is_alive():
            self._log.error(
                "dispatcher_join_timeout", thread_name=self._thread.name, timeout=timeout
            )
            raise RuntimeError(
                f"signal receivers of {self._sender_name} still running after {timeout} s"
            )

    def _deliver_all(self) -> None:
        get = self._queue.get
        while (item := get()) is not _STOP:
            target, payload = item
            if isinstance(target, NamedSignal):
                self._send(target, payload)
            else:
                self._invoke(target, payload)

    def _send(self, signal: NamedSignal, kwargs: dict[str, Any]) -> None:
        # blinker's Signal.send stops at the first receiver that raises; call them one by
        # one so that every receiver gets the event.
        sender = self._sender()
        if sender is None:
            return
        for receiver in signal.receivers_for(sender):
            if inspect.iscoroutinefunction(receiver):
                self._log.error(
                    "coroutine_receiver_rejected", signal=signal.name, receiver=repr(receiver)
                )
                continue
            try:
                receiver(sender, **kwargs)
            except Exception:
                self._log.exception("receiver_failed", signal=signal.name, receiver=repr(receiver))

    def _invoke(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            self._log.exception("callback_failed", callback=repr(fn))
