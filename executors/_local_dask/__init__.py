"""``LocalDaskExecutor``: dask's local schedulers behind the executors API.

Lazy: ``submit`` only records the task. A wait hands every recorded task, as one flat
graph, to one call of dask's local scheduler on a driver thread of the run; the caller
just waits on the Futures, so timeouts and cancellation work while the graph computes.

- ``_executor.py``: the facade and its settings.
- ``_graphs.py``: the run: recorded tasks, the drivers that compute graphs, the settling.
- ``_nodes.py``: what a graph node runs, in a pool thread or a worker process.
- ``_pool.py``: the thread or process pool, and the chunks dask hands a worker.
"""

from __future__ import annotations

from ._executor import LocalDaskExecutor

__all__ = ["LocalDaskExecutor"]
