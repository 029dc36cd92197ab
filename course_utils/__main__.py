"""``python -m course_utils COMMAND [ARGUMENTS]``: the course's commands that are not a lesson.

    python -m course_utils doctor      # this environment against what the course needs and CI tested
    python -m course_utils fetch-data  # fetch and verify what the lessons read, so they then run offline
    python -m course_utils train       # train a model (the command that made the bundled ones)
    python -m course_utils evaluate    # a model's bits per byte on the validation plays
    python -m course_utils bench       # generation, training and speculative benchmarks
    python -m course_utils grade       # grade learners' workbooks
    python -m course_utils classroom   # the widgets as web pages (Voila), for a class

Each command is the ``main(argv) -> exit status`` of the module it names (``evaluate`` is
``evaluation.main``, ``train`` is ``recipes.main``, ``fetch-data`` is ``fetch_data.main``).
``python -m course_utils.evaluate ...`` and ``python -m course_utils.train ...``, which the bundled
models' cards name, run the same thing.
``python -m course_utils COMMAND --help`` lists its arguments.

Taught in: no lesson; the README's commands.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"doctor": "doctor", "fetch-data": "fetch_data", "train": "recipes", "evaluate": "evaluation",
            "bench": "bench", "grade": "grade", "classroom": "classroom"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    # Only the command's own module is imported: `doctor` must not load the training stack.
    module = importlib.import_module(f".{COMMANDS[argv[0]]}", __package__)
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
