"""What ``submit`` learns about a task: its key and its ``extra_context`` options."""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

from dask.utils import funcname

from ._future import Future

__all__ = [
    "EXTRA_CONTEXT_KEYS",
    "NO_OPTIONS",
    "Task",
    "TaskOptions",
    "is_positive_int",
    "task_options",
]

EXTRA_CONTEXT_KEYS = frozenset(
    {"task_name", "task_full_name", "map_index", "tags", "key", "retries", "priority"}
)
RESOURCE_TAG_PREFIX = "dask-resource:"
# What the scheduler can take (SPEC §13): a retry count it can store, a priority that fits
# the 32-bit signed integer its messages carry. Larger values pass Python and break the
# scheduler's encoding, which takes every worker's connection down with them.
MAX_RETRIES = 1000
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


class TaskOptions:
    """Validated ``extra_context`` beyond the key: what Dask applies (resources, ...).

    Tasks without any share :data:`NO_OPTIONS`: one object less per task (P3, P4)."""

    __slots__ = ("priority", "resources", "retries", "tags")

    def __init__(
        self,
        tags: tuple[str, ...] = (),
        resources: dict[str, float] | None = None,
        retries: int | None = None,
        priority: int | None = None,
    ) -> None:
        self.tags = tags
        self.resources = resources
        self.retries = retries
        self.priority = priority


NO_OPTIONS = TaskOptions()


class Task:
    """One submitted call: ``fn(*args, **kwargs)``, the Futures it depends on, its options
    and its Future. The one record of it that every executor keeps, from ``submit`` to
    its end; the last four fields are for a graph that computes it (LocalDaskExecutor).
    """

    __slots__ = (
        "args",
        "backend",
        "dep_keys",
        "deps",
        "fn",
        "future",
        "key",
        "known",
        "kwargs",
        "needed",
        "options",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: tuple[Future[Any], ...],
        options: TaskOptions,
        future: Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.deps = deps
        self.options = options
        self.future: Future[Any] = future
        self.key = future._key
        self.backend: Any = None  # what runs it, where its node needs to know
        self.dep_keys: tuple[str, ...] = ()  # dependencies computed in the same graph
        self.known: dict[str, Any] = _NOTHING_KNOWN  # outcomes of those that ended before
        self.needed = False  # a task of the same graph takes its result

    def let_go(self) -> Future[Any]:
        """It has ended: keep nothing of it, its Future included (SPEC §3: a computed
        graph keeps no function, argument, result or Future alive). The Future, for its
        settling."""
        future = self.future
        self.future = None  # type: ignore[assignment]
        self.fn = _ended
        self.args = ()
        self.kwargs = {}
        self.deps = ()
        self.known = _NOTHING_KNOWN
        return future


_NOTHING_KNOWN: dict[str, Any] = {}  # shared, never written to


def _ended(*args: Any, **kwargs: Any) -> None:
    """What an ended task holds instead of its function."""


def function_name(fn: Callable[..., Any]) -> str:
    """The name Dask's dashboard gives ``fn`` (``dask.utils.funcname``: through partials,
    ``"lambda"`` for a lambda), or its type's name for a callable object without one."""
    if type(fn) is FunctionType:  # the usual case, at the cost of P3's budget
        name = fn.__name__
        return "lambda" if name == "<lambda>" else name[:50]
    name = funcname(fn)
    if name.startswith("<"):  # funcname's str() of an object: an address, not a name
        inner = fn
        while isinstance(inner, functools.partial):
            inner = inner.func
        return type(inner).__name__
    return name


# Key suffixes: 128 random bits as 32 hex digits, as ``uuid4().hex`` spells them. But
# ``uuid.uuid4()`` asks the OS for each one (about 2.5 µs, and it releases the GIL); a
# private generator seeded from the OS costs 0.4 µs. Private, so that a script's
# ``random.seed()`` cannot make two processes draw the same keys on a shared scheduler;
# seeded again in a forked child for the same reason.
_key_bits = random.Random(os.urandom(32)).getrandbits


def _reseed_keys() -> None:
    global _key_bits
    _key_bits = random.Random(os.urandom(32)).getrandbits


os.register_at_fork(after_in_child=_reseed_keys)


def new_key(name: str) -> str:
    return f"{name}-{_key_bits(128):032x}"


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an int >= 1 (a bool is not: ``True`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _int_option(
    extra_context: Mapping[str, Any], name: str, minimum: int, maximum: int | None = None
) -> int | None:
    value = extra_context.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"extra_context[{name!r}] must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        valid = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"extra_context[{name!r}] must be an int {valid}, got {value!r}")
    return value


def _str_option(extra_context: Mapping[str, Any], name: str) -> str | None:
    value = extra_context.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"extra_context[{name!r}] must be a non-empty str, got {value!r}")
    return value


def parse_resource_tag(tag: str) -> tuple[str, float]:
    """``"dask-resource:GPU=1"`` -> ``("GPU", 1.0)``.

    :raises ValueError: naming the tag when it is not ``dask-resource:NAME=AMOUNT``.
    """
    name, sep, amount = tag[len(RESOURCE_TAG_PREFIX) :].partition("=")
    try:
        number = float(amount)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or not math.isfinite(number) or number < 0:
        raise ValueError(
            f"malformed resource tag {tag!r}: expected 'dask-resource:NAME=AMOUNT' with a "
            "non-negative number, e.g. 'dask-resource:GPU=1'"
        )
    return name.strip(), number


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"extra_context['tags'] must be an iterable of str, got {value!r}")
    tags = tuple(value)
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError(f"extra_context['tags'] must hold only str, got {tag!r}")
    return tags


def task_options(
    fn: Callable[..., Any], extra_context: Mapping[str, Any] | None
) -> tuple[str, TaskOptions]:
    """Validate ``extra_context``; return the task's key and its options (SPEC §3).

    :raises ValueError: for unknown keys or a malformed value, naming it.
    """
    if extra_context is None:
        return new_key(function_name(fn)), NO_OPTIONS
    if not isinstance(extra_context, Mapping):
        raise ValueError(f"extra_context must be a mapping or None, got {extra_context!r}")
    if not extra_context:
        return new_key(function_name(fn)), NO_OPTIONS
    unknown = set(extra_context) - EXTRA_CONTEXT_KEYS
    if unknown:
        raise ValueError(
            f"unknown extra_context key(s) {sorted(map(str, unknown))}; "
            f"valid keys are {sorted(EXTRA_CONTEXT_KEYS)}"
        )
    task_name = _str_option(extra_context, "task_name")
    full_name = _str_option(extra_context, "task_full_name")
    key = _str_option(extra_context, "key")
    map_index = _int_option(extra_context, "map_index", 0)
    retries = _int_option(extra_context, "retries", 0, MAX_RETRIES)
    priority = _int_option(extra_context, "priority", *PRIORITY_RANGE)
    tags = _tags(extra_context.get("tags"))
    resources: dict[str, float] | None = None
    for tag in tags:
        if tag.startswith(RESOURCE_TAG_PREFIX):
            resource, amount = parse_resource_tag(tag)
            resources = resources or {}
            resources[resource] = amount
    # The map index goes with a task name only (SPEC §3: ``load[3]``). Dask groups tasks
    # by the name it reads off the key and keeps a record per name for good, so the items
    # of a map share their function's name rather than each having a name of its own.
    if full_name is not None:
        name = full_name
    elif task_name is not None:
        name = task_name if map_index is None else f"{task_name}[{map_index}]"
    else:
        name = function_name(fn)
    if tags or resources or retries is not None or priority is not None:
        return key or new_key(name), TaskOptions(tags, resources, retries, priority)
    return key or new_key(name), NO_OPTIONS
