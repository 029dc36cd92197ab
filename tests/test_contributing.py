"""CONTRIBUTING.md's table of faults and bad input names, for each row, the test that proves it:
each such test must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_fault_table_names_exists():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text.split("## Faults and bad input", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert len(named) >= 10
    for path, name in named:
        tree = ast.parse((ROOT / path).read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"CONTRIBUTING.md names {path}::{name}, which does not exist"
