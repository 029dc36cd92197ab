"""Autoregressive generation for a MiniGPT or a transformers causal LM.

``generate`` follows ``transformers``' ``model.generate()`` for the arguments they share and
returns the prompt followed by the new tokens, shape (B, T_prompt + new).
"""

from __future__ import annotations

import torch

from .evaluation import model_context
from .model import MiniGPT, positions_from_attention_mask


def next_token_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The logits (B, V) for the token after ``input_ids`` (B, T), as float32."""
    if isinstance(model, MiniGPT):
        return model(input_ids, attention_mask=attention_mask)[:, -1, :].float()
    position_ids = None if attention_mask is None else positions_from_attention_mask(attention_mask)
    output = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.logits[:, -1, :].float()


def _vocab_size(model: torch.nn.Module) -> int:
    return model.config.vocab_size


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int = 20,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + new).

    Greedy (``do_sample=False``) picks the most likely token; sampling draws from
    softmax(logits / temperature) with ``generator``. A row that produces ``eos_token_id`` is
    finished: its later positions are filled with ``pad_token_id`` (default: the EOS id), and
    generation stops when every row has finished. ``attention_mask`` (B, T) marks the real
    tokens of a left-padded batch with 1.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
    vocab_size = _vocab_size(model)
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(
            f"input_ids must lie in [0, {vocab_size - 1}] (the model's vocabulary), got values "
            f"from {int(input_ids.min())} to {int(input_ids.max())}"
        )
    context = model_context(model)
    if input_ids.shape[1] + max_new_tokens > context:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's context of {context} tokens"
        )
    if pad_token_id is None:
        pad_token_id = eos_token_id
    sequences = input_ids
    mask = attention_mask
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        logits = next_token_logits(model, sequences, mask)
        if do_sample:
            probs = torch.softmax(logits / temperature, dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_tokens = logits.argmax(dim=-1)
        if eos_token_id is not None:
            next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_token_id), next_tokens)
            finished |= next_tokens == eos_token_id
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if finished.all():
            break
    return sequences
