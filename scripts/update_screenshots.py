"""Regenerate the README's images in docs/images/: the one way they are ever written.

    python scripts/update_screenshots.py            # browser screenshots and lesson figures
    python scripts/update_screenshots.py --figures  # only the lesson figures (no browser needed)

Browser screenshots (``playground.png``, ``attention_explorer.png``, ``chat_box.png``,
``site_lesson.png``) are taken by the browser tests in ``tests/browser/`` while they work the
widgets and the website; lesson figures (``lesson_NN.png``) are
the stored output of each lesson's cell tagged ``readme-figure``, so they change only when
``scripts/regenerate_notebooks.py`` reruns the lesson.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from course_utils.files import write_atomically

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
FIGURE_TAG = "readme-figure"
SCREENSHOTS = ("playground", "attention_explorer", "chat_box", "site_lesson")


def lesson_figure(notebook_path: Path) -> bytes:
    """The first PNG in the stored outputs of the lesson's cell tagged ``readme-figure``."""
    notebook = nbformat.read(notebook_path, as_version=4)
    tagged = [cell for cell in notebook.cells if FIGURE_TAG in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{notebook_path.name} must have exactly one cell tagged {FIGURE_TAG!r}, has {len(tagged)}")
    for output in tagged[0].get("outputs", []):
        if "image/png" in output.get("data", {}):
            return base64.b64decode(output["data"]["image/png"])
    raise ValueError(f"the {FIGURE_TAG!r} cell of {notebook_path.name} has no stored PNG: regenerate the lesson")


def update_figures() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for notebook_path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        target = IMAGES / f"lesson_{notebook_path.name[:2]}.png"
        write_atomically(target, lesson_figure(notebook_path))
        print(f"{target.relative_to(ROOT)}: from {notebook_path.name}")


def update_screenshots() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        env = {**os.environ, "COURSE_SCREENSHOTS": folder, "CI": "true"}  # CI=true: fail, never skip
        subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/browser"], cwd=ROOT, env=env, check=True)
        for name in SCREENSHOTS:
            taken = Path(folder) / f"{name}.png"
            if not taken.exists():
                raise RuntimeError(f"the browser tests took no {taken.name}")
            write_atomically(IMAGES / taken.name, taken.read_bytes())
            print(f"{(IMAGES / taken.name).relative_to(ROOT)}: from the browser tests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--figures", action="store_true", help="only the lesson figures")
    args = parser.parse_args()
    update_figures()
    if not args.figures:
        update_screenshots()


if __name__ == "__main__":
    main()
