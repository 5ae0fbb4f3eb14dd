"""The documentation is tested like code: its examples run, every public name has a
docstring and an entry in the API page, and the README stays a landing page.

A ```` ```python ```` block in ``docs/`` or the README runs as a script unless the line
before it says otherwise: ``<!-- doc-test: scheduler -->`` runs it against the test
scheduler (its ``tcp://127.0.0.1:8786`` replaced by that address), ``<!-- doc-test:
fragment -->`` only compiles it. A block of ``>>>`` lines runs as a doctest. The examples
run in the ``docs`` tox env (``EXECUTORS_DOCS_EXAMPLES=1``), beside the site's build;
the other checks run everywhere.
"""

from __future__ import annotations

import doctest
import inspect
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import executors
from executors import signals

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PLACEHOLDER_ADDRESS = "tcp://127.0.0.1:8786"
MARKER = re.compile(r"<!--\s*doc-test:\s*(\w+)\s*-->")
KINDS = {"script", "scheduler", "fragment"}
README_MAX_LINES = 200

run_examples = pytest.mark.skipif(
    os.environ.get("EXECUTORS_DOCS_EXAMPLES") != "1",
    reason="the docs tox env runs the examples (EXECUTORS_DOCS_EXAMPLES=1)",
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    kind: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file, with what the line before says."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        if fence.startswith("```"):
            language = fence[3:].strip()
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if language in ("python", "py", "pycon"):
                before = next((line for line in reversed(lines[:index]) if line.strip()), "")
                marker = MARKER.search(before)
                kind = marker.group(1) if marker else "script"
                code = "\n".join(lines[index + 1 : end]) + "\n"
                blocks.append(Block(path, index + 1, kind, code))
            index = end
        index += 1
    return blocks


def all_blocks() -> list[Block]:
    pages = [*sorted(DOCS.rglob("*.md")), README]
    return [block for page in pages for block in python_blocks(page)]


BLOCKS = all_blocks()


def run_block(block: Block, tmp_path: Path, address: str | None = None) -> None:
    """Run one block as the reader would; fail with its output if it fails."""
    code = block.code
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, {}, block.id, str(block.path), 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0, f"{block.id}: {runner.failures} doctest failure(s)"
        return
    if address is not None:
        assert PLACEHOLDER_ADDRESS in code, f"{block.id} names no scheduler to replace"
        code = code.replace(PLACEHOLDER_ADDRESS, address)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 0, (
        f"{block.id} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_the_pages_have_examples_and_each_is_marked_with_a_known_kind() -> None:
    assert len(BLOCKS) >= 10
    unknown = [block.id for block in BLOCKS if block.kind not in KINDS]
    assert not unknown, f"unknown doc-test kinds at {unknown}; use one of {sorted(KINDS)}"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_every_example_compiles(block: Block) -> None:
    if block.code.lstrip().startswith(">>>"):
        doctest.DocTestParser().get_examples(block.code)  # raises on a malformed one
    else:
        compile(block.code, block.id, "exec")


RUNNABLE = [block for block in BLOCKS if block.kind in ("script", "scheduler")]


@run_examples
@pytest.mark.timeout(150)
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_every_example_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    address = None
    if block.kind == "scheduler":  # against the test scheduler
        address = request.getfixturevalue("scheduler_address")
    run_block(block, tmp_path, address)


@pytest.mark.timeout(60)
def test_a_broken_example_fails(tmp_path: Path) -> None:
    """The runner is not a formality: an example that raises, or prints what its doctest
    does not expect, fails."""
    broken = Block(README, 1, "script", "import executors\nexecutors.no_such_name\n")
    with pytest.raises(AssertionError, match="AttributeError"):
        run_block(broken, tmp_path)
    wrong = Block(README, 1, "script", ">>> 1 + 1\n3\n")
    with pytest.raises(AssertionError, match="doctest failure"):
        run_block(wrong, tmp_path)


def _public_names() -> dict[str, object]:
    names: dict[str, object] = {}
    for name in executors.__all__:
        value = getattr(executors, name)
        if not inspect.ismodule(value):
            names[f"executors.{name}"] = value
    for name in signals.__all__:
        if name != "WorkerInfo":  # documented as executors.WorkerInfo
            names[f"executors.signals.{name}"] = getattr(signals, name)
    return names


def _documented() -> set[str]:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\.\. auto\w+:: (\S+)", api, flags=re.M))


def test_every_public_name_has_an_entry_in_the_api_page() -> None:
    missing = sorted(set(_public_names()) - _documented())
    assert not missing, f"public names with no entry in docs/api.md: {missing}"
    for module in ("executors.signals", "executors.exceptions"):
        assert module in _documented(), f"{module}'s docstring is not in docs/api.md"


def test_every_public_name_and_method_has_a_docstring() -> None:
    undocumented = []
    for qualified, value in _public_names().items():
        if qualified == "executors.__version__":
            continue  # a string; documented by its entry
        if not (value.__doc__ or "").strip():
            undocumented.append(qualified)
        if inspect.isclass(value):
            for name, member in vars(value).items():
                if name.startswith("_") or not callable(getattr(member, "fget", member)):
                    continue
                if not (inspect.getdoc(getattr(value, name)) or "").strip():
                    undocumented.append(f"{qualified}.{name}")
    assert not undocumented, f"public names with no docstring: {undocumented}"


def test_each_signal_documents_the_keyword_arguments_the_signals_table_gives() -> None:
    table = (DOCS / "guide" / "signals.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", table, flags=re.M)
    assert {name for name, _ in rows} == set(signals.__all__) - {"WorkerInfo"}
    for name, arguments in rows:
        said = set(re.findall(r"`([a-z_]+)`", arguments))
        documented = set(re.findall(r":param (\w+):", getattr(signals, name).__doc__ or ""))
        assert said == documented, f"{name}: the table says {said}, its docstring {documented}"


def test_the_readme_is_a_landing_page_whose_links_into_the_docs_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 5, "the README links into the docs"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README links to missing pages: {missing}"
