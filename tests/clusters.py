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
