"""The instructor's grader on five learners' workbooks: solved, blank, a wrong answer, code that
raises, code that never finishes; and how it reads check cells and names learners."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils import grade

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402


def test_the_grader_on_five_example_submissions(tmp_path, capsys):
    folder = tmp_path / "submissions"
    make_exercises.example_submissions(folder)
    table = tmp_path / "grades.csv"
    assert grade.main([str(folder), "--csv", str(table), "--cell-timeout", "30"]) == 0
    rows = {row["learner"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {"ada", "ben", "cleo", "dev", "eli"}
    assert all(row["workbook"] == "01_causal_masking" for row in rows.values())
    exercises = ("token_log_probs", "causal_mask", "attention")
    assert [rows["ada"][name] for name in exercises] == ["passed"] * 3 and rows["ada"]["passed"] == "3/3"
    assert [rows["ben"][name] for name in exercises] == ["not written"] * 3
    assert rows["cleo"]["causal_mask"] == "failed on T=1" and rows["cleo"]["passed"] == "2/3"
    assert rows["dev"]["attention"].startswith("raised: NameError: name 'softmax' is not defined on q=")
    assert rows["eli"]["run"].startswith("timed out") and rows["eli"]["token_log_probs"] == "timed out"
    assert rows["eli"]["causal_mask"] == rows["eli"]["attention"] == "not run"
    shown = capsys.readouterr().out
    assert "cleo" in shown and "causal_mask failed on T=1" in shown and "7 of 15 checks passed" in shown


def check_cell(outputs: list, ran: bool = True) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("checks.causal_mask(causal_mask_by_hand)")
    cell.outputs, cell.execution_count = outputs, 1 if ran else None
    return cell


def error(name: str, value: str) -> dict:
    return nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[])


def test_check_cells_are_read_as_a_learner_would_read_them():
    stream = nbformat.v4.new_output("stream", name="stdout", text="causal_mask: correct on all 6 inputs\n")
    assert grade.check_result("causal_mask", check_cell([stream])) == "passed"
    assert grade.check_result("causal_mask", check_cell([], ran=False)) == "not run"
    assert grade.check_result("causal_mask", check_cell([error(
        "ExerciseFailed", "causal_mask: not written yet. The task: ...")])) == "not written"
    assert grade.check_result("causal_mask", check_cell([error(
        "ExerciseFailed", "causal_mask: wrong answer on the smallest input it fails on\n  input:    T=2\n")])) == \
        "failed on T=2"
    assert grade.check_result("causal_mask", check_cell([error("KeyboardInterrupt", "")])) == "timed out"
    assert grade.check_result("causal_mask", check_cell([error("NameError", "name 'x' is not defined")])) == \
        "raised: NameError: name 'x' is not defined"


def test_learners_are_named_by_file_or_folder(tmp_path):
    for relative in ("alice/01_causal_masking.ipynb", "bob.ipynb", "carol/extra/02_mini_gpt.ipynb"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    found = {learner for learner, _ in grade.submissions([tmp_path])}
    assert found == {"alice", "bob", "carol"}
    assert grade.submissions([tmp_path / "alice" / "01_causal_masking.ipynb"])[0][0] == "alice"


def test_bad_submissions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be .ipynb files or folders"):
        grade.submissions([tmp_path / "notes.txt"])
    unreadable = tmp_path / "zoe.ipynb"
    unreadable.write_text("not json")
    assert grade.grade_workbook("zoe", unreadable).run.startswith("unreadable")
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "empty-folder-that-is-missing.ipynb")])
