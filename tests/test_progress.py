"""``wait(..., progress=True)`` and ``as_completed(..., progress=True)``: a tqdm bar on a
terminal (a real pseudo-terminal here), nothing anywhere else."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap

import pytest
import tasks

from executors import LocalExecutor, as_completed
from executors._progress import open_progress_bar

pytest.importorskip("tqdm")
pytestmark = pytest.mark.one_python  # tqdm's drawing and our scripts', not the interpreter's

HEADER = """
import sys
sys.path.insert(0, "tests")
import tasks
from executors import LocalDaskExecutor, LocalExecutor, as_completed
"""


def _run(code: str, terminal: bool = True, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``code`` in a new Python with its stderr on a pseudo-terminal (or a pipe);
    return (exit status, stdout, stderr)."""
    script = HEADER + textwrap.dedent(code)
    if not terminal:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, cols
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                raise TimeoutError("the script did not finish")
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the script closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read().decode() if process.stdout else ""
        status = process.wait(timeout)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
    return status, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(90)
def test_wait_draws_a_bar_on_a_terminal() -> None:
    status, out, err = _run(
        """
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            print(ex.wait([ex.submit(tasks.inc, i) for i in range(20)], progress=True))
        """
    )
    assert status == 0, err
    assert out.strip() == str(list(range(1, 21)))
    assert "tasks: 100%" in err and "20/20" in err
    assert "task/s" in err  # the rate


@pytest.mark.timeout(90)
def test_as_completed_counts_failed_and_cancelled() -> None:
    status, out, err = _run(
        """
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            futures = [ex.submit(tasks.inc, i) for i in range(3)]
            futures.append(ex.submit(tasks.fail, "no"))
            dropped = ex.submit(tasks.inc, 10)
            dropped.cancel()
            futures.append(dropped)
            ended = [f for f in as_completed(futures, progress=True)]
            print(len(ended))
        """
    )
    assert status == 0, err
    assert out.strip() == "5"
    assert "5/5" in err
    assert "failed=1, cancelled=1" in err


@pytest.mark.timeout(90)
def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    status, out, err = _run(
        """
        with LocalExecutor() as ex:
            print(ex.wait([ex.submit(tasks.inc, i) for i in range(5)], progress=True))
        """,
        terminal=False,
    )
    assert status == 0, err
    assert out.strip() == "[1, 2, 3, 4, 5]"
    assert err == ""


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "call",
    [
        "ex.wait([ex.submit(tasks.inc, 1)], progress=True)",
        "list(ex.map(tasks.inc, [1], progress=True))",
        "[f.result() for f in as_completed([ex.submit(tasks.inc, 1)], progress=True)]",
    ],
)
def test_without_tqdm_a_warning_says_how_to_get_it(call: str) -> None:
    status, out, err = _run(
        f"""
        sys.modules["tqdm"] = None  # as if it were not installed
        with LocalExecutor() as ex:
            print({call})
        """
    )
    assert status == 0, err
    assert out.strip() == "[2]"
    assert "RuntimeWarning" in err and "pip install 'executors[progress]'" in err
    assert err.startswith("<string>:"), err  # it points at the script's line, not ours


def test_off_by_default_and_off_for_a_stream_that_is_not_a_terminal() -> None:
    with LocalExecutor() as ex:
        future = ex.submit(tasks.inc, 1)
        assert open_progress_bar([future], io.StringIO()) is None
        assert list(as_completed([future], progress=True)) == [future]  # pytest's stderr


@pytest.mark.timeout(90)
def test_a_line_printed_while_a_bar_is_drawn_goes_above_it() -> None:
    # As the demo prints worker events: on a terminal, never into the bar's line.
    status, _, err = _run(
        """
        from executors._progress import open_progress_bar, print_above_bars
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            futures = [ex.submit(tasks.sleep_then, 0.3, i) for i in range(4)]
            bar = open_progress_bar(futures)
            print_above_bars("[worker-added] a line of its own", sys.stderr)
            ex.wait(futures)
            bar.close()
        """
    )
    assert status == 0, err
    at = err.index("[worker-added] a line of its own")
    assert "tasks:" in err[:at]  # the bar was drawn before the line
    assert err[at - 1] in "\r\n"  # the bar's line was cleared: the line starts afresh


@pytest.mark.timeout(90)
def test_map_draws_a_bar_of_its_items() -> None:
    status, out, err = _run(
        """
        with LocalDaskExecutor("threads", num_workers=2) as ex:
            print(sum(ex.map(tasks.inc, range(50), chunksize=10, progress=True)))
        """
    )
    assert status == 0, err
    assert out.strip() == "1275"
    assert "items" in err and "50/50" in err  # counted item by item, not chunk by chunk
