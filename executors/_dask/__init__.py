"""Everything that talks to dask.distributed: ``DaskExecutor`` and the parts of its runs.

- ``_executor.py``: the facade and its settings.
- ``_backend.py``: one run, put together from the parts below, made and released in order.
- ``_table.py``: the run's tasks: sending them (in batches: ``_batches.py``), watching
  them, forgetting them; ``_fetch.py`` brings their results here.
- ``_recovery.py``, ``_retry.py``, ``_session.py``: the scheduler lost and found again;
  the connection policy; the client and cluster.
- ``_events.py`` (the driver's side) and ``_flag.py`` (the workers' side): a run's
  cancellation Event.
- ``_workers.py``: worker events. ``_loop.py``: the loop thread. ``_on_worker.py``: what
  a task runs on its worker.
"""

from __future__ import annotations

from ._executor import DaskExecutor

__all__ = ["DaskExecutor"]
