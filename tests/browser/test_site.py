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
def built_site(tmp_path_factory) -> Path:
    """The site built into a temporary folder."""
    out = tmp_path_factory.mktemp("site") / "site"
    assert build_site.main(["--out", str(out)]) == 0, "python scripts/build_site.py failed"
    return out


@pytest.fixture(scope="module")
def site(built_site) -> Iterator[str]:
    """The built site served over HTTP; yields its base URL."""
    out = built_site
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


def lesson_pages(folder: str) -> list[Path]:
    """The stored notebooks of ``lessons`` (notebooks/) or ``workbooks`` (exercises/)."""
    return sorted((ROOT / {"lessons": "notebooks", "workbooks": "exercises"}[folder]).glob("[0-9][0-9]_*.ipynb"))


def test_workbooks_are_titled_as_workbooks_in_the_tab_heading_sidebar_and_next_link(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for workbook in lesson_pages("workbooks"):
        number = workbook.name[:2]
        page.goto(urljoin(site, f"workbooks/{workbook.stem}.html"), timeout=LOAD_MS)
        assert page.title().startswith(f"Workbook {number} — "), f"the tab of workbook {number}: {page.title()!r}"
        assert page.locator("article h1").first.inner_text().startswith(f"Workbook {number} — ")
        if number == "01":
            screenshot(page, "site_workbook")
    captions = page.locator(".bd-sidebar-primary p.caption").all_inner_texts()
    assert [caption.strip() for caption in captions][:3] == ["Start here", "Lessons", "Workbooks"], captions
    listed = page.locator(".bd-sidebar-primary a", has_text="Workbook ")
    assert listed.count() == len(lesson_pages("workbooks")), "the sidebar does not list every workbook by its title"
    last_lesson = lesson_pages("lessons")[-1].stem
    page.goto(urljoin(site, f"lessons/{last_lesson}.html"), timeout=LOAD_MS)
    following = page.locator("a.right-next").inner_text()
    assert "Workbook 01" in following and "Lesson" not in following, f"the last lesson's Next: {following!r}"
    page.goto(urljoin(site, "search.html?q=kv+cache"), timeout=LOAD_MS)
    page.locator("#search-results li").first.wait_for(timeout=LOAD_MS)
    titles = [title.split("\n")[0] for title in page.locator("#search-results li").all_inner_texts()]
    assert len(titles) == len(set(titles)), f"search results with the same title: {titles}"
    page.close()


def test_downloads_are_the_files_as_stored_under_distinct_names_and_pages_link_each_other(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    saved_as: set[str] = set()
    for folder in ("lessons", "workbooks"):
        for source in lesson_pages(folder):
            page.goto(urljoin(site, f"{folder}/{source.stem}.html"), timeout=LOAD_MS)
            downloads = page.eval_on_selector_all("article a.download", "links => links.map(a => a.href)")
            assert sorted(Path(urlparse(href).path).suffix for href in downloads) == [".ipynb", ".py"], downloads
            for href in downloads:
                name = Path(urlparse(href).path).name
                assert name not in saved_as, f"two downloads are saved as {name}"
                saved_as.add(name)
                assert page.request.get(href).body() == source.with_suffix(Path(name).suffix).read_bytes(), (
                    f"{href} is not {source.with_suffix(Path(name).suffix).relative_to(ROOT)} as stored")
            assert page.locator(".btn-download-source-button").count() == 0, (
                "the header offers the page's staged source")
            links = page.eval_on_selector_all("article a.internal", "links => links.map(a => a.href)")
            other = "workbooks" if folder == "lessons" else "lessons"
            for expected in (f"{other}/{source.stem}.html", f"answers/{source.stem}.html"):
                assert urljoin(site, expected) in links, f"{folder}/{source.stem} does not link to {expected}"
    for answers in sorted((ROOT / "docs" / "answers").glob("[0-9][0-9]_*.md")):
        page.goto(urljoin(site, f"answers/{answers.stem}.html"), timeout=LOAD_MS)
        links = page.eval_on_selector_all("article a.internal", "links => links.map(a => a.href)")
        for back in (f"lessons/{answers.stem}.html", f"workbooks/{answers.stem}.html"):
            assert urljoin(site, back) in links, f"answers/{answers.stem} does not link back to {back}"
    page.close()


WIDER_THAN_ITS_BOX = "pres => pres.filter(p => p.scrollWidth > p.clientWidth + 1).length"


def test_code_fits_at_1280_px_and_in_print_with_a_copy_button_and_no_test_markers(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for folder in ("lessons", "workbooks"):
        for source in lesson_pages(folder):
            page.goto(urljoin(site, f"{folder}/{source.stem}.html"), timeout=LOAD_MS)
            assert page.eval_on_selector_all("article pre", WIDER_THAN_ITS_BOX) == 0, (
                f"{folder}/{source.stem}: a code block scrolls sideways at 1280 px")
            inputs = page.locator("article div.cell_input pre").count()
            assert page.locator("article div.cell_input button.copybtn").count() == inputs > 0
            assert page.locator("article div.cell_output button.copybtn").count() == 0, "a copy button on an output"
            shown = page.locator("article").inner_text()
            for marker in ("NBVAL_", "# EXERCISE", "# END EXERCISE", "profiler_start"):
                assert marker not in shown, f"{folder}/{source.stem} shows {marker!r}"
            if folder == "lessons" and source.name.startswith("04_"):
                page.locator("article div.cell").nth(3).scroll_into_view_if_needed()
                screenshot(page, "site_code_1280")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 718, "height": 1000})  # A4's 210 mm less the print margins, in CSS px
    page.goto(urljoin(site, "lessons/07_speculative_decoding.html"), timeout=LOAD_MS)
    assert page.eval_on_selector_all("article pre", WIDER_THAN_ITS_BOX) == 0, "printing lesson 07 cuts a code block"
    page.close()


def test_get_started_page_the_repository_link_and_alt_text(browser, site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = next(line for line in build_site.readme_section(readme, "Quick start").splitlines()
                   if line.startswith("python -m pip install"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(urljoin(site, "index.html"), timeout=LOAD_MS)
    page.locator(".bd-sidebar-primary a", has_text="Get started").click()
    assert page.url == urljoin(site, "get-started.html")
    assert install in page.locator("article").inner_text(), "the Get started page lacks the README's install command"
    for heading in ("Quick start", "Troubleshooting", "Offline use", "Grading a class"):
        assert page.locator("article h2", has_text=heading).count() == 1, f"no section {heading!r}"
    screenshot(page, "site_get_started")
    repository = build_site.repository_address()
    header_links = page.eval_on_selector_all("a.btn-source-repository-button", "links => links.map(a => a.href)")
    assert header_links == [repository], f"the header's link to the repository: {header_links}"
    for path in ["index.html", *(f"lessons/{lesson.stem}.html" for lesson in lesson_pages("lessons"))]:
        page.goto(urljoin(site, path), timeout=LOAD_MS)
        alts = page.eval_on_selector_all("article img", "imgs => imgs.map(i => i.getAttribute('alt') || '')")
        assert alts, f"{path} has no image"
        paths = [alt for alt in alts if not alt.strip() or re.search(r"\.(png|svg|jpe?g)$|^\.\./|_images/", alt)]
        assert not paths, f"{path}: images whose alt text is empty or a file path: {paths}"
    page.close()


def test_search_excerpts_quote_the_page_and_from_a_file_say_how_to_get_them(browser, site, built_site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(urljoin(site, "search.html?q=cache"), timeout=LOAD_MS)
    page.locator("#search-results li p.context").first.wait_for(timeout=LOAD_MS)
    excerpts = page.locator("#search-results li p.context").all_inner_texts()
    assert excerpts and not any("Light Dark" in excerpt for excerpt in excerpts), (
        f"excerpts quote the theme's light/dark switch: {excerpts[:2]}")
    assert all("cache" in excerpt.lower() for excerpt in excerpts), f"an excerpt without the word: {excerpts}"
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto((built_site / "search.html").as_uri() + "?q=cache", timeout=LOAD_MS)  # opened from the disk
    page.locator("#search-results li").first.wait_for(timeout=LOAD_MS)
    page.wait_for_timeout(1000)  # the time the excerpts' requests would take to fail
    assert errors == [], f"search from file:// logs errors: {errors}"
    assert "python -m http.server" in page.locator(".file-search-note").inner_text()
    page.close()


TABLES_WIDER_THAN_THE_PAGE = ("tables => tables.filter(t => t.scrollWidth > t.clientWidth + 1)"
                              ".map(t => t.querySelector('th').innerText)")


def test_tables_fit_the_page_the_course_map_header_is_one_line_and_figures_are_full_width(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for path in ("index.html", "teaching.html"):
        page.goto(urljoin(site, path), timeout=LOAD_MS)
        cut = page.eval_on_selector_all("article table", TABLES_WIDER_THAN_THE_PAGE)
        assert cut == [], f"{path}: tables wider than the page, by their first header: {cut}"
    page.goto(urljoin(site, "get-started.html"), timeout=LOAD_MS)  # the grading table's 7 columns: it scrolls
    edges = page.eval_on_selector_all("article table", "tables => tables.map(t => t.getBoundingClientRect().right)")
    article = page.locator("article").bounding_box()
    assert max(edges) <= article["x"] + article["width"] + 1, "a table of Get started reaches past the text"
    page.goto(urljoin(site, "index.html"), timeout=LOAD_MS)
    header = page.locator("article table thead").first.bounding_box()
    assert header is not None and header["height"] < 80, f"the course map's header is {header} high (2 lines: 70 px)"
    text_width = page.locator("article").bounding_box()["width"]
    figures = page.eval_on_selector_all("article img[src*='lesson_']", "imgs => imgs.map(i => i.width)")
    assert len(figures) == len(lesson_pages("lessons")), figures
    assert min(figures) > 0.5 * text_width, f"gallery figures {figures} px wide in a text {text_width} px wide"
    page.close()
