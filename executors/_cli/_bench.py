"""The benchmark runner: SPEC §11's bars, each executor against its peer.

``python -m executors bench`` (or ``python benchmarks/run.py``) runs each bar
(``_bars.py``) in a process of its own and prints a table of the ratios; the workloads
are in ``_bench_work.py``. ``--quick`` runs everything small, to check that the runner
works; its timings are not judged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ._bars import BARS as _BARS
from ._bars import FULL, QUICK, Outcome, in_own_process
from ._bench_work import quiet_dask
from ._map_bars import bench_p7, bench_p8, bench_p9

__all__ = ["BARS", "main"]

BARS = {**_BARS, "P7": bench_p7, "P8": bench_p8, "P9": bench_p9}


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
        for fields in in_own_process("executors._cli._bench", bar, "quick" if quick else "full"):
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
        "Measure SPEC §11's bars P1-P9: each executor against its peer, in turns, medians. "
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
