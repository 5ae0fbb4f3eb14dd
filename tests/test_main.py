"""The command line (SPEC §10)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from executors.__main__ import main


@pytest.mark.parametrize("executor", ["local", "local-dask", "dask"])
def test_demo_runs_and_checks_its_answer(executor: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--executor", executor, "--tasks", "3", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 tasks in" in out and "tasks/s" in out
    assert "primes below 60,000: 6,057 (correct)" in out
    assert out.index("[executor-started]") < out.index("[executor-stopped]")


@pytest.mark.parametrize(
    "argv", [["demo", "--tasks", "0"], ["demo", "--executor", "gpu"], ["nope"], []]
)
def test_usage_errors_exit_2_naming_the_value(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_python_dash_m_runs_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executors", "demo", "--executor", "local", "--tasks", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "(correct)" in done.stdout
