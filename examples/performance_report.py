"""Write Dask's performance report of a run to an HTML file.

    pip install 'executors[diagnostics]'   # bokeh, which the report needs
    python examples/performance_report.py [report.html]

The report covers the whole run, from start to stop; its text is also kept in
``executor.performance_report``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from executors import DaskExecutor


def work(n: int) -> int:
    time.sleep(0.05)
    return n * 2


def main(path: Path) -> None:
    executor = DaskExecutor(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 1,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        },
        performance_report_path=path,
    )
    with executor:
        doubled = executor.wait([executor.submit(work, n) for n in range(20)])
    assert executor.performance_report is not None  # written at stop
    print(f"sum: {sum(doubled)}")
    print(f"report: {path} ({len(executor.performance_report):,} characters)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "report.html"))
