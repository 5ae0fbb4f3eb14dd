"""Starting worker processes from a script's top level without the ``__main__`` guard is
one clear ``RuntimeError`` at start, before any process exists; with the guard, or where
no process re-imports the script, it runs."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

GUIDANCE = 'Put the code that starts it under if __name__ == "__main__":'
TEMPORARY_CLUSTER = (
    '{"n_workers": 1, "threads_per_worker": 1, "host": "127.0.0.1", '
    '"dashboard_address": "127.0.0.1:0"'
)


def _script(tmp_path: pathlib.Path, code: str) -> tuple[int, str, str, pathlib.Path]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout, done.stderr, path


UNGUARDED = {
    "local-dask": """
        from executors import LocalDaskExecutor

        def inc(x):
            return x + 1

        with LocalDaskExecutor("processes", num_workers=1) as ex:
            print(ex.submit(inc, 1).result())
        """,
    "dask": f"""
        from executors import DaskExecutor

        def inc(x):
            return x + 1

        with DaskExecutor(cluster_kwargs={TEMPORARY_CLUSTER}}}) as ex:
            print(ex.submit(inc, 1).result())
        """,
}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("executor", sorted(UNGUARDED))
def test_no_guard_is_one_clear_error_before_any_process_starts(
    executor: str, tmp_path: pathlib.Path
) -> None:
    status, out, err, path = _script(tmp_path, UNGUARDED[executor])
    assert status == 1 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: ") and GUIDANCE in last
    assert f"{path}, line 7" in last  # the line that starts it
    assert "bootstrapping" not in err and err.count("Traceback") == 1  # no worker spoke


@pytest.mark.timeout(150)
@pytest.mark.parametrize("executor", sorted(UNGUARDED))
def test_the_guard_either_way_round_runs(executor: str, tmp_path: pathlib.Path) -> None:
    code = textwrap.dedent(UNGUARDED[executor]).replace("\nwith ", "\ndef main():\n    with ")
    code = code.replace("\n    print(", "\n        print(")
    code += '\nif "__main__" == __name__:\n    main()\n'
    status, out, err, _ = _script(tmp_path, code)
    assert status == 0, err
    assert out.strip() == "2"


@pytest.mark.timeout(150)
def test_no_check_where_workers_do_not_import_the_script(tmp_path: pathlib.Path) -> None:
    status, out, err, _ = _script(
        tmp_path,
        f"""
        import dask
        from executors import DaskExecutor, LocalDaskExecutor

        def inc(x):
            return x + 1

        with dask.config.set({{"multiprocessing.context": "fork"}}):  # forked: no import
            with LocalDaskExecutor("processes", num_workers=1) as ex:
                print(ex.submit(inc, 1).result())
        threads = {TEMPORARY_CLUSTER}, "processes": False, "host": "tcp://127.0.0.1"}}
        with DaskExecutor(cluster_kwargs=threads) as ex:  # workers in this process
            print(ex.submit(inc, 2).result())
        with LocalDaskExecutor("threads") as ex:
            print(ex.submit(inc, 3).result())
        """,
    )
    assert status == 0, err
    assert out.split() == ["2", "3", "4"]
