"""``executors watch ADDRESS`` (SPEC §10), run as a user runs it, against real ``dask
scheduler`` / ``dask worker`` processes."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import DaskProcesses, free_port, sigint_as_in_a_terminal, tls_files
from distributed.security import Security

from executors.__main__ import main

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's


class Watch:
    """``python -m executors watch ...`` in its own process; its lines as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "executors", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=sigint_as_in_a_terminal,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 60) -> str:
        """The next line matching ``pattern``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}")

    def interrupt(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        """Ctrl-C (or ``sig``); the exit status and stderr."""
        os.kill(self.process.pid, sig)
        return self.finish()

    def finish(self) -> tuple[int, str]:
        try:
            status = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        return status, err


TIME = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "


@pytest.mark.timeout(120)
def test_prints_workers_as_they_join_and_leave_and_ctrl_c_exits_0(
    dask_processes: DaskProcesses,
) -> None:
    address, _ = dask_processes.scheduler()
    first = dask_processes.worker(address, "--name", "first", "--memory-limit", "1GiB")
    watch = Watch(address)
    watch.expect(TIME + re.escape(f"watching {address}"))
    # A worker there before the watch began is announced too.
    line = watch.expect(TIME + r"added    first  tcp://127\.0\.0\.1:\d+  threads=1")
    assert line.endswith("memory=1.00 GiB")
    dask_processes.worker(address, "--name", "second", "--resources", "GPU=2")
    line = watch.expect(TIME + r"added    second  tcp://127\.0\.0\.1:\d+  threads=1")
    assert line.endswith("resources=GPU:2")
    dask_processes.end(first, signal.SIGKILL)
    watch.expect(TIME + r"removed  first  tcp://127\.0\.0\.1:\d+  threads=1 .*\(unexpected\)$")
    status, err = watch.interrupt()
    assert status == 0, err
    assert "Traceback" not in err
    watch.expect(TIME + re.escape(f"stopped watching {address}"), timeout=5)


@pytest.mark.timeout(120)
def test_says_when_the_cluster_has_no_workers(dask_processes: DaskProcesses) -> None:
    address, _ = dask_processes.scheduler()
    watch = Watch(address)
    watch.expect(TIME + re.escape(f"watching {address}"))
    watch.expect(TIME + "no workers: ")
    worker = dask_processes.worker(address, "--name", "only")
    watch.expect(TIME + r"added    only  ")
    dask_processes.end(worker)
    watch.expect(TIME + r"removed  only  ")
    watch.expect(TIME + "no workers: ")
    status, err = watch.interrupt()
    assert status == 0, err


@pytest.mark.timeout(150)
def test_reconnects_after_the_scheduler_restarts_and_says_so(
    dask_processes: DaskProcesses,
) -> None:
    port = free_port()
    address, scheduler = dask_processes.scheduler(port)
    watch = Watch(address)
    watch.expect(re.escape(f"watching {address}"))
    dask_processes.end(scheduler)
    watch.expect(TIME + re.escape(f"lost the scheduler at {address}"))
    time.sleep(1.0)  # it keeps trying meanwhile
    dask_processes.scheduler(port)
    watch.expect(TIME + re.escape(f"reconnected to {address}"))
    dask_processes.worker(address, "--name", "after")
    watch.expect(TIME + r"added    after  ")
    status, err = watch.interrupt(signal.SIGTERM)  # a supervisor stops it as Ctrl-C does
    assert status == 0, err
    assert "Traceback" not in err
    watch.expect(TIME + re.escape(f"stopped watching {address}"), timeout=5)


@pytest.mark.timeout(60)
def test_no_scheduler_within_the_timeout_exits_1_naming_the_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    watch = Watch(address, "--timeout", "2")
    status, err = watch.finish()
    assert status == 1
    assert time.monotonic() - started < 30
    assert address in err and "Traceback" not in err
    watch.expect(re.escape(f"no answer from {address} (attempt 1)"), timeout=1)


def test_an_invalid_address_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "nonsense://127.0.0.1:8786"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("executors watch: ") and "nonsense://127.0.0.1:8786" in err
    assert err.count("\n") == 1


@pytest.mark.timeout(120)
def test_security_from_a_dask_config_file_reaches_a_tls_cluster(
    dask_processes: DaskProcesses, tmp_path: pathlib.Path
) -> None:
    security = Security.temporary()  # needs cryptography, a test dependency
    options = tls_files(security, tmp_path)
    address, _ = dask_processes.scheduler(None, *options, protocol="tls")
    dask_processes.worker(address, "--name", "secret", *options)
    config = tmp_path / "tls.yaml"
    config.write_text(
        "distributed:\n"
        "  comm:\n"
        "    require-encryption: true\n"
        "    tls:\n"
        f"      ca-file: {tmp_path / 'ca.pem'}\n"
        "      client:\n"
        f"        cert: {tmp_path / 'cert.pem'}\n"
        f"        key: {tmp_path / 'key.pem'}\n"
    )
    watch = Watch(address, "--security-from", str(config))
    watch.expect(TIME + r"added    secret  tls://127\.0\.0\.1:\d+")
    status, err = watch.interrupt()
    assert status == 0, err
    # Without it, a TLS address is refused before any connection is tried.
    assert main(["watch", address]) == 1


def test_a_config_file_without_tls_settings_is_a_usage_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("distributed:\n  scheduler:\n    allowed-failures: 3\n")
    with pytest.raises(SystemExit) as info:
        main(["watch", "tls://127.0.0.1:8786", "--security-from", str(config)])
    assert info.value.code == 2
    assert "has no distributed.comm settings" in capsys.readouterr().err
