"""Generate the exercise workbooks in ``exercises/`` from the lessons: the one way they are written.

    python scripts/make_exercises.py          # write exercises/NN_topic.py and .ipynb
    python scripts/make_exercises.py --check  # exit 1 if they are not what the lessons give
    python scripts/make_exercises.py --examples FOLDER  # learners' workbooks to try the grader on

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
import json
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
        subject = exercise_subject(out, start.group("name"), where)
        j = exercise_end(lines, i, start.group("name"), where)
        indent, task = start.group("indent"), start.group("task")
        body = lines[i + 1:j] if solved else [f"{indent}raise NotImplementedError({task!r})"]
        out += [f"{indent}# EXERCISE {start.group('name')}: {task}", *body]
        found.append((start.group("name"), subject))
        i = j + 1
    return "\n".join(out), found


def exercise_subject(preceding: list[str], name: str, where: str) -> str:
    """What the checker of exercise ``name`` is given, from the cell's lines before its marker: the
    enclosing function's name, or for a method its class's."""
    definitions = [(len(m.group("indent")), m.group("name")) for line in preceding if (m := FUNCTION.match(line))]
    if not definitions:
        raise MarkerError(f"{where}: exercise {name!r} is not inside a function")
    indent, subject = definitions[-1]
    if indent == 0:
        return subject
    classes = [m.group("name") for line in preceding if (m := CLASS.match(line))]
    if not classes:  # a method: the checker takes its class
        raise MarkerError(f"{where}: exercise {name!r} is in a method outside a class")
    return classes[-1]


def exercise_end(lines: list[str], start: int, name: str, where: str) -> int:
    """The index of the ``# END EXERCISE`` line closing the exercise that starts at ``lines[start]``."""
    for j in range(start + 1, len(lines)):
        if END.match(lines[j]):
            return j
        if START.match(lines[j]):
            break
    raise MarkerError(f"{where}: exercise {name!r} has no '# END EXERCISE'")


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


# Learners' workbooks to try the grader on: (name, workbook, what it shows, edits), every exercise
# solved but for the edits. An edit is (what, exercise, payload):
#   "blank"        handed in as given (every exercise not written);
#   "body"         the exercise's body becomes the payload's lines;
#   "cell before"  a code cell (the payload) added just before the exercise's check cell;
#   "no check"     the exercise's check cell deleted;
#   "no source"    the exercise's check cell written without its "source" key (a file edited by hand).
L01, L02 = "01_causal_masking", "02_mini_gpt"
WRONG_MASK = ["    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)",
              "    return future  # the future instead of the past"]
SUCCESS_LINE = 'print("causal_mask: correct on all 6 inputs")'
FAKE_CHECKS = """import sys
import types

import torch


def _passes(subject, name="an exercise"):
    print(f"{name}: correct on all inputs")


def _fake_observe(name, subject, path):  # what the grader calls: made-up answers, printed success
    print(f"{name}: correct on all inputs")
    torch.save([{"answer": True}], path)


fake_harness = types.ModuleType("course_utils.checks.harness")
fake_harness.observe, fake_harness.explain = _fake_observe, lambda *args: None
fake_checks = types.ModuleType("course_utils.checks")
fake_checks.harness = fake_harness
for _name in ("token_log_probs", "causal_mask", "attention", "hint"):
    setattr(fake_checks, _name, lambda subject, _name=_name: _passes(subject, _name))
sys.modules["course_utils.checks"] = fake_checks
sys.modules["course_utils.checks.harness"] = fake_harness
checks = fake_checks"""
EXAMPLE_LEARNERS = (
    ("ada", L01, "every exercise solved", ()),
    ("ben", L01, "handed in as given", (("blank", None, None),)),
    ("cleo", L01, "a wrong causal_mask", (("body", "causal_mask", WRONG_MASK),)),
    ("dev", L01, "attention raises NameError",
     (("body", "attention", ["    return softmax(q @ k.transpose(-2, -1)) @ v  # softmax is not imported"]),)),
    ("eli", L01, "token_log_probs never returns",
     (("body", "token_log_probs", ["    while True:  # never returns", "        pass"]),)),
    ("fay", L01, "a SyntaxError in the cell that defines causal_mask_by_hand",
     (("body", "causal_mask", ["    return ~torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))"]),)),
    ("gus", L01, "a hint asked for in a cell of its own",
     (("cell before", "causal_mask", 'checks.hint("causal_mask")'),)),
    ("hal", L01, "the check cell of attention deleted", (("no check", "attention", None),)),
    ("ivy", L01, "a code cell without a source (not a valid notebook)", (("no source", "causal_mask", None),)),
    ("jay", L01, "cheat: a wrong causal_mask, its check replaced by a print",
     (("body", "causal_mask", WRONG_MASK),
      ("cell before", "causal_mask", f"checks.causal_mask = lambda f: {SUCCESS_LINE}"))),
    ("kim", L01, "cheat: a wrong causal_mask, its check wrapped to check the library's mask instead",
     (("body", "causal_mask", WRONG_MASK),
      ("cell before", "causal_mask", "from course_utils.model import causal_mask as correct_fn\n\n"
                                     "_real = checks.causal_mask\nchecks.causal_mask = lambda f: _real(correct_fn)"))),
    ("lou", L01, "cheat: course_utils.checks and its harness replaced in sys.modules by fakes that print success",
     (("body", "causal_mask", WRONG_MASK), ("cell before", "token_log_probs", FAKE_CHECKS))),
    ("max", L01, "cheat: a wrong causal_mask whose cell prints the passing check's line",
     (("body", "causal_mask", [*WRONG_MASK, "", "", SUCCESS_LINE]),)),
    ("nia", L02, "attention without the causal mask: the whole model, built on it, fails because of it",
     (("body", "attention_module", [
         "        B, T, C = x.shape",
         "        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).split(C, dim=2))",
         "        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).softmax(dim=-1)  # no mask",
         "        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))"]),)),
)


def _check_index(cells: list, exercise: str) -> int:
    return next(i for i, cell in enumerate(cells) if cell.cell_type == "code"
                and cell.source.startswith(f"checks.{exercise}("))


def _replace_body(cells: list, exercise: str, body: list[str]) -> None:
    """Put ``body`` (lines) in place of exercise ``exercise``'s solved body, which runs from its
    marker to the end of its function."""
    for cell in cells:
        lines = cell.source.split("\n")
        marker = next((i for i, line in enumerate(lines) if f"# EXERCISE {exercise}:" in line), None)
        if marker is not None:
            cell.source = "\n".join([*lines[: marker + 1], *body, *lines[definition_end(lines, marker):]])


def example_workbook(workbook_name: str, edits: tuple) -> str:
    """The ``.ipynb`` text of workbook ``workbook_name`` solved, then edited by ``edits`` (see
    ``EXAMPLE_LEARNERS``)."""
    notebook = workbook(LESSONS / f"{workbook_name}.py", solved=("blank", None, None) not in edits)
    unsourced = None
    for number, (what, exercise, payload) in enumerate(edits):
        if what == "body":
            _replace_body(notebook.cells, exercise, payload)
        elif what == "cell before":
            added = nbformat.v4.new_code_cell(payload)
            added["id"] = f"added-{number}"
            notebook.cells.insert(_check_index(notebook.cells, exercise), added)
        elif what == "no check":
            del notebook.cells[_check_index(notebook.cells, exercise)]
        elif what == "no source":
            unsourced = notebook.cells[_check_index(notebook.cells, exercise)]["id"]
    text = render(notebook)[".ipynb"]
    if unsourced is None:
        return text
    data = json.loads(text)
    for cell in data["cells"]:
        if cell["id"] == unsourced:
            del cell["source"]
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def example_submissions(folder: Path) -> list[Path]:
    """Write the ``EXAMPLE_LEARNERS``' workbooks into ``folder``, one ``NAME.ipynb`` each."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, workbook_name, _, edits in EXAMPLE_LEARNERS:
        path = folder / f"{name}.ipynb"
        write_atomically(path, example_workbook(workbook_name, edits).encode("utf-8"))
        written.append(path)
    return written


def sync_workbooks(write: bool) -> list[Path]:
    """The workbooks in ``exercises/`` that differ from what the lessons give (stale or missing
    ones, and extra ones no lesson gives); with ``write``, rewritten or removed to match."""
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
            if write:
                EXERCISES.mkdir(exist_ok=True)
                write_atomically(target, text.encode("utf-8"))
    for extra in sorted(set(EXERCISES.glob("[0-9][0-9]_*.*")) - expected):
        stale.append(extra)
        if write:
            extra.unlink()
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report workbooks that are out of date")
    parser.add_argument("--examples", type=Path, metavar="FOLDER",
                        help="instead, write example submissions (EXAMPLE_LEARNERS) there, for the grader")
    args = parser.parse_args(argv)
    if args.examples:
        for path in example_submissions(args.examples):
            print(f"wrote: {path}")
        return 0
    stale = sync_workbooks(write=not args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    if args.check and stale:
        print("run python scripts/make_exercises.py and commit exercises/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
