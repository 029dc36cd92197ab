"""Build the course's website from the lessons' stored outputs: offline, without running a lesson.

    python scripts/build_site.py              # writes site/ (open site/index.html)
    python scripts/build_site.py --out DIR

The site is Sphinx with MyST-NB (the engine of Jupyter Book 1) and the Book theme: MyST-NB renders
a notebook's stored outputs as they are (``nb_execution_mode = "off"``), so the build takes
seconds, and Sphinx gives cross-references that fail the build when a page is missing, a search
page that works offline, and math through a MathJax served from the site itself
(``docs/site/_static/mathjax``), so pages render with no network.

Pages: a landing page made of the README's course map and lesson figures, one page per lesson
(``notebooks/``) and per workbook (``exercises/``), the answers (``docs/answers/``), the teaching
guide, the README's "Where things live", CONTRIBUTING and the licences. Each lesson page links to
its ``.ipynb``; a widget shows as the screenshot the browser tests take of it, with how to run it
live. Sources are staged in a temporary folder (links rewritten for the site), then built.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "site" / "conf.py"
WIDGET_SCREENSHOTS = {  # lesson -> the README screenshot of the widget it displays
    "03_sampling_and_generate": ("playground.png", "the sampling playground"),
    "06_attention": ("attention_explorer.png", "the attention explorer"),
    "09_assistant": ("chat_box.png", "the chat box"),
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def readme_section(readme: str, title: str) -> str:
    """The body of the README's ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"README.md has no section '## {title}'")
    return match.group(1).strip() + "\n"


def site_links(markdown: str) -> str:
    """README-relative links made site-relative: lessons, workbooks and images."""
    markdown = re.sub(r"\]\(notebooks/([0-9][0-9]_\w+)\.ipynb\)", r"](lessons/\1.ipynb)", markdown)
    markdown = re.sub(r"\]\(exercises/([0-9][0-9]_\w+)\.ipynb\)", r"](workbooks/\1.ipynb)", markdown)
    return markdown.replace("](docs/images/", "](images/")


def landing_page(readme: str) -> str:
    title = readme.splitlines()[0]
    intro = readme.split("\n\n")[1]  # the course in one paragraph (the README's next ones are about the repository)
    course_map = readme_section(readme, "Course map")
    return site_links(f"""{title}

{intro.strip()}

Read the lessons here with their stored outputs; to run them, download a lesson's `.ipynb` from its
page, or clone the repository and follow the README's quick start. For instructors: the
[teaching guide](teaching.md). Licences: [code and content](licences.md).

## Course map

{course_map}
```{{toctree}}
:hidden:
:caption: Lessons
:glob:

lessons/*
```

```{{toctree}}
:hidden:
:caption: Workbooks
:glob:

workbooks/*
```

```{{toctree}}
:hidden:
:caption: For instructors and contributors

answers/README
teaching
where-things-live
contributing
licences
```
""")


def lesson_notebook(source: Path, images: str, workbook: bool) -> nbformat.NotebookNode:
    """The stored notebook with a download link first and each widget's output replaced by its
    screenshot (a widget's state is not stored, so no page can show it live)."""
    notebook = nbformat.read(source, as_version=4)
    kind = "workbook" if workbook else "lesson"
    cells = [nbformat.v4.new_markdown_cell(
        f"*Download this {kind} to run it:* {{download}}`{source.name} <_{source.name}>` "
        f"(it needs the course installed: see the README's quick start).")]
    for cell in notebook.cells:
        cells.append(cell)
        widget_outputs = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if not widget_outputs:
            continue
        cell.outputs = [o for o in cell.outputs if o not in widget_outputs]
        if source.stem in WIDGET_SCREENSHOTS:
            image, name = WIDGET_SCREENSHOTS[source.stem]
            cells.append(nbformat.v4.new_markdown_cell(
                f"![{name}]({images}/{image})\n\n*A screenshot of {name}: on this page it cannot move. Run the "
                f"{kind} in JupyterLab, or serve it alone with `python -m course_utils classroom`, to use it live.*"))
    notebook.cells = cells
    return notebook


def stage(folder: Path) -> None:
    """Write every page's source into ``folder``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shutil.copy(CONF, folder / "conf.py")
    shutil.copy(CONF.with_name("favicon.svg"), folder / "favicon.svg")
    shutil.copytree(ROOT / "docs" / "images", folder / "images")
    shutil.copytree(CONF.with_name("_static"), folder / "_static")
    (folder / "index.md").write_text(landing_page(readme), encoding="utf-8")
    for name, sources, workbook in (("lessons", ROOT / "notebooks", False), ("workbooks", ROOT / "exercises", True)):
        (folder / name).mkdir()
        for source in sorted(sources.glob("[0-9][0-9]_*.ipynb")):
            nbformat.write(lesson_notebook(source, "../images", workbook), folder / name / source.name)
            shutil.copy(source, folder / name / f"_{source.name}")  # the download: the notebook as stored
    shutil.copytree(ROOT / "docs" / "answers", folder / "answers")
    index = folder / "answers" / "README.md"  # its table links every answer page; the toctree lists them
    index.write_text(index.read_text(encoding="utf-8") + "\n```{toctree}\n:hidden:\n:glob:\n\n[0-9]*\n```\n",
                     encoding="utf-8")
    shutil.copy(ROOT / "docs" / "teaching.md", folder / "teaching.md")
    (folder / "where-things-live.md").write_text(
        "# Where things live\n\n" + site_links(readme_section(readme, "Where things live")), encoding="utf-8")
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    contributing = contributing.replace("# Writing a lesson", "# Contributing: writing a lesson", 1)
    (folder / "contributing.md").write_text(contributing, encoding="utf-8")
    licence = (ROOT / "LICENSE-CONTENT.md").read_text(encoding="utf-8").replace("](LICENSE)", "](#the-mit-licence)")
    mit = (ROOT / "LICENSE").read_text(encoding="utf-8")
    (folder / "licences.md").write_text(licence + f"\n## The MIT licence\n\n```text\n{mit}```\n", encoding="utf-8")
    stage_references(folder)


def stage_references(folder: Path) -> None:
    """The References page: every entry of ``docs/references.bib`` (sphinxcontrib-bibtex), listed
    under the licences page, whose "Papers" line links to it."""
    shutil.copy(ROOT / "docs" / "references.bib", folder / "references.bib")
    (folder / "references.md").write_text(
        "# References\n\nThe papers the lessons and answers cite, each linked where it is cited.\n\n"
        "```{bibliography}\n:all:\n```\n", encoding="utf-8")
    licences = folder / "licences.md"
    text = licences.read_text(encoding="utf-8").replace("](docs/references.bib)", "](references.md)")
    licences.write_text(text + "\n```{toctree}\n:hidden:\n\nreferences\n```\n", encoding="utf-8")


def build(out: Path) -> int:
    """Stage the pages and build them into ``out``; returns Sphinx's exit code."""
    with tempfile.TemporaryDirectory(prefix="course-site-") as folder:
        sources, html = Path(folder) / "pages", Path(folder) / "html"  # MyST-NB also writes html/../jupyter_execute
        sources.mkdir()
        stage(sources)
        # -W: a warning (a missing page, an unknown reference) fails the build; -E: read every page afresh.
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-q",
                   "-d", str(Path(folder) / "doctrees"), str(sources), str(html)]
        code = subprocess.run(command, cwd=ROOT).returncode
        if code == 0:
            shutil.move(html, out)
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "site", help="where to write the site (default: site/)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    staging = args.out.with_name(args.out.name + ".tmp")  # built beside, then moved: never half a site
    shutil.rmtree(staging, ignore_errors=True)
    code = build(staging)
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        print("the site did not build: see the warnings above", file=sys.stderr)
        return code
    shutil.rmtree(args.out, ignore_errors=True)
    staging.replace(args.out)
    pages = len(list(args.out.rglob("*.html")))
    print(f"wrote {args.out}: {pages} pages in {time.perf_counter() - started:.0f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
