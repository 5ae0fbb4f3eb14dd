"""``LocalDaskExecutor``: dask's local schedulers, threads, processes or synchronous
(SPEC §3.2), and its settings."""

from __future__ import annotations

from typing import Any

import dask
import dask.multiprocessing
import dask.system

from .._base import Executor
from .._main_guard import require_main_guard
from .._run import Run
from .._task import is_positive_int
from ._graphs import Graphs

__all__ = ["SCHEDULERS", "LocalDaskExecutor"]

SCHEDULERS = {
    "threads": "threads",
    "threading": "threads",
    "processes": "processes",
    "multiprocessing": "processes",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
}


class LocalDaskExecutor(Executor):
    """Runs tasks with dask's local schedulers, in this process or in a process pool.

    :param scheduler: ``"threads"`` (``"threading"``), ``"processes"``
        (``"multiprocessing"``) or ``"synchronous"`` (``"sync"``,
        ``"single-threaded"``), any case.
    :param num_workers: size of the pool; ``dask.system.CPU_COUNT`` by default.
    :param dask_config: dask configuration applied with ``dask.config.set`` while the
        graph computes (``__`` in a name stands for a dot).
    :raises ValueError: for an unknown scheduler or a bad ``num_workers``.
    """

    def __init__(
        self, scheduler: str = "threads", num_workers: int | None = None, **dask_config: Any
    ) -> None:
        super().__init__()
        name = scheduler.lower() if isinstance(scheduler, str) else None
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
        if num_workers is not None and not is_positive_int(num_workers):
            raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
        self._scheduler = SCHEDULERS[name]
        self._num_workers = num_workers
        self._dask_config = dask_config
        self._config = {key.replace("__", "."): value for key, value in dask_config.items()}

    @property
    def scheduler(self) -> str:
        """The scheduler's canonical name: ``threads``, ``processes`` or ``synchronous``."""
        return self._scheduler

    @property
    def num_workers(self) -> int:
        """How many threads or processes compute tasks (1 for ``synchronous``)."""
        if self._scheduler == "synchronous":
            return 1
        return self._num_workers or dask.system.CPU_COUNT

    def _settings(self) -> dict[str, Any]:
        return {"scheduler": self._scheduler, "num_workers": self._num_workers, **self._dask_config}

    def _backend(self, run: Run) -> Graphs:
        if self._scheduler == "processes":
            context = dask.multiprocessing.get_context()  # type: ignore[no-untyped-call]
            require_main_guard('LocalDaskExecutor("processes")', context.get_start_method())
        return Graphs(run, self)
