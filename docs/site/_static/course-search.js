// The search page's excerpts (docs/site/conf.py: html_js_files). Sphinx's searchtools.js fetches
// each result's page and quotes its text. Two changes:
// - the quote comes from the article alone, not from the theme's buttons around it (whose
//   "Light Dark" switch text began every excerpt);
// - from a file:// address a browser refuses those fetches (with a CORS error per result), so the
//   results are listed without excerpts and the page says how to get them: serve the site.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined") {
    return; // not the search page
  }
  const htmlToText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const page = new DOMParser().parseFromString(htmlString, "text/html");
    const article = page.querySelector("article.bd-article");
    if (!article) {
      return htmlToText(htmlString, anchor);
    }
    const main = page.querySelector('[role="main"]');
    main.replaceChildren(article); // keeps the role="main" searchtools.js looks for
    return htmlToText(page.documentElement.outerHTML, anchor);
  };
  if (window.location.protocol === "file:") {
    DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
    const note = document.createElement("p");
    note.className = "file-search-note";
    note.textContent =
      "Opened from a file, the results have no excerpts (the browser does not let a page read " +
      "other files). For them, serve the site: python -m http.server -d site, then open " +
      "http://127.0.0.1:8000/search.html";
    const form = document.querySelector("#search-results") || document.querySelector("article");
    if (form) {
      form.before(note);
    }
  }
});
