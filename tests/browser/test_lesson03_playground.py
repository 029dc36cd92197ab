"""Lesson 03 the learner's way: opened in JupyterLab, run top to bottom with Run All Cells, and
the sampling playground worked with the keyboard. Each test reads only what the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from browser.browser_pages import PlaygroundPage, failure_screenshot, screenshot
from course_utils.generation import GenerationSettings
from course_utils.playground import distribution_rows

ROOT = Path(__file__).resolve().parents[2]
LESSON = "03_sampling_and_generate.ipynb"
PROMPT = "JULIET.\nO Romeo, Romeo! wherefore art thou"  # the lesson's playground prompt
RUN_SECONDS = 240.0
WIDGET_SECONDS = 60.0  # for the widget views to render once the kernel has run the cells


@pytest.fixture(scope="module")
def lesson_page(browser, jupyter_lab):
    """Lesson 03, its stored outputs cleared, opened in JupyterLab and run with Run > Run All Cells."""
    base, token, folder = jupyter_lab
    notebook = nbformat.read(ROOT / "notebooks" / LESSON, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, folder / LESSON)
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=2)  # sharp screenshots
    page.goto(f"{base}/lab/tree/{LESSON}?token={token}")
    # Wait for the status bar's "Python 3 (ipykernel) | Idle": it says Idle only once the page is
    # connected to a running kernel. (The toolbar's execution indicator starts out 'idle' before
    # any kernel exists, and Run All Cells clicked then silently runs nothing.)
    try:
        page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(timeout=90_000)
    except PlaywrightTimeout:
        pytest.fail(f"JupyterLab opened {LESSON} but its kernel never became idle within 90 s", pytrace=False)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    # Finished means every code cell shows an execution count ("[12]:"), not merely that none is
    # busy: right after the click no cell is busy yet. An error stops Run All, so stop on one too.
    error = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
    finished = ("[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                ".every(p => /\\[\\d+\\]/.test(p.textContent))")
    try:
        page.wait_for_function(f"() => {finished} || document.querySelector(\"{error}\") !== null",
                               timeout=RUN_SECONDS * 1000)
    except PlaywrightTimeout:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        done = sum(bool(re.search(r"\[\d+\]", prompt)) for prompt in prompts)
        failure_screenshot(page, "lesson03-run-all")
        pytest.fail(f"Run All Cells had not finished {LESSON} after {RUN_SECONDS:.0f} s: "
                    f"{done} of {len(prompts)} code cells done", pytrace=False)
    errors = page.locator(error)
    assert errors.count() == 0, f"lesson 03 raised in JupyterLab:\n{errors.first.inner_text()[:2000]}"
    yield page
    page.close()


@pytest.fixture
def playground(lesson_page) -> PlaygroundPage:
    """The playground as the lesson left it, its sliders back at their starting values."""
    output = lesson_page.locator(".jp-OutputArea-output").filter(
        has=lesson_page.locator(".widget-label", has_text="repetition_penalty"))
    try:
        output.wait_for(timeout=WIDGET_SECONDS * 1000)
    except PlaywrightTimeout:
        widgets = lesson_page.locator(".jp-OutputArea-output .widget-label").count()
        failure_screenshot(lesson_page, "lesson03-no-playground")
        pytest.fail(f"after Run All Cells, the playground's sliders did not appear within {WIDGET_SECONDS:.0f} s "
                    f"({widgets} widget labels on the page)", pytrace=False)
    output.scroll_into_view_if_needed()
    shown = PlaygroundPage(output)
    for name, value in (("temperature", "1.00"), ("top_k", "0"), ("top_p", "1.00")):
        if shown.slider(name).locator(".widget-readout").inner_text() != value:
            shown.type_value(name, value)
    shown.type_seed(0)
    shown.settle()
    return shown


def test_lowering_top_p_shrinks_the_tokens_that_can_be_drawn(playground, course_model):
    everything = playground.kept()
    value = playground.press("top_p", "PageDown", 2)  # 2 x 5 steps of 0.05
    assert value == pytest.approx(0.5), f"two PageDown presses should move top_p from 1.00 to 0.50, got {value}"
    model, tokenizer = course_model
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        _, expected = distribution_rows(model, tokenizer, ids, GenerationSettings(do_sample=True, top_k=0, top_p=0.5))
    assert expected < everything
    playground.wait_for(lambda: playground.kept() == expected, "lowering top_p from 1.00 to 0.50",
                        f"'{expected} tokens can be drawn' (the nucleus of 0.5 of {everything})")
    playground.settle()
    screenshot(playground.root, "playground")


def test_raising_the_temperature_flattens_the_bars(playground):
    at_one = playground.rows()
    value = playground.press("temperature", "ArrowRight", 10)
    assert value == pytest.approx(1.5), f"ten ArrowRight presses should move temperature to 1.50, got {value}"

    def flatter() -> bool:  # p_top / p_bottom = exp((l_top - l_bottom) / T) falls as T rises
        hot = playground.rows()
        return hot[0].bar_px < at_one[0].bar_px and hot[0].after / hot[-1].after < at_one[0].after / at_one[-1].after

    playground.wait_for(flatter, "raising the temperature from 1.00 to 1.50",
                        f"a shorter top bar than {at_one[0].after:.3f}, and the top and bottom rows closer than "
                        f"{at_one[0].after:.3f} / {at_one[-1].after:.3f}: a flatter distribution")


def test_changing_the_seed_changes_the_continuation(playground):
    at_seed_zero = playground.continuation()
    playground.type_seed(7)
    playground.wait_for(lambda: playground.continuation() != at_seed_zero, "typing seed 7 instead of 0",
                        "another continuation")
    playground.type_seed(0)
    playground.wait_for(lambda: playground.continuation() == at_seed_zero, "typing seed 0 again",
                        f"the first continuation again: {at_seed_zero!r}")


def test_a_token_cut_by_top_k_stays_greyed_out(playground):
    playground.press("top_k", "ArrowRight", 3)
    playground.wait_for(lambda: playground.kept() == 3, "moving top_k from 0 to 3", "'3 tokens can be drawn'")
    playground.settle()
    rows = playground.rows()
    greyed = [row.token for row in rows if row.greyed]
    assert greyed == [row.token for row in rows[3:]], f"at top_k = 3 all rows but the top three should be grey: {rows}"
    playground.press("temperature", "ArrowRight", 10)
    playground.type_seed(3)
    playground.settle()
    rows = playground.rows()
    assert [row.token for row in rows if row.greyed] == greyed and all(
        row.after == 0 and row.bar_px == 0 for row in rows if row.greyed), (
        f"after raising the temperature to 1.50 and typing seed 3 at top_k = 3, the learner sees these rows grey: "
        f"{[row.token for row in rows if row.greyed]}; expected the same rows as before, with no bar: {greyed}")
