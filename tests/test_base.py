"""The lifecycle every executor shares (``_base.py``): what happens at interpreter exit.

Each test runs a script in a fresh interpreter, as a user's script ends (SPEC §3).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import sigint_as_in_a_terminal

TESTS = str(pathlib.Path(__file__).resolve().parent)

EXECUTORS = {
    "threads": 'LocalDaskExecutor("threads", num_workers=2)',
    "processes": 'LocalDaskExecutor("processes", num_workers=1)',
    "dask": (
        "DaskExecutor(cluster_kwargs={'n_workers': 1, 'threads_per_worker': 1, "
        "'processes': False, 'host': 'tcp://127.0.0.1', 'dashboard_address': '127.0.0.1:0'})"
    ),
    # Its worker is a process of its own: what runs the work at exit is not this interpreter.
    "dask-processes": (
        "DaskExecutor(cluster_kwargs={'n_workers': 1, 'threads_per_worker': 1, "
        "'host': '127.0.0.1', 'dashboard_address': '127.0.0.1:0'})"
    ),
}

# CPython 3.12.0 to 3.12.2 start no thread once the script has ended (gh-113964), and an
# in-process Dask worker starts one for each task it runs.
NO_THREADS_AT_EXIT = (3, 12) <= sys.version_info[:3] < (3, 12, 3)


def _script(executor: str, body: str) -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        import tasks
        from executors import DaskExecutor, LocalDaskExecutor

        if __name__ == "__main__":
            ex = {executor}
            ex.__enter__()
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ")


def _start(script: str, directory: pathlib.Path) -> subprocess.Popen[str]:
    path = directory / "script.py"
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=directory,
        preexec_fn=sigint_as_in_a_terminal,
    )


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
@pytest.mark.parametrize("ending", ["shutdown(wait=False)", "left open"])
def test_work_submitted_before_the_script_ends_is_done(
    executor: str, ending: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    if executor == "dask" and NO_THREADS_AT_EXIT:
        request.applymarker(pytest.mark.xfail(reason="CPython gh-113964", strict=True))
    done = tmp_path / "done"
    body = f"ex.submit(tasks.sleep_then_touch, 0.3, {str(done)!r})\n"
    if ending != "left open":
        body += f"ex.{ending}\n"
    process = _start(_script(EXECUTORS[executor], body), tmp_path)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert done.exists()
    assert "Traceback" not in stderr and "never awaited" not in stderr, stderr


def test_ctrl_c_while_the_exit_waits_cancels_the_work(tmp_path: pathlib.Path) -> None:
    done = tmp_path / "done"
    body = f"""
        import executors
        executors.configure_logging(level="INFO")
        ex.submit(tasks.sleep_then_touch, 60, {str(done)!r})
    """
    process = _start(_script(EXECUTORS["processes"], body), tmp_path)
    assert process.stderr is not None
    for line in process.stderr:  # the exit hook says when it begins to wait
        if "finishing_open_runs" in line:
            break
    assert process.poll() is None
    interrupted = time.monotonic()
    os.kill(process.pid, signal.SIGINT)
    process.communicate(timeout=30)
    assert time.monotonic() - interrupted < 10
    assert not done.exists()


CALLS = {
    "the exit's wait": "with ex:\n    future = ex.submit(tasks.sleep_then_touch, 60, DONE)\n",
    "wait()": "with ex:\n    ex.wait([ex.submit(tasks.sleep_then_touch, 60, DONE)])\n",
    "result()": "with ex:\n    ex.submit(tasks.sleep_then_touch, 60, DONE).result()\n",
    "shutdown()": ("ex.__enter__()\nex.submit(tasks.sleep_then_touch, 60, DONE)\nex.shutdown()\n"),
}


@pytest.mark.parametrize("executor", ["processes", "dask-processes"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_ctrl_c_taken_by_another_thread_ends_a_blocking_call(
    executor: str, call: str, tmp_path: pathlib.Path
) -> None:
    # A process-directed SIGINT goes to any thread that does not block it, and the main
    # thread blocks it while multiprocessing spawns (the resource tracker); CPython then
    # only flags the main thread. pthread_kill makes that happen every time.
    done = tmp_path / "done"
    script = (
        textwrap.dedent(
            f"""
        import signal, sys, threading, time
        sys.path.insert(0, {TESTS!r})
        import tasks
        from executors import DaskExecutor, LocalDaskExecutor

        DONE = {str(done)!r}


        def interrupt_from_this_thread():
            time.sleep(3)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)


        if __name__ == "__main__":
            ex = {EXECUTORS[executor]}
            threading.Thread(target=interrupt_from_this_thread, daemon=True).start()
            started = time.monotonic()
            try:
        """
        )
        + textwrap.indent(CALLS[call], "        ")
        + textwrap.indent(
            textwrap.dedent(
                """
            except KeyboardInterrupt:
                print(f"interrupted after {time.monotonic() - started:.1f} s", flush=True)
            """
            ),
            "    ",
        )
    )
    process = _start(script, tmp_path)
    try:
        stdout, stderr = process.communicate(timeout=45)
    finally:
        process.kill()  # a lost interrupt leaves it waiting for its 60 s task
        process.wait()
    assert "interrupted after" in stdout, stderr
    assert float(stdout.split("interrupted after ")[1].split()[0]) < 15
    assert not done.exists()
