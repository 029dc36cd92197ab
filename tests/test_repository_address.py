"""The repository's address lives in one place, pyproject.toml's ``[project.urls] Repository``:
every file that spells a GitHub repository address spells that one (scripts/set_repository.py
writes it), and a fork that changes the one line gets every other one rewritten."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("set_repository", ROOT / "scripts" / "set_repository.py")
assert SPEC is not None and SPEC.loader is not None
set_repository = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(set_repository)

ADDRESS = set_repository.repository_address()
# Built from parts, so that this file does not itself spell a second address.
FORK = "https://github.com/" + "a-fork/the-course"


def test_every_file_spells_pyprojects_address():
    assert set_repository.mismatches() == [], "run python scripts/set_repository.py"


def test_the_badge_the_licences_and_the_issue_templates_carry_it():
    readme = (ROOT / "README.md").read_text()
    assert f"[![CI]({ADDRESS}/actions/workflows/ci.yml/badge.svg)]({ADDRESS}/actions/workflows/ci.yml)" in readme
    assert f"Copyright (c) 2026 the contributors to {ADDRESS}\n" in (ROOT / "LICENSE").read_text()
    credit = (ROOT / "LICENSE-CONTENT.md").read_text()
    assert f"by the contributors to\n> <{ADDRESS}>, under CC BY 4.0" in credit
    assert f"url: {ADDRESS}#troubleshooting" in (ROOT / ".github" / "ISSUE_TEMPLATE" / "config.yml").read_text()


@pytest.fixture
def fork(tmp_path):
    """A copy of the files that carry the address, in a fork whose pyproject.toml names its own."""
    for name in ("README.md", "LICENSE", "LICENSE-CONTENT.md", ".github", "docs/teaching.md"):
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text().replace(ADDRESS, FORK))
    return tmp_path


def test_a_fork_that_changes_pyproject_is_told_every_line_then_the_script_rewrites_them(fork):
    stale = set_repository.mismatches(fork)
    assert {line.split(":")[0] for line in stale} >= {"README.md", "LICENSE", "LICENSE-CONTENT.md",
                                                      ".github/ISSUE_TEMPLATE/config.yml"}
    assert all(line.endswith(ADDRESS) for line in stale)
    assert set_repository.main(["--root", str(fork), "--check"]) == 1
    assert set_repository.main(["--root", str(fork)]) == 0
    assert set_repository.mismatches(fork) == []
    assert f"Copyright (c) 2026 the contributors to {FORK}\n" in (fork / "LICENSE").read_text()
    assert f"[![CI]({FORK}/actions/workflows/ci.yml/badge.svg)]({FORK}/actions/workflows/ci.yml)" in \
        (fork / "README.md").read_text()


def test_a_link_to_another_project_is_reported_until_listed_as_one(fork, monkeypatch):
    other = "https://github.com/" + "another/project"
    (fork / "docs" / "teaching.md").write_text(f"See {other}/blob/main/x.md.\n")
    (fork / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    assert set_repository.mismatches(fork) == [f"docs/teaching.md:1: {other}"]
    monkeypatch.setattr(set_repository, "OTHER_PROJECTS", frozenset({"another/project"}))
    assert set_repository.mismatches(fork) == []


def test_an_address_that_is_not_a_github_repository_is_refused(fork):
    pyproject = fork / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(FORK, "https://gitlab.com/a/b"))
    with pytest.raises(ValueError, match="not a GitHub repository's address"):
        set_repository.repository_address(fork)
