"""Run a blocking script's functions on one of three executors, behind one API.

- :class:`LocalExecutor`: each function at once, in the calling thread (debugging).
- :class:`LocalDaskExecutor`: dask's local schedulers (threads, processes, synchronous).
- :class:`DaskExecutor`: dask.distributed, on a temporary cluster, a cluster object or a
  running scheduler's address.

Switching is one line; ``submit``, ``map``, ``wait``, ``cancel`` and the signals in
:mod:`executors.signals` are the same on each.
"""

from __future__ import annotations

from . import exceptions, signals
from ._base import Executor
from ._context import should_run
from ._dask import DaskExecutor
from ._future import Future
from ._local import LocalExecutor
from ._local_dask import LocalDaskExecutor
from ._logging import configure_logging
from ._version import __version__
from ._waiting import as_completed
from .exceptions import CancelledError, ConnectError, NoWorkersError, ProcessDiedError
from .signals import WorkerInfo

__all__ = [
    "CancelledError",
    "ConnectError",
    "DaskExecutor",
    "Executor",
    "Future",
    "LocalDaskExecutor",
    "LocalExecutor",
    "NoWorkersError",
    "ProcessDiedError",
    "WorkerInfo",
    "__version__",
    "as_completed",
    "configure_logging",
    "exceptions",
    "should_run",
    "signals",
]
