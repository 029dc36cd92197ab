"""Lesson 01's exercises: the log-probability of each next token, the causal mask, attention.

Taught in: lesson 01's workbook (``exercises/01_causal_masking``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import model
from .harness import Exercise, generator


def _log_prob_cases() -> list[dict]:
    draws = generator(2)
    return [{"logits": torch.randn(T, V, generator=draws) * 3, "ids": torch.randint(0, V, (T,), generator=draws)}
            for T, V in [(2, 3), (3, 5), (6, 11), (20, 50)]]


def _library_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits[:-1].double(), dim=-1).gather(1, ids[1:, None]).squeeze(1).to(logits.dtype)


TOKEN_LOG_PROBS = Exercise(
    name="token_log_probs", lesson="01", subject="token_log_probs", cases=_log_prob_cases,
    reference=_library_log_probs, atol=1e-4)
"""``subject(logits, ids)``: logits (T, V) of one text and its ids (T,) -> the log-probability
(T - 1,) of each of ids[1:] given the tokens before it."""

CAUSAL_MASK = Exercise(
    name="causal_mask", lesson="01", subject="causal_mask_by_hand",
    cases=lambda: [{"T": T} for T in (1, 2, 3, 4, 7, 16)], reference=lambda T: model.causal_mask(T))
"""``subject(T)``: the (T, T) bool mask, True where query i may attend to key j (j <= i)."""


def _attention_cases() -> list[dict]:
    draws = generator(1)
    cases = []
    for shape, causal in [((1, 1, 2), True), ((1, 3, 2), True), ((1, 3, 2), False), ((2, 4, 5, 8), True),
                          ((3, 2, 10, 16), False), ((3, 2, 10, 16), True)]:
        q, k, v = (torch.randn(*shape, generator=draws) * 2 for _ in range(3))
        cases.append({"q": q, "k": k, "v": v, "causal": causal})
    return cases


ATTENTION = Exercise(
    name="attention", lesson="01", subject="attention", cases=_attention_cases,
    reference=lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
"""``subject(q, k, v, causal)``: scaled dot-product attention, q, k, v (..., T, d) -> (..., T, d),
with the causal mask when ``causal``."""

EXERCISES = (TOKEN_LOG_PROBS, CAUSAL_MASK, ATTENTION)
