"""Formulas are typeset, in Jupyter and on the site: every lesson's Markdown and every answers page
writes its formulas as $...$ or $$...$$ math, with no TeX left outside math and no formula typed
as plain text (a power x^3, a subscript theta_i, a root)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from site_markdown import plain_formulas, rendering_faults

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ANSWERS = sorted((ROOT / "docs" / "answers").glob("[0-9][0-9]_*.md"))


def markdown_cells(lesson: Path) -> list[str]:
    return [cell.source for cell in jupytext.read(lesson).cells if cell.cell_type == "markdown"]


@pytest.mark.parametrize("page", LESSONS + ANSWERS, ids=lambda page: page.name)
def test_formulas_are_math(page):
    texts = markdown_cells(page) if page.suffix == ".py" else [page.read_text()]
    assert [fault for text in texts for fault in rendering_faults(text)] == []
    assert [formula for text in texts for formula in plain_formulas(text)] == []


@pytest.mark.parametrize("planted", [
    "pair i turns by m theta_i, with theta_i = 10000^(-2i/D)",
    "GPT-2 uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
    "scaled by 1/√N at initialisation",
    "N_opt and D_opt ∝ C^0.5",
])
def test_a_planted_plain_text_formula_is_found(planted):
    assert plain_formulas(planted + "\n")


def test_the_same_formulas_as_math_pass():
    typeset = (r"with $\theta_i = 10000^{-2i/D}$, $0.044715\,x^3$, $1/\sqrt{N}$, $D_{\text{opt}} \propto C^{0.5}$"
               " and `theta_i`, a name in code.\n")
    assert plain_formulas(typeset) == [] and rendering_faults(typeset) == []
