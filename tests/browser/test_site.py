"""The course's website (``python scripts/build_site.py``), built from a clean tree and opened in
Chromium page by page: every page loads without a console error, every image loads, every link
inside the site resolves, math is rendered by MathJax (not left as TeX), and each lesson page
shows the last output its notebook stores."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import nbformat
import pytest

from browser.browser_pages import screenshot
from browser.conftest import free_port, serve

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_site  # noqa: E402

LOAD_MS = 30_000


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """The site built into a temporary folder and served over HTTP; yields its base URL."""
    out = tmp_path_factory.mktemp("site") / "site"
    assert build_site.main(["--out", str(out)]) == 0, "python scripts/build_site.py failed"
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)]
    with serve(command, f"http://127.0.0.1:{port}/index.html", out.parent / "http.log"):
        yield f"http://127.0.0.1:{port}/"


def last_stored_output(notebook: Path) -> str:
    """The first line of the last text a code cell of the lesson prints, as stored."""
    for cell in reversed(nbformat.read(notebook, as_version=4).cells):
        for output in reversed(cell.get("outputs", [])):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            if text.strip() and not text.startswith("<Figure"):
                return text.strip().splitlines()[0]
    raise AssertionError(f"{notebook.name} stores no text output")


def test_every_page_loads_with_its_images_math_links_and_outputs(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    page.on("response", lambda response: errors.append(f"{response.status}: {response.url}")
            if response.status >= 400 else None)
    to_visit, seen, broken = [urljoin(site, "index.html")], set(), []
    images = math = 0
    while to_visit:
        url = to_visit.pop()
        if url in seen:
            continue
        seen.add(url)
        errors.clear()
        response = page.goto(url, timeout=LOAD_MS, wait_until="load")
        assert response is not None and response.ok, f"{url} answered {response and response.status}"
        if page.locator("span.math, div.math").count():  # MathJax 3 typesets after its startup promise
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                                   " && MathJax.startup.promise.then(() => true)", timeout=LOAD_MS)
            raw = page.locator("span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))")
            assert raw.count() == 0, f"{url}: {raw.count()} formulas left as TeX, e.g. {raw.first.inner_text()!r}"
            math += page.locator("mjx-container").count()
        unloaded = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                                    ".map(i => i.getAttribute('src'))")
        assert unloaded == [], f"{url}: images that do not load: {unloaded}"
        images += page.locator("img").count()
        assert errors == [], f"{url}: {errors}"
        path = urlparse(url).path
        if path.startswith("/lessons/"):  # a lesson page: its notebook's last stored output, and a download link
            lesson = Path(path).stem
            expected = last_stored_output(ROOT / "notebooks" / f"{lesson}.ipynb")
            shown = " ".join(page.locator("article").inner_text().split())
            assert " ".join(expected.split()) in shown, f"{lesson}'s page does not show its last output {expected!r}"
            assert page.locator("a[href$='.ipynb']").count() >= 1, f"the page of {lesson} has no link to its notebook"
            if lesson.startswith("01_"):
                screenshot(page, "site_lesson")
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            target, _ = urldefrag(href)
            if not target.startswith(site):
                continue  # outside the site (the licences' and papers' pages): not ours to check offline
            path = urlparse(target).path
            if path.endswith(".html") or path.endswith("/"):
                to_visit.append(target)
            elif page.request.get(target).status != 200:  # a download (.ipynb) or a file
                broken.append(f"{url} -> {target}")
    page.close()
    assert not broken, f"links to nothing: {broken}"
    pages = len(seen)
    print(f"site: {pages} pages, {images} images, {math} formulas rendered, no broken link")
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert {urljoin(site, f"lessons/{lesson.stem}.html") for lesson in lessons} <= seen, "a lesson page is unreachable"
    assert pages >= 2 * len(lessons) + 10 and images >= len(lessons) and math > 0


LOOSE_TEXT = """article => {  // text outside any paragraph, list or table: Markdown read its line as raw HTML
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT), loose = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode())
        if (node.textContent.trim() && ["ARTICLE", "SECTION", "DIV"].includes(node.parentElement.tagName))
            loose.push(node.textContent.trim().slice(0, 80));
    return loose;
}"""
TEXT_OUTSIDE_MATH_AND_CODE = """article => {
    const copy = article.cloneNode(true);
    copy.querySelectorAll("mjx-container, pre, code, script, style").forEach(element => element.remove());
    return copy.textContent;
}"""


def test_answers_pages_render_their_math_and_paragraphs(browser, site):
    """Every answers page: each formula typeset by MathJax, no TeX ($, \\frac, ...) left in the text,
    and every sentence inside a paragraph (none read as raw HTML, as a line starting with a comment is)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    answers = sorted((ROOT / "docs" / "answers").glob("[0-9][0-9]_*.md"))
    assert answers
    for source in answers:
        url = urljoin(site, f"answers/{source.stem}.html")
        response = page.goto(url, timeout=LOAD_MS, wait_until="load")
        assert response is not None and response.ok, f"{url} answered {response and response.status}"
        if "$" in source.read_text():
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                                   " && MathJax.startup.promise.then(() => true)", timeout=LOAD_MS)
            assert page.locator("article mjx-container").count() > 0, f"{url}: no formula typeset"
        raw = page.locator("span.math:not(:has(mjx-container)), div.math:not(:has(mjx-container))")
        assert raw.count() == 0, f"{url}: {raw.count()} formulas left as TeX"
        article = page.locator("article")
        text = article.evaluate(TEXT_OUTSIDE_MATH_AND_CODE)
        tex = re.findall(r".{0,30}(?:\$|\\[a-zA-Z]{2,}).{0,30}", text)
        assert tex == [], f"{url}: TeX shown as text: {tex}"
        loose = article.evaluate(LOOSE_TEXT)
        assert loose == [], f"{url}: text outside any paragraph (read as raw HTML): {loose}"
        if source.stem.startswith("07_"):
            screenshot(page, "site_answers")
    page.close()
