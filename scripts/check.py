"""Run every check CI runs: lint, the type check, notebook pairing, unit tests, browser tests, and
every lesson under nbval.

    python scripts/check.py                    # everything
    python scripts/check.py --fast             # skip nbval (the lessons)
    python scripts/check.py --lessons --cpu avx2   # only the lessons, on an emulated plain-AVX2 CPU
    python scripts/check.py --lessons --cpu avx2 --busy-core  # and 04, 07, 08, 10 with a core kept busy
    python scripts/check.py --newest           # unit tests and lessons on the newest releases allowed
    python scripts/check.py --oldest           # unit tests on the oldest releases allowed


Each lesson runs in its own nbval session and its time is printed. With ``--busy-core``, the
lessons that assert timings or train in equal time (``BUSY_CORE_LESSONS``) run while another
process, at low priority, spins on one core, as a background job on a learner's laptop might:
their timing claims must hold then too. ``--cpu avx2`` limits
PyTorch, oneDNN and MKL to AVX2 (no AVX-512, no AMX, no native bfloat16), as on many laptops:
the stored outputs must hold there too, and training must pick float32 (checked first).
Nothing reaches a model hub: HF_HUB_OFFLINE=1 is set for every step.

``--newest`` and ``--oldest`` try the ranges in ``pyproject.toml`` rather than the lock: each builds
a fresh virtual environment in ``.venvs/`` (newest: pip's choice of the newest releases the ranges
allow; oldest: uv's ``--resolution lowest-direct``, every direct dependency at its lower bound),
prints the doctor's report of it, and runs the unit tests there (``--newest`` every lesson too).
They need the package index, take minutes and several GB, and are not part of CI: run them before
changing a range or refreshing the lock (CONTRIBUTING.md, "Dependencies").
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course_utils.lesson import lesson_environment

ROOT = Path(__file__).resolve().parent.parent
NBVAL = ["-m", "pytest", "--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-q"]
LINT = ["-m", "ruff", "check", "course_utils", "tests", "scripts", "notebooks", "conftest.py"]
TYPE_CHECK = ["-m", "mypy"]  # course_utils, as pyproject.toml's [tool.mypy] says
UNIT_TESTS = ["-m", "pytest", "tests", "--ignore=tests/browser"]
# In real Chromium; skipped with one line where there is none, except under CI=true, where that fails.
BROWSER_TESTS = ["-m", "pytest", "tests/browser", "-q", "-rs", "--durations=5"]
# What a CPU with only AVX2 gives PyTorch: its own kernels, oneDNN's and MKL's.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# The lessons whose asserts compare timings or train in equal time; --busy-core runs them beside a
# spinner: a process at low priority (nice 19, as a background job or an indexer runs) that keeps
# one core busy whenever the lesson leaves it idle, until check.py ends. Linux schedules each
# session as a group ("autogroup") and a Jupyter kernel runs in a session of its own, so the nice
# value is given to the spinner's own session too; without it the spinner took a whole core from
# the kernel, whatever its nice value, and lesson 08 ran more than three times slower here.
BUSY_CORE_LESSONS = ("04_", "07_", "08_", "10_")
SPINNER = """
import os
os.setsid()
try:
    with open("/proc/self/autogroup", "w") as group:
        group.write("19")
except OSError:  # no autogroups here: the nice value alone decides
    pass
os.nice(19)
parent = os.getppid()
while os.getppid() == parent:
    pass
"""
AUTO_PICKS_FLOAT32 = (
    "from course_utils.hardware import choose_precision; choice = choose_precision('auto', 'cpu', 256); "
    "print('precision auto ->', choice.precision, '|', choice.reason); assert choice.precision == 'float32'"
)


def run_step(name: str, command: list[str], env: dict[str, str], busy_core: bool = False) -> bool:
    """Run one step and print its time; with ``busy_core``, while another process spins on a core."""
    print(f"==> {name}", flush=True)
    started = time.perf_counter()
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if busy_core else None
    try:
        result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    print(f"==> {name}: {'ok' if result.returncode == 0 else 'FAILED'} in {time.perf_counter() - started:.0f} s",
          flush=True)
    return result.returncode == 0


def build_environment(kind: str) -> Path:
    """A fresh virtual environment in .venvs/KIND with the course installed at the newest or the
    oldest releases its ranges allow; returns its Python."""
    folder = ROOT / ".venvs" / kind
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if kind == "newest":
        install += ["--upgrade", "--upgrade-strategy", "eager", "-e", ".[dev]"]
    else:
        pins = folder / "oldest-requirements.txt"
        subprocess.run([sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "--extra", "dev",
                        "--resolution", "lowest-direct", "--python", str(python), "--quiet",
                        "--output-file", str(pins)], cwd=ROOT, check=True)
        install += ["-r", str(pins), "-e", ".[dev]"]
    print(f"==> installing the {kind} releases the ranges allow into {folder.relative_to(ROOT)}", flush=True)
    subprocess.run(install, cwd=ROOT, check=True)
    subprocess.run([str(python), "-m", "course_utils", "doctor", "--quick"], cwd=ROOT)
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="skip running the lessons under nbval")
    parser.add_argument("--lessons", action="store_true", help="run only the lessons under nbval")
    parser.add_argument("--cpu", choices=["native", "avx2"], default="native",
                        help="avx2: run on an emulated CPU with only AVX2 (x86 only)")
    parser.add_argument("--newest", action="store_true",
                        help="unit tests and lessons in a fresh environment of the newest releases allowed")
    parser.add_argument("--oldest", action="store_true",
                        help="unit tests in a fresh environment of the oldest releases allowed")
    parser.add_argument("--unit", action="store_true", help="run only the unit tests (with --lessons: both)")
    parser.add_argument("--busy-core", action="store_true",
                        help="run the lessons that assert timings beside a low-priority process keeping a core busy")
    args = parser.parse_args()
    if args.newest or args.oldest:
        python = build_environment("newest" if args.newest else "oldest")
        only = ["--unit", "--lessons"] if args.newest else ["--unit", "--fast"]
        return subprocess.run([str(python), str(Path(__file__).resolve()), *only], cwd=ROOT).returncode
    env = lesson_environment()  # offline, bundled models, CPU, figures checked
    if args.cpu == "avx2":
        env.update(AVX2_ONLY)
    steps: list[tuple[str, list[str]]] = []
    if args.unit:
        steps.append(("unit tests (with the notebook pairing check)", UNIT_TESTS))
    elif not args.lessons:
        steps += [("lint", LINT), ("type check (mypy)", TYPE_CHECK),
                  ("unit tests (with the notebook pairing check)", UNIT_TESTS),
                  ("browser tests (JupyterLab and the classroom pages in Chromium)", BROWSER_TESTS)]
    if args.cpu == "avx2":
        steps.append(("precision 'auto' on this CPU", ["-c", AUTO_PICKS_FLOAT32]))
    busy = set()
    if not args.fast and (args.lessons or not args.unit):
        for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            kept_busy = args.busy_core and lesson.name.startswith(BUSY_CORE_LESSONS)
            name = f"lesson {lesson.stem} under nbval ({args.cpu} CPU{', one core kept busy' if kept_busy else ''})"
            steps.append((name, [*NBVAL, str(lesson.relative_to(ROOT))]))
            if kept_busy:
                busy.add(name)
    started = time.perf_counter()
    failed = [name for name, command in steps if not run_step(name, command, env, busy_core=name in busy)]
    for name in failed:
        print(f"==> FAILED: {name}")
    print(f"==> all steps took {time.perf_counter() - started:.0f} s")
    print(f"check: {len(steps) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
