"""Cancel a run: queued tasks never start, and a long task stops through should_run().

    python examples/cancellation.py

Every run of a DaskExecutor has a ``distributed.Event``; a task checks it on its worker
before it starts, and ``should_run()`` reads it (cached, so it is cheap in a loop).
"""

from __future__ import annotations

import time

import distributed

from executors import CancelledError, DaskExecutor, should_run, signals


def long_task(seconds: float) -> str:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if not should_run():
            print(f"long_task: told to stop after {time.monotonic() - started:.1f} s")
            return "stopped early"
        time.sleep(0.01)
    return "finished"


def short_task(n: int) -> int:
    print(f"short_task({n}) ran")  # never printed: these are cancelled before they start
    return n


def on_run_cancelled(sender: DaskExecutor, *, reason: str, **extra: object) -> None:
    print(f"run cancelled: {reason}")


def on_task_cancelled(sender: DaskExecutor, *, key: str, **extra: object) -> None:
    print(f"task cancelled: {key}")


def main() -> None:
    # One worker thread: the short tasks queue behind the long one. The cluster is the
    # script's, so the executor does not wait for the running task when it stops.
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        host="tcp://127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        executor = DaskExecutor(cluster=cluster)
        signals.run_cancelled.connect(on_run_cancelled, sender=executor)
        signals.task_cancelled.connect(on_task_cancelled, sender=executor)
        with executor:
            futures = [executor.submit(long_task, 60)]
            futures += [executor.submit(short_task, n) for n in range(3)]
            time.sleep(1)
            executor.cancel("the user changed their mind")
            reasons = []
            for future in futures:
                try:
                    future.result()
                except CancelledError as error:
                    reasons.append(error.reason)
        # Every signal of the run has been delivered once the block has exited.
        print(f"{len(reasons)} of {len(futures)} futures raised CancelledError: {reasons[0]}")
        time.sleep(0.5)  # give the long task a moment to notice before the cluster closes


if __name__ == "__main__":
    main()
