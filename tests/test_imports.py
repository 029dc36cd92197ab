"""The library's shape (issue 23): no import cycles between its modules, a function-level import
of a sibling module only where a comment says why, and every module saying which
lessons teach it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_utils"


def sibling_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, at module level?) for each ``from . import x`` or ``from .x import y``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found += [(name.split(".")[0], node.lineno, id(node) in top_level) for name in names]
    return found


def lazy_reexport_lines(path: Path) -> set[int]:
    """Lines of the imports inside a module-level ``__getattr__``: a re-export of names that moved
    to a module which imports this one. It runs at the first use of such a name, after both
    modules have loaded, so it is not an edge of the import graph."""
    tree = ast.parse(path.read_text())
    return {node.lineno for function in tree.body
            if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
            for node in ast.walk(function) if isinstance(node, ast.ImportFrom)}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {path.stem for path in package.glob("*.py")}
    return {path.stem: {name for name, line, _ in sibling_imports(path)
                        if name in modules and line not in lazy_reexport_lines(path)}
            for path in package.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports as a list of modules (the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "visiting" or "done"
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "visiting"
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "visiting":
                return path[path.index(imported):] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_library_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_a_function_level_import_of_a_sibling_says_why(path):
    lines = path.read_text().splitlines()
    def explained(line: int) -> bool:  # a comment on the import's line or just above it
        return "#" in lines[line - 1] or lines[line - 2].strip().startswith("#")

    unexplained = [f"{path.name}:{line}: {lines[line - 1].strip()}"
                   for _, line, top in sibling_imports(path) if not top and not explained(line)]
    assert not unexplained, "function-level imports without a comment saying why:\n" + "\n".join(unexplained)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_each_module_says_which_lessons_teach_it(path):
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "Taught in:" in docstring, f"{path.name}: its docstring should end with 'Taught in: lesson NN ...'"


def test_importing_the_package_does_not_import_transformers():
    """``python -m course_utils doctor`` must start, and report, when transformers is broken."""
    import subprocess
    import sys

    code = "import sys, course_utils, course_utils.doctor; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_lazy_reexport_is_not_an_edge_of_the_graph():
    graph = import_graph()
    assert "attention" in graph["attention_explorer"] and "attention_explorer" not in graph["attention"]
    assert "chat" in graph["chat_box"] and "chat_box" not in graph["chat"]


@pytest.mark.parametrize("module", ["course_utils.hardware", "course_utils.timing"])
def test_the_timing_rule_and_the_hardware_choices_do_not_import_transformers(module):
    """Lower layers stay below transformers: the model measurements that need it live in ``measure``."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("old,new", [("timing", "measure"), ("train", "recipes")])
def test_a_name_that_moved_keeps_its_old_import_path(old, new):
    """DESIGN.md: when a name moves to a new module, the old import path keeps working."""
    import importlib

    moved, home = importlib.import_module(f"course_utils.{old}"), importlib.import_module(f"course_utils.{new}")
    names = moved.MEASURE_NAMES if old == "timing" else moved.RECIPE_NAMES
    for name in names:
        assert getattr(moved, name) is getattr(home, name), name
