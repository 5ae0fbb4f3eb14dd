"""The scripts in examples/ run as a user would run them, and do what they say."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.one_python  # Dask's behaviour and our scripts', not the interpreter's

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, *args: str, cwd: pathlib.Path | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(150)
def test_worker_events() -> None:
    out = _run("worker_events.py")
    assert len(re.findall(r"^\+ worker ", out, re.MULTILINE)) == 3
    assert len(re.findall(r"^- worker ", out, re.MULTILINE)) == 2
    assert out.index("scaling up") < out.index("scaling down") < out.index("- worker")
    assert len(re.findall(r"^ALERT: worker .* left without being retired$", out, re.M)) == 2
    assert "done: 2 alert(s)" in out


@pytest.mark.timeout(150)
def test_cancellation() -> None:
    out = _run("cancellation.py")
    assert "run cancelled: the user changed their mind" in out
    assert len(re.findall(r"^task cancelled: ", out, re.MULTILINE)) == 4
    assert "short_task(" not in out  # none of the queued tasks ran
    assert "4 of 4 futures raised CancelledError: the user changed their mind" in out
    assert "long_task: told to stop" in out


@pytest.mark.timeout(150)
@pytest.mark.parametrize("executor", ["local", "threads", "processes", "synchronous", "dask"])
def test_plain_script_on_each_executor(executor: str) -> None:
    out = _run("plain_script.py", executor)
    assert f"({executor}): sum of squares below 5000 = 41,654,167,500" in out
    assert out.rstrip().endswith("correct")


@pytest.mark.timeout(150)
def test_existing_cluster(scheduler_address: str) -> None:
    out = _run("existing_cluster.py", scheduler_address)
    assert len(re.findall(r"^worker \S+ at tcp://127\.0\.0\.1:\d+ with 1 thread", out, re.M)) == 2
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49]" in out


@pytest.mark.timeout(150)
def test_performance_report(tmp_path: pathlib.Path) -> None:
    out = _run("performance_report.py", "report.html", cwd=tmp_path)
    assert "sum: 380" in out
    assert "Dask Performance Report" in (tmp_path / "report.html").read_text()


@pytest.mark.timeout(150)
def test_resources() -> None:
    out = _run("resources.py")
    plain = int(re.search(r"plain tasks at once: (\d+)", out).group(1))  # type: ignore[union-attr]
    gpu = int(re.search(r"GPU tasks at once: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert gpu <= 2 < plain  # one GPU per worker; two threads per worker


@pytest.mark.timeout(150)
def test_adaptive() -> None:
    out = _run("adaptive.py")
    lines = out.splitlines()
    grew = [i for i, line in enumerate(lines) if line.startswith("+ worker ")]
    shrank = [i for i, line in enumerate(lines) if re.match(r"- worker \S+ \(retired\)$", line)]
    assert 1 <= len(grew) <= 2 and len(shrank) == len(grew)
    assert lines.index("submitting 12 tasks to an empty cluster") < grew[0]
    assert grew[0] < lines.index("idle now: waiting for the cluster to shrink") < min(shrank)
    assert "sum of squares: 506" in out and lines[-1] == "done"


@pytest.mark.timeout(150)
def test_asyncio_program() -> None:
    out = _run("asyncio_program.py")
    assert "lengths: [7, 4, 9, 7, 4]" in out
    assert "squares: [49, 16, 81, 49, 16]" in out
    ticks = int(re.search(r"ticked (\d+) times", out).group(1))  # type: ignore[union-attr]
    assert ticks >= 3  # the loop was never blocked for the whole wait


@pytest.mark.timeout(150)
def test_many_small_tasks() -> None:
    out = _run("many_small_tasks.py")
    assert "100,000 scores: total 49,950,000" in out
    assert "the first 999 after item 50,000 of an endless stream: item 50,159" in out
