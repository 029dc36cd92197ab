"""The website's build script without a browser (tests/browser/test_site.py opens the built site):
the README's sections it takes, the links it rewrites, and a widget's output swapped for its
screenshot."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_site  # noqa: E402


def test_the_landing_page_has_the_course_map_with_site_links():
    readme = (ROOT / "README.md").read_text()
    page = build_site.landing_page(readme)
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert all(f"](lessons/{lesson.name})" in page for lesson in lessons)
    assert "](notebooks/" not in page and "](docs/images/" not in page
    with pytest.raises(ValueError, match="README.md has no section '## Nowhere'"):
        build_site.readme_section(readme, "Nowhere")


def test_a_widget_output_becomes_its_screenshot_and_the_page_links_its_download(tmp_path):
    widget_cell = nbformat.v4.new_code_cell("display(chat.widget)", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/plain": "VBox()", build_site.WIDGET_VIEW: {"model_id": "abc"}})])
    source = tmp_path / "09_assistant.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[widget_cell]), source)
    page = build_site.lesson_notebook(source, "../images", workbook=False)
    assert "<_09_assistant.ipynb>" in page.cells[0].source  # the download: the notebook as stored
    assert page.cells[1].outputs == []
    assert "![the chat box](../images/chat_box.png)" in page.cells[2].source
