"""What a LocalDaskExecutor graph node runs, where dask's scheduler placed it.

Each node calls :func:`execute` with the task's record (``_task.Task``), an object
dask does not look into, so that it never takes the user's arguments for tasks (a tuple
there is data) and builds no ``delayed`` objects. In a worker process the node is
:func:`execute_remote`, with the call pickled on its own (see ``_pickling.py``). A task
returns its value, or a :class:`Failure` or :data:`SKIPPED` marker that its dependents
pass on: nothing is ever raised into dask's scheduler, which would fail the graph.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._calling import call_in_context
from .._context import TaskContext
from .._future import CANCELLED, FINISHED, PENDING, Future
from .._pickling import call_error, dumps, loads, restore_exit_code, result_error
from .._structure import to_refs
from .._task import Task
from ..exceptions import CancelledError
from ._crashes import mark

__all__ = [
    "SKIPPED",
    "Failure",
    "RemoteTraceback",
    "as_input",
    "build_graph",
    "execute",
    "execute_remote",
    "node",
    "remote_payload",
]

_DaskTask: Any = None
_TaskRef: Any = None
try:  # dask >= 2024.12 builds graphs of Task objects; older ones of tuples
    from dask._task_spec import Task as _DaskTask
    from dask._task_spec import TaskRef as _TaskRef
except ImportError:  # pragma: no cover - the oldest supported dask
    pass


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, as text (its ``__cause__``),
    where the traceback itself could not be pickled."""

    def __str__(self) -> str:
        return str(self.args[0])


def _rebuild_failure(
    error: BaseException, traceback_: TracebackType | None, text: str | None
) -> Failure:
    error = restore_exit_code(error)
    return Failure(error.with_traceback(traceback_) if traceback_ is not None else error, text)


class Failure:
    """A task's error, returned (not raised) so dask goes on with the other tasks.

    From a worker process it travels with its traceback, so the task's own frames are in
    it (tracebacks pickle once distributed has imported tblib's support); where that
    does not pickle, with the traceback as text (``traceback_text``)."""

    __slots__ = ("error", "traceback_text")

    def __init__(self, error: BaseException, traceback_text: str | None = None) -> None:
        self.error = error
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[Any, ...]:
        traceback_ = self.error.__traceback__ if self.traceback_text is None else None
        return (_rebuild_failure, (self.error, traceback_, self.traceback_text))


class _Skipped:
    """Returned by a task that did not run: its run or its Future was cancelled."""

    def __reduce__(self) -> str:
        return "SKIPPED"


SKIPPED = _Skipped()


_REMOTE_CONTEXT = TaskContext(None)


def execute(task: Task, *dep_results: Any) -> Any:
    """Run one task in this process (a pool thread, or the driver thread).

    Returns the value, or a :class:`Failure` or ``SKIPPED`` marker that its dependents
    pass on. The Future is settled here, not by a dask callback: that is one call less
    per task (P4), and the caller sees each result as it comes. Any exception, a
    ``SystemExit`` or ``KeyboardInterrupt`` included, ends this task alone: it is never
    raised into dask's scheduler, which would fail every task of the graph.
    """
    values = task.known
    if dep_results:
        values = {**values, **dict(zip(task.dep_keys, dep_results, strict=True))}
    failed = _failed_input(values) if values else None
    graphs, future = task.backend, task.future
    run = graphs.run
    if future is None:  # it was cancelled and let go meanwhile
        return SKIPPED
    if failed is not None:
        result = failed
    elif run.cancelled.is_set() or future._status is not PENDING:
        result = SKIPPED
    else:
        try:
            result = call_in_context(run.task_context, task.fn, task.args, task.kwargs, values)
        except BaseException as exc:
            result = Failure(exc)
    graphs.deliver(task, result)
    # What dask keeps until the graph is done: only what a dependent of it will take.
    return result if task.needed else None


def _failed_input(values: dict[str, Any]) -> Any:
    """The first dependency that failed or did not run, which its dependents pass on."""
    for value in values.values():
        if value is SKIPPED or isinstance(value, Failure):
            return value
    return None


def execute_remote(payload: bytes, *dep_results: bytes) -> bytes:
    """Run one task in a worker process, from its call pickled on its own by the driver
    (:func:`remote_payload`); return its outcome pickled on its own, a
    :class:`Failure` when it raised or its value does not pickle. So a call or a result
    that does not pickle fails its own task, not the chunk dask sends with it."""
    key = "?"
    try:
        key, fn, args, kwargs, dep_keys, known = loads(payload)
        mark(key)  # if this process dies now, it is this task's doing (see _crashes)
        values = known
        if dep_results:
            loaded = [loads(result) for result in dep_results]
            values = {**known, **dict(zip(dep_keys, loaded, strict=True))}
        failed = _failed_input(values) if values else None
        if failed is not None:
            return dumps(failed)
        value = call_in_context(_REMOTE_CONTEXT, fn, args, kwargs, values)
    except BaseException as exc:
        return _pickled_failure(exc)
    finally:
        mark(None)
    try:
        return dumps(value)
    except Exception as exc:
        return _pickled_failure(result_error(key, exc, value))


def _pickled_failure(error: BaseException) -> bytes:
    """``error`` as a pickled :class:`Failure`: with its traceback, else with the
    traceback as text, else (the error itself does not pickle) as a RuntimeError."""
    try:
        return dumps(Failure(error))
    except Exception:
        pass
    text = "".join(traceback.format_exception(error))
    try:
        return dumps(Failure(error, text))
    except Exception:
        return dumps(Failure(RuntimeError(f"{type(error).__qualname__}: {error}"), text))


def remote_payload(task: Task) -> bytes:
    """What :func:`execute_remote` takes for ``task``.

    :raises TypeError: naming the key and the value that does not pickle.
    """
    try:
        return dumps((task.key, task.fn, task.args, task.kwargs, task.dep_keys, task.known))
    except Exception as exc:
        raise call_error(task.key, task.fn, task.args, task.kwargs, exc) from exc


def node(key: str, fn: Callable[..., Any], first: Any, dep_keys: tuple[str, ...]) -> Any:
    """The graph node ``fn(first, *results of dep_keys)``: a dask ``Task`` where dask has
    them (2024.12 on), so that dask has no tuple to convert and keep beside it: one
    long-lived object less per task for the garbage collector to walk (P4); else the
    classic tuple."""
    if _DaskTask is None:
        return (fn, first, *dep_keys)
    return _DaskTask(key, fn, first, *[_TaskRef(dep) for dep in dep_keys])


def as_input(future: Future[Any]) -> Any:
    """A finished dependency, as ``_execute`` takes it."""
    if future._status is FINISHED:
        return future._value
    if future._status is CANCELLED:
        return Failure(CancelledError(future._key, f"dependency {future._key} was cancelled"))
    return Failure(future._value)


def build_graph(
    batch: list[Task], remote: bool, fail: Callable[[Task, BaseException], None]
) -> tuple[dict[str, Any], dict[str, Task]]:
    """The dask graph of ``batch``, and its tasks by key; ``remote``: for worker
    processes, where a task whose call does not pickle is ``fail``-ed alone (its
    dependents then learn its outcome as known)."""
    graph: dict[str, Any] = {}
    tasks: dict[str, Task] = {}
    for task in batch:
        future = task.future
        if future is None or future._status is not PENDING:  # cancelled since recorded
            continue
        key = future._key
        if task.deps:
            # Dependencies in this graph (added before, as submitted before) come from
            # dask; the others have ended, and their outcome is known.
            task.dep_keys = tuple(d._key for d in task.deps if d._key in graph)
            task.known = {d._key: as_input(d) for d in task.deps if d._key not in graph}
            task.args = to_refs(task.args)
            task.kwargs = to_refs(task.kwargs)
            task.deps = ()
        if not remote:
            graph[key] = node(key, execute, task, task.dep_keys)
        else:
            try:
                payload = remote_payload(task)
            except TypeError as exc:
                fail(task, exc)
                continue
            graph[key] = node(key, execute_remote, payload, task.dep_keys)
        tasks[key] = task
    return graph, tasks
