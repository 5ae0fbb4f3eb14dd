"""The ``if __name__ == "__main__":`` guard, checked before worker processes start.

Worker processes started with ``spawn`` or ``forkserver`` (the default for dask's process
pool and for a LocalCluster's nannies) import the script being run again. Code at the
script's top level that starts an executor then runs again in every worker, which fails
deep inside multiprocessing with a hundred lines of tracebacks from each process. So a
start that would spawn processes first looks at the script: if the line of the script
that is starting it is not inside the guard, it raises one clear error instead.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from pathlib import Path
from types import FrameType

__all__ = ["require_main_guard"]


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and len(test.comparators) == 1
    ):
        return False
    sides = (test.left, test.comparators[0])
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    constants = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and constants == ["__main__"]


def _unguarded_line() -> tuple[str, int] | None:
    """The script and line, outside the guard, whose top-level code is running this call;
    None when there is no such line (guarded, or no script file: -c, a REPL, a notebook)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str):
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    if frame is None:  # not called from the script's top level (a thread, an atexit hook)
        return None
    line = frame.f_lineno
    try:
        guards = _guarded_lines(path, os.stat(path).st_mtime_ns)
    except (OSError, SyntaxError, ValueError):
        return None
    if any(first <= line <= last for first, last in guards):
        return None
    return path, line


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str, mtime_ns: int) -> tuple[tuple[int, int], ...]:
    """The line ranges of the script's top-level ``if __name__ == "__main__":`` blocks.

    Cached per file version: parsing costs about 8 ms for a 400-line script, and a
    script may start executors many times."""
    tree = ast.parse(Path(path).read_bytes(), path)
    return tuple(
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.If) and _is_main_test(node.test)
    )


def require_main_guard(what: str, start_method: str) -> None:
    """Raise ``RuntimeError`` if starting ``what``, whose processes start with
    ``start_method``, would make each of them run the script's top level again."""
    if start_method == "fork":  # a forked child does not import the script again
        return
    where = _unguarded_line()
    if where is None:
        return
    path, line = where
    raise RuntimeError(
        f"{what} starts worker processes ({start_method!r}), which import your script "
        f"again: the executor is started at the top level of {path}, line {line}, so every "
        f"worker would start it too. Put the code that starts it under "
        f'if __name__ == "__main__":'
    )
