"""Lesson 07's exercises: the residual distribution, one speculative step (its decisions on fixed
random numbers, then the distribution of its first token), and greedy acceptance.

Taught in: lesson 07's workbook (``exercises/07_speculative_decoding``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import speculative
from ..sampling import GenerationSettings
from .harness import Exercise, difference, generator, show


def _residual_cases() -> list[dict]:
    draws = generator(11)
    cases = [{"p": torch.tensor([1.0, 0.0]), "q": torch.tensor([0.0, 1.0])},
             {"p": torch.tensor([0.5, 0.3, 0.2]), "q": torch.tensor([0.2, 0.6, 0.2])},
             {"p": torch.tensor([0.25, 0.25, 0.25, 0.25]), "q": torch.tensor([0.7, 0.1, 0.1, 0.1])}]
    for V in (8, 50):
        p, q = (torch.randn(V, generator=draws).mul(2).softmax(-1) for _ in range(2))
        cases.append({"p": p, "q": q})
    return cases


RESIDUAL_DISTRIBUTION = Exercise(
    name="residual_distribution", lesson="07", subject="residual_by_hand", cases=_residual_cases,
    reference=speculative.residual_distribution, atol=1e-6)
"""``subject(p, q)``: norm(max(0, p - q)) of ``speculative.residual_distribution``."""


def _greedy_reference(drafted: torch.Tensor, choices: torch.Tensor) -> tuple[int, int]:
    logits = F.one_hot(choices, int(max(choices.max(), drafted.max())) + 1).float()
    kept, following = speculative.accept_drafts(drafted[None], logits, None, GenerationSettings())
    return kept, int(following)


def _greedy_cases() -> list[dict]:
    draws = generator(12)
    cases = [{"drafted": torch.tensor([3]), "choices": torch.tensor([3, 4])},
             {"drafted": torch.tensor([1]), "choices": torch.tensor([3, 4])},
             {"drafted": torch.tensor([5, 1, 2]), "choices": torch.tensor([5, 9, 2, 7])},  # a match after a mismatch
             {"drafted": torch.tensor([5, 9, 2]), "choices": torch.tensor([5, 9, 2, 7])}]  # all kept: the bonus
    for K in (4, 8):
        choices = torch.randint(0, 4, (K + 1,), generator=draws)
        drafted = torch.where(torch.rand(K, generator=draws) < 0.7, choices[:K], (choices[:K] + 1) % 4)
        cases.append({"drafted": drafted, "choices": choices})
    return cases


GREEDY_ACCEPTANCE = Exercise(
    name="greedy_acceptance", lesson="07", subject="greedy_kept_by_hand", cases=_greedy_cases,
    reference=_greedy_reference, parts=("kept", "token"))
"""``subject(drafted, choices)``: (drafts kept, next token) as greedy ``speculative.accept_drafts``."""

SAMPLING = GenerationSettings(do_sample=True, top_k=0)
STEPS = 4000  # one-draft steps for the distribution of the first token
DISTRIBUTION_P = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
DISTRIBUTION_Q = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
DRAW_ORDER = ("the draw order is part of the task: for each draft in order one torch.rand(1, generator=generator), "
              "up to the first rejection, then one torch.multinomial(..., 1, generator=generator) for the new "
              "token; a step that draws its numbers otherwise (all uniforms first, an inverse CDF, float64) may "
              "follow the right distribution and still differ here")


def _step_cases() -> list[dict]:
    draws = generator(18)
    cases: list[dict] = []
    for K, V, kind in [(1, 3, "random"), (2, 3, "p = q"), (2, 4, "random"), (3, 4, "p = 0 on the drafts"),
                       (4, 6, "random"), (4, 6, "random")]:
        p = torch.rand(K + 1, V, generator=draws) + 0.05
        p = p / p.sum(-1, keepdim=True)
        q = p[:K].clone() if kind == "p = q" else torch.rand(K, V, generator=draws) + 0.05
        q = q / q.sum(-1, keepdim=True)
        drafted = torch.multinomial(q, 1, generator=draws).view(K)
        if kind == "p = 0 on the drafts":
            p[torch.arange(K), drafted] = 0.0
            p = p / p.sum(-1, keepdim=True)
        for seed in (len(cases), len(cases) + 100):
            cases.append({"drafted": drafted, "p": p, "q": q, "seed": seed})
    # Last, the distribution: one-draft steps, each draft drawn from q, give first tokens distributed as p[0].
    return cases + [{"steps": STEPS, "p": DISTRIBUTION_P, "q": DISTRIBUTION_Q, "seed": 19}]


def _first_tokens(step, steps: int, p: torch.Tensor, q: torch.Tensor, seed: int) -> torch.Tensor:
    """How often each token came first out of ``steps`` one-draft steps, drafts drawn from q."""
    draws = generator(seed)
    counts = torch.zeros(p.shape[-1], dtype=torch.long)
    for _ in range(steps):
        drafted = torch.multinomial(q[0], 1, generator=draws)
        kept, token = step(drafted, p, q, draws)
        counts[int(drafted) if int(kept) >= 1 else int(token)] += 1
    return counts


def _step_answer(learner, p, q, seed, drafted=None, steps=None):
    if steps is not None:
        return _first_tokens(learner, steps, p, q, seed)
    answer = learner(drafted, p, q, torch.Generator().manual_seed(seed))
    if not isinstance(answer, tuple | list) or len(answer) != 2:
        return answer  # compared as it is: the message says a (kept, token) pair was expected
    return tuple(int(item) if isinstance(item, int) or getattr(item, "numel", lambda: 0)() == 1 else item
                 for item in answer)


def _step_reference(p, q, seed, drafted=None, steps=None):
    if steps is not None:
        return (p[0] * steps).round().long()
    kept, token = speculative.accept_drafts(drafted[None], p.log(), q, SAMPLING, torch.Generator().manual_seed(seed))
    return kept, int(token)


def _step_compare(actual, expected, case) -> str | None:
    if "steps" not in case:
        problem = difference(actual, expected, 0.0, ("kept", "token"))
        return f"{problem} (given the same random numbers; {DRAW_ORDER})" if problem else None
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return f"expected counts of each first token, got {show(actual)}"
    expected_counts = case["p"][0].double() * case["steps"]
    statistic = float(((actual.double() - expected_counts) ** 2 / expected_counts).sum())
    degrees = len(expected_counts) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(degrees / 2), torch.tensor(statistic / 2)))
    if p_value >= 1e-4:
        return None
    return (f"the first token out is not distributed as p[0]: chi-square {statistic:.1f} on {degrees} degrees of "
            f"freedom, p-value {p_value:.1e}")


SPECULATIVE_STEP = Exercise(
    name="speculative_step", lesson="07", subject="speculative_step_by_hand", cases=_step_cases,
    answer=_step_answer, reference=_step_reference, compare=_step_compare, parts=("kept", "token"),
    needs=("residual_distribution",))
"""``subject(drafted, p, q, generator)``: drafted (K,) tokens, the target's distributions p
(K + 1, V) and the drafter's q (K, V) -> (kept, token), exactly ``accept_drafts``' decisions given
the same random numbers drawn in the same order; then, over 4000 steps, the first token out must
follow p[0] (chi-square p-value above 1e-4)."""

EXERCISES = (RESIDUAL_DISTRIBUTION, SPECULATIVE_STEP, GREEDY_ACCEPTANCE)
