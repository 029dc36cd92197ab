"""The hosted-CI workflow files (.github/workflows/): valid for GitHub Actions, free of the
common security mistakes, and running what the README says they run."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_the_workflows_are_valid_github_actions_files():
    """check-jsonschema against the GitHub workflow schema it ships (no network)."""
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflows_pass_the_actions_linter():
    """zizmor, offline: actions pinned to a commit, no credentials left in the checkout, and the rest
    of its audits."""
    result = subprocess.run([str(Path(sysconfig.get_path("scripts")) / "zizmor"), "--offline", "--no-progress",
                             *map(str, WORKFLOWS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_course_check_and_the_weekly_job_the_newest_releases():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    newest = yaml.safe_load((ROOT / ".github" / "workflows" / "newest.yml").read_text())
    assert {"push", "pull_request"} <= set(ci[True])  # YAML reads the key "on" as True
    assert any(step.get("run") == ".ci/run" for step in ci["jobs"]["course"]["steps"])
    assert "schedule" in newest[True] and "workflow_dispatch" in newest[True]
    assert any("scripts/check.py --newest" in step.get("run", "") for step in newest["jobs"]["newest"]["steps"])
