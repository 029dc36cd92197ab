"""The install files agree, and CI runs the README's test command."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:")[1]
    listed = {line.strip()[2:] for line in pip_section.splitlines() if line.strip().startswith("- ")}
    assert listed - {"-e ."} == declared
    assert "-e ." in listed


def readme_commands():
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"^(python -m pip install .+)$", readme, flags=re.MULTILINE)


def test_readme_has_the_two_quick_start_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2, commands
    open_command, test_command = commands
    assert "jupyter lab" in open_command and "scripts/check.py" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
