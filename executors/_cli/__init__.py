"""The command line: ``python -m executors demo|watch|bench`` (also the ``executors``
script). Each command is a module of its own; this one reads the arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import DaskExecutor, Executor, LocalDaskExecutor, LocalExecutor
from . import _bench, _watch
from ._demo import run_demo

__all__ = ["main"]

EXECUTORS = ("local", "local-dask", "dask")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="executors",
        description="Run the demo, watch a running cluster's workers, or run the benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a fan-out/fan-in workload (count primes) and print a summary",
        description="Count primes in --tasks ranges in parallel, add the counts, and check "
        "the answer against a direct computation.",
    )
    demo.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local-dask",
        help="where the tasks run: local (in this thread), local-dask (dask's process "
        "pool, the default) or dask (a temporary distributed.LocalCluster on 127.0.0.1)",
    )
    demo.add_argument("--tasks", type=_positive, default=40, help="how many ranges (default 40)")
    demo.add_argument(
        "--chunksize",
        type=_positive,
        default=None,
        help="count this many ranges to a task (default: map's own chunk sizes, "
        "learned from the run times)",
    )
    demo.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes for local-dask and dask (default: one per CPU)",
    )
    _watch.parser(commands)
    _bench.parser(commands)
    return parser


def _executor(name: str, workers: int | None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "dask":
        cluster: dict[str, object] = {
            "threads_per_worker": 1,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
        if workers is not None:
            cluster["n_workers"] = workers
        return DaskExecutor(cluster_kwargs=cluster)
    return LocalDaskExecutor("processes", num_workers=workers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for usage errors)."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        executor = _executor(args.executor, args.workers)
        chunksize = args.chunksize or "auto"
        return 0 if run_demo(executor, args.tasks, sys.stdout, chunksize) else 1
    if args.command == "watch":
        return _watch.main(args, sys.stdout, sys.stderr)
    if args.command == "bench":
        return _bench.main(args)
    return 2  # pragma: no cover - argparse rejects unknown commands
