"""The scripts in examples/ run as a user would run them, and do what they say."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
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


@pytest.mark.timeout(150)
def test_cancellation() -> None:
    out = _run("cancellation.py")
    assert "run cancelled: the user changed their mind" in out
    assert len(re.findall(r"^task cancelled: ", out, re.MULTILINE)) == 4
    assert "short_task(" not in out  # none of the queued tasks ran
    assert "4 of 4 futures raised CancelledError: the user changed their mind" in out
    assert "long_task: told to stop" in out
