"""``python -m course_utils.evaluate``: the same command as ``python -m course_utils evaluate``,
kept because the bundled models' cards name it (``evaluation.main`` is the command)."""

import sys

from .evaluation import main

if __name__ == "__main__":
    sys.exit(main())
