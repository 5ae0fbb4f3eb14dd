"""Run the benchmarks of SPEC §11: the same as ``python -m executors bench``.

The workloads and the runner live in the package (``executors/_cli/_bench_work.py`` and
``executors/_cli/_bench.py``), so that an installed ``executors`` can measure itself too.
"""

import sys

from executors._cli import _bench

if __name__ == "__main__":  # the bars start worker processes, which import this file
    sys.exit(_bench.main(_bench.parser().parse_args()))
