"""The demo workload: count primes in ranges (fan-out, a map), then add the counts
(fan-in, one task)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

from .. import Executor, signals
from .._progress import print_above_bars, progress_bar_shown
from ._watch import describe

__all__ = ["count_primes", "run_demo"]

T = TypeVar("T")

CHUNK = 20_000


def count_primes(start: int, stop: int) -> int:
    """How many primes lie in ``[start, stop)``, by trial division (CPU-bound on purpose)."""
    count = 0
    for n in range(max(start, 2), stop):
        if n % 2 == 0:
            count += n == 2
            continue
        for d in range(3, math.isqrt(n) + 1, 2):
            if n % d == 0:
                break
        else:
            count += 1
    return count


def total(counts: list[int]) -> int:
    return sum(counts)


def _sieve(limit: int) -> int:
    """The reference answer, computed directly."""
    if limit < 3:
        return 0
    marks = bytearray([1]) * limit
    marks[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if marks[n]:
            marks[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(marks)


def _report(done: Iterable[T], tasks: int, bar: bool, out: TextIO) -> Iterator[T]:
    """``done`` as it comes; without a progress bar, a line every tenth of the way."""
    for count, item in enumerate(done, 1):
        if not bar and (count == tasks or count % max(1, tasks // 10) == 0):
            print(f"  {count}/{tasks} ranges counted", file=out, flush=True)
        yield item


def run_demo(executor: Executor, tasks: int, out: TextIO, chunksize: int | str = "auto") -> bool:
    """Run the workload on ``executor``; print events and a summary; True if correct.

    The ranges are counted by ``map`` (chunk sizes of its own choosing, unless
    ``chunksize`` fixes them), then added up by one more task."""
    limit = tasks * CHUNK
    ran = 0

    def count_task(sender: object, **kwargs: Any) -> None:
        nonlocal ran
        ran += 1

    def on_event(name: str) -> Callable[..., None]:
        def receiver(sender: object, **kwargs: Any) -> None:
            worker = kwargs.pop("worker", None)
            details = [describe(worker)] if worker is not None else []
            details += [f"{k}={v}" for k, v in kwargs.items()]
            # Above the progress bar, if one is drawn: never into its line.
            print_above_bars(f"[{name}] {'  '.join(details)}".rstrip(), out)

        return receiver

    receivers = {
        signal: on_event(signal.name)
        for signal in (
            signals.executor_started,
            signals.executor_stopped,
            signals.worker_added,
            signals.worker_removed,
            signals.run_cancelled,
        )
    }
    with contextlib.ExitStack() as connected:
        for signal, receiver in receivers.items():  # disconnected from every sender after
            connected.enter_context(signal.connected_to(receiver, sender=executor))
        connected.enter_context(signals.task_finished.connected_to(count_task, sender=executor))
        started = time.perf_counter()
        with executor:
            bar = progress_bar_shown()  # else a line every tenth of the way
            starts = [i * CHUNK for i in range(tasks)]
            stops = [start + CHUNK for start in starts]
            counts = executor.map(count_primes, starts, stops, chunksize=chunksize, progress=bar)
            answer = executor.submit(total, list(_report(counts, tasks, bar, out))).result()
        elapsed = time.perf_counter() - started
    expected = _sieve(limit)
    print(
        f"{type(executor).__name__}: {ran} tasks in {elapsed:.2f} s "
        f"({ran / elapsed:.1f} tasks/s); primes below {limit:,}: {answer:,} "
        f"({'correct' if answer == expected else f'WRONG, expected {expected:,}'})",
        file=out,
    )
    return bool(answer == expected)
