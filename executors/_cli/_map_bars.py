"""The bars of many small tasks (SPEC §11, P7 and P8): ``map`` in chunks, and over an
endless generator with a buffer."""

from __future__ import annotations

import statistics
from typing import Any

from . import _bench_work as work
from ._bars import Outcome, Size, in_own_process, interleave

__all__ = ["bench_p7", "bench_p8"]

# P8's buffer: chunks submitted and not yet yielded.
P8_BUFFERSIZE = 8


def _items_per_second(items: int, seconds: float) -> str:
    return f"{items / seconds:,.0f} items/s"


def bench_p7(size: Size, judged: bool) -> list[Outcome]:
    n, peer_n, chunk = size.p7_items, size.p7_peer_items, size.p7_chunksize
    samples = interleave(
        {
            "executor": lambda: work.p7_executor(n, chunk),
            "client_map": lambda: work.p7_client_map(peer_n),
        },
        size.repeats,
    )
    ours = n / statistics.median(samples["executor"])
    peer = peer_n / statistics.median(samples["client_map"])
    # For reference only, not barred: the local limit, and Ray where it is installed.
    pool = n / work.p7_process_pool(n, chunk)
    ray_seconds = work.p7_ray(peer_n)
    reference = f"; ProcessPoolExecutor(2).map(chunksize={chunk}): {pool:,.0f} items/s"
    if ray_seconds is not None:
        reference += f"; Ray remote+get: {peer_n / ray_seconds:,.0f} items/s"
    return [
        Outcome(
            "P7",
            f"DaskExecutor.map, {n:,} no-op items, chunksize={chunk}",
            f"{ours:,.0f} items/s",
            f"Client.map+gather, one task an item: {peer:,.0f} items/s{reference}",
            ours / peer,
            60.0,
            at_least=True,
            judged=judged,
            data={
                "items": n,
                "peer_items": peer_n,
                "chunksize": chunk,
                "seconds": samples,
                "process_pool_items_per_second": pool,
                "ray_seconds": ray_seconds,
            },
        )
    ]


def bench_p8(size: Size, judged: bool) -> list[Outcome]:
    small, large, chunk = size.p8_small, size.p8_large, size.p8_chunksize
    memory: dict[str, Any] = in_own_process(
        "executors._cli._bench_work", "p8", str(small), str(large), str(chunk), str(P8_BUFFERSIZE)
    )
    samples = interleave(
        {
            "buffered": lambda: work.p8_map(small, chunk, P8_BUFFERSIZE),
            "unbuffered": lambda: work.p8_map(small, chunk, None),
        },
        size.repeats,
    )
    mib = 1024 * 1024
    peak_small, peak_large = memory["small"]["peak_rss"], memory["large"]["peak_rss"]
    buffered = statistics.median(samples["buffered"])
    unbuffered = statistics.median(samples["unbuffered"])
    title = f"map over an endless generator, buffersize={P8_BUFFERSIZE}, chunksize={chunk}"
    return [
        Outcome(
            "P8",
            title + f": peak RSS after {large:,} items / after {small:,}",
            f"{peak_large / mib:,.0f} MiB after {large:,}",
            f"{peak_small / mib:,.0f} MiB after {small:,}",
            peak_large / peak_small,
            1.2,
            at_least=False,
            judged=judged,
            data={"memory": memory},
        ),
        Outcome(
            "P8",
            title + f": throughput on {small:,} items",
            _items_per_second(small, buffered),
            f"without buffersize: {_items_per_second(small, unbuffered)}",
            unbuffered / buffered,
            0.9,
            at_least=True,
            judged=judged,
            data={"seconds": samples},
        ),
    ]
