"""Pickling one task at a time, so that what does not pickle fails alone (SPEC §13).

Dask pickles what it sends in bulk: a whole graph update (DaskExecutor's batch), a whole
chunk of tasks for a worker process (LocalDaskExecutor's ``processes``). One argument
that does not pickle would fail every task sent with it. So each task's call is pickled
here, on its own, before it is sent, and its result before it is sent back: Dask then
carries bytes, which always pickle, and a failure names the one task it belongs to.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle

__all__ = ["call_error", "dumps", "loads", "restore_exit_code", "result_error"]


def dumps(obj: Any) -> bytes:
    """``obj`` as bytes: by the standard pickle where it can (about 3x cheaper), by
    cloudpickle where that is needed (lambdas, closures, functions of ``__main__`` or of
    a module registered to travel by value), as distributed itself decides."""
    if not cloudpickle.list_registry_pickle_by_value():
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
        else:
            if b"__main__" not in data:
                return data
    data = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    assert isinstance(data, bytes)
    return data


loads = pickle.loads


def _culprit(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Which part of a call does not pickle, and its type (only asked after a failure)."""
    parts: list[tuple[str, Any]] = [("its function", fn)]
    parts += [(f"argument {i}", arg) for i, arg in enumerate(args)]
    parts += [(f"keyword argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in parts:
        try:
            dumps(value)
        except Exception:
            return f"{label} (a {type(value).__module__}.{type(value).__qualname__})"
    return "its call"


def call_error(
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: BaseException,
) -> TypeError:
    """The error of a task whose call could not be pickled: it names the key and the
    value at fault."""
    return TypeError(
        f"task {key!r} cannot be sent to where it runs: {_culprit(fn, args, kwargs)} does "
        f"not pickle ({type(error).__name__}: {error})"
    )


def result_error(key: str, error: BaseException, value: Any = None) -> TypeError:
    """The error of a task whose result could not be pickled to come back (``value``,
    when it is at hand; Dask's own error names its type otherwise)."""
    kind = "" if value is None else f" (a {type(value).__module__}.{type(value).__qualname__})"
    first = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    detail = first.strip().splitlines()[0] if first.strip() else ""
    return TypeError(
        f"the result of task {key!r}{kind} cannot be sent back from where it ran: it does "
        f"not pickle ({type(error).__name__}: {detail})"
    )


def restore_exit_code(error: BaseException) -> BaseException:
    """``error``, with the ``code`` of a ``SystemExit`` that came through pickle again.

    tblib's pickling support, which distributed installs for every exception class,
    rebuilds a ``SystemExit`` without calling it with its arguments: ``args`` come back,
    ``code`` is left None."""
    if isinstance(error, SystemExit) and error.code is None and error.args:
        error.code = error.args[0] if len(error.args) == 1 else str(error.args)
    return error
