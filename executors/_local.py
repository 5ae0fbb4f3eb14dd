"""``LocalExecutor``: runs each function at once, in the calling thread (SPEC §3.1)."""

from __future__ import annotations

from typing import Any

from ._base import Executor, Run
from ._context import current_task
from ._future import ERROR, FINISHED, Future
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

    def _submit(self, run: Run, task: Task) -> None:
        future = task.future
        args, kwargs = task.args, task.kwargs
        if task.deps:
            if run.settle_from_deps(future, task.deps):
                return
            args = replace_futures(args, Future.result)
            kwargs = replace_futures(kwargs, Future.result)
        token = current_task.set(run.task_context)
        try:
            value = task.fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise  # the caller's own Ctrl-C: the task runs in the caller's thread
        except BaseException as exc:  # a task's SystemExit too ends its Future, not the script
            future._status, future._value = ERROR, exc
            run.announce(future, ERROR)
            return
        finally:
            current_task.reset(token)
        future._status, future._value = FINISHED, value
        run.announce(future, FINISHED)
