"""The hosted-CI workflow files (.github/workflows/) and the issue forms (.github/ISSUE_TEMPLATE/):
valid for GitHub, free of the common security mistakes, and with what a fork's CI needs to pass
(the checks in ``FORK_CHECKS``, each shown to catch its planted fault)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
ISSUE_TEMPLATES = ROOT / ".github" / "ISSUE_TEMPLATE"
# zizmor's strictest persona: every audit, the pedantic ones (unnamed jobs, missing concurrency
# limits, undocumented permissions) and those that may give false positives included.
ZIZMOR_PERSONA = "auditor"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
LOCK = "requirements-lock.txt"

Workflows = dict[str, dict[str, Any]]  # file name -> the parsed workflow


def load_workflows(folder: Path = WORKFLOW_DIR) -> Workflows:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yml"))}


def jobs(workflows: Workflows) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, job id, job) for every job of every workflow."""
    return [(file, job_id, job) for file, workflow in workflows.items() for job_id, job in workflow["jobs"].items()]


def _runs_the_course(step: dict[str, Any]) -> bool:
    """A step that runs the course's checks, which call git (.ci/run's `git diff`)."""
    return any(command in step.get("run", "") for command in (".ci/run", "scripts/check.py"))


def _uses(step: dict[str, Any], action: str) -> bool:
    return step.get("uses", "").startswith(f"{action}@")


def git_trusts_the_checkout_first(workflows: Workflows) -> list[str]:
    """In a container job (run as root on a checkout the runner's user owns), a step marks the
    workspace a git safe.directory before any step that runs the course."""
    problems = []
    for file, job_id, job in jobs(workflows):
        steps = job["steps"]
        trust = next((i for i, step in enumerate(steps)
                      if re.search(r'git config --system --add safe\.directory "\$GITHUB_WORKSPACE"',
                                   step.get("run", ""))), None)
        course = next((i for i, step in enumerate(steps) if _runs_the_course(step)), None)
        if course is None:
            problems.append(f"{file}: job {job_id} runs neither .ci/run nor scripts/check.py")
        elif trust is None or trust > course:
            problems.append(f"{file}: job {job_id} runs the course before marking $GITHUB_WORKSPACE safe for git")
    return problems


def pip_cache_is_keyed_on_the_lock(workflows: Workflows) -> list[str]:
    """actions/cache, pinned to a commit, saves pip's cache folder (PIP_CACHE_DIR) under a key
    that changes with the lock, before anything is installed."""
    problems = []
    for file, job_id, job in jobs(workflows):
        steps = job["steps"]
        cache = next((i for i, step in enumerate(steps) if _uses(step, "actions/cache")), None)
        first_install = next((i for i, step in enumerate(steps) if "pip install" in step.get("run", "")), None)
        if cache is None:
            problems.append(f"{file}: job {job_id} has no actions/cache step")
            continue
        settings = steps[cache].get("with", {})
        if not re.fullmatch(r"actions/cache@[0-9a-f]{40}", steps[cache]["uses"]):
            problems.append(f"{file}: job {job_id}'s actions/cache is not pinned to a commit")
        if f"hashFiles('{LOCK}')" not in settings.get("key", ""):
            problems.append(f"{file}: job {job_id}'s cache key does not follow {LOCK}")
        if settings.get("path") != job.get("env", {}).get("PIP_CACHE_DIR"):
            problems.append(f"{file}: job {job_id}'s cache path is not its PIP_CACHE_DIR")
        if first_install is not None and first_install < cache:
            problems.append(f"{file}: job {job_id} installs before restoring the cache")
    return problems


def superseded_runs_are_grouped(workflows: Workflows) -> list[str]:
    """A workflow-level concurrency group with cancel-in-progress set (ci.yml's keeps pushes to
    the default branch)."""
    problems = []
    for file, workflow in workflows.items():
        concurrency = workflow.get("concurrency")
        if not isinstance(concurrency, dict) or "github.workflow" not in str(concurrency.get("group", "")):
            problems.append(f"{file}: no concurrency group per workflow")
        elif not concurrency.get("cancel-in-progress"):
            problems.append(f"{file}: its concurrency group does not cancel superseded runs")
    return problems


def every_job_is_named(workflows: Workflows) -> list[str]:
    return [f"{file}: job {job_id} has no name" for file, job_id, job in jobs(workflows)
            if not str(job.get("name", "")).strip()]


def images_are_pinned_by_digest(workflows: Workflows) -> list[str]:
    problems = []
    for file, job_id, job in jobs(workflows):
        container = job.get("container")
        image = container.get("image") if isinstance(container, dict) else container
        if image is not None and not re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", str(image)):
            problems.append(f"{file}: job {job_id}'s image {image} is not pinned by digest")
    return problems


def the_weekly_job_uses_the_cpu_torch(workflows: Workflows) -> list[str]:
    """The scheduled workflow installs torch only from PyTorch's CPU index, and its fresh
    environment (scripts/check.py --newest) looks there too."""
    scheduled = {file: workflow for file, workflow in workflows.items() if "schedule" in workflow[True]}
    if not scheduled:
        return ["no scheduled (weekly) workflow"]
    problems = []
    for file, job_id, job in jobs(scheduled):
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                if re.search(r"pip install .*\btorch\b", line) and "-r " not in line and CPU_TORCH_INDEX not in line:
                    problems.append(f"{file}: job {job_id} installs torch from PyPI (the CUDA build): {line.strip()}")
            if "scripts/check.py --newest" in step.get("run", ""):
                indexes = {step.get("env", {}).get(name) for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")}
                if CPU_TORCH_INDEX not in indexes:
                    problems.append(f"{file}: job {job_id}'s newest environment takes torch from PyPI (CUDA)")
    return problems


# What a fork's CI needs (issue 35): each check returns the problems it finds, one line each.
FORK_CHECKS: dict[str, Callable[[Workflows], list[str]]] = {
    "safe.directory before the course runs": git_trusts_the_checkout_first,
    "pip cache keyed on the lock": pip_cache_is_keyed_on_the_lock,
    "concurrency group": superseded_runs_are_grouped,
    "every job named": every_job_is_named,
    "image pinned by digest": images_are_pinned_by_digest,
    "weekly job on the CPU torch": the_weekly_job_uses_the_cpu_torch,
}

# A planted fault per check: (check, file, text in it, what replaces it).
PLANTED_FAULTS = [
    ("safe.directory before the course runs", "ci.yml",
     'run: git config --system --add safe.directory "$GITHUB_WORKSPACE"', "run: git --version"),
    ("safe.directory before the course runs", "newest.yml",
     'run: git config --system --add safe.directory "$GITHUB_WORKSPACE"', "run: git --version"),
    ("pip cache keyed on the lock", "ci.yml", "hashFiles('requirements-lock.txt')", "hashFiles('pyproject.toml')"),
    ("pip cache keyed on the lock", "newest.yml", "uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830",
     "uses: actions/cache@v4"),
    ("concurrency group", "ci.yml", "\nconcurrency:", "\nunused-concurrency:"),
    ("concurrency group", "newest.yml", "cancel-in-progress: true", "cancel-in-progress: false"),
    ("every job named", "ci.yml", "name: Lint, tests, browser tests and every lesson (.ci/run)", "# no name"),
    ("image pinned by digest", "newest.yml", "container: python:3.11-bookworm@sha256:",
     "container: python:3.11-bookworm #"),
    ("weekly job on the CPU torch", "newest.yml", "PIP_EXTRA_INDEX_URL: https://download.pytorch.org/whl/cpu",
     "PIP_NO_COLOR: \"1\""),
    ("weekly job on the CPU torch", "newest.yml", "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
     "torch==2.13.0"),
]


@pytest.mark.parametrize("check", FORK_CHECKS)
def test_the_workflows_have_what_a_forks_ci_needs(check):
    assert FORK_CHECKS[check](load_workflows()) == []


@pytest.mark.parametrize("check, file, text, replacement", PLANTED_FAULTS)
def test_each_check_catches_its_planted_fault(tmp_path, check, file, text, replacement):
    """Each check on a copy of the workflows with one fault planted: the check reports it, naming
    the file, and only the planted check needs to (the others may or may not)."""
    shutil.copytree(WORKFLOW_DIR, tmp_path, dirs_exist_ok=True)
    original = (tmp_path / file).read_text()
    assert text in original, f"the fault's text is no longer in {file}: update PLANTED_FAULTS"
    (tmp_path / file).write_text(original.replace(text, replacement))
    problems = FORK_CHECKS[check](load_workflows(tmp_path))
    assert problems and all(problem.startswith(file) for problem in problems), problems


def test_the_workflows_are_valid_github_actions_files():
    """check-jsonschema against the GitHub workflow schema it ships (no network)."""
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sysconfig.get_path("scripts")) / "zizmor"), "--offline", "--no-progress",
                           "--persona", ZIZMOR_PERSONA, *map(str, paths)], capture_output=True, text=True)


def test_the_workflows_pass_the_actions_linter_at_its_strictest():
    """zizmor, offline, with every audit (its auditor persona): actions pinned to a commit, no
    credentials left in the checkout, named jobs, concurrency limits, images pinned, and the rest."""
    result = zizmor(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_at_this_level_reports_an_unnamed_job(tmp_path):
    """The persona matters: zizmor's default one does not report an unnamed job."""
    copy = tmp_path / "ci.yml"
    copy.write_text((WORKFLOW_DIR / "ci.yml").read_text().replace(
        "    name: Lint, tests, browser tests and every lesson (.ci/run)\n", ""))
    result = zizmor(copy)
    assert result.returncode != 0 and "anonymous-definition" in result.stdout, result.stdout + result.stderr


def test_ci_runs_the_course_check_and_the_weekly_job_the_newest_releases():
    ci = yaml.safe_load((WORKFLOW_DIR / "ci.yml").read_text())
    newest = yaml.safe_load((WORKFLOW_DIR / "newest.yml").read_text())
    assert {"push", "pull_request"} <= set(ci[True])  # YAML reads the key "on" as True
    assert any(step.get("run") == ".ci/run" for step in ci["jobs"]["course"]["steps"])
    assert "schedule" in newest[True] and "workflow_dispatch" in newest[True]
    assert any("scripts/check.py --newest" in step.get("run", "") for step in newest["jobs"]["newest"]["steps"])


ISSUE_FORMS = sorted(path for path in ISSUE_TEMPLATES.glob("*.yml") if path.name != "config.yml")
LESSON_STEMS = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_the_issue_forms_and_their_chooser_are_valid_for_github():
    """check-jsonschema against GitHub's issue-form and issue-config schemas it ships."""
    assert [path.name for path in ISSUE_FORMS] == ["bug_report.yml", "lesson_error.yml", "question.yml"]
    for schema, paths in (("vendor.github-issue-forms", ISSUE_FORMS),
                          ("vendor.github-issue-config", [ISSUE_TEMPLATES / "config.yml"])):
        result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                                 *map(str, paths)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def _fields(form: Path) -> dict[str, dict[str, Any]]:
    return {field["id"]: field for field in yaml.safe_load(form.read_text())["body"] if "id" in field}


def test_the_bug_report_asks_for_the_doctors_output_the_lesson_and_the_cell():
    fields = _fields(ISSUE_TEMPLATES / "bug_report.yml")
    assert "python -m course_utils doctor" in fields["doctor"]["attributes"]["label"]
    for field in ("doctor", "lesson", "cell", "what-happened"):
        assert fields[field]["validations"]["required"] is True, field
    assert fields["doctor"]["attributes"]["render"] == "text"  # pasted as a code block, columns kept


@pytest.mark.parametrize("form", [path.name for path in ISSUE_FORMS])
def test_each_forms_lesson_list_is_the_lessons(form):
    """The dropdowns list every lesson in notebooks/ (a new or renamed lesson shows here), then one
    choice for what is not a lesson."""
    options = _fields(ISSUE_TEMPLATES / form)["lesson"]["attributes"]["options"]
    assert options[:-1] == LESSON_STEMS and options[-1].startswith("not ")
