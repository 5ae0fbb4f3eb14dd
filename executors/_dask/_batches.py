"""What goes to Dask in one graph update, and how each task goes (pickled on its own)."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

from .._future import NOT_FETCHED, Future
from .._pickling import call_error, dumps, result_error
from .._structure import Ref, replace_futures
from .._task import Task

__all__ = ["batch_key", "call_args", "fetch_error"]


def batch_key(task: Task) -> tuple[Any, ...]:
    """Tasks with the same key go to Dask in one ``Client.map``: the same resources,
    retries, priority, and kind of function (``async def`` or not)."""
    options = task.options
    return (
        tuple(sorted(options.resources.items())) if options.resources else None,
        options.retries,
        options.priority or 0,
        inspect.iscoroutinefunction(task.fn),
    )


def call_args(task: Task, live: dict[str, Any], run_flag: str | None) -> tuple[Any, ...]:
    """The arguments of ``_on_worker.run_task`` for ``task``: its call pickled on its
    own, with the dependencies the cluster has (``live``: key to entry) as :class:`Ref`
    placeholders, and their Dask futures, which Dask resolves on the worker (the data
    stays there); ``run_flag``: the run's cancellation Event.

    :raises TypeError: naming the key and the value, when the call does not pickle.
    :raises RuntimeError: when a dependency's result is neither here nor there.
    """
    args, kwargs, deps = task.args, task.kwargs, None
    if task.deps:
        deps = {}

        def as_input(dep: Future[Any]) -> Any:
            entry = live.get(dep._key)
            if entry is not None:
                deps[dep._key] = entry.dask_future
                return Ref(dep._key)
            if dep._value is NOT_FETCHED:
                raise RuntimeError(
                    f"the result of {dep._key!r}, a dependency of {task.key!r}, is no "
                    "longer on the cluster"
                )
            return dep._value  # handed over already: it travels with the call

        args = replace_futures(args, as_input)
        kwargs = replace_futures(kwargs, as_input)
    try:
        payload = dumps((task.fn, args, kwargs))
    except Exception as exc:
        raise call_error(task.key, task.fn, task.args, task.kwargs, exc) from exc
    return (payload, deps or None, run_flag)


def fetch_error(future: Future[Any], error: Exception) -> Exception:
    """What a Future whose result cannot be brought here ends with: a result that does
    not pickle (on its worker) or load (here) is named so, with its task's key."""
    if isinstance(error, (TypeError, pickle.PickleError)):
        return result_error(future._key, error)
    return error
