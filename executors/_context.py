"""What a running task knows about its run: ``should_run()``.

A task runs with its run's :class:`TaskContext` in a context variable, set by the
executor around the call; code outside any task sees none.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["RemoteFlag", "TaskContext", "current_task", "should_run"]


class RemoteFlag(Protocol):
    """A run's cancellation as seen from another process (a Dask worker)."""

    name: str

    def should_run(self) -> bool: ...


class TaskContext:
    """The run a task belongs to, and how the task learns that the run was cancelled.

    ``cancelled`` is the run's own flag when the task runs in the run's process;
    ``remote`` reads it from elsewhere (a Dask worker). With neither (a task in a child
    process, which is terminated instead) the run cannot be asked.
    """

    __slots__ = ("cancelled", "remote", "run")

    def __init__(
        self,
        cancelled: threading.Event | None,
        run: Any = None,
        remote: RemoteFlag | None = None,
    ) -> None:
        self.cancelled = cancelled
        self.run = run
        self.remote = remote


current_task: ContextVar[TaskContext | None] = ContextVar("executors_task", default=None)


def should_run() -> bool:
    """False once the run of the calling task was cancelled: a long task should stop.

    Cheap enough to call in a loop. Outside a task it returns True.
    """
    context = current_task.get()
    if context is None:
        return True
    if context.cancelled is not None:
        return not context.cancelled.is_set()
    if context.remote is not None:
        return context.remote.should_run()
    return True
