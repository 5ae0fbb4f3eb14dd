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

from ._cancel import NotStarted, flag_for, relay_not_started
from ._context import current_task
from ._pickling import loads
from ._structure import resolve_refs

__all__ = ["TaskExit", "run_task"]


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
    if deps:
        args = resolve_refs(args, deps)
        kwargs = resolve_refs(kwargs, deps)
    if run_flag is None:
        return _call(fn, args, kwargs)
    worker = distributed.get_worker()
    flag = flag_for(run_flag, worker)
    if not flag.should_run():
        key = str(worker.get_current_task())
        relay_not_started(worker, run_flag, key)
        raise NotStarted(key, "its run was cancelled before it started")
    token = current_task.set(flag.context)
    try:
        return _call(fn, args, kwargs)
    finally:
        current_task.reset(token)


def _call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise TaskExit(exc) from exc
