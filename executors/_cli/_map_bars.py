"""The bars of many small tasks (SPEC §11, P7 to P9): ``map`` in chunks, over an
endless generator with a buffer, and with chunk sizes of its own choosing."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import Any

from .. import Executor
from . import _bench_map_work as map_work
from . import _bench_work as work
from ._bars import Outcome, Size, in_own_process, interleave

__all__ = ["bench_p7", "bench_p8", "bench_p9"]

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
        "executors._cli._bench_work", "p8", str(small), str(large), "auto", str(P8_BUFFERSIZE)
    )
    samples = interleave(
        {
            "buffered": lambda: work.p8_map(small, "auto", P8_BUFFERSIZE),
            "unbuffered": lambda: work.p8_map(small, "auto", None),
        },
        size.repeats,
    )
    fixed_seconds, trip = work.p8_bound(small, chunk, P8_BUFFERSIZE, size.p2_calls // 10 + 1)
    mib = 1024 * 1024
    peak_small, peak_large = memory["small"]["peak_rss"], memory["large"]["peak_rss"]
    buffered = statistics.median(samples["buffered"])
    unbuffered = statistics.median(samples["unbuffered"])
    title = f"map over an endless generator, buffersize={P8_BUFFERSIZE}, auto chunks"
    bound = P8_BUFFERSIZE * chunk / trip
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
        Outcome(
            "P8",
            f"for reference: chunksize={chunk}, buffersize={P8_BUFFERSIZE}, {small:,} items, "
            f"against its bound K*c/RTT (RTT {trip * 1000:.1f} ms)",
            _items_per_second(small, fixed_seconds),
            f"bound: {bound:,.0f} items/s",
            small / fixed_seconds / bound,
            0.0,
            at_least=True,
            judged=False,
            data={"seconds": fixed_seconds, "round_trip": trip},
        ),
    ]


# P9's fixed chunk sizes; the two best of a screening run again beside auto.
P9_SIZES = (1, 10, 100, 1_000, 10_000)
P9_FINALISTS = 2
# What P9 asks of auto chunks against joblib's dask backend, by function.
P9_JOBLIB = {"no-op": 10.0}


def bench_p9(size: Size, judged: bool) -> list[Outcome]:
    return _p9("dask", size, judged) + _p9("processes", size, judged)


def _p9(kind: str, size: Size, judged: bool) -> list[Outcome]:
    scale = 1 if size.warm_up else 100  # --quick: a hundredth of the items
    name = "DaskExecutor, LocalCluster 2x1" if kind == "dask" else "LocalDaskExecutor processes, 2"
    outcomes = []
    with map_work.sides(kind) as (ex, client):
        for label, (fn, items) in map_work.FUNCTIONS.items():
            n = max(items // scale, 10)
            work_name = f"{name}: map({label}, range({n:,}))"
            outcomes += _p9_function(ex, client is not None, work_name, label, fn, n, size, judged)
        if kind == "dask":
            fn, items = map_work.FUNCTIONS["no-op"]
            n = items // scale
            firsts = [map_work.first_result(ex, fn, n) for _ in range(size.repeats)]
            trip = map_work.round_trip(ex, max(size.p2_calls // 4, 5))
            first = statistics.median(firsts)
            outcomes.append(
                Outcome(
                    "P9",
                    f"{name}: first result of map(no-op, range({n:,})), against one task's "
                    "round trip (P2)",
                    f"{first * 1000:.1f} ms",
                    f"round trip: {trip * 1000:.1f} ms",
                    first / trip,
                    3.0,
                    at_least=False,
                    judged=judged,
                    data={"first": firsts, "round_trip": trip},
                )
            )
    return outcomes


def _p9_function(
    ex: Executor,
    with_joblib: bool,
    work_name: str,
    label: str,
    fn: Callable[[Any], Any],
    n: int,
    size: Size,
    judged: bool,
) -> list[Outcome]:
    """Auto against the best fixed chunk size (screened, then its two best in turns with
    auto), and against joblib on the same cluster."""
    scale = 1 if size.warm_up else 100
    screened = map_work.screen(ex, fn, n, P9_SIZES, cap=5.0 / scale)
    finalists = sorted(screened, key=screened.__getitem__)[:P9_FINALISTS]
    cases: dict[str, Callable[[], float]] = {
        "auto": lambda: map_work.map_seconds(ex, fn, n, "auto")
    }
    for chunk in finalists:
        cases[str(chunk)] = functools.partial(map_work.map_seconds, ex, fn, n, chunk)
    if with_joblib:
        cases["joblib"] = lambda: map_work.joblib_seconds(fn, n) or float("nan")
    samples = interleave(cases, size.repeats)
    medians = {case: statistics.median(times) for case, times in samples.items()}
    best = min(finalists, key=lambda chunk: medians[str(chunk)])
    auto = medians["auto"]
    outcomes = [
        Outcome(
            "P9",
            work_name + ", auto against the best fixed chunksize",
            f"auto: {1 / auto:,.0f} items/s",
            f"chunksize={best}: {1 / medians[str(best)]:,.0f} items/s (screened: "
            + ", ".join(f"{c}: {1 / t:,.0f}/s" for c, t in screened.items())
            + ")",
            medians[str(best)] / auto,
            0.9,
            at_least=True,
            judged=judged,
            data={"seconds_an_item": samples, "screened": screened},
        )
    ]
    joblib = medians.get("joblib", float("nan"))
    if joblib == joblib:  # not NaN: joblib is installed
        outcomes.append(
            Outcome(
                "P9",
                work_name + ", auto against joblib's dask backend (batch_size='auto')",
                f"auto: {1 / auto:,.0f} items/s",
                f"joblib: {1 / joblib:,.0f} items/s",
                joblib / auto,
                P9_JOBLIB.get(label, 1.0),
                at_least=True,
                judged=judged,
                data={"seconds_an_item": samples["joblib"]},
            )
        )
    return outcomes
