"""Sphinx configuration of the course's website; ``python scripts/build_site.py`` stages the pages
next to a copy of this file and builds them (see that script for what goes in)."""

import os

# The repository's address has one place, pyproject.toml's [project.urls] Repository: the build
# script reads it (set_repository.repository_address) and passes it here.
REPOSITORY = os.environ["COURSE_SITE_REPOSITORY"]

project = "Decoder-only language models, from the mask up"
author = f"the contributors to {REPOSITORY}"  # the copyright holder LICENSE and LICENSE-CONTENT.md name
copyright = f"2026, {author}. Code: MIT. Lesson text and figures: CC BY 4.0"  # noqa: A001

extensions = ["myst_nb", "sphinx_copybutton", "sphinxcontrib.bibtex"]
# The papers the course cites (docs/references.bib, staged next to this file): the References page lists them all.
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
exclude_patterns = ["_build", "_doctrees", "*/downloads/*", "_static/**"]  # downloads/: the files as stored

# The lessons' stored outputs are the page: nothing runs at build time.
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget state is stored (no page can run a widget), so no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# MathJax 3 from the site itself (_static/mathjax/tex-svg.js, fonts inside it), so math renders offline.
html_static_path = ["_static"]
mathjax_path = "mathjax/tex-svg.js"
html_css_files = ["course.css"]  # code that wraps on screen and in print, one-line table headers
html_js_files = ["course-search.js"]  # search excerpts from the article only, and none over file://

# A copy button on code, not on outputs; prompts (>>> , ... , $ ) are left out of what it copies.
copybutton_selector = "div:not(.output) > div.highlight pre"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"

html_theme = "sphinx_book_theme"
html_title = "Decoder-only LMs, from the mask up"
html_theme_options = {
    "use_download_button": True,  # its "print to PDF"; the page's downloads are the files as stored
    "repository_url": REPOSITORY,
    "use_repository_button": True,
    "show_toc_level": 2,
    # External links only: the footer is the same HTML on every page, at every depth. The
    # "Licences" page in the menu has the details and the attributions.
    "extra_footer": ("Code: <a href='https://opensource.org/license/mit'>MIT</a>. Lesson text and figures: "
                     "<a href='https://creativecommons.org/licenses/by/4.0/'>CC BY 4.0</a>."),
}
html_show_sphinx = False
html_context = {"default_mode": "light"}  # the theme's light/dark switch starts from a valid mode
html_favicon = "favicon.svg"  # the causal mask: a lower triangle


def _without_the_staged_source(app, pagename, templatename, context, doctree) -> None:
    """The header's download menu keeps "print to PDF" but not the page's source: for a lesson
    that is the staged copy (links added, widgets swapped for screenshots), not the lesson, whose
    unmodified .ipynb and .py each page links to."""
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"] = [button for button in group["buttons"]
                                if button.get("label") != "download-source-button"]


def setup(app) -> None:
    app.connect("html-page-context", _without_the_staged_source, priority=900)  # after the theme's (501)
