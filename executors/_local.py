"""``LocalExecutor``: runs each function at once, in the calling thread (SPEC §3.1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import Executor
from ._calling import call_in_context
from ._future import ERROR, FINISHED, Future
from ._run import Run
from ._structure import replace_futures
from ._task import Task

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Runs each task inside ``submit``, in the caller's thread: for debugging.

    The returned Future is already done; a task's error (a ``SystemExit`` too) is kept in
    it and raised by ``result()``/``wait()``; a ``KeyboardInterrupt`` is the caller's own
    Ctrl-C and goes through. Signals and callbacks still run on the dispatcher thread.
    """

    def _settings(self) -> dict[str, Any]:
        return {}

    def _backend(self, run: Run) -> _Inline:
        return _Inline(run)


class _Inline:
    """A LocalExecutor's run: each task runs inside ``submit``; nothing else to do."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def open(self) -> str | None:
        return None

    def after_open(self) -> None:
        pass

    def submit(self, task: Task) -> None:
        run, future = self.run, task.future
        args, kwargs = task.args, task.kwargs
        if task.deps:
            if run.settle_from_deps(future, task.deps):
                return
            args = replace_futures(args, Future.result)
            kwargs = replace_futures(kwargs, Future.result)
        try:
            value = call_in_context(run.task_context, task.fn, args, kwargs)
        except KeyboardInterrupt:
            raise  # the caller's own Ctrl-C: the task runs in the caller's thread
        except BaseException as exc:  # a task's SystemExit too ends its Future, not the script
            future._status, future._value = ERROR, exc
            run.announce(future, ERROR)
            return
        future._status, future._value = FINISHED, value
        run.announce(future, FINISHED)

    def prepare(self, futures: Sequence[Future[Any]]) -> None:
        pass  # every Future has ended inside submit

    def want(self, futures: Sequence[Future[Any]]) -> None:
        pass

    def slots(self) -> int:
        return 1  # the calling thread

    def fetch(self, futures: list[Future[Any]], timeout: float | None) -> None:
        pass  # every result is here

    def cancel_futures(self, futures: Sequence[Future[Any]]) -> int:
        return 0  # they have ended

    def cancel_all(self) -> None:
        pass

    def close(self, cancelled: bool) -> str | None:
        return None
