"""Bad input fails alone, at once, with a clear error; nothing else is lost (SPEC §13).

Every kind of executor, each started once and shared by the tests of a class.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import pytest
import tasks

from executors import Executor

# Executors whose tasks run in another process: what they send there must pickle.
PICKLING = {"dask-processes", "distributed-temporary", "distributed-address"}

BAD_EXTRA_CONTEXT = [
    ("retries-negative", {"retries": -1}, "'retries'"),
    ("retries-str", {"retries": "2"}, "'retries'"),
    ("retries-over-1000", {"retries": 1001}, "'retries'"),
    ("retries-2**70", {"retries": 2**70}, "'retries'"),
    ("priority-float", {"priority": 1.5}, "'priority'"),
    ("priority-2**70", {"priority": 2**70}, "'priority'"),
    ("priority-below-int32", {"priority": -(2**31) - 1}, "'priority'"),
    ("priority-bool", {"priority": True}, "'priority'"),
    ("map_index-bool", {"map_index": True}, "'map_index'"),
    ("map_index-negative", {"map_index": -1}, "'map_index'"),
    ("tags-str", {"tags": "GPU"}, "'tags'"),
    ("tags-int", {"tags": [1]}, "'tags'"),
    ("resource-inf", {"tags": ["dask-resource:GPU=inf"]}, "dask-resource:GPU=inf"),
    ("resource-nan", {"tags": ["dask-resource:GPU=nan"]}, "dask-resource:GPU=nan"),
    ("resource-negative", {"tags": ["dask-resource:GPU=-1"]}, "dask-resource:GPU=-1"),
    ("resource-no-amount", {"tags": ["dask-resource:GPU"]}, "dask-resource:GPU"),
    ("key-empty", {"key": ""}, "'key'"),
    ("key-int", {"key": 5}, "'key'"),
    ("task_name-int", {"task_name": 3}, "'task_name'"),
    ("unknown-key", {"colour": "red"}, "'colour'"),
    ("empty-list", [], "extra_context"),
    ("empty-str", "", "extra_context"),
    ("zero", 0, "extra_context"),
    ("list-of-pairs", [("retries", 1)], "extra_context"),
]


class TestSubmitChecksEveryValue:
    @pytest.mark.parametrize(
        ("extra_context", "named"),
        [case[1:] for case in BAD_EXTRA_CONTEXT],
        ids=[case[0] for case in BAD_EXTRA_CONTEXT],
    )
    def test_a_bad_value_is_a_value_error_and_the_executor_goes_on(
        self, shared_ex: Executor, extra_context: Any, named: str
    ) -> None:
        with pytest.raises(ValueError, match=re.escape(named)):
            shared_ex.submit(tasks.inc, 1, extra_context=extra_context)
        assert shared_ex.submit(tasks.inc, 1).result(timeout=30) == 2

    def test_the_limits_themselves_are_accepted(self, shared_ex: Executor) -> None:
        futures = [
            shared_ex.submit(tasks.inc, 1, extra_context=context)
            for context in (
                {"retries": 0},
                {"retries": 1000},
                {"priority": 2**31 - 1},
                {"priority": -(2**31)},
                {"map_index": 0},
                {"tags": ["dask-resource:GPU=0"]},
            )
        ]
        assert shared_ex.wait(futures, timeout=30) == [2] * 6

    def test_a_key_given_twice_while_its_task_is_live_is_a_value_error(
        self, shared_ex: Executor
    ) -> None:
        key = f"twice-{uuid.uuid4().hex}"
        first = shared_ex.submit(tasks.sleep_then, 0.2, "first", extra_context={"key": key})
        if not first.done():  # a LocalExecutor's task has ended inside submit
            with pytest.raises(ValueError, match=key):
                shared_ex.submit(tasks.inc, 1, extra_context={"key": key})
        assert first.result(timeout=30) == "first"
        # Once the first task's result is here, its key is free again.
        again = shared_ex.submit(tasks.inc, 1, extra_context={"key": key})
        assert again.result(timeout=30) == 2
        assert first.result() == "first"


def _lock_in_a_closure() -> Any:
    lock = threading.Lock()
    return lambda: lock.locked()


class TestOneBadTaskFailsAlone:
    def test_an_argument_that_does_not_pickle_fails_its_task_alone(
        self, shared_ex: Executor, request: pytest.FixtureRequest
    ) -> None:
        before = [shared_ex.submit(tasks.inc, i) for i in range(50)]
        bad = shared_ex.submit(tasks.echo, threading.Lock())
        after = [shared_ex.submit(tasks.inc, i) for i in range(50)]
        assert shared_ex.wait([before, after], timeout=60) == [list(range(1, 51))] * 2
        if _pickles(request):
            with pytest.raises(TypeError, match=re.escape(bad.key)) as raised:
                bad.result(timeout=30)
            assert "argument 0" in str(raised.value) and "_thread.lock" in str(raised.value)
        else:  # runs in this process: nothing to pickle
            args, _ = bad.result(timeout=30)
            assert isinstance(args[0], type(threading.Lock()))
        assert shared_ex.submit(tasks.inc, 1).result(timeout=30) == 2

    def test_a_function_that_does_not_pickle_fails_its_task_alone(
        self, shared_ex: Executor, request: pytest.FixtureRequest
    ) -> None:
        good = [shared_ex.submit(tasks.inc, i) for i in range(10)]
        bad = shared_ex.submit(_lock_in_a_closure())
        assert shared_ex.wait(good, timeout=60) == list(range(1, 11))
        if _pickles(request):
            with pytest.raises(TypeError, match="its function") as raised:
                bad.result(timeout=30)
            assert bad.key in str(raised.value)
        else:
            assert bad.result(timeout=30) is False

    def test_a_result_that_does_not_pickle_fails_its_task_once(
        self, shared_ex: Executor, request: pytest.FixtureRequest
    ) -> None:
        good = [shared_ex.submit(tasks.inc, i) for i in range(10)]
        bad = shared_ex.submit(tasks.make_lock)
        more = [shared_ex.submit(tasks.inc, i) for i in range(10)]
        if not _pickles(request):
            assert shared_ex.wait([good, bad, more], timeout=60)[1].acquire(blocking=False)
            return
        with pytest.raises(TypeError, match=re.escape(bad.key)) as first:
            shared_ex.wait([good, bad, more], timeout=60)
        assert "does not pickle" in str(first.value)
        # Settled as an error: the same error again, nothing fetched again.
        assert bad.exception(timeout=0) is first.value
        with pytest.raises(TypeError) as second:
            bad.result(timeout=0)
        assert second.value is first.value
        assert [f.result(timeout=30) for f in good + more] == list(range(1, 11)) * 2

    @pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()], ids=type)
    def test_a_task_raising_system_exit_or_ctrl_c_ends_its_own_future(
        self, shared_ex: Executor, request: pytest.FixtureRequest, error: BaseException
    ) -> None:
        if isinstance(error, KeyboardInterrupt) and _kind(request) == "local":
            # It runs in the caller's thread: a KeyboardInterrupt there is the caller's
            # own Ctrl-C, which goes through as from a direct call.
            with pytest.raises(KeyboardInterrupt):
                shared_ex.submit(tasks.raise_this, error)
            return
        good = [shared_ex.submit(tasks.inc, i) for i in range(5)]
        bad = shared_ex.submit(tasks.raise_this, error)
        with pytest.raises(type(error)) as raised:
            bad.result(timeout=30)
        if isinstance(error, SystemExit):
            assert raised.value.code == 3
        assert shared_ex.wait(good, timeout=30) == [1, 2, 3, 4, 5]
        assert shared_ex.submit(tasks.inc, 1).result(timeout=30) == 2


def _kind(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["shared_ex"].id)


def _pickles(request: pytest.FixtureRequest) -> bool:
    return _kind(request) in PICKLING
