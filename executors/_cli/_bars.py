"""The bars of SPEC §11, each a function that measures one bar in this process.

Every bar is a ratio measured in one process run: the executor and its peer take turns
(A B, then B A, ...), each several times, and the medians are compared, so that the
machine's load and speed cancel out. The workloads are in ``_bench_work.py``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _bench_work as work

__all__ = ["BARS", "FULL", "QUICK", "Outcome", "Size", "in_own_process", "interleave"]


@dataclass(frozen=True)
class Size:
    """How much work each bar does, and how many samples each side gets."""

    repeats: int
    p1_tasks: int
    p2_calls: int
    p3_calls: int
    p3_repeats: int
    p4_tasks: int
    p5_batches: int
    p5_batch: int
    p7_items: int
    p7_peer_items: int  # Client.map of one task per item: ~500/s, so fewer items
    p7_chunksize: int
    p8_small: int
    p8_large: int
    p8_chunksize: int
    warm_up: bool = True  # a quick run judges nothing: it need not warm up either


FULL = Size(
    repeats=5,
    p1_tasks=10_000,
    p2_calls=200,
    p3_calls=100_000,
    p3_repeats=15,
    p4_tasks=10_000,
    p5_batches=10,
    p5_batch=10_000,
    p7_items=100_000,
    p7_peer_items=3_000,
    p7_chunksize=1_000,
    p8_small=100_000,
    p8_large=1_000_000,
    p8_chunksize=100,
)
QUICK = Size(
    repeats=1,
    p1_tasks=100,
    p2_calls=5,
    p3_calls=1_000,
    p3_repeats=3,
    p4_tasks=100,
    p5_batches=2,
    p5_batch=100,
    p7_items=2_000,
    p7_peer_items=100,
    p7_chunksize=100,
    p8_small=1_000,
    p8_large=10_000,
    p8_chunksize=10,
    warm_up=False,
)


@dataclass
class Outcome:
    """One line of the table: a bar, both sides, and whether the bar holds."""

    bar: str
    work: str
    ours: str
    peer: str
    score: float  # what the bar judges: a ratio, or microseconds for P3
    limit: float
    at_least: bool  # the score must be >= limit (else <=)
    unit: str = "x"
    judged: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool | None:
        if not self.judged:
            return None
        return self.score >= self.limit if self.at_least else self.score <= self.limit


def interleave(
    cases: dict[str, Callable[[], float]],
    repeats: int,
    warm_up: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Take ``repeats`` samples of each case, in turns, reversing the order every round.

    ``warm_up`` runs first, untimed: what only the first sample in a process pays
    (imports, a first cluster) must not fall on whichever case comes first."""
    if warm_up is not None:
        warm_up()
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            samples[name].append(cases[name]())
    return samples


def _rate(tasks: int, seconds: float) -> str:
    return f"{tasks / seconds:,.0f} tasks/s"


def bench_p1(size: Size, judged: bool) -> list[Outcome]:
    n = size.p1_tasks
    samples = interleave(
        {
            "executor": lambda: work.p1_executor(n),
            "client_submit": lambda: work.p1_client_submit(n),
            "client_map": lambda: work.p1_client_map(n),
        },
        size.repeats,
        warm_up=(lambda: (work.p1_executor(100), work.p1_client_submit(100)))
        if size.warm_up
        else None,
    )
    medians = {name: statistics.median(values) for name, values in samples.items()}
    data = {"tasks": n, "seconds": samples, "median_seconds": medians}
    title = f"DaskExecutor submit+wait, {n:,} no-op tasks"
    ours = _rate(n, medians["executor"])
    return [
        Outcome(
            "P1",
            title,
            ours,
            f"Client.submit loop+gather: {_rate(n, medians['client_submit'])}",
            medians["client_submit"] / medians["executor"],
            1.0,
            at_least=True,
            judged=judged,
            data=data,
        ),
        Outcome(
            "P1",
            title,
            ours,
            f"Client.map+gather: {_rate(n, medians['client_map'])}",
            medians["client_map"] / medians["executor"],
            0.95,
            at_least=True,
            judged=judged,
        ),
    ]


def bench_p2(size: Size, judged: bool) -> list[Outcome]:
    ours, raw = work.p2_round_trips(size.p2_calls)
    ours_median, raw_median = statistics.median(ours), statistics.median(raw)
    return [
        Outcome(
            "P2",
            f"round trip of one small task, {size.p2_calls} times",
            f"{ours_median * 1e3:.2f} ms",
            f"Client.submit().result(): {raw_median * 1e3:.2f} ms",
            ours_median / raw_median,
            1.15,
            at_least=False,
            judged=judged,
            data={"seconds": {"executor": ours, "client": raw}},
        )
    ]


def bench_p3(size: Size, judged: bool) -> list[Outcome]:
    n = size.p3_calls
    samples = interleave(
        {"executor": lambda: work.p3_executor(n), "direct": lambda: work.p3_direct(n)},
        size.p3_repeats,
    )
    ours, direct = statistics.median(samples["executor"]), statistics.median(samples["direct"])
    return [
        Outcome(
            "P3",
            "LocalExecutor submit+result of a no-op",
            f"{ours * 1e6:.2f} µs",
            f"direct call: {direct * 1e6:.2f} µs",
            (ours - direct) * 1e6,
            3.0,
            at_least=False,
            unit=" µs over",
            judged=judged,
            data={"calls": n, "seconds_per_call": samples},
        )
    ]


def bench_p4(size: Size, judged: bool) -> list[Outcome]:
    n = size.p4_tasks
    outcomes = []
    for scheduler in ("synchronous", "threads", "processes"):
        samples = interleave(
            {
                "executor": lambda s=scheduler: work.p4_executor(s, n),  # type: ignore[misc]
                "flat_graph": lambda s=scheduler: work.p4_flat_graph(s, n),  # type: ignore[misc]
            },
            size.repeats + 2,  # cheap samples, and the noisiest bar
            warm_up=(
                lambda s=scheduler: (  # type: ignore[misc]
                    work.p4_executor(s, 100),
                    work.p4_flat_graph(s, 100),
                )
            )
            if size.warm_up
            else None,
        )
        samples["delayed"] = [work.p4_delayed(scheduler, n)]  # reference only: slow
        medians = {name: statistics.median(values) for name, values in samples.items()}
        outcomes.append(
            Outcome(
                "P4",
                f"LocalDaskExecutor({scheduler!r}), {n:,} no-op tasks",
                _rate(n, medians["executor"]),
                f"dask get, flat graph: {_rate(n, medians['flat_graph'])} "
                f"(dask.compute over delayed: {_rate(n, medians['delayed'])})",
                medians["flat_graph"] / medians["executor"],
                0.8,
                at_least=True,
                judged=judged,
                data={"tasks": n, "seconds": samples, "median_seconds": medians},
            )
        )
    return outcomes


def in_own_process(module: str, *args: str) -> Any:
    """Run ``python -m module args`` and return the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _p5_sample(variant: str, size: Size) -> dict[str, Any]:
    """One P5 run in a process of its own (peak RSS is per process)."""
    result: dict[str, Any] = in_own_process(
        "executors._cli._bench_work", variant, str(size.p5_batches), str(size.p5_batch)
    )
    return result


def bench_p5(size: Size, judged: bool) -> list[Outcome]:
    runs = {"executor": _p5_sample("executor", size), "client": _p5_sample("client", size)}
    ours, raw = runs["executor"], runs["client"]
    retained = {name: count for name, count in ours["retained"].items() if count}
    mib = 1024 * 1024
    tasks = size.p5_batches * size.p5_batch

    def peak(run: dict[str, Any]) -> str:
        grown = (run["peak_rss"] - run["rss_before"]) / mib
        return f"peak {run['peak_rss'] / mib:,.0f} MiB ({grown:+,.0f} after start)"

    return [
        Outcome(
            "P5",
            f"driver memory, {tasks:,} tasks in batches of {size.p5_batch:,}",
            peak(ours) + (f"; RETAINED {retained}" if retained else "; nothing retained"),
            f"Client.submit+gather: {peak(raw)}",
            ours["peak_rss"] / raw["peak_rss"] if not retained else float("inf"),
            1.10,
            at_least=False,
            judged=judged or bool(retained),
            data=runs,
        )
    ]


def bench_p6(size: Size, judged: bool) -> list[Outcome]:
    samples = interleave(
        {"executor": work.p6_executor, "raw": work.p6_raw},
        size.repeats + 2,
        warm_up=(lambda: (work.p6_executor(), work.p6_raw())) if size.warm_up else None,
    )
    ours, raw = statistics.median(samples["executor"]), statistics.median(samples["raw"])
    return [
        Outcome(
            "P6",
            "start()+stop of a temporary 2-worker LocalCluster",
            f"{ours:.2f} s",
            f"LocalCluster+Client start and close: {raw:.2f} s",
            ours / raw,
            1.05,
            at_least=False,
            judged=judged,
            data={"seconds": samples},
        )
    ]


BARS: dict[str, Callable[[Size, bool], list[Outcome]]] = {
    "P1": bench_p1,
    "P2": bench_p2,
    "P3": bench_p3,
    "P4": bench_p4,
    "P5": bench_p5,
    "P6": bench_p6,
}
