"""``python -m course_utils COMMAND``: one pattern for every command."""

from __future__ import annotations

import importlib
import inspect

import pytest

from course_utils.__main__ import COMMANDS, main


def test_without_a_command_it_lists_them_all(capsys):
    assert main([]) == 2 and main(["nonsense"]) == 2
    listing = capsys.readouterr().err
    assert all(f"python -m course_utils {name}" in listing for name in COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_is_its_modules_main_and_answers_help(name, capsys):
    module = importlib.import_module(f"course_utils.{COMMANDS[name]}")
    assert list(inspect.signature(module.main).parameters) == ["argv"]
    assert inspect.signature(module.main).return_annotation in ("int", int)
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
