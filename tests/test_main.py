"""The command line (SPEC §10)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from executors.__main__ import main

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's


@pytest.mark.parametrize("executor", ["local", "local-dask", "dask"])
def test_demo_runs_and_checks_its_answer(executor: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--executor", executor, "--tasks", "3", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 tasks in" in out and "tasks/s" in out
    assert "primes below 60,000: 6,057 (correct)" in out
    assert out.index("[executor-started]") < out.index("[executor-stopped]")
    assert "3/3 ranges counted" in out  # the progress, as lines: stderr is not a terminal
    if executor == "dask":  # each worker event as it happens, with the worker's fields
        assert (
            len(re.findall(r"^\[worker-added\] \S+  tcp://127\.0\.0\.1:\d+  threads=1", out, re.M))
            == 2
        )
        assert out.index("[worker-added]") < out.index("ranges counted")
        assert out.index("ranges counted") < out.index("[worker-removed]")


def test_demo_counts_in_chunks_with_map(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--executor", "local-dask", "--tasks", "6", "--chunksize", "4"]) == 0
    out = capsys.readouterr().out
    assert "3 tasks in" in out  # six ranges, four to a task, and the total
    assert "primes below 120,000: 11,301 (correct)" in out
    assert "6/6 ranges counted" in out


@pytest.mark.parametrize("command", ["demo", "watch", "bench"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: executors {command}")
    assert "--" in out  # its options are described


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--tasks", "0"],
        ["demo", "--executor", "gpu"],
        ["watch"],
        ["watch", "tcp://127.0.0.1:8786", "--timeout", "0"],
        ["watch", "tcp://127.0.0.1:8786", "--timeout", "soon"],
        ["watch", "tcp://127.0.0.1:8786", "--security-from", "/no/such/file.yaml"],
        ["nope"],
        [],
    ],
)
def test_usage_errors_exit_2_naming_the_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
    assert argv[-1] in err if argv else "COMMAND" in err  # the bad value, or what is missing


@pytest.mark.parametrize("launcher", ["python -m executors", "the executors script"])
def test_both_launchers_run_the_demo(launcher: str) -> None:
    if launcher == "python -m executors":
        command = [sys.executable, "-m", "executors"]
    else:
        script = pathlib.Path(sys.executable).parent / "executors"  # pip puts it beside python
        assert script.exists()
        command = [str(script)]
    done = subprocess.run(
        [*command, "demo", "--executor", "local", "--tasks", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(correct)" in done.stdout
