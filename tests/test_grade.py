"""The instructor's grader: the verdict is reached in the grader's process, never in the learner's
kernel. On the example submissions (solved, blank, wrong, raising, never finishing, a SyntaxError, a
hint asked, a check deleted, a malformed file, four cheats, a model failing because of its
attention), and on how it reads cells, names learners, judges answers and writes the table."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils import grade, model
from course_utils.checks import harness

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

LESSON_01 = ["token_log_probs", "causal_mask", "attention"]
WRONG_MASK = "failed: 1 entries differ, the first at [0, 0] (input 1)"


def test_the_grader_on_the_example_submissions(tmp_path, capfd):
    folder = tmp_path / "submissions"
    make_exercises.example_submissions(folder)
    (folder / "zoe.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print('my own notebook')")])))
    (folder / "yan.ipynb").write_text("these are my answers")
    (folder / "=2+3.ipynb").write_text((folder / "ivy.ipynb").read_text())  # malformed too: no kernel needed
    table = tmp_path / "grades.csv"
    assert grade.main([str(folder), "--csv", str(table), "--cell-timeout", "30", "--jobs", "2"]) == 0
    with table.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["learner", "workbook", "run", "passed", *LESSON_01,
                      "split_heads", "attention_module", "block_forward", "gpt_forward"]  # course order, no hint
    rows = {row["learner"]: row for row in csv.DictReader(table.open(newline=""))}
    assert set(rows) == {"ada", "ben", "cleo", "dev", "eli", "fay", "gus", "hal", "ivy", "jay", "kim", "lou", "max",
                         "nia", "zoe", "yan", "'=2+3"}

    def results(learner: str) -> list[str]:
        return [rows[learner][name] for name in LESSON_01]

    assert rows["ada"]["workbook"] == "01_causal_masking" and rows["ada"]["run"] == "finished"
    assert results("ada") == ["passed"] * 3 and rows["ada"]["passed"] == "3/3"
    assert results("ben") == ["not written"] * 3 and rows["ben"]["passed"] == "0/3"
    assert results("cleo") == ["passed", WRONG_MASK, "passed"]
    assert results("dev") == ["passed", "passed", "raised: NameError: name 'softmax' is not defined (input 1)"]
    assert results("eli") == ["timed out", "passed", "passed"]  # interrupted, and grading went on
    assert rows["eli"]["run"] == "finished; 2 cell(s) went over 30 s and were interrupted"
    # the learner's own cells that raised are counted, the first named: the workbook did not run cleanly
    assert re.fullmatch(r"finished; \d+ cell\(s\) raised SyntaxError(, NameError)?; the first, cell \d+: "
                        r"SyntaxError: unmatched '\)' \(line 4\)", rows["fay"]["run"]), rows["fay"]["run"]
    assert "NotImplementedError" in rows["ben"]["run"] and rows["gus"]["run"] == rows["hal"]["run"] == "finished"
    assert results("fay") == ["passed", "raised: SyntaxError: unmatched ')' (line 4) in the cell that defines "
                              "causal_mask_by_hand", "passed"]
    assert results("gus") == ["passed"] * 3 and rows["gus"]["passed"] == "3/3"  # the hint cell is not counted
    assert results("hal") == ["passed", "passed", "not run"] and rows["hal"]["passed"] == "2/3"
    ivy = json.loads((folder / "ivy.ipynb").read_text())
    sourceless = next(i for i, cell in enumerate(ivy["cells"]) if "source" not in cell) + 1
    for learner in ("ivy", "'=2+3"):  # the learner named =2+3 is escaped: no formula in a spreadsheet
        assert rows[learner]["run"] == f"malformed: 'source' is a required property (cell {sourceless})"
        assert rows[learner]["workbook"] == "01_causal_masking" and results(learner) == ["not run"] * 3
    # Four cheats: a check replaced by a print, a check wrapped round the library's mask, checks and
    # its harness replaced in sys.modules (the fake's made-up answers are judged), a success line
    # printed by the solution. None passes what it did not solve.
    for cheat in ("jay", "kim", "max"):
        assert results(cheat) == ["passed", WRONG_MASK, "passed"], cheat
    assert results("lou") == ["failed: expected a tensor, got a bool (input 1)"] * 3
    assert rows["nia"]["workbook"] == "02_mini_gpt" and rows["nia"]["passed"] == "2/4"
    assert rows["nia"]["split_heads"] == rows["nia"]["block_forward"] == "passed"
    assert re.fullmatch(r"failed: largest difference 0\.7\d* \(tolerance 1e-05\), at \[0, 0, 1\] \(input 2\)",
                        rows["nia"]["attention_module"])
    assert re.fullmatch(r"failed \(because attention_module fails\): largest difference 0\.0\d+ \(tolerance 0\.0001\), "
                        r"at \[0, 0, 3\]; where: the first module whose output differs is h\.0\.attn\.c_proj, by up "
                        r"to 0\.1\d* \(input 2\)", rows["nia"]["gpt_forward"])
    assert rows["zoe"]["run"] == "unknown workbook: no lesson named in its first cells nor by its file name"
    assert rows["yan"]["run"] == "malformed: not JSON (Expecting value, line 1)"
    assert rows["zoe"]["passed"] == rows["yan"]["passed"] == "0/0"
    shown = capfd.readouterr()
    assert "WARNING" not in shown.out + shown.err and "Traceback" not in shown.out + shown.err
    assert re.search(r"^cleo +01_causal_masking +2/3 passed +\d+\.\d s \[finished; 2 cell\(s\) raised AssertionError; "
                     r"the first, cell \d+: AssertionError\]; causal_mask failed: 1 entries", shown.out, re.M)
    assert "17 workbook(s), 24 of 46 exercises passed" in shown.out


# ---- how cells are read ----------------------------------------------------------------------------

def test_check_and_hint_cells_are_known_by_their_code():
    assert grade.check_cell("checks.causal_mask(causal_mask_by_hand)") == "causal_mask"
    assert grade.check_cell("# my check\n\nchecks.causal_mask(causal_mask_by_hand)  # run it\n") == "causal_mask"
    assert grade.check_cell("checks.causal_mask(causal_mask_by_hand); print('done')") is None
    assert grade.check_cell("result = checks.causal_mask(causal_mask_by_hand)") is None
    assert grade.check_cell("%time checks.causal_mask(causal_mask_by_hand)") is None  # not Python: run as it is
    assert grade.check_cell('checks.hint("causal_mask")') is None
    assert grade.hint_cell('checks.hint("causal_mask")\n# once more\nchecks.hint("causal_mask")')
    assert not grade.hint_cell('checks.hint("causal_mask")\nx = 1')
    assert grade.defines("import torch\n\n\nclass BlockByHand(nn.Module):\n    pass", "BlockByHand")
    assert not grade.defines("block = BlockByHand(config)", "BlockByHand")


def test_errors_are_one_line_and_a_syntax_error_gives_its_line():
    assert grade._error_text("SyntaxError", "invalid syntax (1892821119.py, line 5)") == \
        "SyntaxError: invalid syntax (line 5)"
    assert grade._error_text("IndentationError", "unexpected indent (<tokenize>, line 3)") == \
        "IndentationError: unexpected indent (line 3)"
    assert grade._error_text("ValueError", "bad (x, line 2)\nmore") == "ValueError: bad (x, line 2)"


def test_a_failure_caused_by_a_needed_exercise_says_so():
    results = {"split_heads": "passed", "attention_module": "failed: off (input 2)", "block_forward": "passed",
               "gpt_forward": "failed: largest difference 1 (input 2)"}
    assert grade._with_needs(results)["gpt_forward"] == \
        "failed (because attention_module fails): largest difference 1 (input 2)"
    results.update(block_forward="raised: NameError: x (input 1)", gpt_forward="raised: NameError: y (input 1)")
    assert grade._with_needs(results)["gpt_forward"] == \
        "raised (because attention_module and block_forward fail): NameError: y (input 1)"
    assert grade._with_needs({**results, "attention_module": "not run", "block_forward": "passed"}) == \
        {**results, "attention_module": "not run", "block_forward": "passed"}


# ---- judging the answers the kernel wrote ----------------------------------------------------------

def test_answers_are_judged_here_and_never_unpickled(tmp_path):
    answers = tmp_path / "answers.pt"
    right = [{"answer": harness.portable(model.causal_mask(case["T"]))}
             for case in grade.checks.EXERCISES["causal_mask"].cases()]
    torch.save(right, answers)
    assert grade._judge("causal_mask", answers) is None
    torch.save(right[:2], answers)
    assert grade._judge("causal_mask", answers).detail() == "failed: answers to 2 of 6 inputs (input 3)"
    torch.save({"causal_mask": "passed"}, answers)
    assert grade._judge("causal_mask", answers) == "failed: the answers came back malformed"
    torch.save([{"verdict": "passed"}], answers)
    assert grade._judge("causal_mask", answers).detail() == "failed: the answers came back malformed (input 1)"
    assert grade._judge("causal_mask", tmp_path / "missing.pt") == \
        "failed: no answers came back from the workbook's kernel"
    touched = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return Path.touch, (touched,)

    torch.save([Trap()], answers)
    assert grade._judge("causal_mask", answers) == "failed: the answers came back unreadable (UnpicklingError)"
    assert not touched.exists()


# ---- the table -------------------------------------------------------------------------------------

def test_cells_a_spreadsheet_would_read_as_formulas_are_escaped():
    handle = io.StringIO()
    table = grade.Table(handle, ["causal_mask"])
    table.add(grade.Grade("=2+3", "01_causal_masking", results={"causal_mask": "passed"}))
    for learner in ("+1", "-1", "@SUM(A1)", "\tx", "\rx", "ada"):
        table.add(grade.Grade(learner, "01_causal_masking", results={"causal_mask": "-x"}))
    rows = list(csv.reader(io.StringIO(handle.getvalue())))
    assert [row[0] for row in rows[1:]] == ["'=2+3", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "ada"]
    assert rows[2][4] == "'-x" and rows[1][3] == "1/1"


def test_a_csv_folder_that_does_not_exist_stops_before_any_grading(tmp_path, monkeypatch, capsys):
    (tmp_path / "alice.ipynb").write_text("{}")

    def never(*args, **kwargs):
        raise AssertionError("grading started")

    monkeypatch.setattr(grade, "grade_workbook", never)
    with pytest.raises(SystemExit) as stopped:
        grade.main([str(tmp_path), "--csv", str(tmp_path / "no-such-folder" / "grades.csv")])
    assert stopped.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # a folder where the file should be
        grade.main([str(tmp_path), "--csv", str(tmp_path)])
    assert stopped.value.code == 2 and "cannot write" in capsys.readouterr().err


def test_rows_are_written_as_they_are_done_and_an_interrupt_keeps_them(tmp_path, monkeypatch):
    for name in ("ann", "bob", "cid"):
        (tmp_path / f"{name}.ipynb").write_text(make_exercises.render(make_exercises.workbook(
            make_exercises.LESSONS / "01_causal_masking.py"))[".ipynb"])
    table = tmp_path / "grades.csv"
    seen = []

    def fake(learner, path, cell_timeout):
        seen.append(table.read_text().count("\n"))  # the rows on disk when the next workbook starts
        if learner == "cid":
            raise KeyboardInterrupt
        return grade.Grade(learner, "01_causal_masking", results=dict.fromkeys(LESSON_01, "passed"))

    monkeypatch.setattr(grade, "grade_workbook", fake)
    assert grade.main([str(tmp_path), "--csv", str(table)]) == 130
    assert seen == [1, 2, 3]  # the header first, then each row as it was done
    rows = list(csv.DictReader(table.open(newline="")))
    assert [row["learner"] for row in rows] == ["ann", "bob"] and rows[0]["passed"] == "3/3"


# ---- naming and finding submissions ----------------------------------------------------------------

def test_learners_are_named_by_file_or_folder(tmp_path):
    for relative in ("alice/01_causal_masking.ipynb", "bob.ipynb", "carol/extra/02_mini_gpt.ipynb"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    found = {learner for learner, _ in grade.submissions([tmp_path])}
    assert found == {"alice", "bob", "carol"}
    assert grade.submissions([tmp_path / "alice" / "01_causal_masking.ipynb"])[0][0] == "alice"


def test_the_workbook_comes_from_the_banner_or_the_file_name(tmp_path):
    blank = make_exercises.render(make_exercises.workbook(make_exercises.LESSONS / "02_mini_gpt.py"))[".ipynb"]
    (tmp_path / "alice.ipynb").write_text(blank)
    assert grade.read_notebook(tmp_path / "alice.ipynb")[1:] == ("02_mini_gpt", None)
    assert grade.planned_exercises(tmp_path / "alice.ipynb") == \
        ["split_heads", "attention_module", "block_forward", "gpt_forward"]
    (tmp_path / "01_causal_masking.ipynb").write_text("not json")
    assert grade.read_notebook(tmp_path / "01_causal_masking.ipynb")[1:] == \
        ("01_causal_masking", "not JSON (Expecting value, line 1)")
    row = grade.grade_workbook("bob", tmp_path / "01_causal_masking.ipynb")  # no kernel for a malformed file
    assert row.run.startswith("malformed: not JSON") and row.results == dict.fromkeys(LESSON_01, "not run")


def test_bad_submissions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must be .ipynb files or folders"):
        grade.submissions([tmp_path / "notes.txt"])
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "empty-folder-that-is-missing.ipynb")])
