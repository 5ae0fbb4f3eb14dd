"""What a DaskExecutor task runs on its Dask worker: :func:`run_task`.

The driver sends each task as one pickled call (see ``_pickling.py``) and its
dependencies as Dask futures, which Dask resolves on the worker; :class:`Ref`
placeholders in the arguments are filled from them here, so nesting works the same on
every executor. Before the call, the run's cancellation flag is read: a task of a
cancelled run does not start (see ``_cancel.py``).
"""

from __future__ import annotations

from typing import Any

import distributed

from .._calling import call_in_context
from .._context import TaskContext, current_task
from .._pickling import loads
from .._structure import resolve_refs
from ._flag import NotStarted, flag_for, relay_not_started

__all__ = ["TaskExit", "run_async_task", "run_task"]


class TaskExit(Exception):
    """Carries a ``SystemExit`` or ``KeyboardInterrupt`` that a task raised out of its
    worker, as an ordinary task error; the driver ends the task's Future with the
    original (SPEC §3.3).

    distributed lets those two through its task runner, to stop the worker: on an
    in-process cluster that is the executor's own event loop.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"the task raised {type(error).__name__}: {error}")
        self.error = error

    def __reduce__(self) -> tuple[type[TaskExit], tuple[BaseException]]:
        return (TaskExit, (self.error,))


def run_task(payload: bytes, deps: dict[str, Any] | None, run_flag: str | None) -> Any:
    """Run one task: ``payload`` is its pickled ``(fn, args, kwargs)``; ``deps`` the
    results of its dependencies by key, for the :class:`Ref` placeholders in the
    arguments; ``run_flag`` the name of its run's cancellation Event (None without one).
    """
    fn, args, kwargs = loads(payload)
    context = _context_of_run(run_flag)
    try:
        return call_in_context(context, fn, args, kwargs, deps)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise TaskExit(exc) from exc


async def run_async_task(payload: bytes, deps: dict[str, Any] | None, run_flag: str | None) -> Any:
    """:func:`run_task` for an ``async def`` function: a coroutine function itself, so
    that distributed runs it on the worker's event loop (not in a thread of its own)."""
    fn, args, kwargs = loads(payload)
    if run_flag is not None:  # the first answer, awaited: the loop must not block on it
        await flag_for(run_flag, distributed.get_worker()).ask_once()
    context = _context_of_run(run_flag)
    if deps:
        args = resolve_refs(args, deps)
        kwargs = resolve_refs(kwargs, deps)
    token = current_task.set(context)
    try:
        return await fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise TaskExit(exc) from exc
    finally:
        current_task.reset(token)


def _context_of_run(run_flag: str | None) -> TaskContext | None:
    """The context of a task of the run ``run_flag``, which may start.

    :raises NotStarted: when the run was cancelled; the run is told through the
        scheduler's event log.
    """
    if run_flag is None:
        return None
    worker = distributed.get_worker()
    flag = flag_for(run_flag, worker)
    if not flag.should_run():
        key = str(worker.get_current_task())
        relay_not_started(worker, run_flag, key)
        raise NotStarted(key, "its run was cancelled before it started")
    return flag.context
