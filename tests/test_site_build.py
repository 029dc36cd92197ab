"""The website's build script without a browser (tests/browser/test_site.py opens the built site):
the README's sections it takes, the links it rewrites, and a widget's output swapped for its
screenshot."""

from __future__ import annotations

import re
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
    title = nbformat.v4.new_markdown_cell("# Lesson 09 — An assistant\n\nIntro.")
    nbformat.write(nbformat.v4.new_notebook(cells=[title, widget_cell]), source)
    page = build_site.lesson_notebook(source, "../images", workbook=False)
    assert "<downloads/09_assistant.ipynb>" in page.cells[1].source  # the download: the notebook as stored
    assert "<downloads/09_assistant.py>" in page.cells[1].source
    assert page.cells[2].outputs == []
    assert "![the chat box: a scene sent by the user" in page.cells[3].source
    assert "](../images/chat_box.png)\n" in page.cells[3].source


def without_link_targets(markdown: str) -> str:
    return re.sub(r"\]\([^)]*\)", "]()", markdown)


def test_the_get_started_page_is_the_readme_s_sections_with_its_install_command():
    readme = (ROOT / "README.md").read_text()
    repository = build_site.repository_address()
    page = build_site.get_started_page(readme, repository)
    quick_start = build_site.readme_section(readme, "Quick start")
    install = re.search(r"```bash\n# 1\.[^\n]*\n([^\n]+)\n```", quick_start).group(1)
    assert install.startswith("python -m pip install") and install in page
    for title, level in build_site.GET_STARTED_SECTIONS:
        assert f"\n## {title}\n" in page
        section = build_site.readme_section(readme, title, level)  # the text itself, not a copy (links retargeted)
        assert without_link_targets(section) in without_link_targets(page)
    assert "python -m course_utils doctor" in page and "course_utils grade" in page
    assert "](docs/" not in page and "](CONTRIBUTING.md)" not in page


def test_a_readme_section_ends_at_the_next_heading_of_its_level_or_at_the_end():
    readme = "# Title\n\n## One\ntext\n```bash\n# a comment, not a heading\n```\n### Sub\nsub text\n## Two\nlast\n"
    assert build_site.readme_section(readme, "One") == (
        "text\n```bash\n# a comment, not a heading\n```\n### Sub\nsub text\n")
    assert build_site.readme_section(readme, "Sub", level=3) == "sub text\n"
    assert build_site.readme_section(readme, "Two") == "last\n"


def test_a_workbook_page_is_titled_as_a_workbook_and_links_its_lesson_and_answers():
    workbook = build_site.lesson_notebook(ROOT / "exercises" / "01_causal_masking.ipynb", "../images", workbook=True)
    lesson = build_site.lesson_notebook(ROOT / "notebooks" / "01_causal_masking.ipynb", "../images", workbook=False)
    assert workbook.cells[0].source.startswith("# Workbook 01 — Causal masking\n")
    assert lesson.cells[0].source.startswith("# Lesson 01 — Causal masking\n")
    assert "](../lessons/01_causal_masking.ipynb)" in workbook.cells[1].source
    assert "[Workbook 01 — Causal masking](../workbooks/01_causal_masking.ipynb)" in lesson.cells[1].source
    for page in (lesson, workbook):
        assert "](../answers/01_causal_masking.md)" in page.cells[1].source
        assert "](../get-started.md)" in page.cells[1].source and "README" not in page.cells[1].source
    answers = build_site.answers_page("# Answers 01\n\nbody\n", ROOT / "notebooks" / "01_causal_masking.ipynb")
    assert answers.startswith("# Answers 01\n\n*The questions end [Lesson 01 — Causal masking](../lessons/01_causal")
    assert "[Workbook 01 — Causal masking](../workbooks/01_causal_masking.ipynb)" in answers


def test_staged_pages_hide_test_markers_and_downloads_are_the_files_as_stored(tmp_path):
    build_site.stage(tmp_path)
    for folder, sources, suffix in (("lessons", "notebooks", ""), ("workbooks", "exercises", "_workbook")):
        for source in sorted((ROOT / sources).glob("[0-9][0-9]_*.ipynb")):
            for extension in (".ipynb", ".py"):
                download = tmp_path / folder / "downloads" / f"{source.stem}{suffix}{extension}"
                assert download.read_bytes() == source.with_suffix(extension).read_bytes(), download
            shown = nbformat.read(tmp_path / folder / source.name, as_version=4)
            code = "\n".join(cell.source for cell in shown.cells if cell.cell_type == "code")
            stderr = "".join(output.get("text", "") for cell in shown.cells if cell.cell_type == "code"
                             for output in cell.outputs if output.get("name") == "stderr")
            assert not re.search(r"# NBVAL_|# (END )?EXERCISE\b", code), f"{folder}/{source.name} shows a test marker"
            assert "profiler_start" not in stderr and "USDT" not in stderr
    stored = (ROOT / "notebooks" / "04_kv_cache.ipynb").read_text()
    assert "# NBVAL_IGNORE_OUTPUT" in stored and "profiler_start" in stored  # the lesson keeps them
    assert "# EXERCISE causal_mask" in (ROOT / "notebooks" / "01_causal_masking.py").read_text()


def test_site_code_drops_marker_lines_and_keeps_the_code_between_them():
    source = ("# NBVAL_IGNORE_OUTPUT\nx = 1\n    # EXERCISE f: do it.\n    return x\n    # END EXERCISE\n"
              "y = 2  # NBVAL_ not a marker\n")
    assert build_site.site_code(source) == "x = 1\n    return x\ny = 2  # NBVAL_ not a marker\n"
    noisy = nbformat.v4.new_output("stream", name="stderr",
                                   text="USDT:2026-12-06 21:46:09 1:1 X.cpp:52] profiler_start\n")
    kept = nbformat.v4.new_output("stream", name="stderr", text="a real warning\n")
    assert build_site.site_outputs([noisy, kept]) == [kept]


def test_figures_have_alt_text_that_says_what_they_show():
    titled = 'ax.set_title("Causal mask: green may attend")'
    assert build_site.figure_alt(titled, "") == "Figure: Causal mask: green may attend"
    assert build_site.figure_alt("plt.plot(x)", "Intro.\n\nThe loss, **falling** as `steps` grow.") == (
        "Figure: The loss, falling as steps grow.")
    page = build_site.lesson_notebook(ROOT / "notebooks" / "01_causal_masking.ipynb", "../images", workbook=False)
    alts = [cell.metadata["mystnb"]["image"]["alt"] for cell in page.cells if "mystnb" in cell.get("metadata", {})]
    assert alts and all(alt.startswith("Figure: ") and ".png" not in alt for alt in alts)


def test_the_course_map_keeps_a_one_line_header_and_the_gallery_one_figure_per_row():
    table = "| Lesson | Runs in (" + "a long explanation " * 5 + ") |\n| --- | --- |\n| 01 | 14 s |\n\nafter"
    shorter = build_site.shorter_table_header(table)
    assert shorter.startswith("| Lesson | Runs in |\n| --- | --- |\n| 01 | 14 s |\n\n*Runs in: a long explanation")
    gallery = ("| | |\n| --- | --- |\n"
               "| ![01: the mask](docs/images/a.png) 01: the mask | ![02: b](docs/images/b.png) 02: b |\n")
    figures = build_site.gallery_one_per_row(gallery)
    assert figures.startswith("![01: the mask](docs/images/a.png)\n\n*01: the mask*\n")
    assert "|" not in figures and "![02: b](docs/images/b.png)\n\n*02: b*" in figures


def test_get_started_points_links_to_other_readme_sections_at_the_repository():
    section = "## Offline use\n\nSee [data](#data-and-attribution) and [here](#offline-use)."
    page = build_site.readme_anchors_outside(section, "https://example.org/course")
    assert "[data](https://example.org/course#data-and-attribution)" in page
    assert "[here](#offline-use)" in page
    assert build_site.heading_anchor("Data and attribution") == "data-and-attribution"
