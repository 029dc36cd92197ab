"""``python -m course_utils.evaluate``: the same command as ``python -m course_utils evaluate``,
kept because the bundled models' cards name it (``evaluation.main`` is the command).

Taught in: no lesson; the bundled models' cards.
"""

import sys

from .evaluation import main

if __name__ == "__main__":
    sys.exit(main())
