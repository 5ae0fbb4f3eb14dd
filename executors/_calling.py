"""Calling a task's function where it runs: with its run's context, and to its end.

A task's function may be an ``async def`` function (SPEC §3): its Future holds what the
coroutine returns, never the coroutine. Locally the coroutine runs with ``asyncio.run``
in the thread (or process) that runs the task; on Dask, distributed runs coroutine
functions on the worker's event loop itself (see ``_on_worker.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import _interruptible as interruptible
from ._context import TaskContext, current_task
from ._structure import resolve_refs

__all__ = ["call_in_context", "run_to_end"]


def call_in_context(
    context: TaskContext | None,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    values: Mapping[str, Any] | None = None,
) -> Any:
    """``fn(*args, **kwargs)`` run to its end, with ``context`` as the current task's,
    the :class:`~._structure.Ref` placeholders in the arguments filled from ``values``
    (the results of its dependencies, by key)."""
    if values:
        args = resolve_refs(args, values)
        kwargs = resolve_refs(kwargs, values)
    token = current_task.set(context)
    try:
        return run_to_end(fn(*args, **kwargs))
    finally:
        current_task.reset(token)


def run_to_end(value: Any) -> Any:
    """``value``; or, when it is a coroutine (an ``async def`` task), what it returns."""
    if not inspect.iscoroutine(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(value)
    # An event loop already runs in this thread (a LocalExecutor called from async code):
    # the coroutine gets a loop of its own on a thread of its own, with this context.
    outcome: list[Any] = []
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(asyncio.run, value)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="executors-coroutine", daemon=True)
    thread.start()
    interruptible.join(thread)
    ok, result = outcome[0]
    if ok:
        return result
    raise result
