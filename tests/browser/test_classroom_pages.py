"""The classroom pages (``python -m course_utils.classroom``, served by Voila): the attention
explorer of lesson 06 and the sampling playground of lesson 03, without the lessons around them."""

from __future__ import annotations

import pytest
import torch

from browser.browser_pages import ExplorerPage, PlaygroundPage, screenshot
from course_utils.attention import head_view
from course_utils.classroom import DEFAULT_TEXT

LOAD_SECONDS = 90.0


def open_page(browser, classroom: str, page_name: str, wait_for_text: str):
    page = browser.new_page(viewport={"width": 1100, "height": 1500})  # the whole heatmap
    page.goto(f"{classroom}/voila/render/{page_name}.ipynb", timeout=LOAD_SECONDS * 1000)
    page.locator(".widget-label", has_text=wait_for_text).first.wait_for(timeout=LOAD_SECONDS * 1000)
    return page


@pytest.fixture(scope="module")
def explorer(browser, classroom):
    page = open_page(browser, classroom, "attention", "layer")
    page.locator("table.attention-map").wait_for(timeout=LOAD_SECONDS * 1000)
    yield ExplorerPage(page.locator("body"))
    page.close()


def expected_view(course_model, layer: int, head: int | None):
    model, tokenizer = course_model
    with torch.no_grad():
        return head_view(model, tokenizer, DEFAULT_TEXT, layer, head)


def test_another_layer_or_head_changes_the_heatmap_and_scores(explorer, course_model):
    for control, option, layer, head in [("layer", "3", 3, 0), ("head", "5", 3, 5), ("head", "all heads", 3, None)]:
        before_scores, before_weights = explorer.scores(), explorer.heatmap()
        explorer.choose(control, option)
        view = expected_view(course_model, layer, head)
        expected = {name: round(value, 3) for name, value in view.scores.items()}
        explorer.wait_for(lambda expected=expected: explorer.scores() == expected, f"choosing {control} {option}",
                          f"the scores of layer {layer}, head {head if head is not None else 'all'}: {expected}")
        weights = explorer.heatmap()
        rows = view.weights.shape[0]
        visible = view.weights[torch.ones(rows, rows).tril().bool()]  # row by row, as the table
        assert len(weights) == len(visible), "the heatmap should have one cell per query and visible key"
        assert weights != before_weights and explorer.scores() != before_scores
        assert explorer.shown_choice(control) == option, (
            f"after choosing {control} {option!r}, the dropdown shows {explorer.shown_choice(control)!r}")
        if head == 5:  # the head with the sharpest previous-token pattern on this text
            screenshot(explorer.root, "attention_explorer")
        assert max(abs(shown - float(value)) for shown, value in zip(weights, visible)) < 1.5e-3, (
            f"after choosing {control} {option}, the heatmap does not show layer {layer}, head {head}")


def test_classroom_playground_follows_its_sliders(browser, classroom):
    page = open_page(browser, classroom, "playground", "top_p")
    playground = PlaygroundPage(page.locator("body"))
    playground.settle()
    everything = playground.kept()
    playground.press("top_k", "ArrowRight", 5)
    playground.wait_for(lambda: playground.kept() == 5, "moving top_k from 0 to 5",
                        f"'5 tokens can be drawn' instead of {everything}")
    page.close()
