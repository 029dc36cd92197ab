"""Lesson 06's exercises: the scores that find a head's job (previous token, mean distance,
entropy, induction), each of one head's attention weights.

Taught in: lesson 06's workbook (``exercises/06_attention``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import attention
from .harness import Exercise, generator


def _head_weights() -> list[dict]:
    """One head's causal attention weights (T, T), small first: uniform, one-hot, random ones with
    exact zeros."""
    draws = generator(8)
    weights = [torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None] for T in (2, 3)]  # uniform
    previous = torch.zeros(4, 4)
    previous[0, 0] = 1.0
    previous[torch.arange(1, 4), torch.arange(0, 3)] = 1.0  # every query on the token before
    weights.append(previous)
    for T in (5, 16):
        scores = torch.randn(T, T, generator=draws) * 2
        scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        weights.append(scores.softmax(-1))
    sparse = weights[-1].clone()
    sparse[sparse < 0.05] = 0.0  # exact zeros inside the past too
    weights.append(sparse / sparse.sum(-1, keepdim=True))
    return [{"w": w} for w in weights]


def _scalar(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32).reshape(())


def _score(name: str, subject: str, rule: Callable) -> Exercise:
    """An exercise on one of `course_utils.attention`'s head scores, of one head's weights (T, T)."""
    return Exercise(name=name, lesson="06", subject=subject, cases=_head_weights,
                    answer=lambda learner, w: _scalar(learner(w)), reference=lambda w: rule([w[None, None]])[0, 0])


# The mean of w[i, i-1] over queries i >= 1.
PREVIOUS_TOKEN_SCORE = _score("previous_token_score", "previous_token_by_hand", attention.previous_token_score)
# The mean over queries of sum_j w[i, j] (i - j), in tokens.
MEAN_DISTANCE = _score("mean_distance", "mean_distance_by_hand", attention.mean_distance)
# The mean over queries of -sum_j w[i, j] ln w[i, j], with 0 ln 0 = 0.
ATTENTION_ENTROPY = _score("attention_entropy", "entropy_by_hand", attention.entropy)


def _induction_cases() -> list[dict]:
    draws = generator(16)
    cases = []
    for block in (2, 3, 4, 8):
        T = 2 * block
        ideal = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # uniform in the first copy
        ideal[block:] = 0.0
        ideal[torch.arange(block, T), torch.arange(1, block + 1)] = 1.0  # the token after the first occurrence
        random_rows = torch.rand(T, T, generator=draws).tril()
        cases += [{"w": ideal, "block": block}, {"w": random_rows / random_rows.sum(-1, keepdim=True), "block": block}]
    return cases


INDUCTION_SCORE = Exercise(
    name="induction_score", lesson="06", subject="induction_score_by_hand", cases=_induction_cases,
    answer=lambda learner, w, block: _scalar(learner(w, block)),
    reference=lambda w, block: attention.induction_score([w[None, None]], block)[0, 0])
"""``subject(w, block)``: one head's weights (T, T) on a block repeated twice (T = 2 block) -> the
mean, over the queries i of the second copy, of w[i, i - block + 1] (a 0-d tensor)."""

EXERCISES = (PREVIOUS_TOKEN_SCORE, MEAN_DISTANCE, ATTENTION_ENTROPY, INDUCTION_SCORE)
