"""Regenerate the lessons' stored outputs: the one way outputs are ever written.

    python scripts/regenerate_notebooks.py                 # every lesson
    python scripts/regenerate_notebooks.py notebooks/01_causal_masking.py

For each lesson, the .py and .ipynb are synced with jupytext (the newer file wins), the
notebook is executed top to bottom in a fresh kernel on the bundled default model, offline,
and the .py is synced again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from course_utils.lesson import lesson_environment

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> None:
    env = lesson_environment()  # offline, bundled models, CPU, figures checked
    subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env, check=True)


def main(paths: list[str]) -> None:
    lessons = [Path(p).with_suffix("") for p in paths] or sorted(
        p.with_suffix("") for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")
    )
    for lesson in lessons:
        started = time.perf_counter()
        run("jupytext", "--sync", "--quiet", str(lesson.with_suffix(".py")))
        run("jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
            "--ExecutePreprocessor.record_timing=False", "--ExecutePreprocessor.timeout=600",
            str(lesson.with_suffix(".ipynb")))
        run("jupytext", "--sync", "--quiet", str(lesson.with_suffix(".ipynb")))
        print(f"{lesson.name}: executed in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
