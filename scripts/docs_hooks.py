"""MkDocs hooks (mkdocs.yml `hooks:`) for the documentation site.

A `|` inside a code span in a table cell must be written `\\|` for GitHub to keep the cell
whole (docs/commands.md: `--priority high\\|normal\\|low`), and tests/test_docs.py reads the
choices in that form. Python-Markdown keeps such a cell whole too but prints the backslash;
this drops it from inline code, so the site shows `high|normal|low` as `--help` does."""

from __future__ import annotations

import re

_INLINE_CODE = re.compile(r"<code>([^<]*)</code>")  # inline code only: highlighted blocks nest tags


def on_page_content(html: str, **_kwargs) -> str:
    return _INLINE_CODE.sub(lambda m: "<code>" + m.group(1).replace("\\|", "|") + "</code>", html)
