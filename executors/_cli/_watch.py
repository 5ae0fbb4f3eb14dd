"""``executors watch ADDRESS``: print a running cluster's workers as they join and leave.

It is a DaskExecutor that runs nothing: its worker signals (SPEC §5) are printed, one
line each, and so are its connection signals. The first connection has ``--timeout``
seconds; once connected it reconnects for as long as it takes, with the executor's
backoff, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import dask.config
import dask.utils
from distributed.security import Security

from .. import ConnectError, DaskExecutor, WorkerInfo, configure_logging, signals
from .. import _interruptible as interruptible

__all__ = ["main", "parser"]

DEFAULT_TIMEOUT = 30.0
SNAPSHOT_SECONDS = 3.0  # how long the first announcement of the workers may take


def parser(commands: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    watch: argparse.ArgumentParser = commands.add_parser(
        "watch",
        help="print a running cluster's workers as they join and leave",
        description="Print one line per worker event of the scheduler at ADDRESS (time, "
        "added/removed, name, address, threads, memory), and the connection's ups and "
        "downs. Reconnects with backoff after the scheduler goes away; Ctrl-C exits. Exits 1 "
        "for an invalid address or when no first connection is made within --timeout.",
    )
    watch.add_argument(
        "address", metavar="ADDRESS", help="the scheduler, e.g. tcp://127.0.0.1:8786"
    )
    watch.add_argument(
        "--security-from",
        metavar="FILE",
        type=_security_from,
        dest="security",
        help="a Dask config YAML file with the TLS settings (distributed.comm.tls.ca-file, "
        "distributed.comm.tls.client.cert/key, distributed.comm.require-encryption)",
    )
    watch.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long to try for the first connection (default: %(default)s)",
    )
    return watch


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _security_from(path: str) -> Security:
    """A :class:`Security` from the ``distributed.comm`` part of a Dask config file."""
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: no such file")
    try:  # dask's own reader: YAML comes with dask, not as a dependency of ours
        configs = list(dask.config.collect_yaml([path]))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {exc}") from None
    config = configs[0] if configs else {}
    settings = {
        key: value
        for key, value in _flatten(config if isinstance(config, Mapping) else {}).items()
        if key.startswith("distributed.comm.")
    }
    if not settings:
        raise argparse.ArgumentTypeError(
            f"{path!r} has no distributed.comm settings (distributed.comm.tls.ca-file, ...)"
        )
    with dask.config.set(settings):
        return Security()  # it reads them from the config


def _memory(limit: int | None) -> str:
    return dask.utils.format_bytes(limit) if limit else "no limit"


def describe(worker: WorkerInfo) -> str:
    """A worker's fields as ``watch`` prints them."""
    line = (
        f"{worker.name}  {worker.address}  threads={worker.nthreads}  "
        f"memory={_memory(worker.memory_limit)}"
    )
    if worker.resources:
        line += "  resources=" + ",".join(f"{k}:{v:g}" for k, v in worker.resources.items())
    return line


class _Printer:
    """The signal receivers: one line each, on the executor's dispatcher thread; and
    "no workers" while the cluster has none (SPEC §7)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._workers: set[str] = set()
        self._said_none = False

    def line(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {text}", file=self.out, flush=True)

    def added(self, sender: object, *, worker: WorkerInfo, **extra: Any) -> None:
        with self._lock:
            self._workers.add(worker.address)
            self._said_none = False
        self.line(f"added    {describe(worker)}")

    def removed(self, sender: object, *, worker: WorkerInfo, expected: bool, **extra: Any) -> None:
        how = "" if expected else "  (unexpected)"
        self.line(f"removed  {describe(worker)}{how}")
        with self._lock:
            self._workers.discard(worker.address)
        self.say_if_none()

    def say_if_none(self) -> None:
        """Say "no workers" once while the cluster has none."""
        with self._lock:
            say = not self._workers and not self._said_none
            self._said_none = self._said_none or say
        if say:
            self.line("no workers: tasks sent to this cluster wait until one joins")

    def lost(self, sender: object, *, address: str, error: str, **extra: Any) -> None:
        self.line(f"lost the scheduler at {address}: {error}")

    def retrying(
        self, sender: object, *, address: str, attempt: int, delay: float, **extra: Any
    ) -> None:
        self.line(f"no answer from {address} (attempt {attempt}); trying again in {delay:.1f} s")

    def reconnected(self, sender: object, *, address: str, **extra: Any) -> None:
        self.line(f"reconnected to {address}")

    def started(self, sender: DaskExecutor, **extra: Any) -> None:
        self.line(f"watching {sender._address} (Ctrl-C to stop)")

    def stopped(self, sender: DaskExecutor, **extra: Any) -> None:
        self.line(f"stopped watching {sender._address}")

    def receivers(self) -> dict[Any, Callable[..., None]]:
        return {
            signals.executor_started: self.started,
            signals.executor_stopped: self.stopped,
            signals.worker_added: self.added,
            signals.worker_removed: self.removed,
            signals.connection_lost: self.lost,
            signals.reconnecting: self.retrying,
            signals.reconnected: self.reconnected,
        }


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Watch until Ctrl-C (exit 0); 1 for an invalid address or no first connection."""
    client_kwargs = {"security": args.security} if args.security is not None else None
    try:
        executor = DaskExecutor(
            address=args.address,
            client_kwargs=client_kwargs,
            connect_timeout=args.timeout,
            disable_cancellation_event=True,  # it runs no tasks
        )
    except ValueError as exc:
        print(f"executors watch: {exc}", file=err)
        return 1
    executor._reconnect_timeout = math.inf  # once connected, never give up
    # Its own lines say what the warnings would; distributed's INFO lines about closed
    # comms (with tracebacks) are expected when a scheduler goes away.
    configure_logging(level="ERROR")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    printer = _Printer(out)
    # SIGTERM (a supervisor stopping it) ends it as Ctrl-C does; only the main thread
    # may set a handler.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        with contextlib.ExitStack() as connected:
            for event, receiver in printer.receivers().items():  # until the watch ends
                connected.enter_context(event.connected_to(receiver, sender=executor))
            with executor:
                # The workers there are announced as the watch begins: none in a few
                # seconds is a cluster with none. Ctrl-C ends the watch.
                started = time.monotonic()
                while not interruptible.wait(threading.Event(), 1.0):
                    if time.monotonic() - started >= SNAPSHOT_SECONDS:
                        printer.say_if_none()
    except ConnectError as exc:
        print(f"executors watch: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
