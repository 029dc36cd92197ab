"""The teaching guide's schedules fit its own estimates: on each workshop day, the lessons taught
take at most the hours of contact at the upper end of "How long each lesson takes"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "teaching.md").read_text()


def table_rows(first_header: str, text: str = GUIDE) -> list[list[str]]:
    """The cells of each body row of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def estimated_hours(text: str = GUIDE) -> dict[str, tuple[float, float]]:
    """{lesson number: (low, high)} from "1 to 1.5 h" or "2 h" in the estimates table."""
    estimates = {}
    for lesson, _, studying, _ in table_rows("Lesson", text):
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", studying.removesuffix(" h"))]
        estimates[lesson[:2]] = (numbers[0], numbers[-1])
    return estimates


def hours(slot: str) -> float:
    start, end = (int(h) + int(m) / 60 for h, m in re.findall(r"(\d+):(\d\d)", slot))
    return end - start


def day_load(day: str, text: str = GUIDE) -> tuple[float, float]:
    """(hours of contact, hours of lessons at the upper estimates) for a schedule table: a lesson
    is a number followed by its title ("01 Causal masking"); "A, or B" counts the longer of the two."""
    estimates = estimated_hours(text)
    rows = table_rows(day, text)
    contact = sum(hours(slot) for slot, *_ in rows)
    taught = 0.0
    for _, lessons, _ in rows:
        for choice in re.split(r"; ", lessons):
            alternatives = re.findall(r"\b(\d\d) [A-Z]", choice)
            taught += max((estimates[lesson][1] for lesson in alternatives), default=0.0)
    return contact, taught


@pytest.mark.parametrize("day", ["Day 1", "Day 2"])
def test_each_workshop_day_fits_the_guides_estimates(day):
    contact, taught = day_load(day)
    assert contact == 6 and 0 < taught <= contact, (contact, taught)


def test_a_day_that_does_not_fit_is_caught():
    """The planted fault: day 2 with lesson 05 added, 3 more hours at the upper estimate."""
    planted = GUIDE.replace("| 13:30 to 15:00 | 04 The KV cache", "| 13:30 to 15:00 | 05 Training; 04 The KV cache")
    assert planted != GUIDE
    contact, taught = day_load("Day 2", planted)
    assert taught > contact
