"""The harness every exercise check runs on: an exercise's cases, the learner's answer to each, the
library's answer, and one comparison and one message for all of them.

An ``Exercise`` is data: its fixed inputs (smallest first), how to get the learner's answer to one
(``answer``, the only part that runs the learner's code), the library's answer (``reference``) and
how to compare them. Two places run it:

- in the learner's workbook, ``checks.NAME(subject)`` does everything in the learner's kernel and
  raises ``ExerciseFailed`` with the one message on the first input that fails;
- the grader (``course_utils.grade``) asks the learner's kernel only for the answers
  (``observe``, written to a file with ``torch.save``) and compares them in its own process
  (``judge``), where the learner's code never runs: a learner's code can change what it answers,
  never the verdict.

Every answer goes through ``portable`` first (tensors detached and copied, tuples and numbers kept,
anything else its type's name), in both places, so the two always reach the same verdict.

Taught in: every lesson's workbook (``exercises/``), through ``course_utils.checks``.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..hints import HINTS


class ExerciseFailed(AssertionError):
    """The learner's function gave a wrong answer, raised, or was left blank."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``subject`` is what the lesson marks (a function, or the class of a marked
    method); ``cases()`` the inputs, smallest first, each a dict of keyword arguments;
    ``answer(subject, **case)`` the learner's answer (the only call into the learner's code);
    ``reference(**case)`` the library's. ``parts`` names the items of a tuple answer. ``compare``
    replaces the default comparison (``difference``) where closeness is not the question;
    ``canonical`` makes equally right answers equal before comparing; ``locate(subject, **case)``
    says where inside the learner's code a wrong answer first goes wrong. ``needs``: the exercises
    whose code this one runs through the learner's own classes, so a failure there explains one here."""

    name: str
    lesson: str
    subject: str
    cases: Callable[[], list[dict]]
    reference: Callable[..., Any]
    answer: Callable[..., Any] = lambda subject, **case: subject(**case)
    atol: float = 1e-5
    parts: tuple[str, ...] = ()
    compare: Callable[[Any, Any, dict], str | None] | None = None
    canonical: Callable[[Any], Any] | None = None
    locate: Callable[..., str | None] | None = None
    needs: tuple[str, ...] = ()

    def __call__(self, subject: Any) -> None:
        """Check the learner's ``subject`` on every case, smallest first; raise ``ExerciseFailed``
        on the first that fails, else print one line."""
        cases = self.cases()
        for index, case in enumerate(cases):
            verdict = self.evaluate(case, outcome(self, subject, case), index)
            if verdict is not None:
                if verdict.status == "failed" and self.locate is not None and verdict.where is None:
                    verdict.where = _locate(self, subject, case)
                raise ExerciseFailed(verdict.message(self.name))
        print(f"{self.name}: correct on all {len(cases)} inputs")

    def evaluate(self, case: dict, result: dict, index: int) -> Verdict | None:
        """The verdict on one case from what the learner's code gave (``outcome``'s record), or None
        when it is right. Runs only the library's code."""
        shown = show_case(case)
        if "blank" in result:
            return Verdict("not written", f"not written yet. The task: {result['blank']}", shown, index)
        if "failed" in result:
            return Verdict("failed", result["failed"], shown, index)
        if "raised" in result:
            return Verdict("raised", result["raised"], shown, index)
        actual = result["answer"]
        expected = portable(self.reference(**case))
        if self.compare is not None:
            problem = self.compare(actual, expected, case)
        elif self.canonical is not None and _same_shape(actual, expected):
            problem = difference(self.canonical(actual), self.canonical(expected), self.atol, self.parts)
        else:
            problem = difference(actual, expected, self.atol, self.parts)
        if problem is None and result.get("changed"):
            problem = (f"it changes its input {', '.join(result['changed'])} in place: the caller's tensors must be "
                       "left as they were (write the result into a new tensor)")
        if problem is None:
            return None
        return Verdict("failed", problem, shown, index, expected=show(expected), got=show(actual))


@dataclass
class Verdict:
    """What went wrong on one case: ``status`` is "not written", "failed" or "raised"; ``problem``
    the one line that says what differs (or the error); ``where`` inside the learner's code."""

    status: str
    problem: str
    shown: str
    index: int
    expected: str | None = None
    got: str | None = None
    where: str | None = None

    def message(self, name: str) -> str:
        """The one failure message of every check: the input, what was expected, what came back,
        what differs, and where the hints are."""
        if self.status == "not written":
            return f"{name}: {self.problem}"
        if self.status == "raised":
            return f"{name} raised {self.problem}\n  on the input: {self.shown}" + stuck(name)
        if self.expected is None:  # the learner's code broke a rule of the task before answering
            return f"{name}: {self.problem}\n  on the input: {self.shown}" + stuck(name)
        where = f"\n  where:    {self.where}" if self.where else ""
        return (f"{name}: wrong answer on the smallest input it fails on\n  input:    {self.shown}\n"
                f"  expected: {self.expected}\n  got:      {self.got}\n  problem:  {self.problem}{where}"
                + stuck(name))

    def detail(self) -> str:
        """The grader's one cell: the status and the problem line (and where, when known)."""
        if self.status == "not written":
            return "not written"
        where = f"; where: {self.where}" if self.where else ""
        return f"{self.status}: {_short(self.problem.splitlines()[0])}{where} (input {self.index + 1})"


def stuck(name: str) -> str:
    """The last line of a failure: where a hint is, never the hint itself."""
    return f"\n  stuck?    checks.hint({name!r}) gives a hint; call it again for the next" if name in HINTS else ""


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# ---- answers that travel -----------------------------------------------------------------------

def portable(value: Any) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` reads back: tensors detached
    and copied, tuples, lists and dicts of them, numbers, strings, None; anything else becomes a
    string naming its type, which no reference answer equals."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple | list):
        return type(value)(portable(item) for item in value)
    if isinstance(value, dict):
        return {str(key): portable(item) for key, item in value.items()}
    if type(value).__module__ == "numpy":
        return torch.as_tensor(value).clone() if hasattr(value, "shape") else value.item()
    return f"<a {type(value).__name__}>"


def outcome(exercise: Exercise, subject: Any, case: dict) -> dict:
    """Run the learner's code on one case: {"answer": ...}, or {"blank": task} for the stub,
    {"failed": why} when the code breaks a rule of the task, {"raised": "Error: message"}."""
    arguments = copy.deepcopy(case)
    try:
        answer = portable(exercise.answer(subject, **arguments))
    except NotImplementedError as blank:
        return {"blank": str(blank)}
    except ExerciseFailed as failed:
        return {"failed": str(failed)}
    except Exception as error:  # the learner's bug, reported with the input that caused it
        return {"raised": f"{type(error).__name__}: {error}"}
    changed = [key for key in case if not _unchanged(arguments[key], case[key])]
    return {"answer": answer, "changed": changed} if changed else {"answer": answer}


def _unchanged(after: Any, before: Any) -> bool:
    if isinstance(before, torch.Tensor):
        return isinstance(after, torch.Tensor) and after.shape == before.shape and bool(
            (after == before).logical_or(after.isnan() & before.isnan()).all())
    if isinstance(before, list | tuple | dict):
        return type(after) is type(before) and after == before
    return True


def _locate(exercise: Exercise, subject: Any, case: dict) -> str | None:
    try:
        return exercise.locate(subject, **case)  # type: ignore[misc]
    except Exception:  # the learner's code may raise here too: then there is nothing to point at
        return None


def observe(name: str, subject: Any, path: str) -> None:
    """In the learner's kernel, for the grader: the learner's answers to every case of exercise
    ``name``, up to the first that is not an answer, saved to ``path`` (written whole or not at all)."""
    from . import EXERCISES

    exercise = EXERCISES[name]
    records = []
    for case in exercise.cases():
        records.append(outcome(exercise, subject, case))
        if "answer" not in records[-1]:
            break
    _save(records, Path(path))


def explain(name: str, subject: Any, index: int, path: str) -> None:
    """In the learner's kernel, for the grader: where the learner's code goes wrong on case
    ``index`` (a string, or None), saved to ``path``."""
    from . import EXERCISES

    exercise = EXERCISES[name]
    where = _locate(exercise, subject, exercise.cases()[index]) if exercise.locate is not None else None
    _save([where if isinstance(where, str) else None], Path(path))


def _save(value: Any, path: Path) -> None:
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    torch.save(value, staging)
    os.replace(staging, path)


def judge(name: str, records: list[dict]) -> Verdict | None:
    """In the grader's process: the verdict on the learner's answers (``observe``'s records), or
    None when every case is right. Only the library's code runs here."""
    from . import EXERCISES

    exercise = EXERCISES[name]
    cases = exercise.cases()
    if len(records) > len(cases):
        return Verdict("failed", f"{len(records)} answers for {len(cases)} inputs", "", 0)
    for index, (case, record) in enumerate(zip(cases, records)):
        if not isinstance(record, dict) or not record.keys() & {"answer", "blank", "failed", "raised"}:
            return Verdict("failed", "the answers came back malformed", show_case(case), index)
        verdict = exercise.evaluate(case, record, index)
        if verdict is not None:
            return verdict
    if len(records) < len(cases):
        return Verdict("failed", f"answers to {len(records)} of {len(cases)} inputs", "", len(records))
    return None


# ---- comparing ---------------------------------------------------------------------------------

def show(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        text = str(value.int() if value.dtype == torch.bool else value)
        return f"{text}  (shape {tuple(value.shape)}, {value.dtype})"
    return repr(value)


def show_case(case: dict) -> str:
    return ", ".join(f"{key}={show(value)}" for key, value in case.items())


def _kind(t: torch.Tensor) -> str:
    return "bool" if t.dtype == torch.bool else "floating-point" if t.is_floating_point() else "integer"


def _same_shape(actual: Any, expected: Any) -> bool:
    return isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and actual.shape == expected.shape


def difference(actual: Any, expected: Any, atol: float, parts: tuple[str, ...] = ()) -> str | None:
    """What differs between two answers, or None when they agree: tensors of the same shape and
    kind, floats within ``atol`` (infinities and NaN never match a finite value), integers and
    masks exactly; a tuple item by item, each named by ``parts`` when given."""
    if isinstance(expected, torch.Tensor):
        return _tensor_difference(actual, expected, atol)
    if isinstance(expected, tuple):
        return _tuple_difference(actual, expected, atol, parts)
    if isinstance(expected, int):  # bool included
        number = _number(actual)
        if number is None:
            return f"expected {'True or False' if isinstance(expected, bool) else 'an integer'}, got {show(actual)}"
        return None if number == expected else f"{number:g} instead of {expected}"
    if isinstance(expected, float):
        return _float_difference(actual, expected, atol)
    return None if actual == expected else f"{show(actual)} instead of {show(expected)}"


def _tuple_difference(actual: Any, expected: tuple, atol: float, parts: tuple[str, ...]) -> str | None:
    if not isinstance(actual, tuple | list) or len(actual) != len(expected):
        what = " (" + ", ".join(parts) + ")" if parts else ""
        return f"expected a tuple of {len(expected)}{what}, got {show(actual)}"
    for index, (mine, theirs) in enumerate(zip(actual, expected)):
        if problem := difference(mine, theirs, atol):
            label = parts[index] if index < len(parts) else f"item {index}"
            return f"{label}: {problem}"
    return None


def _float_difference(actual: Any, expected: float, atol: float) -> str | None:
    number = _number(actual)
    if number is None:
        return f"expected a number, got a {type(actual).__name__}"
    gap = abs(number - expected)
    if not math.isfinite(number) and number != expected:
        return f"{number} instead of {expected:.6g}"
    return None if gap <= atol * max(1.0, abs(expected)) else f"off by {gap:.3g} (tolerance {atol:g}, relative)"


def _number(value: Any) -> float | None:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def _tensor_difference(actual: Any, expected: torch.Tensor, atol: float) -> str | None:
    if not isinstance(actual, torch.Tensor):
        return f"expected a tensor, got a {type(actual).__name__}"
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
    if _kind(expected) != "floating-point":  # masks, token ids and counts: exactly equal
        if _kind(actual) != _kind(expected):
            return f"dtype {actual.dtype} instead of a {_kind(expected)} tensor ({expected.dtype})"
        wrong = (actual != expected).nonzero()
        return f"{len(wrong)} entries differ, the first at {wrong[0].tolist()}" if len(wrong) else None
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} instead of {expected.dtype}"
    if actual.numel() == 0:
        return None
    gap = (actual.double() - expected.double()).abs()
    gap = torch.where(torch.isnan(gap), torch.inf, gap)
    same_infinity = torch.isinf(actual) & (actual.double() == expected.double())
    gap = torch.where(same_infinity, 0.0, gap)
    if gap.max() > atol:
        worst = (gap == gap.max()).nonzero()[0].tolist()
        return f"largest difference {gap.max():.3g} (tolerance {atol:g}), at {worst}"
    return None


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_checks(
    name: str,
    learner: Callable,
    reference: Callable,
    cases: list[dict],
    atol: float = 1e-5,
    canonical: Callable[[Any], Any] | None = None,
    locate: Callable[..., str | None] | None = None,
) -> None:
    """Compare ``learner(**case)`` with ``reference(**case)`` for each case, smallest first, with
    the one message every check gives: a quick check outside the course's exercises."""
    Exercise(name=name, lesson="", subject="", cases=lambda: list(cases),
             reference=reference, atol=atol, canonical=canonical,
             locate=(lambda subject, **case: locate(**case)) if locate is not None else None)(learner)


