"""Sphinx configuration of the course's website; ``python scripts/build_site.py`` stages the pages
next to a copy of this file and builds them (see that script for what goes in)."""

project = "Decoder-only language models, from the mask up"
author = "the course's authors"
copyright = "2026, the course's authors. Code: MIT. Lesson text and figures: CC BY 4.0"  # noqa: A001

extensions = ["myst_nb", "sphinxcontrib.bibtex"]
# The papers the course cites (docs/references.bib, staged next to this file): the References page lists them all.
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
exclude_patterns = ["_build", "_doctrees", "**/_*.ipynb", "_static/**"]  # _NN.ipynb: the downloads

# The lessons' stored outputs are the page: nothing runs at build time.
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget state is stored (no page can run a widget), so no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# MathJax 3 from the site itself (_static/mathjax/tex-svg.js, fonts inside it), so math renders offline.
html_static_path = ["_static"]
mathjax_path = "mathjax/tex-svg.js"

html_theme = "sphinx_book_theme"
html_title = "Decoder-only LMs, from the mask up"
html_theme_options = {
    "use_download_button": True,
    "show_toc_level": 2,
    # External links only: the footer is the same HTML on every page, at every depth. The
    # "Licences" page in the menu has the details and the attributions.
    "extra_footer": ("Code: <a href='https://opensource.org/license/mit'>MIT</a>. Lesson text and figures: "
                     "<a href='https://creativecommons.org/licenses/by/4.0/'>CC BY 4.0</a>."),
}
html_show_sphinx = False
html_context = {"default_mode": "light"}  # the theme's light/dark switch starts from a valid mode
html_favicon = "favicon.svg"  # the causal mask: a lower triangle
