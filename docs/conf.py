"""Sphinx configuration: Markdown through MyST, the furo theme, autodoc for the API.

The build needs no network: no intersphinx; Python's and Dask's docs are linked by URL.
"""

from __future__ import annotations

import executors

project = "executors"
author = "the executors authors"
copyright = "2026, the executors authors"
release = executors.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links resolve, as on a forge

autodoc_member_order = "bysource"
autodoc_typehints = "description"  # hints rendered beside each parameter
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

# Names the hints mention that Sphinx cannot resolve without intersphinx: plain text.
nitpick_ignore_regex = [
    (r"py:.*", r"(concurrent\.futures|asyncio|collections\.abc|typing|types|abc|pathlib|os)\..*"),
    (r"py:.*", r"(distributed|dask|blinker|tenacity|structlog)(\..*)?"),
    (r"py:class", r"(Callable|Iterable|Iterator|Mapping|Any|Self|T|R|P|P\.args|P\.kwargs)"),
    (r"py:.*", r"(executors\.)?_.*"),  # private helpers the hints name
]

html_theme = "furo"
html_title = f"executors {release}"
html_static_path: list[str] = []
