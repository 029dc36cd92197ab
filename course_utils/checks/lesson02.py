"""Lesson 02's exercises: splitting heads, and the forward passes of the attention module, the
block and the whole mini-GPT, each loaded with a tiny random GPT's and the bundled model's weights.

Taught in: lesson 02's workbook (``exercises/02_mini_gpt``).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import model
from .harness import Exercise, generator
from .models import BUNDLED, TINY, FirstOutput, first_differing_module, learners_module, reference_model


def _split_heads_cases() -> list[dict]:
    draws = generator(3)
    cases = [{"t": torch.arange(B * T * C, dtype=torch.float32).view(B, T, C), "n_head": H}
             for B, T, C, H in [(1, 1, 2, 2), (1, 2, 4, 2), (2, 3, 6, 3), (1, 5, 8, 4)]]
    return cases + [{"t": torch.randn(B, T, C, generator=draws), "n_head": H}
                    for B, T, C, H in [(2, 7, 32, 4), (3, 9, 64, 8)]]


SPLIT_HEADS = Exercise(
    name="split_heads", lesson="02", subject="split_heads", cases=_split_heads_cases, reference=model.split_heads,
    atol=0.0)
"""``subject(t, n_head)``: (B, T, C) -> (B, H, T, D), head h holding channels h*D .. (h+1)*D - 1."""


def _module_cases(seed: int, lengths: tuple[int, ...]) -> list[dict]:
    draws = generator(seed)
    cases = []
    for label in (TINY, BUNDLED):
        config = reference_model(label).config
        for batch, T in zip((1, 1, 2), lengths):
            cases.append({"model": label, "x": torch.randn(batch, min(T, config.context_length), config.n_embd,
                                                           generator=draws)})
    return cases


def _attention_module(learner_class: type, label: str) -> torch.nn.Module:
    reference = reference_model(label)
    last_block: Any = reference.h[-1]  # (a ModuleList's items are typed only as modules)
    return learners_module(learner_class, reference.config, last_block.attn.state_dict(), "the attention module")


def _attention_answer(learner_class: type, model: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _attention_module(learner_class, model)(x)


def _attention_reference(model: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        last_block: Any = reference_model(model).h[-1]
        return last_block.attn(x)[0]


ATTENTION_MODULE = Exercise(
    name="attention_module", lesson="02", subject="CausalSelfAttentionByHand",
    cases=lambda: _module_cases(11, (1, 3, 9)), answer=_attention_answer, reference=_attention_reference)
"""``subject(config)`` builds ``c_attn`` and ``c_proj`` as GPT-2 does; its ``forward(x)`` is
masked multi-head self-attention, x (B, T, C) -> (B, T, C). Loaded with the last block's attention
weights of each model, it must give that module's output."""


def _block(learner_class: type, label: str) -> torch.nn.Module:
    """The learner's block with the library's attention and MLP inside: only its wiring is tested."""
    library_block: Any = reference_model(label).h[0]
    block = learners_module(learner_class, reference_model(label).config, library_block.state_dict(), "the first block")
    block.attn, block.mlp = FirstOutput(library_block.attn), library_block.mlp
    return block


def _block_answer(learner_class: type, model: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _block(learner_class, model)(x)


def _block_reference(model: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return reference_model(model).h[0](x)[0]


BLOCK_FORWARD = Exercise(
    name="block_forward", lesson="02", subject="BlockByHand", cases=lambda: _module_cases(12, (1, 3, 9)),
    answer=_block_answer, reference=_block_reference,
    locate=lambda learner_class, model, x: first_differing_module(_block(learner_class, model),
                                                                  reference_model(model).h[0], x, 1e-5))
"""``subject(config)`` builds ``ln_1``, ``attn``, ``ln_2`` and ``mlp``; its ``forward(x)`` is a
pre-norm block, x (B, T, C) -> (B, T, C), checked with the library's attention and MLP inside."""


def _gpt_cases() -> list[dict]:
    draws = generator(13)
    cases = []
    for label in (TINY, BUNDLED):
        config = reference_model(label).config
        for batch, T in ((1, 1), (1, 5), (2, min(40, config.context_length))):
            cases.append({"model": label, "ids": torch.randint(0, config.vocab_size, (batch, T), generator=draws)})
    return cases


def _gpt(learner_class: type, label: str) -> torch.nn.Module:
    reference = reference_model(label)
    return learners_module(learner_class, reference.config, reference.state_dict(), "the whole model")


def _gpt_answer(learner_class: type, model: str, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _gpt(learner_class, model)(ids)


def _gpt_reference(model: str, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return reference_model(model)(ids)


GPT_FORWARD = Exercise(
    name="gpt_forward", lesson="02", subject="MiniGPTByHand", cases=_gpt_cases, answer=_gpt_answer,
    reference=_gpt_reference, atol=1e-4, needs=("attention_module", "block_forward"),
    locate=lambda learner_class, model, ids: first_differing_module(_gpt(learner_class, model),
                                                                    reference_model(model), ids, 1e-5))
"""``subject(config)`` builds ``wte``, ``wpe``, the blocks ``h``, ``ln_f`` and a tied ``lm_head``
(the learner's blocks and attention inside); its ``forward(ids)`` gives logits (B, T, V), which
must be the library's; a mismatch names the first layer whose output differs."""

EXERCISES = (SPLIT_HEADS, ATTENTION_MODULE, BLOCK_FORWARD, GPT_FORWARD)
