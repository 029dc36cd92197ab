"""Write ``requirements-lock.txt``: every package the course installs, transitive ones included,
pinned to the versions CI tests. Refresh it with this one command, then run the full check:

    python scripts/lock.py && python -m pip install torch==2.13.0 -r requirements-lock.txt -e ".[dev]" \\
        && python scripts/check.py

The lock is resolved by uv (``uv pip compile``) from ``pyproject.toml`` and its ``dev`` extra,
for CI's platform (CPython 3.11, Linux x86_64). It keeps the versions already pinned where they
still fit the ranges, so adding a dependency changes only what it needs; ``--upgrade`` moves
every package to the newest release its range allows.
Other platforms install through it too; a package the lock does not list for them (a macOS-only
dependency, say) is then resolved by pip within the ranges.

torch is resolved but not written into the lock. Its CPU build (``2.13.0+cpu``, from PyTorch's
CPU index or a local folder) and its CUDA build (``2.13.0`` on PyPI, which pulls about 3 GB of
CUDA libraries) share a version, so the lock is resolved against the CPU build (none of those
libraries among the pins) and the install commands pin ``torch==TORCH_VERSION`` beside it: a torch
of that version already installed, of either build, is kept.

Where the CPU build comes from: ``--find-links DIR`` (a folder holding its wheel), else the
find-links folders pip is configured with (``pip config``), else PyTorch's CPU index.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-lock.txt"
TORCH_VERSION = "2.13.0"  # the torch CI tests; the README's commands pin the same (tests/test_packaging.py)
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
COMPILE_COMMAND = f"python scripts/lock.py  (torch=={TORCH_VERSION} is pinned by the install command, not here)"


def configured_find_links() -> list[str]:
    """The find-links folders pip is configured with, if any."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    folders = []
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += [folder for folder in value.strip("'\"").split() if Path(folder).is_dir()]
    return list(dict.fromkeys(folders))


def uv_compile(output: Path, extra: list[str]) -> None:
    """Run ``uv pip compile`` on pyproject.toml's dependencies and dev extra into ``output``."""
    with tempfile.TemporaryDirectory() as folder:
        torch_pin = Path(folder) / "torch.txt"
        torch_pin.write_text(f"torch=={TORCH_VERSION}\n")
        command = [sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "--extra", "dev", *PLATFORM,
                   "--constraint", str(torch_pin), "--no-emit-package", "torch", "--custom-compile-command",
                   COMPILE_COMMAND, "--output-file", str(output), "--quiet", *extra]
        subprocess.run(command, cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--find-links", action="append", default=None, metavar="DIR",
                        help="a folder holding torch's CPU wheel (repeatable)")
    parser.add_argument("--upgrade", action="store_true",
                        help="move every package to the newest release its range allows (default: keep the "
                             "current pins that still fit, and resolve only what is new or no longer fits)")
    args = parser.parse_args()
    folders = args.find_links or configured_find_links()
    if folders:
        extra = [argument for folder in folders for argument in ("--find-links", folder)]
    else:
        extra = ["--extra-index-url", PYTORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]
    staging = LOCK.with_name(LOCK.name + ".tmp")
    try:
        if LOCK.exists() and not args.upgrade:  # uv prefers the versions already in its output file
            staging.write_text(LOCK.read_text())
        else:
            extra.append("--upgrade")
        uv_compile(staging, extra)
        text = staging.read_text()
        if "nvidia" in text:
            raise SystemExit("the lock names CUDA libraries: torch was resolved from its CUDA build; "
                             "pass --find-links with a folder holding the CPU wheel")
        staging.replace(LOCK)
    finally:
        staging.unlink(missing_ok=True)
    print(f"wrote {LOCK.relative_to(ROOT)}: {text.count('==')} packages pinned, torch=={TORCH_VERSION} beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
