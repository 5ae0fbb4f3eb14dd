"""The benchmark runner (SPEC §11): that it runs every bar and reports, never a timing."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_quick_run_measures_every_bar_and_writes_the_samples(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "executors", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["quick"] is True
    bars = report["bars"]
    assert [bar["bar"] for bar in bars] == [
        "P1",
        "P1",
        "P2",
        "P3",
        "P4",
        "P4",
        "P4",
        "P5",
        "P6",
        "P7",
        "P8",
        "P8",
        "P8",  # the fixed-chunk map beside its bound, for reference
        *["P9"] * (3 * 2 + 1),  # Dask: auto against the best fixed size, and joblib; first result
        *["P9"] * 3,  # LocalDaskExecutor processes: auto against the best fixed size
    ]
    assert all(bar["holds"] is None for bar in bars)  # --quick judges nothing
    assert all(bar["score"] > 0 for bar in bars)
    memory = bars[7]["data"]["executor"]
    assert set(memory["retained"].values()) == {0}  # no table keeps anything once dropped
    for line in (
        "P1 ",
        "P2 ",
        "P3 ",
        "P4 ",
        "P5 ",
        "P6 ",
        "P7 ",
        "P8 ",
        "P9 ",
        "nothing is judged",
    ):
        assert line in done.stdout


def test_the_script_in_benchmarks_runs_one_bar(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "p3.json"
    script = str(ROOT / "benchmarks" / "run.py")
    done = subprocess.run(
        [sys.executable, script, "--quick", "--bar", "P3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [bar["bar"] for bar in json.loads(out.read_text())["bars"]] == ["P3"]


def test_an_unknown_bar_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "executors", "bench", "--bar", "P10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "P10" in done.stderr and "Traceback" not in done.stderr
