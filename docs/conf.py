"""Sphinx configuration of cnnserve's documentation site (MyST Markdown pages, the furo theme).

``make docs`` builds it with warnings as errors (``-W --keep-going -n``): a broken link, a
missing page or anchor, or a page left out of every table of contents fails the build."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "cnnserve"
author = "the cnnserve developers"
copyright = "the cnnserve developers"
release = _version("cnnserve")

extensions = ["myst_parser", "sphinxcontrib.mermaid"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# Headings up to ### get anchors, so pages can link to a section: [text](server.md#batching).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]
# ```mermaid blocks are diagrams, as on GitHub.
myst_fence_as_directive = ["mermaid"]

html_theme = "furo"
html_title = f"cnnserve {release}"
html_static_path: list[str] = []
# Code blocks are shell, Python, JSON or text; none is worth a warning when Pygments guesses wrong.
highlight_language = "text"
