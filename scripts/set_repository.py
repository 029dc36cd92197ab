"""Write the course's repository address, ``[project.urls] Repository`` in pyproject.toml, into
every file that spells a GitHub repository address: the README's badge, the licences' credit and
the issue templates today. A fork changes that one line of pyproject.toml and runs

    python scripts/set_repository.py           # rewrite every other address to pyproject's
    python scripts/set_repository.py --check   # list each line that spells another; exit 1 if any

``tests/test_repository_address.py`` runs the check. A link to another project's repository is
not the course's: add its owner/name to ``OTHER_PROJECTS`` and it is left alone.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A GitHub repository's address, scheme, "github.com", OWNER and NAME, up to the next "/", "#",
# quote, bracket or space.
GITHUB_REPOSITORY = re.compile(r"https://github\.com/([A-Za-z0-9-]+)/([A-Za-z0-9._-]+)")
# "owner/name" of other projects' repositories the files link to
OTHER_PROJECTS: frozenset[str] = frozenset({
    "apoorvumang/prompt-lookup-decoding",  # Saxena 2023, prompt lookup decoding (docs/references.bib, lesson 07)
})


def repository_address(root: Path = ROOT) -> str:
    """pyproject.toml's ``[project.urls] Repository``, checked to be a GitHub repository's address."""
    address = tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    match = GITHUB_REPOSITORY.fullmatch(address)
    if match is None or match.group(2).endswith((".", ".git")):
        raise ValueError(f"[project.urls] Repository = {address!r} is not a GitHub repository's address")
    return address


def text_files(root: Path) -> list[Path]:
    """The files git tracks under ``root`` (every file, outside a clone), pyproject.toml excepted,
    that read as UTF-8 text."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True)
    if listing.returncode == 0:
        paths = [root / name for name in listing.stdout.split("\0") if name]
    else:
        paths = [path for path in root.rglob("*") if ".git" not in path.relative_to(root).parts]
    files = []
    for path in paths:
        if path.is_file() and path.name != "pyproject.toml":
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def _other_address(match: re.Match[str], address: str) -> str | None:
    """The course address this match spells, when it is not ``address``; None otherwise."""
    name = match.group(2).removesuffix(".git").rstrip(".")
    spelled = f"https://github.com/{match.group(1)}/{name}"
    if f"{match.group(1)}/{name}" in OTHER_PROJECTS or spelled == address:
        return None
    return spelled


def mismatches(root: Path = ROOT) -> list[str]:
    """"path:line: the address it spells" for each address that is not pyproject's."""
    address = repository_address(root)
    found = []
    for path in text_files(root):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in GITHUB_REPOSITORY.finditer(line):
                other = _other_address(match, address)
                if other is not None:
                    found.append(f"{path.relative_to(root)}:{number}: {other}")
    return found


def rewrite(root: Path = ROOT) -> list[Path]:
    """Replace every other course address by pyproject's; return the files changed."""
    address = repository_address(root)
    changed = []
    for path in text_files(root):
        text = path.read_text(encoding="utf-8")

        def replace(match: re.Match[str]) -> str:
            other = _other_address(match, address)
            return match.group(0) if other is None else match.group(0).replace(other, address, 1)

        new = GITHUB_REPOSITORY.sub(replace, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list the lines spelling another address; change nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course's folder (default: this clone)")
    args = parser.parse_args(argv)
    address = repository_address(args.root)
    if args.check:
        found = mismatches(args.root)
        for line in found:
            print(line)
        if found:
            print(f"{len(found)} line(s) spell another address than pyproject.toml's {address}: "
                  f"run python scripts/set_repository.py")
        return 1 if found else 0
    for path in rewrite(args.root):
        print(f"wrote {address} into {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
