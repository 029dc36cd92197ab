"""The classroom pages (``python -m course_utils.classroom``, served by Voila): the attention
explorer of lesson 06, the sampling playground of lesson 03 and the chat box of lesson 09, without
the lessons around them."""

from __future__ import annotations

import pytest
import torch

from browser.browser_pages import ChatPage, ExplorerPage, PlaygroundPage, screenshot
from course_utils.attention_explorer import head_view
from course_utils.classroom import DEFAULT_TEXT
from course_utils.data import load_corpus
from course_utils.post_training import QUESTION, next_speaker_examples

LOAD_SECONDS = 90.0


def open_page(browser, classroom: str, page_name: str, wait_for_text: str):
    page = browser.new_page(viewport={"width": 1100, "height": 1500}, device_scale_factor=2)  # the whole heatmap, sharp
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


def test_the_chat_box_answers_stops_at_the_end_of_its_turn_and_clears(browser, classroom):
    """Lesson 09's chat box on the classroom page, on the bundled model tuned as the page opens:
    a question in the format it was tuned on gets a short answer that ends its turn (the reply
    stops at <|end|>, well before max_new_tokens), shown under the learner's message."""
    page = open_page(browser, classroom, "chat", "temperature")
    chat = ChatPage(page.locator("body"))
    scene = next_speaker_examples(load_corpus().validation)[1]
    message = QUESTION + scene.excerpt
    chat.send(message)
    chat.wait_for(lambda: len(chat.turns()) == 2 and chat.turns()[1][1], "sending a scene",
                  "the learner's message, then the assistant's reply")
    (user, shown_message), (assistant, reply) = chat.settled_turns()
    assert (user, assistant) == ("user", "assistant")
    assert shown_message.split() == message.split(), f"the learner's message is shown as {shown_message!r}"
    # 40 new tokens of text would be over 60 characters; a name and <|end|> is a few.
    assert 0 < len(reply) < 30, f"the reply did not stop at the end of its turn: {reply!r}"
    screenshot(page.locator(".widget-vbox").first, "chat_box")
    chat.clear()
    chat.wait_for(lambda: chat.turns() == [], "clicking Clear", "an empty conversation")
    page.close()
