"""What a running task knows about its run: ``should_run()``.

A task runs with its run's :class:`TaskContext` in a context variable, set by the
executor around the call; code outside any task sees none.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

__all__ = ["TaskContext", "current_task", "should_run"]


class TaskContext:
    """The run a task belongs to, and the flag that says the run was cancelled.

    ``cancelled`` is None where the run cannot be asked (a task in a child process,
    which is terminated instead).
    """

    __slots__ = ("cancelled", "run")

    def __init__(self, cancelled: threading.Event | None, run: Any = None) -> None:
        self.cancelled = cancelled
        self.run = run


current_task: ContextVar[TaskContext | None] = ContextVar("executors_task", default=None)


def should_run() -> bool:
    """False once the run of the calling task was cancelled: a long task should stop.

    Cheap enough to call in a loop. Outside a task it returns True.
    """
    context = current_task.get()
    if context is None or context.cancelled is None:
        return True
    return not context.cancelled.is_set()
