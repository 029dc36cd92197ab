"""Generate the exercise workbooks in ``exercises/`` from the lessons: the one way they are written.

    python scripts/make_exercises.py          # write exercises/NN_topic.py and .ipynb
    python scripts/make_exercises.py --check  # exit 1 if they are not what the lessons give
    python scripts/make_exercises.py --examples FOLDER  # five learners' workbooks to try the grader on

A lesson marks the body of a function the learner writes (see CONTRIBUTING.md, "Exercises"):

    def causal_mask_by_hand(T: int) -> torch.Tensor:
        # EXERCISE causal_mask: Return the (T, T) boolean mask, True where query i may see key j.
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        return ~future
        # END EXERCISE

In the workbook the body becomes ``raise NotImplementedError(<the task>)``, and a new cell after
it calls the checker of that name, ``checks.causal_mask(causal_mask_by_hand)``, which compares the
learner's function with the library's on fixed and random inputs. For a method (the ``forward`` of
a module the lesson builds), the checker is given the class. Hints are not in the lesson nor the
workbook: ``checks.hint("causal_mask")`` prints them from ``course_utils/hints.py``, one level per
call. Everything else is the lesson, outputs removed, so the exercises
cannot drift from the solutions.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat

from course_utils.files import write_atomically

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "notebooks"
EXERCISES = ROOT / "exercises"

START = re.compile(r"^(?P<indent>\s*)# EXERCISE (?P<name>[a-z_][a-z0-9_]*): (?P<task>.+)$")
HINT = re.compile(r"^\s*# HINT: (?P<hint>.+)$")
END = re.compile(r"^\s*# END EXERCISE$")
# The lessons' jupytext settings (no jupytext version in the scripts' headers), for the workbooks too.
JUPYTEXT_FILTER = {"notebook_metadata_filter": tomllib.loads((ROOT / "jupytext.toml").read_text())[
    "notebook_metadata_filter"]}
FUNCTION = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\(")
CLASS = re.compile(r"^class (?P<name>\w+)\b")

BANNER = (
    "**Exercise workbook.** This is lesson {number} with {count} piece{s} of code left for you to "
    "write: {names}. Each blank raises `NotImplementedError` with its task: write the body, run its "
    "cell, then the check cell below it. A wrong answer shows the smallest input it fails on, what was "
    "expected, what came back and what differs. Stuck? `checks.hint(\"name\")` prints a hint, a nudge "
    "first; call it again for the next, closer one. Run the workbook top to bottom: it stops at the "
    "first blank. The solved lesson is `notebooks/{lesson}`.\n\n"
    "To start one exercise again, copy its blank from `git show HEAD:exercises/{stem}.py`; to reset the "
    "whole workbook, run `git checkout exercises/{stem}.ipynb exercises/{stem}.py`."
)


class MarkerError(ValueError):
    """A lesson's exercise markers are malformed."""


def blank_cell(source: str, where: str, solved: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """The cell's source with each marked body replaced by its stub (``solved``: kept, as a learner
    who wrote it would have it), and for each exercise its (checker name, what the checker is
    given): the function's name, or for a method the name of its class (the checker builds the
    learner's module from it)."""
    lines = source.split("\n")
    out: list[str] = []
    found = []
    i = 0
    while i < len(lines):
        start = START.match(lines[i])
        if not start:
            if "# EXERCISE" in lines[i] or END.match(lines[i]):
                raise MarkerError(f"{where}: a marker line that is not '# EXERCISE name: task': {lines[i]!r}")
            if HINT.match(lines[i]):
                raise MarkerError(f"{where}: a '# HINT:' line; hints live in course_utils/hints.py, never in a lesson")
            out.append(lines[i])
            i += 1
            continue
        definitions = [(len(m.group("indent")), m.group("name")) for line in out if (m := FUNCTION.match(line))]
        if not definitions:
            raise MarkerError(f"{where}: exercise {start.group('name')!r} is not inside a function")
        subject = definitions[-1][1]
        if definitions[-1][0] > 0:  # a method: the checker takes its class
            classes = [m.group("name") for line in out if (m := CLASS.match(line))]
            if not classes:
                raise MarkerError(f"{where}: exercise {start.group('name')!r} is in a method outside a class")
            subject = classes[-1]
        j = i + 1
        while j < len(lines) and not END.match(lines[j]):
            if START.match(lines[j]):
                raise MarkerError(f"{where}: exercise {start.group('name')!r} has no '# END EXERCISE'")
            j += 1
        if j == len(lines):
            raise MarkerError(f"{where}: exercise {start.group('name')!r} has no '# END EXERCISE'")
        indent, task = start.group("indent"), start.group("task")
        body = lines[i + 1:j] if solved else [f"{indent}raise NotImplementedError({task!r})"]
        out += [f"{indent}# EXERCISE {start.group('name')}: {task}", *body]
        found.append((start.group("name"), subject))
        i = j + 1
    return "\n".join(out), found


def definition_end(lines: list[str], def_line: int) -> int:
    """The index of the first line after the function defined at ``lines[def_line]``: the next
    non-empty line that is not indented (or the end)."""
    return next((i for i in range(def_line + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))


def split_after_definitions(source: str, subjects: list[str]) -> tuple[str, str]:
    """The cell's source up to the end of the last of ``subjects``' definitions (functions or
    classes), and the rest: in a workbook the blank's own cell must define, not call, so that it
    runs without error."""
    lines = source.split("\n")
    last_def = max(i for i, line in enumerate(lines)
                   if (m := FUNCTION.match(line) or CLASS.match(line)) and m.group("name") in subjects)
    end = definition_end(lines, last_def)
    return "\n".join(lines[:end]).rstrip("\n"), "\n".join(lines[end:]).strip("\n")


def workbook(lesson: Path, solved: bool = False) -> nbformat.NotebookNode | None:
    """The exercise notebook for ``lesson`` (a .py), or None if it marks no exercise; ``solved``:
    with the lesson's solutions in the blanks (a perfect submission, for testing the grader)."""
    notebook = jupytext.read(lesson)
    cells = []
    exercises = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "# EXERCISE" not in cell.source:
            cells.append(cell)
            continue
        source, found = blank_cell(cell.source, f"{lesson.name}, cell {number}", solved)
        definitions, rest = split_after_definitions(source, [subject for _, subject in found])
        cells.append(nbformat.v4.new_code_cell(definitions, metadata=cell.metadata))
        for name, subject in dict(found).items():  # one check per exercise, after the cell that defines it
            cells.append(nbformat.v4.new_code_cell(f"checks.{name}({subject})"))
        if rest:  # the code that uses the functions runs after their checks
            cells.append(nbformat.v4.new_code_cell(rest))
        exercises += [name for name, _ in found]
    if not exercises:
        return None
    first_code = next(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    cells.insert(first_code + 1, nbformat.v4.new_code_cell("from course_utils import checks"))
    names = ", ".join(f"`{name}`" for name in exercises)
    banner = BANNER.format(number=lesson.name[:2], count=len(exercises), s="s" if len(exercises) > 1 else "",
                           names=names, lesson=lesson.with_suffix(".ipynb").name, stem=lesson.stem)
    cells.insert(1, nbformat.v4.new_markdown_cell(banner))
    for index, cell in enumerate(cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell["id"] = f"cell-{index}"  # stable ids: the same lesson gives the same workbook
    return nbformat.v4.new_notebook(cells=cells, metadata=notebook.metadata)


def render(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """The workbook's files, by suffix: the notebook and its jupytext py:percent pair."""
    paired = nbformat.from_dict(notebook)
    paired.metadata["jupytext"] = {"formats": "ipynb,py:percent", **JUPYTEXT_FILTER}
    ipynb = jupytext.writes(paired, fmt="ipynb")
    py = jupytext.writes(paired, fmt="py:percent")
    return {".ipynb": ipynb, ".py": py}


# Five learners' lesson-01 workbooks, to try the grader on: (name, exercise, what its body becomes).
EXAMPLE_LEARNERS = (
    ("ada", None, None),  # every exercise solved
    ("ben", None, "blank"),  # handed in as given
    ("cleo", "causal_mask", ["    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)",
                             "    return future  # the future instead of the past"]),
    ("dev", "attention", ["    return softmax(q @ k.transpose(-2, -1)) @ v  # softmax is not imported"]),
    ("eli", "token_log_probs", ["    while True:  # never returns", "        pass"]),
)


def example_submissions(folder: Path) -> list[Path]:
    """Write the ``EXAMPLE_LEARNERS``' lesson-01 workbooks into ``folder``: one solved, one blank,
    one with a wrong answer, one whose code raises, one that never finishes."""
    lesson = LESSONS / "01_causal_masking.py"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, exercise, body in EXAMPLE_LEARNERS:
        notebook = workbook(lesson, solved=body != "blank")
        if exercise is not None:
            for cell in notebook.cells:
                lines = cell.source.split("\n")
                marker = next((i for i, line in enumerate(lines) if f"# EXERCISE {exercise}:" in line), None)
                if marker is not None:
                    end = definition_end(lines, marker)  # the solved body runs to the function's end
                    cell.source = "\n".join([*lines[: marker + 1], *body, *lines[end:]])
        path = folder / f"{name}.ipynb"
        write_atomically(path, render(notebook)[".ipynb"].encode("utf-8"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report workbooks that are out of date")
    parser.add_argument("--examples", type=Path, metavar="FOLDER",
                        help="instead, write five example submissions of workbook 01 there, for the grader")
    args = parser.parse_args(argv)
    if args.examples:
        for path in example_submissions(args.examples):
            print(f"wrote: {path}")
        return 0
    stale = []
    expected = set()
    for lesson in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        notebook = workbook(lesson)
        if notebook is None:
            continue
        for suffix, text in render(notebook).items():
            target = EXERCISES / (lesson.stem + suffix)
            expected.add(target)
            if target.exists() and target.read_text() == text:
                continue
            stale.append(target)
            if not args.check:
                EXERCISES.mkdir(exist_ok=True)
                write_atomically(target, text.encode("utf-8"))
    for extra in sorted(set(EXERCISES.glob("[0-9][0-9]_*.*")) - expected):
        stale.append(extra)
        if not args.check:
            extra.unlink()
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    if args.check and stale:
        print("run python scripts/make_exercises.py and commit exercises/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
