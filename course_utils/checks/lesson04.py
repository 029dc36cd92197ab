"""Lesson 04's exercises: one cached attention step, the shifted causal mask, greedy decoding
through a KV cache, checked for its tokens and for the calls it makes, and attention by the
online softmax, checked for its output and for the largest tensor it writes.

Taught in: lesson 04's workbook (``exercises/04_kv_cache``).
"""

from __future__ import annotations

import math

import torch

from .. import model
from ..generation import generate
from ..measure import bytes_written
from .harness import Exercise, difference, generator
from .models import BUNDLED, TINY, prompts, reference_model


def _cached_step_cases() -> list[dict]:
    draws = generator(13)
    cases = []
    for B, H, T_past, D in [(1, 1, 0, 2), (1, 1, 1, 2), (1, 2, 3, 4), (2, 4, 9, 8), (3, 2, 30, 16)]:  # 0: empty cache
        new = [torch.randn(B, H, 1, D, generator=draws) * 2 for _ in range(3)]
        cached = [torch.randn(B, H, T_past, D, generator=draws) * 2 for _ in range(2)]
        cases.append(dict(zip(("q_new", "k_new", "v_new", "cached_k", "cached_v"), new + cached)))
    return cases


CACHED_ATTENTION_STEP = Exercise(
    name="cached_attention_step", lesson="04", subject="cached_step_by_hand", cases=_cached_step_cases,
    reference=lambda q_new, k_new, v_new, cached_k, cached_v: model.attend(
        q_new, torch.cat([cached_k, k_new], dim=2), torch.cat([cached_v, v_new], dim=2))[0])
"""``subject(q_new, k_new, v_new, cached_k, cached_v)``: one new token's attention over the cache
and itself, as ``model.attend`` computes it."""

SHIFTED_CAUSAL_MASK = Exercise(
    name="shifted_causal_mask", lesson="04", subject="shifted_mask_by_hand",
    cases=lambda: [{"n_new": n_new, "n_past": n_past}
                   for n_new, n_past in [(1, 0), (1, 3), (2, 1), (3, 9), (5, 0), (4, 20)]],
    reference=lambda n_new, n_past: model.causal_mask(n_new, n_past=n_past))
"""``subject(n_new, n_past)``: ``model.causal_mask(n_new, n_past=n_past)``."""


class CallRecorder(torch.nn.Module):
    """A model that records how it is called: the number of tokens and the cache of each call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, object]] = []  # (tokens, cache) of each call

    def forward(self, input_ids: torch.Tensor, *arguments, cache=None, **keywords) -> torch.Tensor:
        self.calls.append((input_ids.shape[1], cache))
        return self.inner(input_ids, *arguments, cache=cache, **keywords)


def _generation_cases() -> list[dict]:
    shapes = [(TINY, 1, 1), (TINY, 1, 3), (TINY, 2, 4), (TINY, 1, 4), (BUNDLED, 1, 5), (BUNDLED, 2, 4)]
    return [{"model": label, "prompt": prompt, "max_new_tokens": new}
            for (label, prompt), new in zip(prompts(17, shapes), (1, 3, 5, 12, 10, 6))]


def _generation_answer(learner, model, prompt, max_new_tokens):
    """(tokens, tokens per model call, how many different caches, calls without a cache)."""
    recorder = CallRecorder(reference_model(model))
    tokens = learner(recorder, prompt, max_new_tokens)
    caches = [cache for _, cache in recorder.calls]
    distinct = len({id(cache) for cache in caches if cache is not None})
    return tokens, torch.tensor([size for size, _ in recorder.calls], dtype=torch.long), distinct, caches.count(None)


def _generation_reference(model, prompt, max_new_tokens):
    sizes = torch.tensor([prompt.shape[1]] + [1] * (max_new_tokens - 1), dtype=torch.long)
    return generate(reference_model(model), prompt, max_new_tokens, use_cache=False), sizes, 1, 0


def _generation_compare(actual, expected, case) -> str | None:
    """The tokens of greedy decoding, from the prompt once and then one new token per call, all
    with one cache (a last call on the final token is allowed)."""
    if not isinstance(actual, tuple) or len(actual) != 4:
        return "the answer came back malformed"
    if problem := difference(actual[0], expected[0], 0.0):
        return f"tokens: {problem}"
    sizes, distinct, without = actual[1].tolist(), actual[2], actual[3]
    if sizes and sizes[0] == case["prompt"].shape[1] and all(size == 1 for size in sizes[1:]) \
            and distinct == 1 and without == 0:
        return None
    return (f"the cache is not used as it should be: run the prompt once, then only the newest token, all with "
            f"one cache (your model calls were on {sizes} tokens, with {distinct} different cache(s)"
            + (f", {without} without one" if without else "") + ")")


CACHED_GENERATION = Exercise(
    name="cached_generation", lesson="04", subject="cached_greedy_by_hand", cases=_generation_cases,
    answer=_generation_answer, reference=_generation_reference, compare=_generation_compare,
    parts=("tokens", "tokens per model call", "caches used", "calls without a cache"))
"""``subject(model, prompt, max_new_tokens)``: greedy decoding through a KV cache, prompt (B, T) ->
(B, T + max_new_tokens), the tokens of greedy decoding without one. The model must be called on
the prompt once and then on one new token at a time, always with the same cache."""



def _online_softmax_cases() -> list[dict]:
    draws = generator(29)
    cases = []
    # (B, H, T, D, block_size, score scale): every T > block_size and > D but the last two, so that a
    # T x T matrix is larger than any tensor the task allows; scale 6 gives scores near 100, where
    # exp overflows float32 unless the maximum is subtracted.
    for B, H, T, D, block_size, scale in [(1, 1, 5, 2, 2, 1.0), (1, 1, 7, 2, 3, 1.0), (2, 3, 9, 4, 4, 1.0),
                                           (1, 2, 11, 4, 1, 1.0), (2, 2, 13, 4, 5, 6.0), (3, 2, 24, 8, 8, 2.0),
                                           (1, 1, 1, 2, 4, 1.0), (2, 1, 6, 2, 8, 1.0)]:
        q, k, v = (torch.randn(B, H, T, D, generator=draws) for _ in range(3))
        cases.append({"q": q * scale, "k": k * scale, "v": v, "block_size": block_size})
    return cases


def _online_softmax_answer(learner, q, k, v, block_size):
    """(output, the shape of the largest new tensor written (by bytes), and its number of elements)."""
    outputs = []
    counted = bytes_written(lambda: outputs.append(learner(q, k, v, block_size)))
    return outputs[0], counted.largest_shape, math.prod(counted.largest_shape)


def _online_softmax_reference(q, k, v, block_size):
    B, H, T, D = q.shape
    allowed = (B, H, T, max(block_size, D))
    return model.attend(q, k, v)[0], allowed, B * H * T * max(block_size, D)


def _online_softmax_compare(actual, expected, case) -> str | None:
    """The output of causal attention, to 1e-4, with no new tensor larger than (B, H, T, block_size)
    (or (B, H, T, D), the output's size, when D is larger), counted in elements."""
    if not isinstance(actual, tuple) or len(actual) != 3:
        return "the answer came back malformed"
    if problem := difference(actual[0], expected[0], 1e-4):
        return f"output: {problem}"
    if actual[2] > expected[2]:
        return (f"it wrote a tensor of shape {tuple(actual[1])}, more than one block of scores: take the keys "
                f"block_size = {case['block_size']} at a time, so that no tensor is larger than {expected[1]}")
    return None


ONLINE_SOFTMAX = Exercise(
    name="online_softmax", lesson="04", subject="online_softmax_attention_by_hand", cases=_online_softmax_cases,
    answer=_online_softmax_answer, reference=_online_softmax_reference, compare=_online_softmax_compare,
    parts=("output", "largest tensor written", "its number of elements"))
"""``subject(q, k, v, block_size)``: causal attention (B, H, T, D) of q, k, v (B, H, T, D), as
``model.attend`` computes it, taking the keys ``block_size`` at a time with a running maximum and
sum: no new tensor may be larger than (B, H, T, max(block_size, D))."""

EXERCISES = (CACHED_ATTENTION_STEP, SHIFTED_CAUSAL_MASK, CACHED_GENERATION, ONLINE_SOFTMAX)
