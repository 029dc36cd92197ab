"""Run every check CI runs: lint, notebook pairing, unit tests, and every lesson under nbval.

    python scripts/check.py            # everything
    python scripts/check.py --fast     # skip nbval (the lessons)

Nothing reaches a model hub: HF_HUB_OFFLINE=1 is set for every step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBVAL = [
    "-m", "pytest", "--nbval", "--nbval-current-env",
    "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "notebooks/",
]
STEPS = [
    ("lint", ["-m", "ruff", "check", "course_utils", "tests", "scripts", "notebooks", "conftest.py"]),
    ("unit tests (with the notebook pairing check)", ["-m", "pytest", "tests"]),
    ("lessons under nbval", NBVAL),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="skip running the lessons under nbval")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    env.pop("COURSE_MODEL", None)  # stored outputs come from the bundled default
    env.pop("COURSE_DRAFT_MODEL", None)
    for name, command in STEPS:
        if args.fast and command is NBVAL:
            continue
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env)
        print(f"==> {name}: {'ok' if result.returncode == 0 else 'FAILED'} "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
