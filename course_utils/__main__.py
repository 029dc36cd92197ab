"""``python -m course_utils COMMAND``: the course's commands that are not a lesson.

    python -m course_utils doctor      # this environment against what the course needs and CI tested
"""

from __future__ import annotations

import sys

from . import doctor

COMMANDS = {"doctor": doctor.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
