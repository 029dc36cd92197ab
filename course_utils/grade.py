"""Grade learners' workbooks: ``python -m course_utils.grade SUBMISSIONS... [--csv grades.csv] [--jobs N]``.

Each submission is a workbook (``.ipynb``) or a folder of them; a learner is named by the file's
path below the folder given (or by the file's name). The workbook is known by its banner (the
``notebooks/NN_topic.ipynb`` its first cells name) or its file name, and its exercises come from
the course (``checks.exercises_of``), never from the submission: an exercise whose check cell was
deleted or edited is ``not run``, never missing from the row.

How the verdict is reached. The workbook's code cells run one by one in a fresh kernel (errors
allowed, a time limit per cell after which the cell is interrupted and grading goes on). Hint
cells (``checks.hint(...)``) are skipped. A check cell (its code a single call ``checks.NAME(...)``)
is never run: in its place the kernel is asked only for the learner's answers to exercise NAME's
inputs (``harness.observe``, the subject named by the course, written to a file that is read back
with ``torch.load(weights_only=True)``, which never unpickles an object), and those answers are
compared with the library's in the grader's own process (``harness.judge``), where the learner's
code never runs. Each exercise gets ``passed``, ``not written``, ``failed:`` with the check's own
line on what differs (and, for a model, which layer), ``raised:`` and the error, ``timed out`` or
``not run``; the row's ``run`` says ``finished``, or what else happened: cells interrupted at the
time limit, the learner's cells that raised (which errors, and the first in full), or why the run stopped. The table
is written as CSV, a row as each workbook is done, and printed as it goes.

What this protects, and what it does not. The learner's code runs in the kernel and can do
anything there: replace ``checks``, patch the harness, print a passing check's line. None of that
reaches the verdict; the most it can change is the answers handed back, and those are judged here.
So a workbook passes only by returning the library's answers. A learner who returns them by
calling the library's own implementation (``course_utils.model.causal_mask`` instead of writing
it) is not detected: no grader that judges what the code returns can tell, and this one does not
try. Read the code of a workbook you doubt.

The learners' code runs with your permissions, as when you open their notebooks: grade
submissions you would run yourself, or in a container.

Taught in: no lesson; for instructors (the README's "Grading a class").
"""

from __future__ import annotations

import argparse
import ast
import builtins
import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

import nbformat
import torch
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from . import checks
from .checks import harness
from .lesson import LESSON_THREADS

BANNER = re.compile(r"notebooks/(?P<stem>\d\d_\w+)\.ipynb")  # the workbook's banner names its lesson
WORKBOOK_NAME = re.compile(r"^(?P<lesson>\d\d)_\w+$")
SYNTAX_PLACE = re.compile(r"\s*\([^()]*, line (?P<line>\d+)\)$")  # "(1892821119.py, line 5)"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads such a cell as a formula
DEFAULT_CELL_TIMEOUT = 300.0
PING_TIMEOUT = 10  # seconds a kernel gets to answer after an interrupted cell before it is given up
BANNER_CELLS = 3  # the banner is in the workbook's first cells
LIBRARY_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds this course_utils


@dataclass
class Grade:
    """One learner's workbook: how the run went, and each exercise's result in course order."""

    learner: str
    workbook: str
    run: str = "finished"
    results: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        return sum(result == "passed" for result in self.results.values())


# ---- which workbook, from whom -------------------------------------------------------------------

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


class Malformed(ValueError):
    """The file is not a notebook nbformat accepts."""


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None, str | None]:
    """The workbook at ``path``: the notebook (nbformat 4, validated) or None if it is malformed,
    the workbook's name (``01_causal_masking``, see ``workbook_of``) or None, and what is malformed
    or None."""
    cells: object = None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise Malformed("not a notebook (JSON, but not an object)")
        cells = data.get("cells")
        with warnings.catch_warnings():  # e.g. nbformat's "cell is missing an id field"
            warnings.simplefilter("ignore")
            notebook = nbformat.convert(nbformat.reader.reads(text), 4)
            nbformat.validate(notebook)
    except Malformed as error:
        problem = str(error)
    except nbformat.ValidationError as error:
        where = list(error.absolute_path)
        cell = f" (cell {where[1] + 1})" if len(where) > 1 and where[0] == "cells" and isinstance(where[1], int) else ""
        problem = f"{_first_line(error.message)}{cell}"
    except json.JSONDecodeError as error:
        problem = f"not JSON ({error.msg}, line {error.lineno})"
    except Exception as error:  # unreadable bytes, a notebook nbformat cannot convert
        problem = f"{type(error).__name__}: {_first_line(str(error))}"
    else:
        return notebook, workbook_of(path, notebook.cells), None
    return None, workbook_of(path, cells if isinstance(cells, list) else []), problem


def workbook_of(path: Path, cells: list) -> str | None:
    """The workbook's name (``01_causal_masking``): the lesson its banner names in its first cells,
    else its file name if that is a workbook's; None if neither."""
    sources = [cell.get("source", "") if isinstance(cell, dict) else "" for cell in cells[:BANNER_CELLS]]
    text = "\n".join("".join(map(str, source)) if isinstance(source, list) else str(source) for source in sources)
    if banner := BANNER.search(text):
        return banner.group("stem")
    return path.stem if WORKBOOK_NAME.match(path.stem) else None


def exercises_of(workbook: str | None) -> list[harness.Exercise]:
    """The course's exercises of ``workbook``, in order (none for an unknown one)."""
    return checks.exercises_of(workbook[:2]) if workbook else []


def planned_exercises(path: Path) -> list[str]:
    """The exercise columns ``path``'s row will fill (read before grading, for the CSV's header)."""
    return [exercise.name for exercise in exercises_of(read_notebook(path)[1])]


# ---- reading a workbook's cells ------------------------------------------------------------------

def _checks_calls(source: str) -> list[str] | None:
    """For code made only of calls ``checks.NAME(...)`` (comments and blank lines aside), the
    NAMEs in order; None for any other code."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax, or a learner's typo: ordinary code, run as it is
        return None
    names = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "checks"):
            return None
        names.append(call.func.attr)
    return names or None


def check_cell(source: str) -> str | None:
    """NAME if the cell is a check cell, its code a single call ``checks.NAME(...)``."""
    names = _checks_calls(source)
    return names[0] if names is not None and len(names) == 1 and names[0] != "hint" else None


def hint_cell(source: str) -> bool:
    """Whether the cell only asks for hints (``checks.hint(...)``): never an exercise, never run."""
    names = _checks_calls(source)
    return names is not None and set(names) == {"hint"}


def defines(source: str, subject: str) -> bool:
    """Whether the cell defines ``subject`` (``def subject`` or ``class subject`` at a line's start)."""
    return re.search(rf"^(?:async\s+def|def|class)\s+{re.escape(subject)}\b", source, re.M) is not None


# ---- running a workbook in a kernel --------------------------------------------------------------

class Stopped(Exception):
    """The kernel cannot go on (it died, or an interrupted cell never stopped): the rest is not run."""


@dataclass
class Ran:
    """How one cell went: ``error`` ("Error: message"), or ``timed_out``, or neither."""

    error: str | None = None
    timed_out: bool = False


def _quiet_logger() -> logging.Logger:
    """A logger that says nothing: nbclient's and the kernel manager's messages (a time-out, an
    interrupt) are the grader's to report, in the row."""
    logger = logging.getLogger(f"{__name__}.kernel")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


class Kernel:
    """A fresh kernel for one workbook, its output and warnings kept off the terminal; ``run``
    executes code in it with the per-cell time limit, interrupting a cell that goes over."""

    def __init__(self, folder: Path, cell_timeout: float) -> None:
        self.timeout_marker = f"grader-timeout-{uuid.uuid4().hex}"  # no learner's error has this name
        self.replies: list[dict] = []
        quiet = _quiet_logger()
        self.client = NotebookClient(
            nbformat.v4.new_notebook(), timeout=max(1, round(cell_timeout)), kernel_name="python3",
            allow_errors=True, interrupt_on_timeout=True, shutdown_kernel="immediate", log=quiet,
            error_on_timeout={"ename": self.timeout_marker, "evalue": "", "traceback": []},
            resources={"metadata": {"path": str(folder)}})
        self.client.on_cell_executed = self._reply
        self.client.km = self.client.create_kernel_manager()
        self.client.km.log = quiet

    def _reply(self, cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict) -> None:
        self.replies.append(execute_reply or {})

    def session(self):
        """The kernel, started for a ``with`` block: its stdout and stderr (its TCP warning, a
        learner's C-level prints) go nowhere, and its OpenMP threads sleep rather than spin."""
        return self.client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env=kernel_environment())

    def run(self, source: str, index: int) -> Ran:
        """Execute ``source`` (the workbook's cell ``index``, or the grader's call in its place)."""
        content = self._execute(source, index)
        if content.get("ename") == self.timeout_marker:
            if not self._responds():
                raise Stopped(f"cell {index + 1} went over the time limit and did not stop when interrupted")
            return Ran(timed_out=True)
        if content.get("status") == "error":
            return Ran(error=_error_text(str(content.get("ename", "Error")), str(content.get("evalue", ""))))
        return Ran()

    def _execute(self, source: str, index: int) -> dict:
        cell = nbformat.v4.new_code_cell(source)  # a fresh cell: the submission's tags and outputs play no part
        self.client.nb.cells = [cell]
        self.replies.clear()
        try:
            self.client.execute_cell(cell, 0)
        except DeadKernelError:
            raise Stopped(f"the kernel died in cell {index + 1}") from None
        return self.replies[-1].get("content", {}) if self.replies else {}

    def _responds(self) -> bool:
        """After an interrupted cell: whether the kernel is free again (it may have ignored the
        interrupt and still be running the learner's code)."""
        timeout = self.client.timeout
        self.client.timeout = PING_TIMEOUT if timeout is None else min(timeout, PING_TIMEOUT)
        try:
            return self._execute("pass", -1).get("ename") != self.timeout_marker
        except Stopped:
            return False
        finally:
            self.client.timeout = timeout


def kernel_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the kernels (and grading processes): ``base`` (default ``os.environ``)
    with this ``course_utils`` first on the path, so that the kernel answers the same exercises the
    grader judges, and OpenMP's threads waiting passively unless ``base`` says otherwise: spinning
    threads are the default, and when more threads than cores are busy (two workbooks graded at
    once on 2 cores, each on 2 threads) they made lesson cells 5 to 20 times slower, past the
    time limit."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(LIBRARY_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _error_text(name: str, value: str) -> str:
    """"Error: message", one line; a SyntaxError's place given as its line in the cell."""
    line = _first_line(value)
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, SyntaxError) and (place := SYNTAX_PLACE.search(line)):
        line = line[: place.start()] + f" (line {place.group('line')})"
    return f"{name}: {_short(line)}" if line else name


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _harness_call(function: str, *arguments: str) -> str:
    """The code that calls ``harness.FUNCTION`` in the learner's kernel (``arguments`` are code)."""
    return f'__import__("course_utils.checks.harness", fromlist=[{function!r}]).{function}({", ".join(arguments)})'


# ---- grading one workbook ------------------------------------------------------------------------

def _load_records(path: Path) -> object:
    """What the kernel wrote, read without unpickling any object (``weights_only``)."""
    return torch.load(path, weights_only=True)


def _judge(name: str, path: Path) -> harness.Verdict | str | None:
    """The verdict on the answers at ``path``: None (passed), a Verdict, or a result text when
    there are no answers to judge."""
    if not path.exists():
        return "failed: no answers came back from the workbook's kernel"
    try:
        records = _load_records(path)
    except Exception as error:
        return f"failed: the answers came back unreadable ({type(error).__name__})"
    if not isinstance(records, list):
        return "failed: the answers came back malformed"
    try:
        return harness.judge(name, records)
    except Exception as error:  # answers of a shape the comparison does not expect: never a pass
        problem = f"{type(error).__name__}: {_short(_first_line(str(error)), 80)}"
        return f"failed: the answers could not be compared ({problem})"


def _observe(kernel: Kernel, exercise: harness.Exercise, index: int, scratch: Path,
             cell_results: dict[int, Ran], sources: list[str]) -> tuple[str, harness.Verdict | None]:
    """Ask the kernel for the learner's answers to ``exercise`` and judge them here: the result
    text, and the verdict when there is one (to ask where it goes wrong)."""
    path = scratch / f"answers-{index}.pt"
    ran = kernel.run(_harness_call("observe", repr(exercise.name), exercise.subject, repr(str(path))), index)
    if ran.timed_out:
        return "timed out", None
    if ran.error is not None:  # the subject is missing or broken: say why, from the cell that defines it
        definer = next((i for i in sorted(cell_results, reverse=True)
                        if i < index and defines(sources[i], exercise.subject)), None)
        if definer is not None and cell_results[definer].timed_out:
            return f"timed out in the cell that defines {exercise.subject}", None
        if definer is not None and cell_results[definer].error is not None:
            return f"raised: {cell_results[definer].error} in the cell that defines {exercise.subject}", None
        return f"raised: {ran.error}", None
    verdict = _judge(exercise.name, path)
    if verdict is None:
        return "passed", None
    if isinstance(verdict, str):
        return verdict, None
    return verdict.detail(), verdict


def _explain(kernel: Kernel, exercise: harness.Exercise, verdict: harness.Verdict, index: int,
             scratch: Path) -> str | None:
    """Where the learner's model first differs on the failing input, asked of the kernel: advisory
    text only, never part of the verdict."""
    path = scratch / f"where-{index}.pt"
    ran = kernel.run(_harness_call("explain", repr(exercise.name), exercise.subject, str(verdict.index),
                                   repr(str(path))), index)
    if ran.timed_out or ran.error is not None or not path.exists():
        return None
    try:
        where = _load_records(path)
    except Exception:
        return None
    if isinstance(where, list) and where and isinstance(where[0], str):
        return _short(" ".join(where[0].split()), 120)
    return None


def _with_needs(results: dict[str, str]) -> dict[str, str]:
    """A failure of an exercise that runs another's code (``needs``) that also fails says so."""
    marked = dict(results)
    for name, result in results.items():
        status, colon, rest = result.partition(":")
        if status not in ("failed", "raised") or not colon:
            continue
        failing = [need for need in checks.EXERCISES[name].needs
                   if results.get(need, "passed") not in ("passed", "not run")]
        if failing:
            names = " and ".join(failing)
            marked[name] = f"{status} (because {names} fail{'s' if len(failing) == 1 else ''}):{rest}"
    return marked


def grade_workbook(learner: str, path: Path, cell_timeout: float = DEFAULT_CELL_TIMEOUT) -> Grade:
    """Grade one workbook in a fresh kernel (``cell_timeout`` seconds per cell): its row."""
    started = time.monotonic()
    notebook, workbook, problem = read_notebook(path)
    exercises = exercises_of(workbook)
    grade = Grade(learner, workbook or path.stem, results={exercise.name: "not run" for exercise in exercises})
    if problem is not None or notebook is None:
        grade.run = f"malformed: {problem}"
    elif not exercises:
        grade.run = ("unknown workbook: no lesson named in its first cells nor by its file name" if workbook is None
                     else f"unknown workbook: lesson {workbook[:2]} has no exercises")
    else:
        _run_workbook(grade, notebook, path.parent, cell_timeout)
    grade.seconds = time.monotonic() - started
    return grade


def _run_workbook(grade: Grade, notebook: nbformat.NotebookNode, folder: Path, cell_timeout: float) -> None:
    exercises = {exercise.name: exercise for exercise in exercises_of(grade.workbook)}
    sources = [cell.source if cell.cell_type == "code" else "" for cell in notebook.cells]
    cell_results: dict[int, Ran] = {}
    timed_out = 0
    kernel = Kernel(folder, cell_timeout)
    with tempfile.TemporaryDirectory(prefix="course-grade-") as scratch:
        try:
            with kernel.session():
                for index, source in enumerate(sources):
                    if not source.strip() or hint_cell(source):
                        continue
                    name = check_cell(source)
                    if name is None:
                        cell_results[index] = kernel.run(source, index)
                        timed_out += cell_results[index].timed_out
                    elif name in exercises:  # never the cell itself: the harness, asked for answers only
                        exercise = exercises[name]
                        result, verdict = _observe(kernel, exercise, index, Path(scratch), cell_results, sources)
                        grade.results[name] = result
                        timed_out += result == "timed out"
                        if (verdict is not None and verdict.status == "failed" and exercise.locate is not None
                                and verdict.where is None):
                            verdict.where = _explain(kernel, exercise, verdict, index, Path(scratch))
                            grade.results[name] = verdict.detail()
                    # a check of another workbook's exercise is not this workbook's: not run
        except Stopped as stopped:
            grade.run = f"stopped: {stopped}"
        except Exception as error:  # the kernel would not start, or nbclient failed: the row says so
            grade.run = f"stopped: {type(error).__name__}: {_short(_first_line(str(error)), 100)}"
    raised = [(index, ran.error) for index, ran in cell_results.items() if ran.error is not None]
    notes = [f"{timed_out} cell(s) went over {cell_timeout:g} s and were interrupted"] if timed_out else []
    if raised:  # the learner's own cells may raise; the row says so, which errors, and where the first was
        first, first_error = raised[0]
        kinds = ", ".join(dict.fromkeys(text.split(":")[0] for _, text in raised))
        notes.append(f"{len(raised)} cell(s) raised {kinds}; the first, cell {first + 1}: {_short(first_error, 80)}")
    if notes and grade.run == "finished":
        grade.run = "finished; " + "; ".join(notes)
    grade.results = _with_needs(grade.results)


def _grade_safely(learner: str, path: Path, cell_timeout: float) -> Grade:
    """``grade_workbook``, and a row saying so if the grader itself fails on this workbook."""
    try:
        return grade_workbook(learner, path, cell_timeout)
    except Exception as error:
        return Grade(learner, path.stem, run=f"grader error: {type(error).__name__}: {_short(_first_line(str(error)))}",
                     results={name: "not run" for name in planned_exercises(path)})


def _start_worker() -> None:
    """Each grading process computes the library's answers with the lessons' thread count, and
    leaves Ctrl-C to the process that started it (which stops it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(LESSON_THREADS)


def graded(found: list[tuple[str, Path]], cell_timeout: float, jobs: int) -> Iterator[Grade]:
    """Each workbook's row as it is done: one at a time here, or ``jobs`` at a time in processes."""
    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(LESSON_THREADS)  # as in each grading process
        try:
            for learner, path in found:
                yield _grade_safely(learner, path, cell_timeout)
        finally:
            torch.set_num_threads(threads)
        return
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_start_worker)
    saved = os.environ.copy()
    try:
        os.environ.update(kernel_environment())  # the grading processes start (and read it) during the submits
        futures = {pool.submit(_grade_safely, learner, path, cell_timeout): (learner, path) for learner, path in found}
        os.environ.clear()
        os.environ.update(saved)
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                learner, path = futures[future]
                yield Grade(learner, path.stem, run="stopped: its grading process died",
                            results={name: "not run" for name in planned_exercises(path)})
    except BaseException:  # Ctrl-C: stop every grading process now (their kernels follow their parent)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        os.environ.clear()
        os.environ.update(saved)
        pool.shutdown(wait=True, cancel_futures=True)


# ---- the table -----------------------------------------------------------------------------------

def spreadsheet_safe(value: str) -> str:
    """``value`` as a spreadsheet shows it, never as a formula (a learner named ``=2+3``)."""
    return "'" + value if value.startswith(FORMULA_START) else value


class Table:
    """The CSV: its header (every exercise of the workbooks found, in course order) written first,
    then a row as each workbook is done, flushed, so that an interrupted run keeps the rows done."""

    def __init__(self, handle: TextIO, exercises: list[str]) -> None:
        self.handle, self.exercises = handle, exercises
        self.writer = csv.writer(handle)
        self._write(["learner", "workbook", "run", "passed", *exercises])

    def _write(self, row: list[str]) -> None:
        self.writer.writerow([spreadsheet_safe(str(cell)) for cell in row])
        self.handle.flush()

    def add(self, grade: Grade) -> None:
        self._write([grade.learner, grade.workbook, grade.run, f"{grade.passed}/{len(grade.results)}",
                     *(grade.results.get(name, "") for name in self.exercises)])


def summary(grade: Grade, width: int = 12) -> str:
    """A workbook's line on the terminal: the count passed, its time, and what went wrong."""
    problems = [f"{name} {result}" for name, result in grade.results.items() if result != "passed"]
    run = "" if grade.run == "finished" else f" [{grade.run}]"
    return (f"{grade.learner:<{width}}  {grade.workbook:<26} {grade.passed}/{len(grade.results)} passed"
            f"  {grade.seconds:5.1f} s{run}" + (f"; {'; '.join(problems)}" if problems else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", nargs="+", type=Path, help="workbooks (.ipynb) or folders of them")
    parser.add_argument("--csv", type=Path, default=Path("grades.csv"), help="where to write the table")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help="seconds a cell may run before it is interrupted and grading goes on "
                             f"(default {DEFAULT_CELL_TIMEOUT:g})")
    parser.add_argument("--jobs", type=int, default=1,
                        help="workbooks graded at once, each in its own process and kernel (default 1)")
    args = parser.parse_args(argv)
    if args.cell_timeout <= 0:
        parser.error(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout:g}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not args.csv.parent.resolve().is_dir():
        parser.error(f"--csv: the folder {str(args.csv.parent)!r} does not exist")
    try:
        found = submissions(args.submissions)
    except ValueError as error:
        parser.error(str(error))
    if not found:
        parser.error("no .ipynb workbook found in the submissions given")
    planned = {name for _, path in found for name in planned_exercises(path)}
    columns = [name for name in checks.EXERCISES if name in planned]
    try:
        handle = open(args.csv, "w", newline="", encoding="utf-8")
    except OSError as error:
        parser.error(f"--csv: cannot write {str(args.csv)!r} ({error.strerror or error})")
    width = max([len(learner) for learner, _ in found] + [12])
    grades: list[Grade] = []
    started = time.monotonic()
    with handle:
        table = Table(handle, columns)
        try:
            for grade in graded(found, args.cell_timeout, args.jobs):
                table.add(grade)
                grades.append(grade)
                print(summary(grade, width), flush=True)
        except KeyboardInterrupt:
            print(f"interrupted: {len(grades)} of {len(found)} workbook(s) graded; their rows are in {args.csv}",
                  file=sys.stderr)
            return 130
    print(f"wrote {args.csv}: {len(grades)} workbook(s), "
          f"{sum(grade.passed for grade in grades)} of {sum(len(grade.results) for grade in grades)} "
          f"exercises passed, in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
