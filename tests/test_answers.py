"""The answers to each lesson's "Check your understanding" (docs/answers/): one per question, and
every number in them what the lesson's stored outputs (or the library) give."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import pytest
from site_markdown import rendering_faults

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_answers  # noqa: E402

LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
QUESTION = re.compile(r"^(\d+)\. (.+?)(?=^\d+\. |\Z)", re.MULTILINE | re.DOTALL)
ANSWERED = re.compile(r"^\*\*(\d+)\. (.+?)\*\*", re.MULTILINE | re.DOTALL)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def questions(lesson: str) -> dict[int, str]:
    notebook = jupytext.read(ROOT / "notebooks" / f"{lesson}.py")
    sections = [cell.source.split("## Check your understanding", 1)[1] for cell in notebook.cells
                if cell.cell_type == "markdown" and "## Check your understanding" in cell.source]
    assert len(sections) == 1, f"{lesson} should have one 'Check your understanding' section"
    return {int(m[1]): m[2] for m in QUESTION.finditer(sections[0])}


def test_every_lesson_has_its_answers():
    assert LESSONS and list(make_answers.VALUES) == LESSONS
    index = (make_answers.ANSWERS / "README.md").read_text()
    for lesson in LESSONS:
        assert (make_answers.ANSWERS / f"{lesson}.md").exists(), f"docs/answers/{lesson}.md is missing"
        assert f"({lesson}.md)" in index, f"docs/answers/README.md does not link {lesson}.md"


@pytest.mark.parametrize("lesson", LESSONS)
def test_one_answer_per_question_in_the_lessons_order(lesson):
    asked = questions(lesson)
    answered = {int(m[1]): m[2] for m in ANSWERED.finditer((make_answers.ANSWERS / f"{lesson}.md").read_text())}
    assert list(asked) == list(range(1, len(asked) + 1)) and len(asked) >= 3
    assert list(answered) == list(asked), f"{lesson}: questions {list(asked)}, answers {list(answered)}"
    for number, question in asked.items():  # each answer restates its question (at least part of it)
        restated = " ".join(words(answered[number])[:6])
        assert restated in " ".join(words(question)), f"{lesson} question {number} reads {question[:80]!r}..."


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_number_is_what_the_lesson_gives(lesson):
    path = make_answers.ANSWERS / f"{lesson}.md"
    values = make_answers.values_for(lesson)
    make_answers.filled(path.read_text(), values, path.name)  # no unknown value, none unused
    assert make_answers.differences(path, values) == [], "run python scripts/make_answers.py"
    assert len(values) >= 3


def test_a_changed_stored_output_is_caught(tmp_path, monkeypatch):
    notebook = (ROOT / "notebooks" / "05_training.ipynb").read_text()
    assert "shift 0 (bug) 0.23" in notebook, "the lesson's output changed: pick another line for this test"
    (tmp_path / "05_training.ipynb").write_text(notebook.replace("shift 0 (bug) 0.23", "shift 0 (bug) 0.31"))
    monkeypatch.setattr(make_answers, "LESSONS", tmp_path)
    stale = make_answers.differences(make_answers.ANSWERS / "05_training.md", make_answers.values_for("05_training"))
    assert len(stale) == 1 and "bug_loss shows '0.23', the lesson gives '0.31'" in stale[0]


def test_a_pattern_must_match_exactly_once():
    outputs = make_answers.StoredOutputs(ROOT / "notebooks" / "01_causal_masking.ipynb")
    with pytest.raises(ValueError, match="matched 0 times"):
        outputs.one(r"^no lesson prints this (\d+)$")
    with pytest.raises(ValueError, match=r"matched \d\d? times"):
        outputs.one(r"^position +(\d+) ")


def test_an_unknown_or_unused_value_is_refused():
    with pytest.raises(ValueError, match="'missing' is not defined"):
        make_answers.filled("<!-- value: missing -->1<!-- /value -->", {}, "x.md")
    with pytest.raises(ValueError, match="never used: spare"):
        make_answers.filled("no values here", {"spare": "1"}, "x.md")


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_answers_render_as_written(lesson):
    assert rendering_faults((make_answers.ANSWERS / f"{lesson}.md").read_text()) == []


BROKEN_PARAGRAPH = "The loss fell to\n<!-- value: bug_loss -->0.23<!-- /value --> after *100* steps.\n"


@pytest.mark.parametrize(("planted", "fault"), [
    (BROKEN_PARAGRAPH, "line 2: read as raw HTML"),
    ("A list:\n\n- <!-- value: bug_loss -->0.23<!-- /value --> after 100 steps\n", "read as raw HTML"),
    ("It refuses:\n\n    <!-- value: too_long -->ValueError<!-- /value -->\n", "a comment shown in a code block"),
    ("Attention grows like $T^2 with the length.\n", "TeX outside math: 'Attention grows like $T^2"),
    ("The speedup is \\frac{K + 1}{K + v}.\n", "TeX outside math"),
    ("Each draft adds a^{K+1} tokens.\n", "TeX outside math"),
    ("It costs\n$$\\frac{K + 1}{K + v}.$$\nso it never wins.\n", "TeX outside math"),  # $$ inside a paragraph
])
def test_a_planted_rendering_fault_is_found(planted, fault):
    faults = rendering_faults(planted)
    assert any(fault in found for found in faults), faults


def test_make_answers_keeps_a_value_inside_its_paragraph():
    assert rendering_faults("Like $T^2$, it fell to <!-- value: x -->0.23<!-- /value --> in $T$ steps.\n") == []
    filled = make_answers.filled(BROKEN_PARAGRAPH, {"bug_loss": "0.23"}, "x.md")
    assert filled == "The loss fell\nto <!-- value: bug_loss -->0.23<!-- /value --> after *100* steps.\n"
    assert rendering_faults(filled) == []
