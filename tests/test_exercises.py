"""The exercise workbooks: every checker passes on the lesson's own solution and fails, with its
message, on the blank stub and on plausible wrong answers; the workbooks are what the lessons
give, and a fresh kernel runs one until its first blank."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import ExerciseFailed
from course_utils.model import causal_mask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def lesson_solutions() -> list[tuple[str, str, str, str | None]]:
    """(lesson, checker name, the solved function's source, hint) for every marked exercise."""
    found = []
    for lesson in LESSONS:
        for cell in jupytext.read(lesson).cells:
            if cell.cell_type != "code" or "# EXERCISE" not in cell.source:
                continue
            lines = cell.source.split("\n")
            _, exercises = make_exercises.blank_cell(cell.source, lesson.name)
            for name, function, hint in exercises:
                start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
                end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()),
                           len(lines))
                found.append((lesson.name, name, "\n".join(lines[start:end]), hint))
    return found


SOLUTIONS = lesson_solutions()


def define(source: str):
    """The function a lesson defines, with the names lessons import."""
    namespace = {"torch": torch, "F": F, "math": math, "causal_mask": causal_mask}
    exec(source, namespace)
    return namespace[re.match(r"def (\w+)\(", source).group(1)]


@pytest.mark.parametrize("lesson, name, source, hint", SOLUTIONS, ids=[f"{s[0][:2]}-{s[1]}" for s in SOLUTIONS])
def test_every_checker_passes_on_the_lessons_solution(lesson, name, source, hint, capsys):
    getattr(checks, name)(define(source), hint=hint)
    assert capsys.readouterr().out.startswith(f"{name}: correct on all ")


@pytest.mark.parametrize("lesson, name, source, hint", SOLUTIONS, ids=[f"{s[0][:2]}-{s[1]}" for s in SOLUTIONS])
def test_a_blank_stub_says_what_to_write(lesson, name, source, hint):
    blank, _ = make_exercises.blank_cell(source, lesson)
    with pytest.raises(ExerciseFailed, match=f"{name}: not written yet. The task: "):
        getattr(checks, name)(define(blank), hint=hint)


# Plausible wrong answers, each a mistake a learner makes; every one must fail with a message that
# shows the input, the expected and the actual output, and the hint.
def mask_without_the_diagonal(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)  # a token may not see itself


def mask_transposed(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool))  # sees the future, not the past


def mask_of_ones_and_zeros(T):
    return torch.tril(torch.ones(T, T))  # right pattern, float instead of bool


def attention_unscaled(q, k, v, causal=True):
    scores = q @ k.transpose(-2, -1)  # forgot / sqrt(d)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_softmax_over_queries(q, k, v, causal=True):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-2) @ v


def attention_masked_after_softmax(q, k, v, causal=True):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if causal:
        weights = weights.masked_fill(~causal_mask(q.shape[-2]), 0.0)  # rows no longer sum to 1
    return weights @ v


def attention_ignoring_causal(q, k, v, causal=True):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def log_probs_off_by_one(logits, ids):
    return F.log_softmax(logits[1:], dim=-1).gather(1, ids[1:, None]).squeeze(1)  # logits t scored against t


def log_probs_without_log(logits, ids):
    return F.softmax(logits[:-1], dim=-1).gather(1, ids[1:, None]).squeeze(1)


def log_probs_over_positions(logits, ids):
    return F.log_softmax(logits[:-1], dim=0).gather(1, ids[1:, None]).squeeze(1)


WRONG_ANSWERS = {
    "causal_mask": [mask_without_the_diagonal, mask_transposed, mask_of_ones_and_zeros],
    "attention": [attention_unscaled, attention_softmax_over_queries, attention_masked_after_softmax,
                  attention_ignoring_causal],
    "token_log_probs": [log_probs_off_by_one, log_probs_without_log, log_probs_over_positions],
}
HINTS = {name: hint for _, name, _, hint in SOLUTIONS}


@pytest.mark.parametrize("name, wrong", [(name, wrong) for name, wrongs in WRONG_ANSWERS.items() for wrong in wrongs],
                         ids=lambda value: getattr(value, "__name__", value))
def test_a_wrong_answer_fails_with_the_smallest_input_and_the_hint(name, wrong):
    with pytest.raises(ExerciseFailed) as failure:
        getattr(checks, name)(wrong, hint=HINTS[name])
    message = str(failure.value)
    assert message.startswith(f"{name}: wrong answer on the smallest input it fails on")
    for part in ("input:", "expected:", "got:", "problem:", f"hint:     {HINTS[name]}"):
        assert part in message, f"{part!r} missing from:\n{message}"


def test_every_exercise_has_wrong_answers_tested():
    assert {name for _, name, _, _ in SOLUTIONS} == set(WRONG_ANSWERS)


def test_the_workbooks_are_what_the_lessons_give():
    assert make_exercises.main(["--check"]) == 0, "run python scripts/make_exercises.py"


def test_a_learners_exception_is_reported_with_its_input():
    def crashes(T):
        return torch.ones(T)[T]

    with pytest.raises(ExerciseFailed, match=r"causal_mask raised IndexError: .*\n  on the input: T=1"):
        checks.causal_mask(crashes)


def test_malformed_markers_are_refused():
    with pytest.raises(make_exercises.MarkerError, match="not inside a function"):
        make_exercises.blank_cell("# EXERCISE x: task\npass\n# END EXERCISE", "here")
    with pytest.raises(make_exercises.MarkerError, match="no '# END EXERCISE'"):
        make_exercises.blank_cell("def f():\n    # EXERCISE x: task\n    return 1", "here")
    with pytest.raises(make_exercises.MarkerError, match="not '# EXERCISE name: task'"):
        make_exercises.blank_cell("def f():\n    # EXERCISE: task\n    return 1", "here")


@pytest.mark.parametrize("workbook", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name[:2])
def test_a_workbook_runs_until_its_first_blank(workbook, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(workbook, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as stopped:
        client.execute()
    failed = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              and any(output.output_type == "error" for output in cell.outputs)]
    first_check = next(i for i, cell in enumerate(notebook.cells)
                       if cell.cell_type == "code" and cell.source.startswith("checks."))
    assert failed == [first_check], f"the first error should be the first check cell ({first_check}), got {failed}"
    assert "not written yet. The task: " in str(stopped.value)
