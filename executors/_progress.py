"""The progress bar of ``wait(..., progress=True)`` and ``as_completed(..., progress=True)``.

It counts the Futures it was given as ``task_finished`` reports them (SPEC §5: the signal
is only sent while someone listens, so the bar costs nothing when off), on the
dispatcher thread of each executor involved. It knows the Futures by their public API
only (``key``, ``done()``, ``cancelled()``, ``exception()``), and listens to every
executor, keeping the keys it was given. tqdm draws it (the ``progress`` extra), on
stderr, and only when stderr is a terminal: a log file or a pipe gets nothing. Lines
printed while a bar is drawn go above it (:func:`print_above_bars`).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, TextIO

from . import signals

__all__ = [
    "ProgressBar",
    "open_count_bar",
    "open_progress_bar",
    "print_above_bars",
    "progress_bar_shown",
]

MISSING_TQDM = (
    "progress=True draws its bar with tqdm, which is not installed: "
    "pip install 'executors[progress]' (no bar is drawn meanwhile)"
)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar_shown(stream: TextIO | None = None) -> bool:
    """Whether ``progress=True`` would draw a bar on ``stream`` (stderr) now."""
    if not _is_terminal(sys.stderr if stream is None else stream):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _tqdm_if_seen(stream: TextIO, stacklevel: int) -> Any:
    """tqdm, to draw a bar on ``stream``; None when the bar would not be seen: not a
    terminal, or tqdm missing (then a ``RuntimeWarning``, pointing ``stacklevel`` frames
    up, says how to get it)."""
    if not _is_terminal(stream):
        return None
    try:
        import tqdm
    except ImportError:
        warnings.warn(MISSING_TQDM, RuntimeWarning, stacklevel=stacklevel)
        return None
    return tqdm


def open_progress_bar(
    futures: Iterable[Future[Any]], stream: TextIO | None = None, user_frame: int = 1
) -> ProgressBar | None:
    """A bar over ``futures`` on ``stream`` (stderr), or None when it would not be seen:
    not a terminal, or tqdm missing (then a ``RuntimeWarning`` says how to get it, at the
    user's call: ``user_frame`` frames above this one)."""
    stream = sys.stderr if stream is None else stream
    tqdm = _tqdm_if_seen(stream, stacklevel=2 + user_frame)
    return None if tqdm is None else ProgressBar(list(futures), stream, tqdm)


def open_count_bar(total: int | None, stream: TextIO | None = None) -> Any:
    """A bar of map's items on ``stream`` (stderr), counted as they are yielded
    (``update(n)``, ``close()``); ``total`` None when the items are read lazily. None
    when it would not be seen (as :func:`open_progress_bar`)."""
    stream = sys.stderr if stream is None else stream
    tqdm = _tqdm_if_seen(stream, stacklevel=5)
    return None if tqdm is None else _new_bar(tqdm, total, stream, "item")


def _new_bar(tqdm: Any, total: int | None, stream: TextIO, unit: str) -> Any:
    """A tqdm bar counting ``unit``s on ``stream``, that leaves no thread behind."""

    class Bar(tqdm.tqdm):  # type: ignore[misc]
        monitor_interval = 0  # tqdm's monitor thread would outlive the bar

    return Bar(total=total, file=stream, unit=unit, desc=f"{unit}s", dynamic_ncols=True)


class ProgressBar:
    """Counts ``futures`` as they end; ``close()`` counts what is left and ends the bar."""

    def __init__(self, futures: list[Future[Any]], stream: TextIO, tqdm: Any) -> None:
        self._lock = threading.Lock()
        self._futures = {future.key: future for future in futures}  # type: ignore[attr-defined]
        self._counted: set[str] = set()
        self.failed = 0
        self.cancelled = 0
        self._bar: Any = _new_bar(tqdm, len(self._futures), stream, "task")
        signals.task_finished.connect(self._on_finished, weak=False)
        with self._lock:  # those that ended before the receiver was connected
            for key, future in self._futures.items():
                if future.done():
                    self._count(key, _state(future))
            self._bar.refresh()

    @property
    def counted(self) -> int:
        """How many of the Futures the bar has counted as ended."""
        return len(self._counted)

    def _on_finished(self, sender: object, *, key: str, state: str, **extra: Any) -> None:
        with self._lock:
            if self._bar is not None and key in self._futures:
                self._count(key, state)

    def _count(self, key: str, state: str) -> None:
        if key in self._counted:
            return
        self._counted.add(key)
        if state == "error":
            self.failed += 1
        elif state == "cancelled":
            self.cancelled += 1
        if self.failed or self.cancelled:
            self._bar.set_postfix_str(
                f"failed={self.failed}, cancelled={self.cancelled}", refresh=False
            )
        self._bar.update(1)

    def close(self) -> None:
        """Count the Futures that have ended but not been reported yet; end the bar."""
        signals.task_finished.disconnect(self._on_finished)
        with self._lock:
            if self._bar is None:
                return
            for key, future in self._futures.items():
                if future.done():
                    self._count(key, _state(future))
            self._bar.close()
            self._bar = None


def _state(future: Future[Any]) -> str:
    """``task_finished``'s word for how a done Future ended (its result is not fetched)."""
    if future.cancelled():
        return "cancelled"
    return "error" if future.exception(timeout=0) is not None else "finished"


def print_above_bars(line: str, stream: TextIO | None = None) -> None:
    """Print ``line`` on ``stream`` (stdout), above any progress bar being drawn on the
    terminal, not into its line."""
    stream = sys.stdout if stream is None else stream
    try:
        import tqdm
    except ImportError:
        print(line, file=stream, flush=True)
        return
    tqdm.tqdm.write(line, file=stream)
    stream.flush()
