"""Each lesson's .ipynb and .py (py:percent) hold the same cells."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_every_lesson_has_both_files():
    stems_ipynb = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    stems_py = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")}
    assert stems_ipynb and stems_ipynb == stems_py


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem)
def test_py_file_is_in_sync_with_notebook(notebook):
    expected = jupytext.writes(jupytext.read(notebook), fmt="py:percent")
    actual = notebook.with_suffix(".py").read_text()
    assert actual == expected, f"{notebook.name} and its .py differ: run scripts/regenerate_notebooks.py"
