"""Grade learners' workbooks: ``python -m course_utils.grade SUBMISSIONS... [--csv grades.csv]``.

Each submission is a workbook (``.ipynb``) or a folder of them; a learner is named by the file's
path below the folder given (or by the file's name). Every workbook runs top to bottom in a fresh
kernel, with errors allowed so that every check cell runs, and a time limit per cell. The result
is a table with a row per learner and workbook and a column per exercise: ``passed``, ``failed:``
and the first input the learner's code got wrong, ``not written``, ``raised:`` and the error, or
``not run`` when the workbook stopped before the check (it timed out, or its kernel died). It is
written as CSV and summed up on the terminal.

The learners' code runs with your permissions, as when you open their notebooks: grade
submissions you would run yourself, or in a container.

Taught in: no lesson; for instructors (the README's "Grading a class").
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHECK_CELL = re.compile(r"^checks\.(?P<name>[a-z_][a-z0-9_]*)\(")
LESSON = re.compile(r"notebooks/(?P<stem>\d\d_\w+)\.ipynb")  # the workbook's banner names its lesson
WORKBOOK_NAME = re.compile(r"^\d\d_\w+$")
DEFAULT_CELL_TIMEOUT = 300.0


@dataclass
class Grade:
    """One learner's workbook: how the run went, and each exercise's result in workbook order."""

    learner: str
    workbook: str
    run: str = "finished"
    results: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return sum(result == "passed" for result in self.results.values())


def learner_name(notebook: Path, folder: Path | None) -> str:
    """Who handed ``notebook`` in: its first folder below ``folder`` (alice/01_causal_masking.ipynb),
    else its own name (alice.ipynb), or its folder's when the file keeps the workbook's name."""
    if folder is not None and len(notebook.relative_to(folder).parts) > 1:
        return notebook.relative_to(folder).parts[0]
    return notebook.parent.name if WORKBOOK_NAME.match(notebook.stem) and notebook.parent.name else notebook.stem


def submissions(paths: list[Path]) -> list[tuple[str, Path]]:
    """(learner, workbook) for each ``.ipynb`` named or found below a named folder, sorted."""
    found = []
    for path in paths:
        if path.is_dir():
            for notebook in sorted(path.rglob("*.ipynb")):
                if ".ipynb_checkpoints" not in notebook.parts:
                    found.append((learner_name(notebook, path), notebook))
        elif path.suffix == ".ipynb" and path.is_file():
            found.append((learner_name(path.resolve(), None), path))
        else:
            raise ValueError(f"submissions must be .ipynb files or folders holding them; got {str(path)!r}")
    return found


def _text(outputs: list) -> str:
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return "".join(parts)


def check_result(name: str, cell) -> str:
    """What a check cell's outputs say: passed, not written, failed (with the first failing input),
    raised, or not run."""
    if cell.get("execution_count") is None and not cell.get("outputs"):
        return "not run"
    errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    if not errors:
        return "passed" if f"{name}: correct on all" in _text(cell.get("outputs", [])) else "not run"
    message = str(errors[0].get("evalue", ""))
    if errors[0].get("ename") == "KeyboardInterrupt":  # the grader interrupted it: out of time
        return "timed out"
    if errors[0].get("ename") != "ExerciseFailed":
        return f"raised: {errors[0].get('ename')}: {_short(message.splitlines()[0] if message else '')}"
    if "not written yet" in message:
        return "not written"
    inputs = re.search(r"^\s*(?:input|on the input):\s*(.*)$", message, re.M)
    first_line = message.splitlines()[0] if message else ""
    if " raised " in first_line:
        return f"raised: {_short(first_line.split(' raised ', 1)[-1])}" + (
            f" on {_short(inputs.group(1))}" if inputs else "")
    return "failed" + (f" on {_short(inputs.group(1))}" if inputs else "")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def grade_workbook(learner: str, workbook: Path, cell_timeout: float = DEFAULT_CELL_TIMEOUT) -> Grade:
    """Run ``workbook`` in a fresh kernel (errors allowed, ``cell_timeout`` seconds per cell) and
    read each check cell's result."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    grade = Grade(learner, workbook.stem)
    try:
        notebook = nbformat.read(workbook, as_version=4)
    except Exception as error:  # not a notebook at all
        grade.run = f"unreadable: {type(error).__name__}"
        return grade
    banner = LESSON.search("\n".join(cell.source for cell in notebook.cells[:3]))
    grade.workbook = banner.group("stem") if banner else workbook.stem
    for cell in notebook.cells:  # a submission may carry its own outputs: grade only what runs here
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workbook.parent)}})
    try:
        client.execute()
    except CellTimeoutError:
        grade.run = f"timed out: a cell ran longer than {cell_timeout:g} s"
    except DeadKernelError:
        grade.run = "the kernel died"
    except Exception as error:  # anything else that stops the run: recorded, and grading goes on
        grade.run = f"stopped: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    for cell in notebook.cells:
        match = CHECK_CELL.match(cell.source) if cell.cell_type == "code" else None
        if match:
            grade.results[match.group("name")] = check_result(match.group("name"), cell)
    return grade


def write_csv(grades: list[Grade], path: Path) -> None:
    """A row per learner and workbook, a column per exercise (in the order first met)."""
    exercises = list(dict.fromkeys(name for grade in grades for name in grade.results))
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["learner", "workbook", "run", "passed", *exercises])
        for grade in grades:
            writer.writerow([grade.learner, grade.workbook, grade.run, f"{grade.passed}/{len(grade.results)}",
                             *(grade.results.get(name, "") for name in exercises)])
    staging.replace(path)


def summary(grades: list[Grade]) -> str:
    """The terminal table: a row per learner and workbook, the count passed, and what went wrong."""
    lines = []
    width = max([len(grade.learner) for grade in grades] + [12])
    for grade in grades:
        problems = [f"{name} {result}" for name, result in grade.results.items() if result != "passed"]
        run = "" if grade.run == "finished" else f" [{grade.run}]"
        lines.append(f"{grade.learner:<{width}}  {grade.workbook:<26} {grade.passed}/{len(grade.results)} passed{run}"
                     + (f"; {'; '.join(problems)}" if problems else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="workbooks (.ipynb) or folders of them")
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="where to write the table")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help="seconds a cell may run before the workbook is stopped "
                             f"(default {DEFAULT_CELL_TIMEOUT:g})")
    args = parser.parse_args(argv)
    if args.cell_timeout <= 0:
        parser.error(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout:g}")
    try:
        found = submissions(args.submissions)
    except ValueError as error:
        parser.error(str(error))
    if not found:
        parser.error("no .ipynb workbook found in the submissions given")
    grades = []
    for learner, workbook in found:
        grades.append(grade_workbook(learner, workbook, args.cell_timeout))
        print(summary(grades[-1:]), flush=True)
    write_csv(grades, args.csv)
    print(f"wrote {args.csv}: {len(grades)} workbook(s), "
          f"{sum(grade.passed for grade in grades)} of {sum(len(grade.results) for grade in grades)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
