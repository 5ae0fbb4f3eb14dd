"""Logging goes through the standard library and carries context (SPEC §8)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import tasks

from executors import LocalExecutor, configure_logging


def test_lifecycle_records_carry_the_executor_id(executor_logs: list[logging.LogRecord]) -> None:
    with LocalExecutor() as ex:
        ex.submit(tasks.inc, 1)
    events = {r.msg: r for r in executor_logs}
    assert {"executor_started", "executor_stopped"} <= set(events)
    assert events["executor_stopped"].executor_id == ex.executor_id  # type: ignore[attr-defined]
    assert events["executor_stopped"].cancelled is False  # type: ignore[attr-defined]


def test_importing_configures_nothing() -> None:
    code = (
        "import logging, structlog, executors; "
        "print(len(logging.getLogger().handlers), structlog.is_configured())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_configure_logging_json_renders_context() -> None:
    code = (
        "import executors; executors.configure_logging(json=True, level='info'); "
        "ex = executors.LocalExecutor()\n"
        "with ex: pass"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in out.stderr.splitlines()]
    started = next(r for r in records if r["event"] == "executor_started")
    assert started["executor_id"].startswith("LocalExecutor: ")
    assert started["level"] == "info"


def test_configure_logging_rejects_unknown_levels() -> None:
    with pytest.raises(ValueError, match="'LOUD'"):
        configure_logging(level="LOUD")
