"""Measures of generated text: diversity, repetition and likelihood.

Taught in: lesson 03 (comparing decoding strategies).
"""

from __future__ import annotations

import math

import torch

from .adapters import logits_fn


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of ``tokens`` in order (overlapping)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(sequences: list[list[int]], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams / all n-grams, pooled over ``sequences``.

    1.0 means no n-gram is ever repeated; values near 0 mean the same few n-grams over and over.
    """
    grams = [gram for tokens in sequences for gram in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(tokens: list[int], n: int = 4) -> float:
    """Fraction of the n-grams of ``tokens`` that already occurred earlier in the same sequence."""
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    grams = ngrams(tokens, n)
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


@torch.no_grad()
def continuation_perplexity(model: torch.nn.Module, sequence: torch.Tensor, prompt_length: int) -> float:
    """exp(mean negative log-likelihood) of ``sequence[prompt_length:]`` (1-D ids) under ``model``,
    each token given everything before it. Low: text the model itself finds likely."""
    if not 0 < prompt_length < len(sequence):
        raise ValueError(f"prompt_length must be in [1, {len(sequence) - 1}], got {prompt_length}")
    logits = logits_fn(model)(sequence[None, :])[0, prompt_length - 1 : -1].float()
    nll = torch.nn.functional.cross_entropy(logits, sequence[prompt_length:])
    return math.exp(nll.item())
