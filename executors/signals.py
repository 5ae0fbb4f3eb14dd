"""Blinker signals that executors send about their runs, tasks and workers.

Every signal's sender is the executor, so ``signal.connect(receiver, sender=ex)`` listens
to one executor. Receivers are called with keyword arguments only, always on the
executor's dispatcher thread (never inside ``submit``/``wait``, never on an event loop),
in the order the events happened; a receiver that raises is logged and the others still
run. Write receivers to accept ``**extra`` so new keyword arguments do not break them::

    from executors import signals

    def on_finished(sender, *, key, state, **extra):
        print(key, state)

    signals.task_finished.connect(on_finished, sender=ex)

Blinker holds receivers *weakly* by default: a lambda or a closure that nothing else
references is garbage-collected and silently stops receiving. Keep a reference, or
connect with ``weak=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from blinker import Namespace

__all__ = [
    "WorkerInfo",
    "connection_lost",
    "executor_started",
    "executor_stopped",
    "reconnected",
    "reconnecting",
    "run_cancelled",
    "task_cancelled",
    "task_finished",
    "worker_added",
    "worker_removed",
]

_signals = Namespace()


@dataclass(frozen=True)
class WorkerInfo:
    """What a ``worker_added``/``worker_removed`` receiver learns about a Dask worker.

    Hashable (``resources`` does not take part in the hash), so workers can be kept in
    a set. ``name`` is the worker's ``--name`` (a LocalCluster numbers them); the address
    changes when a worker restarts, the name only if it was not given.
    """

    address: str
    name: str
    nthreads: int
    memory_limit: int | None  # bytes; None when the worker has no limit
    resources: dict[str, float] = field(default_factory=dict, hash=False)


executor_started = _signals.signal(
    "executor-started",
    doc="""The executor is ready: sent first in every run.

    :param dashboard_link: the Dask dashboard URL, or None when there is none.
    """,
)
executor_stopped = _signals.signal(
    "executor-stopped",
    doc="""The executor released everything: sent last in every run, before the
    ``with`` block exits.

    :param cancelled: True when the run had been cancelled.
    """,
)
worker_added = _signals.signal(
    "worker-added",
    doc="""A Dask worker joined (workers present at start are announced too).

    :param worker: a :class:`WorkerInfo`.
    """,
)
worker_removed = _signals.signal(
    "worker-removed",
    doc="""A Dask worker left.

    :param worker: a :class:`WorkerInfo`.
    :param expected: True for a graceful or adaptive removal, False for a crash.
    """,
)
run_cancelled = _signals.signal(
    "run-cancelled",
    doc="""The run was cancelled (``cancel()``, or leaving ``start()`` by an exception);
    sent once per run.

    :param reason: the reason given to ``cancel()``, or the exception's name.
    """,
)
task_cancelled = _signals.signal(
    "task-cancelled",
    doc="""A Future ended cancelled because its run was cancelled.

    :param key: the task key.
    """,
)
task_finished = _signals.signal(
    "task-finished",
    doc="""A Future ended. Sent only while the signal has receivers, so it costs
    nothing otherwise.

    :param key: the task key.
    :param state: ``"finished"``, ``"error"`` or ``"cancelled"``.
    """,
)
connection_lost = _signals.signal(
    "connection-lost",
    doc="""The connection to the Dask scheduler broke.

    :param address: the scheduler address.
    :param error: what broke it (a string).
    """,
)
reconnecting = _signals.signal(
    "reconnecting",
    doc="""A connection attempt failed; the next one follows after ``delay`` seconds.

    :param address: the scheduler address.
    :param attempt: the number of the attempt that failed (from 1).
    :param delay: seconds until the next attempt.
    """,
)
reconnected = _signals.signal(
    "reconnected",
    doc="""The executor is connected again after a ``connection_lost``.

    :param address: the scheduler address.
    :param resubmitted: how many unfinished tasks were submitted again.
    """,
)
