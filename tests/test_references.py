"""The bibliography (docs/references.bib, the site's References page): every paper the lessons,
the answers, the README and the teaching guide cite by author and year has an entry with its
title, authors, venue, year and link, and in the lessons and answers each citation is a Markdown
link to that paper (a link works in Jupyter as well as on the site)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
import pybtex.database
import pytest
from site_markdown import site_markdown_parser

ROOT = Path(__file__).resolve().parents[1]
BIBLIOGRAPHY = pybtex.database.parse_file(ROOT / "docs" / "references.bib")
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
LINKED = LESSONS + sorted((ROOT / "docs" / "answers").glob("[0-9][0-9]_*.md"))
CITED_ONLY = [ROOT / "README.md", ROOT / "docs" / "teaching.md"]
# "Vaswani et al. 2017", "Xiong et al., 2020", "Holtzman et al. (2020)", "Press & Wolf (2017",
# "Jain and Wallace 2019", "Gemma Team 2024", "Llama Team, AI @ Meta 2024", and the single authors cited.
CITATION = re.compile(r"(?P<first>[A-Z][\w'-]+)(?:\s+et\s+al\.|\s+(?:and|&)\s+[A-Z][\w'-]+|\s+Team(?:, AI @ Meta)?"
                      r"|(?<=Shazeer)|(?<=Hewitt)|(?<=Saxena))(?:'s)?,?\s+\(?(?P<year>(?:19|20)\d\d)\b")


@dataclass(frozen=True)
class Citation:
    text: str
    first_author: str
    year: str
    link: str | None  # the href of the Markdown link over the citation's names, if any


def first_author(key: str) -> str:
    person = BIBLIOGRAPHY.entries[key].persons["author"][0]
    return " ".join(person.last_names).strip("{}")


def papers(citation: Citation) -> list[str]:
    """The keys of the entries a citation can mean (Touvron et al. 2023 wrote two)."""
    return [key for key, entry in BIBLIOGRAPHY.entries.items()
            if entry.fields["year"] == citation.year and first_author(key).startswith(citation.first_author)]


def citations(markdown: str) -> list[Citation]:
    """Each author-year citation in the text of ``markdown`` (not in code or math), with its link."""
    found = []
    for token in site_markdown_parser().parse(markdown):
        if token.type != "inline":
            continue
        text, links, opened = "", [], (0, "")
        for child in token.children or []:
            if child.type == "link_open":
                opened = (len(text), str(child.attrs["href"]))
            elif child.type == "link_close":
                links.append((opened[0], len(text), opened[1]))
            text += child.content if child.type == "text" else " "
        for match in CITATION.finditer(text):
            link = next((href for start, end, href in links if start <= match.start() < end), None)
            found.append(Citation(" ".join(match[0].split()), match["first"], match["year"], link))
    return found


def page_text(path: Path) -> str:
    if path.suffix == ".py":
        return "\n\n".join(cell.source for cell in jupytext.read(path).cells if cell.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def problems(citation: Citation, must_link: bool) -> list[str]:
    keys = papers(citation)
    if not keys:
        return [f"{citation.text!r} is not in docs/references.bib"]
    urls = [BIBLIOGRAPHY.entries[key].fields["url"] for key in keys]
    if must_link and citation.link not in urls:
        return [f"{citation.text!r} links to {citation.link!r}, not to its paper {' or '.join(urls)}"]
    return []


def test_every_entry_has_title_authors_venue_year_and_link():
    assert len(BIBLIOGRAPHY.entries) >= 40
    for key, entry in BIBLIOGRAPHY.entries.items():
        venue = entry.fields.get("booktitle") or entry.fields.get("journal") or entry.fields.get("institution") \
            or entry.fields.get("note")
        assert entry.persons.get("author") and entry.fields.get("title") and venue, key
        assert re.fullmatch(r"(19|20)\d\d", entry.fields["year"]) and entry.fields["url"].startswith("https://"), key


@pytest.mark.parametrize("page", LINKED + CITED_ONLY, ids=lambda page: page.name)
def test_every_citation_is_in_the_bibliography_and_linked(page):
    found = citations(page_text(page))
    assert [problem for citation in found for problem in problems(citation, page in LINKED)] == []


def test_the_lessons_cite_papers():
    cited = {key for page in LINKED for citation in citations(page_text(page)) for key in papers(citation)}
    assert len(cited) >= 40, f"only {len(cited)} papers found cited: is the pattern still right?"


VASWANI = "https://arxiv.org/abs/1706.03762"


@pytest.mark.parametrize(("planted", "problem"), [
    ("As Vaswani et al. 2017 showed.\n", "links to None"),
    ("As [Vaswani et al. 2017](https://arxiv.org/abs/2005.14165) showed.\n", "links to 'https://arxiv.org/abs/2005"),
    (f"As [Nobody et al. 2017]({VASWANI}) showed.\n", "'Nobody et al. 2017' is not in docs/references.bib"),
    ("As Vaswani et al.\n(2021) showed.\n", "'Vaswani et al. (2021' is not in docs/references.bib"),
])
def test_a_planted_citation_fault_is_found(planted, problem):
    found = [message for citation in citations(planted) for message in problems(citation, must_link=True)]
    assert any(problem in message for message in found), found


def test_a_linked_citation_passes():
    for text in (f"As [Vaswani et al. 2017]({VASWANI}) showed.\n", f"[Vaswani et al.]({VASWANI}) (2017, §3.5)\n"):
        found = citations(text)
        assert len(found) == 1 and problems(found[0], must_link=True) == []
