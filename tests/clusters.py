"""Cluster classes and factories for the creation-mode tests, importable by name."""

from __future__ import annotations

from typing import Any

import distributed

# What each RecordingCluster / make_cluster call was given, newest last.
MADE: list[dict[str, Any]] = []
ADAPTED: list[dict[str, Any]] = []


class RecordingCluster(distributed.LocalCluster):  # type: ignore[misc]
    """A LocalCluster that records its keyword arguments and adapt() calls."""

    def __init__(self, **kwargs: Any) -> None:
        MADE.append({"made_by": "class", **kwargs})
        super().__init__(**kwargs)

    def adapt(self, **kwargs: Any) -> Any:
        ADAPTED.append(kwargs)
        return super().adapt(**kwargs)


def make_cluster(**kwargs: Any) -> distributed.LocalCluster:
    """A factory: any callable returning a cluster will do."""
    MADE.append({"made_by": "factory", **kwargs})
    return distributed.LocalCluster(**kwargs)


class NarrowCluster(distributed.LocalCluster):  # type: ignore[misc]
    """A wrapper class whose ``__init__`` takes only what it needs, as test doubles and
    wrapper classes do: no ``silence_logs``, no ``security``, no ``**kwargs``."""

    def __init__(
        self, n_workers: int = 1, asynchronous: bool = False, dashboard_address: str = ":0"
    ) -> None:
        MADE.append({"made_by": "narrow", "n_workers": n_workers, "asynchronous": asynchronous})
        super().__init__(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            host="tcp://127.0.0.1",
            dashboard_address=dashboard_address,
            asynchronous=asynchronous,
        )


class AsyncAdaptCluster(RecordingCluster):
    """A cluster whose ``adapt()`` is a coroutine, as dask-kubernetes' operator
    ``KubeCluster`` has it: scaling only starts once it is awaited."""

    async def adapt(self, **kwargs: Any) -> Any:  # type: ignore[override]
        ADAPTED.append({"awaited": True, **kwargs})
        return distributed.LocalCluster.adapt(self, **kwargs)
