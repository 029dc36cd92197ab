"""Lesson 08's exercises: rotary position embeddings (with each row's own positions), RMSNorm,
SwiGLU, and repeating key/value heads for grouped-query attention.

Taught in: lesson 08's workbook (``exercises/08_modern_decoders``).
"""

from __future__ import annotations

import torch

from .. import llama
from .harness import Exercise, generator
from .models import learners_module


def _rope_cases() -> list[dict]:
    """Small first; then batches whose rows have their own positions, as left padding gives them
    (each row starts after its padding), and positions far from 0."""
    draws = generator(21)
    cases = []
    for B, H, T, D, starts in [(1, 1, 1, 2, (0,)), (1, 1, 2, 2, (0,)), (1, 1, 3, 4, (0,)), (1, 2, 5, 8, (3,)),
                               (2, 1, 3, 4, (0, 2)), (2, 3, 7, 16, (0, 0)), (3, 2, 6, 8, (0, 4, 1)),
                               (1, 4, 9, 64, (100,))]:
        positions = torch.stack([torch.arange(start, start + T) for start in starts])  # (B, T)
        cos, sin = llama.rope_cos_sin(positions, D)
        cases.append({"x": torch.randn(B, H, T, D, generator=draws), "cos": cos, "sin": sin})
    return cases


APPLY_ROPE = Exercise(
    name="apply_rope", lesson="08", subject="apply_rope_by_hand", cases=_rope_cases, reference=llama.apply_rope,
    atol=1e-5)
"""``subject(x, cos, sin)``: x (B, H, T, D) with each pair (x_i, x_{i+D/2}) rotated by its
position's angle; cos and sin (B, T, D) as ``llama.rope_cos_sin`` gives them, row by row."""


def _rms_cases() -> list[dict]:
    draws = generator(22)
    return [{"x": torch.randn(*shape, generator=draws) * scale + shift, "eps": eps}
            for shape, scale, shift, eps in [((1, 2), 1.0, 0.0, 1e-6), ((2, 3), 2.0, 1.0, 1e-5),
                                             ((2, 4, 8), 3.0, 1.0, 1e-6), ((1, 5, 16), 0.05, 0.0, 1e-2)]]


def _library_rms(x: torch.Tensor, eps: float) -> llama.RMSNorm:
    module = llama.RMSNorm(x.shape[-1], eps)
    with torch.no_grad():
        module.weight.copy_(torch.linspace(0.5, 1.5, x.shape[-1]))
    return module


def _rms_answer(learner_class: type, x: torch.Tensor, eps: float) -> torch.Tensor:
    module = learners_module(learner_class, (x.shape[-1], eps), _library_rms(x, eps).state_dict(), "RMSNorm")
    with torch.no_grad():
        return module(x)


def _rms_reference(x: torch.Tensor, eps: float) -> torch.Tensor:
    with torch.no_grad():
        return _library_rms(x, eps)(x)


RMS_NORM = Exercise(
    name="rms_norm", lesson="08", subject="RMSNormByHand", cases=_rms_cases, answer=_rms_answer,
    reference=_rms_reference, atol=1e-5)
"""``subject(size, eps)`` holds a ``weight`` (size,); its ``forward(x)`` divides x by its
root-mean-square over the last dimension, eps added to the mean square, and scales by the weight."""


def _swiglu_config(n_embd: int, hidden: int) -> llama.LlamaConfig:
    return llama.LlamaConfig(n_embd=n_embd, n_head=1, n_kv_heads=1, intermediate_size=hidden)


def _library_swiglu(n_embd: int, hidden: int) -> llama.SwiGLU:
    torch.manual_seed(n_embd)
    module = llama.SwiGLU(_swiglu_config(n_embd, hidden))
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.7)
    return module.eval()


def _swiglu_answer(learner_class: type, n_embd: int, hidden: int, x: torch.Tensor) -> torch.Tensor:
    module = learners_module(learner_class, _swiglu_config(n_embd, hidden),
                             _library_swiglu(n_embd, hidden).state_dict(), "SwiGLU")
    with torch.no_grad():
        return module(x)


def _swiglu_reference(n_embd: int, hidden: int, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _library_swiglu(n_embd, hidden)(x)


def _swiglu_cases() -> list[dict]:
    draws = generator(23)
    return [{"n_embd": C, "hidden": hidden, "x": torch.randn(B, T, C, generator=draws) * 2}
            for B, T, C, hidden in [(1, 1, 2, 3), (1, 3, 4, 6), (2, 5, 16, 40)]]


SWIGLU = Exercise(
    name="swiglu", lesson="08", subject="SwiGLUByHand", cases=_swiglu_cases, answer=_swiglu_answer,
    reference=_swiglu_reference, atol=1e-5)
"""``subject(config)`` builds ``gate_proj``, ``up_proj`` and ``down_proj``; its ``forward(x)`` is
Llama's gated feed-forward network, x (B, T, C) -> (B, T, C)."""


def _repeat_cases() -> list[dict]:
    """Every value distinct, so that a misplaced repeat shows; a batch of two."""
    return [{"x": torch.arange(B * K * T * D, dtype=torch.float32).view(B, K, T, D), "n_rep": n_rep}
            for B, K, T, D, n_rep in [(1, 1, 1, 1, 1), (1, 1, 1, 1, 2), (1, 2, 1, 1, 2), (1, 2, 2, 3, 3),
                                      (2, 4, 3, 2, 2), (2, 2, 5, 4, 4), (3, 3, 2, 2, 1)]]


REPEAT_KV = Exercise(
    name="repeat_kv", lesson="08", subject="repeat_kv", cases=_repeat_cases, reference=llama.repeat_kv, atol=0.0)
"""``subject(x, n_rep)``: x (B, K, T, D) -> (B, K * n_rep, T, D), each key/value head n_rep times
with its repeats side by side, so that query head h reads key/value head h // n_rep."""

EXERCISES = (APPLY_ROPE, RMS_NORM, SWIGLU, REPEAT_KV)
