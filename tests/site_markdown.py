"""Markdown as the website reads it: MyST, with the extensions ``docs/site/conf.py`` enables. What
would not render as written is found at the parser, before any build (tests/test_answers.py,
tests/test_formulas.py)."""

from __future__ import annotations

import functools
import os
import re
import runpy
import sys
from pathlib import Path
from unittest import mock

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from set_repository import repository_address  # noqa: E402

RAW_TEX = re.compile(r"\$|\\[a-zA-Z]{2,}|[\^_]\{")  # a dollar, a command like \frac, a ^{ or _{
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# A formula typed as plain text: a power x^3 or 10000^(-2i/D), a subscript theta_i, a root or a proportion.
PLAIN_FORMULA = re.compile(r"\w\^[\w(-]|\b[a-zA-Z]+_(?:[a-zA-Z0-9]|\{)\b|√|∝")


@functools.cache
def site_markdown_parser() -> MarkdownIt:
    """The parser the site reads a Markdown page with: MyST, with the extensions docs/site/conf.py enables."""
    # conf.py reads the repository's address from the environment, as scripts/build_site.py passes it.
    with mock.patch.dict(os.environ, {"COURSE_SITE_REPOSITORY": repository_address()}):
        extensions = runpy.run_path(str(ROOT / "docs" / "site" / "conf.py"))["myst_enable_extensions"]
    return create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)


def rendering_faults(markdown: str) -> list[str]:
    """What would not render as written: text that Markdown reads as raw HTML (a line starting with
    a comment ends the paragraph and loses its formatting and math), a marker shown in a code block,
    and TeX left outside math."""
    faults = []
    for token in site_markdown_parser().parse(markdown):
        where = f"line {token.map[0] + 1}" if token.map else "?"
        if token.type == "html_block" and COMMENT.sub("", token.content).strip():
            faults.append(f"{where}: read as raw HTML, not as a paragraph: {token.content.strip()[:70]!r}")
        elif token.type in ("code_block", "fence") and "<!--" in token.content:
            faults.append(f"{where}: a comment shown in a code block: {token.content.strip()[:70]!r}")
        elif token.type == "inline":
            faults += [f"{where}: TeX outside math: {child.content.strip()[:70]!r}"
                       for child in token.children or [] if child.type == "text" and RAW_TEX.search(child.content)]
    return faults


def plain_formulas(markdown: str) -> list[str]:
    """Each formula written as plain text outside math and code, with a little context."""
    found = []
    inlines = [token for token in site_markdown_parser().parse(markdown) if token.type == "inline"]
    for text in [child.content for token in inlines for child in token.children or [] if child.type == "text"]:
        found += [text[max(0, m.start() - 30) : m.end() + 30].replace("\n", " ") for m in PLAIN_FORMULA.finditer(text)]
    return found
