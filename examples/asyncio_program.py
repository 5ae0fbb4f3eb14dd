"""An asyncio program that awaits a DaskExecutor's results, with no thread of its own.

    python examples/asyncio_program.py

``executors.Future`` is a ``concurrent.futures.Future``: ``asyncio.wrap_future`` and
``loop.run_in_executor`` take it, so a coroutine awaits a Dask task as it awaits any
other. The tasks here are an ``async def`` function (distributed runs it on the worker's
event loop) and a plain one. While the program awaits, its event loop goes on: a
heartbeat coroutine ticks meanwhile.
"""

from __future__ import annotations

import asyncio

from executors import DaskExecutor

WORDS = ["asyncio", "dask", "executors", "futures", "loop"]


async def measure(word: str) -> int:
    """An async def task: it may await, as on any event loop."""
    await asyncio.sleep(0.2)
    return len(word)


def square(x: int) -> int:
    return x * x


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)


async def main(executor: DaskExecutor) -> None:
    ticks: list[float] = []
    beating = asyncio.create_task(heartbeat(ticks))
    loop = asyncio.get_running_loop()
    lengths = await asyncio.gather(
        *(asyncio.wrap_future(executor.submit(measure, word)) for word in WORDS)
    )
    squares = await asyncio.gather(
        *(loop.run_in_executor(executor, square, length) for length in lengths)
    )
    beating.cancel()
    print(f"lengths: {lengths}")
    print(f"squares: {squares}")
    print(f"the event loop ticked {len(ticks)} times while it awaited the cluster")


if __name__ == "__main__":
    cluster = {
        "n_workers": 2,
        "threads_per_worker": 2,
        "processes": False,
        "host": "tcp://127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    with DaskExecutor(cluster_kwargs=cluster) as ex:
        asyncio.run(main(ex))
