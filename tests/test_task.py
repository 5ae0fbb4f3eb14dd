"""Task keys and options (``_task.py``)."""

from __future__ import annotations

import os
import random
import re

import pytest

from executors._task import NO_OPTIONS, new_key, task_options


def test_a_key_is_the_name_and_32_hex_digits() -> None:
    assert re.fullmatch(r"load-[0-9a-f]{32}", new_key("load"))


def test_a_scripts_random_seed_does_not_repeat_keys() -> None:
    # Two scripts that both seed `random` must not submit the same keys to one scheduler.
    random.seed(0)
    first = new_key("f")
    random.seed(0)
    assert new_key("f") != first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_draws_keys_of_its_own() -> None:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first key, which would be the parent's next without a reseed
        os.write(writer, new_key("f").encode())
        os._exit(0)
    os.close(writer)
    try:
        child_key = os.read(reader, 100).decode()
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    assert re.fullmatch(r"f-[0-9a-f]{32}", child_key)
    assert child_key != new_key("f")


def test_tasks_without_options_share_one_options_object() -> None:
    key, options = task_options(len, None)
    assert key.startswith("len-") and options is NO_OPTIONS
    key, options = task_options(len, {"task_name": "n"})
    assert key.startswith("n-") and options is NO_OPTIONS
    _, options = task_options(len, {"priority": 3, "tags": ["dask-resource:GPU=1"]})
    assert options.priority == 3 and options.resources == {"GPU": 1.0}
