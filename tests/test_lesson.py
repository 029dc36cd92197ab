"""course_utils.lesson: the setup every lesson calls, and the check that every figure axis is labelled."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_utils import lesson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def figures():
    yield
    plt.close("all")


def test_an_axis_without_a_label_is_named(figures):
    fig, (left, right) = plt.subplots(1, 2)
    left.set(xlabel="step", ylabel="loss", title="labelled")
    right.set(xlabel="step", title="half")
    assert lesson.unlabelled_axes(fig) == ["axes 1 ('half'): no y label"]
    right.set_ylabel("loss")
    assert lesson.unlabelled_axes(fig) == []


def test_colorbars_hidden_axes_and_figure_labels_are_accepted(figures):
    fig, axes = plt.subplots(2, 2)
    image = axes[0, 0].imshow([[0, 1], [1, 0]])
    fig.colorbar(image, ax=axes[0, 0])
    axes[1, 1].axis("off")
    assert len(lesson.unlabelled_axes(fig)) == 3  # the three visible maps; not the colorbar, not the hidden one
    fig.supxlabel("key")
    fig.supylabel("query")
    assert lesson.unlabelled_axes(fig) == []


def test_show_refuses_an_unlabelled_figure_only_when_asked(figures, monkeypatch):
    original = plt.show
    monkeypatch.setattr(plt, "show", original)  # restored after the test
    monkeypatch.delenv(lesson.CHECK_FIGURES, raising=False)
    lesson.setup()
    _, ax = plt.subplots()
    ax.plot([0, 1])
    plt.show()  # not asked: a learner's own quick plot is left alone
    monkeypatch.setenv(lesson.CHECK_FIGURES, "1")
    lesson.setup()
    lesson.setup()  # idempotent: wrapped once
    assert plt.show.checks_axis_labels and plt.show.__wrapped__ is original
    _, ax = plt.subplots()
    ax.plot([0, 1])
    with pytest.raises(ValueError, match=r"needs a label:\nfigure \d+: axes 0 \('untitled'\): no x and no y label"):
        plt.show()
    assert plt.get_fignums() == []  # the refused figures are closed, not left for the next cell
    _, ax = plt.subplots()
    ax.set(xlabel="x", ylabel="y")
    plt.show()


def test_the_lesson_environment_is_offline_on_the_bundled_models_with_figures_checked():
    base = {"PATH": "/bin", "COURSE_MODEL": "gpt2", "COURSE_DRAFT_MODEL": "x", "COURSE_DEVICE": "cuda",
            "HF_HUB_OFFLINE": "0"}
    env = lesson.lesson_environment(base)
    assert env == {"PATH": "/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0",
                   "COURSE_CHECK_FIGURES": "1"}
    assert base["COURSE_DEVICE"] == "cuda"  # the caller's dictionary is left alone


def test_both_lesson_runners_use_it():
    for script in ("scripts/check.py", "scripts/regenerate_notebooks.py"):
        source = (ROOT / script).read_text()
        assert re.search(r"env = lesson_environment\(\)", source), script
        assert '"COURSE_CHECK_FIGURES":' not in source and '"HF_HUB_OFFLINE":' not in source, f"{script} builds its own"
