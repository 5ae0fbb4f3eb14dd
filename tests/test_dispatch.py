"""The dispatcher (``_dispatch.py``): the one thread per run that runs user callbacks."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from blinker import Namespace

from executors._dispatch import Dispatcher

_signals = Namespace()
fired = _signals.signal("fired")


class Sender:
    """Something to send from (an executor, in the library)."""

    executor_id = "Sender: test"


def _calls(signal: Any, sender: object) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append((threading.current_thread().name, kwargs))

    signal.connect(receiver, sender=sender, weak=False)
    return calls, receiver


class TestDelivery:
    def test_in_order_on_its_own_thread(self) -> None:
        sender = Sender()
        calls, receiver = _calls(fired, sender)
        dispatcher = Dispatcher("executors-dispatch-test", sender)
        try:
            for n in range(20):
                dispatcher.send(fired, n=n)
        finally:
            dispatcher.close(10)
            fired.disconnect(receiver)
        assert [kwargs["n"] for _, kwargs in calls] == list(range(20))
        assert {name for name, _ in calls} == {"executors-dispatch-test"}

    def test_a_raising_receiver_is_logged_and_the_others_still_run(self) -> None:
        sender = Sender()

        def broken(sender: object, **kwargs: Any) -> None:
            raise RuntimeError("broken receiver")

        fired.connect(broken, sender=sender, weak=False)
        calls, receiver = _calls(fired, sender)
        logged: list[str] = []

        class Log:
            def exception(self, event: str, **kwargs: Any) -> None:
                logged.append(event)

        dispatcher = Dispatcher("executors-dispatch-test", sender, Log())
        try:
            dispatcher.send(fired, n=1)
        finally:
            dispatcher.close(10)
            fired.disconnect(broken)
            fired.disconnect(receiver)
        assert logged == ["receiver_failed"] and len(calls) == 1

    def test_a_coroutine_receiver_is_refused(self) -> None:
        sender = Sender()
        awaited: list[int] = []

        async def receiver(sender: object, **kwargs: Any) -> None:
            awaited.append(1)  # pragma: no cover - never called

        logged: list[str] = []

        class Log:
            def error(self, event: str, **kwargs: Any) -> None:
                logged.append(event)

        fired.connect(receiver, sender=sender, weak=False)
        dispatcher = Dispatcher("executors-dispatch-test", sender, Log())
        try:
            dispatcher.send(fired, n=1)
        finally:
            dispatcher.close(10)
            fired.disconnect(receiver)
        assert logged == ["coroutine_receiver_rejected"] and awaited == []

    def test_a_muted_signal_is_not_delivered(self) -> None:
        sender = Sender()
        calls, receiver = _calls(fired, sender)
        dispatcher = Dispatcher("executors-dispatch-test", sender)
        try:
            with fired.muted():
                dispatcher.send(fired, n=1)
            dispatcher.send(fired, n=2)
        finally:
            dispatcher.close(10)
            fired.disconnect(receiver)
        assert [kwargs["n"] for _, kwargs in calls] == [2]

    def test_nothing_is_queued_for_a_signal_nobody_listens_to(self) -> None:
        dispatcher = Dispatcher("executors-dispatch-test", Sender())
        try:
            dispatcher.send(fired, n=1)
            assert dispatcher.queued == 0
        finally:
            dispatcher.close(10)

    def test_it_keeps_no_sender_alive(self) -> None:
        sender = Sender()
        dispatcher = Dispatcher("executors-dispatch-test", sender)
        try:
            del sender
            gc.collect()
            dispatcher.call(lambda: None)  # still delivers callbacks
        finally:
            dispatcher.close(10)
        assert dispatcher._sender() is None


class TestClose:
    def test_from_its_own_thread_returns_at_once(self) -> None:
        dispatcher = Dispatcher("executors-dispatch-test", Sender())
        closed = threading.Event()

        def close_from_inside() -> None:
            dispatcher.close(10)
            closed.set()

        dispatcher.call(close_from_inside)
        assert closed.wait(10)
        dispatcher.close(10)

    def test_a_receiver_that_outlasts_the_timeout_is_an_error(self) -> None:
        dispatcher = Dispatcher("executors-dispatch-test", Sender())
        release = threading.Event()
        dispatcher.call(release.wait, 30)
        try:
            with pytest.raises(RuntimeError, match="still running"):
                dispatcher.close(0.1)
        finally:
            release.set()
            dispatcher.close(10)

    def test_after_close_a_callback_runs_where_it_is_called(self) -> None:
        dispatcher = Dispatcher("executors-dispatch-test", Sender())
        dispatcher.close(10)
        where: list[str] = []
        dispatcher.call(lambda: where.append(threading.current_thread().name))
        assert where == [threading.current_thread().name]
