"""The benchmark runner: SPEC §11's bars P1-P6, each executor against its peer.

``python -m executors bench`` (or ``python benchmarks/run.py``). Every bar is a ratio
measured in one process run: the executor and its peer take turns (A B, then B A, ...),
each several times, and the medians are compared, so that the machine's load and speed
cancel out. The workloads are in ``_bench_work.py``. ``--quick`` runs everything small,
to check that the runner works; its timings are not judged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

from . import _bench_work as work
from ._bench_work import quiet_dask
from ._version import __version__

__all__ = ["BARS", "main"]


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


FULL = Size(
    repeats=5,
    p1_tasks=10_000,
    p2_calls=200,
    p3_calls=100_000,
    p3_repeats=15,
    p4_tasks=10_000,
    p5_batches=10,
    p5_batch=10_000,
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
        warm_up=lambda: (work.p1_executor(100), work.p1_client_submit(100)),
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
            warm_up=lambda s=scheduler: (  # type: ignore[misc]
                work.p4_executor(s, 100),
                work.p4_flat_graph(s, 100),
            ),
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


def _in_own_process(module: str, *args: str) -> Any:
    """Run ``python -m module args`` and return the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _p5_sample(variant: str, size: Size) -> dict[str, Any]:
    """One P5 run in a process of its own (peak RSS is per process)."""
    result: dict[str, Any] = _in_own_process(
        "executors._bench_work", variant, str(size.p5_batches), str(size.p5_batch)
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
        warm_up=lambda: (work.p6_executor(), work.p6_raw()),
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


def _machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "executors": __version__,
        "dask": version("dask"),
        "distributed": version("distributed"),
    }


def _table(outcomes: list[Outcome]) -> list[str]:
    rows = [("bar", "work", "executors", "peer", "score", "bar", "holds")]
    for o in outcomes:
        verdict = {True: "yes", False: "NO", None: "-"}[o.holds]
        sign = ">=" if o.at_least else "<="
        unit = o.unit if o.unit != "x" else "x"
        rows.append(
            (o.bar, o.work, o.ours, o.peer, f"{o.score:.2f}{unit}", f"{sign} {o.limit}", verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def run(bars: Sequence[str], quick: bool, out: TextIO) -> dict[str, Any]:
    """Run ``bars``, printing each outcome as it comes and the table at the end."""
    report: dict[str, Any] = {"machine": _machine(), "quick": quick, "bars": []}
    load_before = os.getloadavg()
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for bar in bars:
        print(f"{bar} ...", file=out, flush=True)
        # Each bar in a fresh process: what one bar leaves behind (the threads of a
        # closed cluster's loop, a heap the garbage collector must walk) would weigh on
        # the next, and on the executor and its peer unequally.
        for fields in _in_own_process("executors._bench", bar, "quick" if quick else "full"):
            outcome = Outcome(**fields)
            outcomes.append(outcome)
            print(f"  {outcome.ours} | {outcome.peer}", file=out, flush=True)
    report["machine"]["load_before"] = load_before
    report["machine"]["load_after"] = os.getloadavg()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["bars"] = [{**asdict(o), "holds": o.holds} for o in outcomes]
    machine = report["machine"]
    print(file=out)
    print(
        f"{machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"dask/distributed {machine['dask']}/{machine['distributed']}; load average "
        f"{load_before[0]:.2f} before, {machine['load_after'][0]:.2f} after; "
        f"{report['seconds']:.0f} s",
        file=out,
    )
    if quick:
        print(
            "--quick: the work is too small for the timings to mean anything; nothing is judged",
            file=out,
        )
    for line in _table(outcomes):
        print(line, file=out)
    return report


def parser(parent: argparse._SubParsersAction[Any] | None = None) -> argparse.ArgumentParser:
    """The ``bench`` options, as a sub-command of ``python -m executors`` or on their own."""
    description = (
        "Measure SPEC §11's bars P1-P6: each executor against its peer, in turns, medians. "
        "Exits 1 if a bar does not hold."
    )
    if parent is None:
        bench = argparse.ArgumentParser(prog="benchmarks/run.py", description=description)
    else:
        bench = parent.add_parser(
            "bench", help="run the benchmarks and print the ratios", description=description
        )
    bench.add_argument(
        "--bar",
        action="append",
        choices=sorted(BARS),
        help="run only this bar (repeat for several; default: all)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="tiny workloads, one sample each: checks the runner works, judges nothing",
    )
    bench.add_argument(
        "--json",
        type=Path,
        default=Path("executors-bench.json"),
        metavar="PATH",
        help="where to write the results and every sample (default: %(default)s)",
    )
    return bench


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the bars ``args`` asks for; 0 if every judged bar holds, 1 if one does not."""
    bars = [bar for bar in BARS if not args.bar or bar in args.bar]
    report = run(bars, args.quick, out)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results and samples: {args.json}", file=out)
    return 1 if any(bar["holds"] is False for bar in report["bars"]) else 0


if __name__ == "__main__":  # one bar, in a process of its own: BAR quick|full
    quiet_dask()
    bar, size = sys.argv[1], sys.argv[2]
    measured = BARS[bar](QUICK if size == "quick" else FULL, size == "full")
    print(json.dumps([asdict(outcome) for outcome in measured]))
