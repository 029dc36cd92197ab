"""Checkers for the exercise workbooks (``exercises/``, made by ``scripts/make_exercises.py``).

Each checker takes the learner's function, runs it and the library's own implementation on fixed
inputs, smallest first, then on random ones, and compares. On the first input where they differ
it raises ``ExerciseFailed`` with one message: the input, what was expected, what came back, what
differs, and the exercise's hint. It never shows the solution's code. When every input agrees it
prints one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F


class ExerciseFailed(AssertionError):
    """The learner's function gave a wrong answer, raised, or was left blank."""


def _show(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        text = str(value.int() if value.dtype == torch.bool else value)
        return f"{text}  (shape {tuple(value.shape)}, {value.dtype})"
    return repr(value)


def _difference(actual: Any, expected: Any, atol: float) -> str | None:
    """What differs between two answers, or None when they agree."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            return f"expected a tensor, got a {type(actual).__name__}"
        if actual.shape != expected.shape:
            return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
        if expected.dtype == torch.bool:
            if actual.dtype != torch.bool:
                return f"dtype {actual.dtype} instead of torch.bool"
            wrong = (actual != expected).nonzero()
            return f"{len(wrong)} entries differ, the first at {wrong[0].tolist()}" if len(wrong) else None
        if not actual.is_floating_point():
            return f"dtype {actual.dtype} instead of a floating-point tensor"
        gap = (actual.double() - expected.double()).abs()
        gap = torch.where(torch.isnan(gap), torch.inf, gap)
        both_minus_inf = torch.isneginf(actual) & torch.isneginf(expected)
        gap = torch.where(both_minus_inf, 0.0, gap)
        if gap.max() > atol:
            worst = (gap == gap.max()).nonzero()[0].tolist()
            return f"largest difference {gap.max():.3g} (tolerance {atol:g}), at {worst}"
        return None
    return None if actual == expected else "values differ"


def run_checks(
    name: str,
    learner: Callable,
    reference: Callable,
    cases: Iterable[dict],
    hint: str | None = None,
    atol: float = 1e-5,
) -> None:
    """Compare ``learner(**case)`` with ``reference(**case)`` for each case, in order (smallest
    first); raise ``ExerciseFailed`` on the first that differs, else print one line."""
    cases = list(cases)
    for case in cases:
        shown = ", ".join(f"{key}={_show(value)}" for key, value in case.items())
        try:
            actual = learner(**{key: value.clone() if isinstance(value, torch.Tensor) else value
                                for key, value in case.items()})
        except NotImplementedError as blank:
            raise ExerciseFailed(f"{name}: not written yet. The task: {blank}") from None
        except Exception as error:  # the learner's bug, reported with the input that caused it
            raise ExerciseFailed(f"{name} raised {type(error).__name__}: {error}\n  on the input: {shown}"
                                 + (f"\n  hint: {hint}" if hint else "")) from error
        expected = reference(**case)
        problem = _difference(actual, expected, atol)
        if problem:
            raise ExerciseFailed(
                f"{name}: wrong answer on the smallest input it fails on\n"
                f"  input:    {shown}\n  expected: {_show(expected)}\n  got:      {_show(actual)}\n"
                f"  problem:  {problem}" + (f"\n  hint:     {hint}" if hint else ""))
    print(f"{name}: correct on all {len(cases)} inputs")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- lesson 01 --------------------------------------------------------------------------------

def causal_mask(learner: Callable[[int], torch.Tensor], hint: str | None = None) -> None:
    """``learner(T)``: the (T, T) bool mask, True where query i may attend to key j (j <= i)."""
    from .model import causal_mask as reference

    run_checks("causal_mask", learner, lambda T: reference(T), [{"T": T} for T in (1, 2, 3, 4, 7, 16)], hint)


def attention(learner: Callable, hint: str | None = None) -> None:
    """``learner(q, k, v, causal)``: scaled dot-product attention, q, k, v (..., T, d) -> (..., T, d),
    with the causal mask when ``causal``."""
    def reference(q, k, v, causal):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    generator = _generator(1)
    cases = []
    for shape, causal in [((1, 1, 2), True), ((1, 3, 2), True), ((1, 3, 2), False), ((2, 4, 5, 8), True),
                          ((3, 2, 10, 16), False), ((3, 2, 10, 16), True)]:
        q, k, v = (torch.randn(*shape, generator=generator) * 2 for _ in range(3))
        cases.append({"q": q, "k": k, "v": v, "causal": causal})
    run_checks("attention", learner, reference, cases, hint)


def token_log_probs(learner: Callable, hint: str | None = None) -> None:
    """``learner(logits, ids)``: logits (T, V) of one text and its ids (T,) -> the log-probability
    (T - 1,) of each of ids[1:] given the tokens before it."""
    def reference(logits, ids):
        return F.log_softmax(logits[:-1].double(), dim=-1).gather(1, ids[1:, None]).squeeze(1).to(logits.dtype)

    generator = _generator(2)
    cases = []
    for T, V in [(2, 3), (3, 5), (6, 11), (20, 50)]:
        cases.append({"logits": torch.randn(T, V, generator=generator) * 3,
                      "ids": torch.randint(0, V, (T,), generator=generator)})
    run_checks("token_log_probs", learner, reference, cases, hint, atol=1e-4)


__all__ = ["ExerciseFailed", "attention", "causal_mask", "run_checks", "token_log_probs"]
