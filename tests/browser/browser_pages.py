"""What a learner sees of the course's widgets on a page, and how they work them: keys on a
slider's handle, a number typed into a box, an option picked from a dropdown.

Everything here reads the rendered page (texts, computed colours, bar widths), never the
kernel's Python objects: these tests must fail when the page stops following the controls.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

UPDATE_SECONDS = 30.0  # how long a learner would wait for the page to follow a control


CONTENT_BOX = """root => {
  const boxes = [];
  const texts = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (texts.nextNode()) {
    if (texts.currentNode.textContent.trim()) {
      const range = document.createRange();
      range.selectNodeContents(texts.currentNode);
      boxes.push(range.getBoundingClientRect());
    }
  }
  root.querySelectorAll("input, textarea, button, select, td, img, svg, canvas, .noUi-target")
    .forEach(element => boxes.push(element.getBoundingClientRect()));
  const shown = boxes.filter(box => box.width > 0 && box.height > 0);
  const left = Math.min(...shown.map(box => box.left)), top = Math.min(...shown.map(box => box.top));
  return {x: left + window.scrollX, y: top + window.scrollY,
          width: Math.max(...shown.map(box => box.right)) - left,
          height: Math.max(...shown.map(box => box.bottom)) - top};
}"""
MARGIN_PX = 8


def screenshot(target, name: str) -> None:
    """Save a screenshot of a page or element as ``<name>.png`` when ``COURSE_SCREENSHOTS`` is set
    (``scripts/update_screenshots.py`` sets it). An element is cropped to what it shows, its text,
    controls and cells, and not the empty width and height its box stretches to; at twice the
    page's pixels, so that its text stays sharp where a page shows it smaller."""
    folder = os.environ.get("COURSE_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = str(Path(folder) / f"{name}.png")
    if not hasattr(target, "bounding_box"):  # a page, not an element
        target.screenshot(path=path)
        return
    box = target.evaluate(CONTENT_BOX)
    clip = {"x": max(box["x"] - MARGIN_PX, 0), "y": max(box["y"] - MARGIN_PX, 0),
            "width": box["width"] + 2 * MARGIN_PX, "height": box["height"] + 2 * MARGIN_PX}
    target.page.screenshot(path=path, clip=clip, full_page=True, scale="device")


def failure_screenshot(page, name: str) -> None:
    """Save the whole page as ``<name>.png`` in ``$COURSE_FAILURE_SCREENSHOTS`` (default: the
    system's temporary folder) and say where, so a failure can be seen, not only read."""
    folder = Path(os.environ.get("COURSE_FAILURE_SCREENSHOTS", tempfile.gettempdir()))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot of the failing page: {path}")


def wait_until(condition, timeout: float, describe) -> None:
    """Poll ``condition()`` until it is true; on timeout fail with ``describe()``, which says what
    the learner sees on the page."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(describe(), pytrace=False)
        time.sleep(0.2)


@dataclass(frozen=True)
class ShownRow:
    """One row of the playground's table as rendered."""

    token: str
    before: float
    after: float
    greyed: bool  # drawn in grey: filtered out
    bar_px: float  # width of the "after" bar


class PlaygroundPage:
    """The sampling playground (``course_utils.playground``) inside ``root``, a page locator."""

    def __init__(self, root):
        self.root = root

    def slider(self, name: str):
        label = self.root.page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(name)}\b"))
        return self.root.locator(".widget-slider").filter(has=label)

    def slider_value(self, name: str) -> float:
        return float(self.slider(name).locator(".widget-readout").inner_text())

    def press(self, name: str, key: str, times: int) -> float:
        """Focus the slider's handle and press ``key`` ``times`` times, as a keyboard user does;
        returns the value the slider's readout shows afterwards."""
        handle = self.slider(name).locator(".noUi-handle")
        handle.focus()
        for _ in range(times):
            handle.press(key)
        return self.slider_value(name)

    def type_value(self, name: str, value: str) -> None:
        """Type ``value`` into the slider's readout and press Enter, as a learner can."""
        readout = self.slider(name).locator(".widget-readout")
        readout.click()
        readout.press("Control+A")
        readout.press_sequentially(value)
        readout.press("Enter")

    def type_seed(self, seed: int) -> None:
        box = self.root.locator(".widget-text").filter(
            has=self.root.page.locator(".widget-label", has_text=re.compile(r"^seed$"))).locator("input")
        box.fill(str(seed))
        box.press("Enter")

    def kept(self) -> int:
        return int(self.root.locator("p", has_text="tokens can be drawn").locator("b").inner_text())

    def kept_text(self) -> str:
        return self.root.locator("p", has_text="tokens can be drawn").inner_text()

    def rows(self) -> list[ShownRow]:
        values = self.root.locator("table tr").evaluate_all("""rows => rows.slice(1).map(row => {
            const cells = row.querySelectorAll('td');
            return [cells[0].innerText, cells[1].innerText, cells[3].innerText,
                    getComputedStyle(row).color, cells[4].firstElementChild.getBoundingClientRect().width];
        })""")
        return [ShownRow(token, float(before), float(after), colour == "rgb(153, 153, 153)", width)
                for token, before, after, colour, width in values]

    def continuation(self) -> str:
        return self.root.locator("pre").inner_text()

    def settle(self, quiet_seconds: float = 1.5) -> None:
        """Wait until the page has stopped changing for ``quiet_seconds`` (queued updates done)."""
        def snapshot() -> tuple[str, str, str]:
            return self.kept_text(), self.root.locator("table").inner_text(), self.continuation()

        last, quiet_since, deadline = snapshot(), time.monotonic(), time.monotonic() + UPDATE_SECONDS
        while time.monotonic() - quiet_since < quiet_seconds:
            if time.monotonic() > deadline:
                pytest.fail(f"the playground kept changing for {UPDATE_SECONDS:.0f} s", pytrace=False)
            time.sleep(0.25)
            now = snapshot()
            if now != last:
                last, quiet_since = now, time.monotonic()

    def wait_for(self, condition, what_changed: str, expectation: str) -> None:
        """Wait until ``condition()`` holds; else fail saying what the learner saw instead."""
        wait_until(condition, UPDATE_SECONDS, lambda: (
            f"after {what_changed}, the learner still sees '{self.kept_text()}' and the continuation "
            f"{self.continuation()!r} after {UPDATE_SECONDS:.0f} s; expected {expectation}"))


class ExplorerPage:
    """The attention explorer (``course_utils.attention_explorer``) inside ``root``, a page locator."""

    def __init__(self, root):
        self.root = root

    def dropdown(self, name: str):
        return self.root.locator(".widget-dropdown").filter(
            has=self.root.page.locator(".widget-label", has_text=re.compile(rf"^{name}$"))).locator("select")

    def choose(self, name: str, option: str) -> None:
        self.dropdown(name).select_option(label=option)

    def shown_choice(self, name: str) -> str:
        """The option the dropdown displays ('' when it shows none); ipywidgets writes its spaces
        as non-breaking ones."""
        return self.dropdown(name).evaluate("select => select.selectedOptions[0]?.text ?? ''").replace("\xa0", " ")

    def scores(self) -> dict[str, float]:
        spans = self.root.locator("span[class^='score-']")
        return {cls.removeprefix("score-"): float(text) for cls, text in zip(
            spans.evaluate_all("spans => spans.map(s => s.className)"), spans.all_inner_texts())}

    def heatmap(self) -> list[float]:
        """The weights the heatmap's cells show on hover, row by row."""
        titles = self.root.locator("table.attention-map td[title]").evaluate_all(
            "cells => cells.map(c => c.title)")
        return [float(t) for t in titles]

    def wait_for(self, condition, what_changed: str, expectation: str) -> None:
        wait_until(condition, UPDATE_SECONDS, lambda: (
            f"after {what_changed}, the learner still sees the scores {self.scores()} after "
            f"{UPDATE_SECONDS:.0f} s; expected {expectation}"))


class ChatPage:
    """The chat box (``course_utils.chat_box.ChatBox``) inside ``root``, a page locator."""

    def __init__(self, root):
        self.root = root

    def send(self, message: str) -> None:
        """Type ``message`` into the text box and click Send, as a learner does."""
        box = self.root.locator("textarea[placeholder='Ask the model...']")
        box.fill(message)
        self.root.locator("button", has_text=re.compile(r"^Send$")).click()

    def clear(self) -> None:
        self.root.locator("button", has_text=re.compile(r"^Clear$")).click()

    def turns(self) -> list[tuple[str, str]]:
        """The conversation as shown: (role, text) for each paragraph of the chat."""
        paragraphs = self.root.locator("div.chat p").all_inner_texts()
        return [tuple(part.strip() for part in text.split(":", 1)) for text in paragraphs]

    def settled_turns(self, quiet_seconds: float = 1.0) -> list[tuple[str, str]]:
        """The conversation once it has stopped changing for ``quiet_seconds`` (the reply streams in)."""
        shown, since = self.turns(), time.monotonic()
        deadline = since + UPDATE_SECONDS
        while time.monotonic() - since < quiet_seconds and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.turns()
            if now != shown:
                shown, since = now, time.monotonic()
        return shown

    def wait_for(self, condition, what_changed: str, expectation: str) -> None:
        wait_until(condition, UPDATE_SECONDS, lambda: (
            f"after {what_changed}, the learner still sees the conversation {self.turns()} after "
            f"{UPDATE_SECONDS:.0f} s; expected {expectation}"))
