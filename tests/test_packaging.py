"""The package's metadata: dependency floors, the tox matrix that tests them, exports."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import pathlib
import re

import pytest

import executors

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIME = ("dask", "distributed", "blinker", "tenacity", "structlog", "cloudpickle")


def _floors() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    floors = {}
    for line in config["options"]["install_requires"].split():
        name, _, version = line.partition(">=")
        floors[name] = version
    return floors


def _daskmin_pins() -> dict[str, str]:
    text = (ROOT / "tox.ini").read_text()
    return dict(re.findall(r"daskmin: ([\w-]+)==([\w.]+)", text))


def test_every_runtime_dependency_has_a_floor() -> None:
    assert sorted(_floors()) == sorted(RUNTIME)
    assert all(_floors().values())


def test_daskmin_env_pins_exactly_the_floors() -> None:
    pins = _daskmin_pins()
    assert {name: pins[name] for name in pins if name in RUNTIME} == _floors()
    # Anything else pinned there is for an extra (bokeh of distributed 2024.8's time).
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    extra_names = {
        re.split(r"[<>=\[ ]", line)[0]
        for text in extras["options.extras_require"].values()
        for line in text.split()
    }
    assert set(pins) - set(RUNTIME) <= extra_names


@pytest.mark.skipif(
    not os.environ.get("EXECUTORS_EXPECT_MINIMUM_VERSIONS"), reason="only in the daskmin env"
)
def test_daskmin_env_runs_on_the_floors() -> None:
    installed = {name: importlib.metadata.version(name) for name in RUNTIME}
    assert installed == _floors()


def test_all_lists_the_public_names_sorted() -> None:
    public = {name for name in vars(executors) if not name.startswith("_")} - {"annotations"}
    assert set(executors.__all__) == public | {"__version__"}
    assert executors.__all__ == sorted(executors.__all__)
    assert executors.__version__ == importlib.metadata.version("executors")


def test_ships_py_typed() -> None:
    assert (pathlib.Path(executors.__file__).parent / "py.typed").exists()


def test_the_pythons_claimed_are_the_pythons_tested() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    classified = set(re.findall(r"Python :: (3\.\d+)$", config["metadata"]["classifiers"], re.M))
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    factors = re.search(r"py\{([\d,]+)\}-dasklatest", tox["tox"]["envlist"])
    assert factors is not None
    tested = {f"{v[0]}.{v[1:]}" for v in factors.group(1).split(",")}
    assert classified == tested
    lowest, highest = min(tested, key=lambda v: int(v[2:])), max(tested, key=lambda v: int(v[2:]))
    readme = (ROOT / "README.md").read_text()
    assert f"Python {lowest} to {highest}." in readme
    assert config["options"]["python_requires"] == f">={lowest}"
