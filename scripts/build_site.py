"""Build the course's website from the lessons' stored outputs: offline, without running a lesson.

    python scripts/build_site.py              # writes site/ (open site/index.html)
    python scripts/build_site.py --out DIR
    python -m http.server -d site             # optional: search results then have excerpts

The site is Sphinx with MyST-NB (the engine of Jupyter Book 1) and the Book theme: MyST-NB renders
a notebook's stored outputs as they are (``nb_execution_mode = "off"``), so the build takes
seconds, and Sphinx gives cross-references that fail the build when a page is missing, a search
page that works offline, and math through a MathJax served from the site itself
(``docs/site/_static/mathjax``), so pages render with no network.

Pages: a landing page made of the README's course map and lesson figures, "Get started" (the
README's install, troubleshooting, offline and grading sections, read from it at each build), one
page per lesson (``notebooks/``) and per workbook (``exercises/``, titled "Workbook NN"), the
answers (``docs/answers/``), the teaching guide, the README's "Where things live", CONTRIBUTING and
the licences. Each lesson and workbook page offers its ``.ipynb`` and ``.py`` as stored and links
to its lesson or workbook and its answers, which link back; a widget shows as the screenshot the
browser tests take of it, with how to run it live; code cells show without the lines only the
tests read. Sources are staged in a temporary folder (links rewritten for the site), then built.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from set_repository import repository_address  # the address's one reader (scripts/)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "site" / "conf.py"
WIDGET_SCREENSHOTS = {  # lesson -> the README screenshot of the widget it displays, and what it shows
    "03_sampling_and_generate": ("playground.png", "the sampling playground: sliders for temperature, top-k "
                                 "and top-p above a table of the next token's probabilities before and after them"),
    "06_attention": ("attention_explorer.png", "the attention explorer: a text, layer and head chosen above the "
                     "head's scores and its attention weights as a heatmap, queries down and keys across"),
    "09_assistant": ("chat_box.png", "the chat box: a scene sent by the user, the model's short reply, and the "
                     "message box, Send and Clear buttons and temperature slider"),
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def readme_section(readme: str, title: str, level: int = 2) -> str:
    """The body of the README's ``## title`` section (``###`` for level 3), up to the next heading
    of its level or above, or the end of the README. (``# `` is not a heading here: in the
    README's code blocks it starts a comment.)"""
    hashes = "#" * level
    match = re.search(rf"^{hashes} {re.escape(title)}\n(.*?)(?=^#{{2,{level}}} |\Z)", readme, re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"README.md has no section '{hashes} {title}'")
    return match.group(1).strip() + "\n"


GET_STARTED_SECTIONS = (  # the README's sections on the "Get started" page, as (title, heading level)
    ("Quick start", 2), ("Troubleshooting", 2), ("Offline use", 2), ("Grading a class", 3))


def site_links(markdown: str) -> str:
    """README-relative links made site-relative: lessons, workbooks, images and the pages the site has."""
    markdown = re.sub(r"\]\(notebooks/([0-9][0-9]_\w+)\.ipynb\)", r"](lessons/\1.ipynb)", markdown)
    markdown = re.sub(r"\]\(exercises/([0-9][0-9]_\w+)\.ipynb\)", r"](workbooks/\1.ipynb)", markdown)
    markdown = markdown.replace("](docs/images/", "](images/").replace("](docs/teaching.md", "](teaching.md")
    markdown = markdown.replace("](docs/answers/", "](answers/").replace("](CONTRIBUTING.md)", "](contributing.md)")
    markdown = markdown.replace("](LICENSE-CONTENT.md)", "](licences.md)").replace("](LICENSE)", "](licences.md)")
    return markdown


def shorter_table_header(markdown: str) -> str:
    """A table whose last header cell ends in a long parenthesis gets the parenthesis as a note
    under the table, so that the header stays one line high (the course map's "Runs in (...)")."""
    lines = markdown.split("\n")
    for index, line in enumerate(lines[:-1]):
        match = re.fullmatch(r"(\|.*\| )([^|(]+?) \(([^|]{60,})\) \|", line)
        if match and lines[index + 1].startswith("| ---"):
            head, title, note = match.groups()
            lines[index] = f"{head}{title} |"
            end = next((i for i in range(index, len(lines)) if not lines[i].startswith("|")), len(lines))
            lines.insert(end, f"\n*{title}: {note}.*")
            break
    return "\n".join(lines)


GALLERY_ROW = re.compile(r"!\[([^\]]*)\]\(([^)]+)\) ([^|]+)")  # | ![alt](src) caption | ... |
EMPTY_TABLE_ROW = re.compile(r"\|(\s*(---)?\s*\|)+")  # a table's header row with no titles, or its rule


def gallery_one_per_row(markdown: str) -> str:
    """A table of captioned images (``| ![alt](src) caption | ... |``) becomes one figure per row,
    each as wide as the text so that its labels are legible."""
    lines: list[str] = []
    for line in markdown.split("\n"):
        figures = GALLERY_ROW.findall(line) if line.startswith("| ![") else []
        if figures:
            while lines and EMPTY_TABLE_ROW.fullmatch(lines[-1]):
                lines.pop()
            lines.extend(f"![{alt}]({src})\n\n*{caption.strip()}*\n" for alt, src, caption in figures)
        else:
            lines.append(line)
    return "\n".join(lines)


def landing_page(readme: str) -> str:
    title = readme.splitlines()[0]
    intro = readme.split("\n\n")[1]  # the course in one paragraph (the README's next ones are about the repository)
    course_map = gallery_one_per_row(shorter_table_header(readme_section(readme, "Course map")))
    return site_links(f"""{title}

{intro.strip()}

Read the lessons here with their stored outputs; to run them, download a lesson from its page
and install the course as [Get started](get-started.md) says. For instructors: the
[teaching guide](teaching.md). Licences: [code and content](licences.md).

## Course map

{course_map}
```{{toctree}}
:hidden:
:caption: Start here

get-started
```

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


def get_started_page(readme: str, repository: str) -> str:
    """The README's install, troubleshooting (the doctor), offline and grading sections, as one page."""
    sections = "\n".join(f"## {title}\n\n{readme_section(readme, title, level)}"
                         for title, level in GET_STARTED_SECTIONS)
    sections = readme_anchors_outside(sections, repository)
    return site_links(f"""# Get started

How to install the course and open its lessons, what to do when something fails, how to work
offline and how to grade a class: the sections of the repository's
[README]({repository}#readme) with these titles, as they stand in it.

{sections}""")


def heading_anchor(title: str) -> str:
    """The anchor GitHub and MyST give a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def readme_anchors_outside(markdown: str, repository: str) -> str:
    """Links to a README heading (``](#anchor)``) that ``markdown`` does not hold, pointed at the
    README in the repository, where that heading is."""
    held = {heading_anchor(title) for title in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)}
    return re.sub(r"\]\(#([\w-]+)\)",
                  lambda link: link.group(0) if link.group(1) in held else f"]({repository}#{link.group(1)})", markdown)


def site_code(source: str) -> str:
    """A code cell's source without the lines that only the tests read: nbval's ``# NBVAL_...``
    markers and the ``# EXERCISE ...`` / ``# END EXERCISE`` lines around an exercise's code."""
    return re.sub(r"^[ \t]*# (NBVAL_[A-Z_]+|EXERCISE\b.*|END EXERCISE)[ \t]*(\n|\Z)", "", source, flags=re.MULTILINE)


PROFILER_NOISE = re.compile(r"^USDT:.*\] profiler_(start|stop)\n?", re.MULTILINE)  # torch.profiler's own log lines


def site_outputs(outputs: list) -> list:
    """A cell's stored outputs without the profiler's log lines on stderr (an output left empty goes)."""
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            output = nbformat.from_dict({**output, "text": PROFILER_NOISE.sub("", output["text"])})
            if not output["text"]:
                continue
        kept.append(output)
    return kept


def plain_text(markdown: str) -> str:
    """Markdown as a sentence for alt text: no math, code or emphasis marks, one line."""
    text = re.sub(r"[`*$\\]|\[|\]\([^)]*\)", "", markdown)
    return " ".join(text.split())


def figure_alt(code: str, markdown_before: str) -> str:
    """What a lesson's figure shows, for its alt text: the plot's titles as the cell writes them,
    else the last paragraph of the text before the cell."""
    titles = re.findall(r"(?:set_title|suptitle|title)\s*[(=]\s*f?\"([^\"]+)\"", code)
    titles = [re.sub(r"\{[^}]*\}", "…", title) for title in titles]
    if titles:
        return "Figure: " + "; ".join(dict.fromkeys(titles))
    paragraph = plain_text(markdown_before.strip().split("\n\n")[-1]) if markdown_before.strip() else ""
    return f"Figure: {paragraph[:300]}" if paragraph else "Figure"


def page_title(notebook: nbformat.NotebookNode) -> str:
    """The notebook's first heading, without its ``# ``."""
    return notebook.cells[0].source.splitlines()[0].lstrip("# ").strip()


def lesson_notebook(source: Path, images: str, workbook: bool) -> nbformat.NotebookNode:
    """The stored notebook as its page shows it: a workbook titled "Workbook NN" (it is a lesson's
    copy), the downloads and links to the lesson, workbook and answers first, test markers and
    profiler noise hidden, each figure with alt text, and each widget's output replaced by its
    screenshot (a widget's state is not stored, so no page can show it live)."""
    notebook = nbformat.read(source, as_version=4)
    if workbook:
        notebook.cells[0].source = re.sub(r"^# Lesson (\d\d)", r"# Workbook \1", notebook.cells[0].source)
    title = page_title(notebook)
    lesson_title = title.replace("Workbook", "Lesson", 1)
    name = downloaded_name(source.stem, workbook)
    downloads = (f"{{download}}`{name}.ipynb <downloads/{name}.ipynb>` (or as a script, "
                 f"{{download}}`{name}.py <downloads/{name}.py>`)")
    answers = f"[the answers to its questions](../answers/{source.stem}.md)"
    if workbook:
        links = f"The solved lesson: [{lesson_title}](../lessons/{source.name}); {answers}."
    else:
        links = (f"Write its code yourself in [{title.replace('Lesson', 'Workbook', 1)}](../workbooks/{source.name}); "
                 f"{answers}.")
    kind = "workbook" if workbook else "lesson"
    cells = [notebook.cells[0], nbformat.v4.new_markdown_cell(
        f"*Download this {kind} to run it:* {downloads}; it needs the course installed (see "
        f"[Get started](../get-started.md)). {links}")]
    markdown_before = ""
    for cell in notebook.cells[1:]:
        cells.append(cell)
        if cell.cell_type == "markdown":
            markdown_before = cell.source
            continue
        if cell.cell_type != "code":
            continue
        cell.source = site_code(cell.source)
        cell.outputs = site_outputs(cell.outputs)
        if any("image/png" in output.get("data", {}) for output in cell.outputs):
            cell.metadata.setdefault("mystnb", {})["image"] = {"alt": figure_alt(cell.source, markdown_before)}
        widget_outputs = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if not widget_outputs:
            continue
        cell.outputs = [o for o in cell.outputs if o not in widget_outputs]
        if source.stem in WIDGET_SCREENSHOTS:
            image, shown = WIDGET_SCREENSHOTS[source.stem]
            widget = shown.split(":")[0]
            cells.append(nbformat.v4.new_markdown_cell(
                f"![{shown}]({images}/{image})\n\n*A screenshot of {widget}: on this page it cannot move. Run the "
                f"{kind} in JupyterLab, or serve it alone with `python -m course_utils classroom`, to use it live.*"))
    notebook.cells = cells
    return notebook


def downloaded_name(stem: str, workbook: bool) -> str:
    """The name a download is saved under: a lesson's own, a workbook's with ``_workbook``, so that
    both can sit in one folder (the grader still knows a workbook by its banner)."""
    return f"{stem}_workbook" if workbook else stem


def answers_page(answers: str, lesson: Path) -> str:
    """An answers page with a line under its title that links back to its lesson and workbook."""
    title, _, body = answers.partition("\n")
    heading = page_title(nbformat.read(lesson, as_version=4))
    return (f"{title}\n\n*The questions end [{heading}](../lessons/{lesson.name}); write its code in "
            f"[{heading.replace('Lesson', 'Workbook', 1)}](../workbooks/{lesson.name}).*\n{body}")


def stage(folder: Path) -> None:
    """Write every page's source into ``folder``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repository = repository_address()
    shutil.copy(CONF, folder / "conf.py")
    shutil.copy(CONF.with_name("favicon.svg"), folder / "favicon.svg")
    shutil.copytree(ROOT / "docs" / "images", folder / "images")
    shutil.copytree(CONF.with_name("_static"), folder / "_static")
    (folder / "index.md").write_text(landing_page(readme), encoding="utf-8")
    (folder / "get-started.md").write_text(get_started_page(readme, repository), encoding="utf-8")
    for name, sources, workbook in (("lessons", ROOT / "notebooks", False), ("workbooks", ROOT / "exercises", True)):
        (folder / name / "downloads").mkdir(parents=True)
        for source in sorted(sources.glob("[0-9][0-9]_*.ipynb")):
            nbformat.write(lesson_notebook(source, "../images", workbook), folder / name / source.name)
            for suffix in (".ipynb", ".py"):  # the downloads: the files as stored, byte for byte
                shutil.copyfile(source.with_suffix(suffix),
                                folder / name / "downloads" / f"{downloaded_name(source.stem, workbook)}{suffix}")
    shutil.copytree(ROOT / "docs" / "answers", folder / "answers")
    for answers in sorted((folder / "answers").glob("[0-9][0-9]_*.md")):
        lesson = ROOT / "notebooks" / f"{answers.stem}.ipynb"
        answers.write_text(answers_page(answers.read_text(encoding="utf-8"), lesson), encoding="utf-8")
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
        env = {**os.environ, "COURSE_SITE_REPOSITORY": repository_address()}  # conf.py's header link and copyright
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
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
    print(f"wrote {args.out}: {pages} pages in {time.perf_counter() - started:.0f} s; open {args.out / 'index.html'}, "
          f"or for search excerpts serve it: python -m http.server -d {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
