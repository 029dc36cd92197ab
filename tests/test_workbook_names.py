"""No lesson rebinds a name its workbook's check or hint cells use.

A workbook (``scripts/make_exercises.py``) is its lesson with ``from course_utils import checks``
inserted after the first code cell and a check cell, ``checks.NAME(SUBJECT)``, after each
exercise's cell; the learner calls ``checks.hint("NAME")`` anywhere. A lesson cell that binds
``checks`` (lesson 08 once kept a table's configurations in a dict of that name) breaks every
check and hint after it, and a cell that binds an exercise's subject after its definition makes
a check run again later test something else. Bindings in a function's or a class's own scope do
not count; those at module level, in loops, ``with`` and ``if`` blocks, do.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

MODULE = "checks"  # what the workbook imports, and its check and hint cells call
IMPORT_CELL = f"from course_utils import {MODULE}"
CHECK_CELL = re.compile(rf"^{MODULE}\.(?P<name>\w+)\((?P<subject>\w+)\)$")
STATEMENTS = {  # how each kind of statement binds a name, for the failure message
    ast.Assign: "assignment", ast.AnnAssign: "annotated assignment", ast.AugAssign: "augmented assignment",
    ast.For: "for target", ast.AsyncFor: "for target", ast.With: "with ... as", ast.AsyncWith: "with ... as",
    ast.Delete: "del", ast.Match: "match capture",
}


class ModuleBindings(ast.NodeVisitor):
    """The names a piece of code binds in the module's namespace, each as (name, line, how): at
    module level, in loops and blocks, through ``global`` in a function or class body, and by ``:=``
    in a comprehension; not the locals of functions, lambdas, classes and comprehensions."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, str]] = []
        self.globals: set[str] | None = None  # None: module scope; else the names a body declares global
        self.how = "assignment"

    def bind(self, name: str, node: ast.AST, how: str) -> None:
        if self.globals is None or name in self.globals:
            self.found.append((name, node.lineno, how))

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            outer, self.how = self.how, STATEMENTS.get(type(node), "assignment")
            super().generic_visit(node)
            self.how = outer
        else:
            super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.bind(node.id, node, self.how)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.bind(node.target.id, node, "assignment expression (:=)")
        self.visit(node.value)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            name = alias.asname or alias.name.split(".")[0]
            self.bind(name, node, "star import" if name == "*" else "import")

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name, node, "except ... as")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name, node, "match capture")
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest, node, "match capture")
        self.generic_visit(node)

    def in_scope(self, body: list[ast.stmt] | ast.expr) -> None:
        """Visit a function's, lambda's or class's body in its own scope: only what it declares
        global reaches the module."""
        statements = body if isinstance(body, list) else []
        declared = {name for node in statements for inner in self.same_scope(node)
                    if isinstance(inner, ast.Global) for name in inner.names}
        outer, self.globals = self.globals, declared
        for node in statements or [body]:
            self.visit(node)
        self.globals = outer

    @staticmethod
    def same_scope(node: ast.AST) -> Iterator[ast.AST]:
        """``node`` and what it contains, without entering nested functions, lambdas or classes."""
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                yield from ModuleBindings.same_scope(child)

    def visit_arguments(self, node: ast.arguments) -> None:  # defaults and annotations: the enclosing scope
        for child in [*node.defaults, *node.kw_defaults]:
            if child is not None:
                self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for child in [*node.decorator_list, node.args]:
            self.visit(child)
        self.bind(node.name, node, "def")
        self.in_scope(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self.in_scope(node.body)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for child in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(child)
        self.bind(node.name, node, "class")
        self.in_scope(node.body)

    def visit_comprehension(self, node: ast.comprehension) -> None:  # its target is the comprehension's own
        for child in [node.iter, *node.ifs]:
            self.visit(child)


def code(source: str) -> str:
    """A cell's source as Python: IPython magics and shell lines blanked, so that lines keep their numbers."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


def module_bindings(source: str) -> list[tuple[str, int, str]]:
    visitor = ModuleBindings()
    visitor.visit(ast.parse(code(source)))
    return visitor.found


def describe(where: str, source: str, line: int, name: str, how: str) -> str:
    text = code(source).split("\n")[line - 1].strip()
    return f"{where}, line {line}: {how} binds {name!r}: {text}"


def lesson_rebindings(lesson: Path) -> tuple[list[str], list[str]]:
    """The lesson's exercise subjects, and each binding of ``checks`` anywhere in it or of a subject
    after the statement that defines it for its exercise, described."""
    cells = [cell for cell in jupytext.read(lesson).cells if cell.cell_type == "code"]
    defined: dict[str, tuple[int, int]] = {}  # subject -> (its cell, the last line of its definition)
    for number, cell in enumerate(cells):
        if "# EXERCISE" not in cell.source:
            continue
        _, found = make_exercises.blank_cell(cell.source, f"{lesson.name}, code cell {number}")
        tree = ast.parse(code(cell.source))
        for _, subject in found:
            definition = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
                          and node.name == subject]
            assert definition, f"{lesson.name}, code cell {number}: {subject!r} is not defined at the top level"
            defined[subject] = (number, definition[-1].end_lineno)
    problems = []
    for number, cell in enumerate(cells):
        for name, line, how in module_bindings(cell.source):
            names = {MODULE, *defined} if name == "*" else {name}
            for bound in names:
                if bound == MODULE:
                    why = "the workbook's checks and hints use the module it imports"
                elif bound in defined and (number, line) > defined[bound]:
                    why = f"the exercise's check is given {bound} as code cell {defined[bound][0]} defines it"
                else:
                    continue
                problems.append(f"{describe(f'{lesson.name}, code cell {number}', cell.source, line, bound, how)} "
                                f"({why})")
    return list(defined), problems


LESSONS = [lesson for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
           if "# EXERCISE" in lesson.read_text()]
WORKBOOKS = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_lessons_with_exercises_and_workbooks():
    assert LESSONS and WORKBOOKS


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_no_lesson_rebinds_checks_or_an_exercise_subject(lesson):
    subjects, problems = lesson_rebindings(lesson)
    assert subjects, f"{lesson.name} marks exercises but none was found"
    assert not problems, "a name the workbook's check cells use is bound again:\n" + "\n".join(problems)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_no_lesson_uses_checks(lesson):
    """The workbook adds a check cell after each exercise; a lesson that called the checker too would
    have its workbook run each check twice. A lesson proves its piece equal to the library's instead."""
    cells = [cell for cell in jupytext.read(lesson).cells if cell.cell_type == "code"]
    uses = [f"{lesson.name}, code cell {number}, line {node.lineno}"
            for number, cell in enumerate(cells) for node in ast.walk(ast.parse(code(cell.source)))
            if isinstance(node, ast.Name) and node.id == MODULE
            or isinstance(node, ast.alias) and MODULE in (node.name.split(".")[-1], node.asname)]
    assert not uses, f"the lesson uses {MODULE!r}, which only its workbook should: " + "; ".join(uses)


@pytest.mark.parametrize("workbook", WORKBOOKS, ids=lambda p: p.stem)
def test_workbook_binds_checks_only_in_its_import_cell(workbook):
    cells = [cell for cell in nbformat.read(workbook, as_version=4).cells if cell.cell_type == "code"]
    assert sum(cell.source == IMPORT_CELL for cell in cells) == 1, f"{workbook.name}: not one {IMPORT_CELL!r} cell"
    problems, checked = [], {}
    for number, cell in enumerate(cells):
        if check := CHECK_CELL.match(cell.source):
            checked[check["subject"]] = number
        for name, line, how in module_bindings(cell.source):
            if cell.source == IMPORT_CELL:
                continue
            if name in (MODULE, "*") or checked.get(name, number) < number:
                problems.append(describe(f"{workbook.name}, code cell {number}", cell.source, line, name, how))
    assert checked, f"{workbook.name} has no check cell"
    assert not problems, "the workbook binds a name its check cells use:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, bound", [
    ("checks = {}", {"checks"}),
    ("checks += 1", {"checks"}),
    ("x: int = 1", {"x"}),
    ("for checks in range(2):\n    pass", {"checks"}),
    ("with open('f') as checks:\n    pass", {"checks"}),
    ("import numpy as checks", {"checks"}),
    ("from course_utils import checks", {"checks"}),
    ("import os.path", {"os"}),
    ("def checks():\n    pass", {"checks"}),
    ("class checks:\n    x = 1", {"checks"}),
    ("if True:\n    a, (b, *c) = 1, (2, 3)", {"a", "b", "c"}),
    ("while True:\n    checks = 1\n    break", {"checks"}),
    ("try:\n    pass\nexcept Exception as checks:\n    pass", {"checks"}),
    ("del checks", {"checks"}),
    ("[y := i for i in range(3)]", {"y"}),
    ("def f():\n    global checks\n    checks = 1", {"f", "checks"}),
    ("match 1:\n    case [a, *b] | {'k': a, **b}:\n        pass", {"a", "b"}),
    ("%time checks = 1\nx = 1", {"x"}),
    # local scopes: not the module's
    ("def f(checks=1):\n    checks = 2\n    for i in range(2):\n        pass", {"f"}),
    ("g = lambda checks: checks", {"g"}),
    ("class C:\n    checks = 1\n    def m(self):\n        checks = 2", {"C"}),
    ("[checks for checks in range(3)]", set()),
    ("checks.x = 1\nchecks[0] = 2", set()),
])
def test_module_bindings_finds_every_way_to_bind_a_name(source, bound):
    assert {name for name, _, _ in module_bindings(source)} == bound
