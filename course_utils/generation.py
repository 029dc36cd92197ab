"""Autoregressive generation for a MiniGPT or a transformers causal LM.

``generate`` follows ``transformers``' ``model.generate()`` for the arguments they share and
returns the prompt followed by the new tokens, shape (B, T_prompt + new).
"""

from __future__ import annotations

import torch

from .evaluation import model_context
from .model import MiniGPT, positions_from_attention_mask


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits (B, V) by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    Rule of transformers' ``TemperatureLogitsWarper``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    _check_logits(logits)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (B, V); set the rest to -inf.

    Every token whose logit equals the k-th largest is kept, so ties can keep more than k.
    ``top_k = 0`` keeps everything; at least ``min_tokens_to_keep`` tokens are kept.
    Rule of transformers' ``TopKLogitsWarper``.
    """
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k}")
    _check_logits(logits)
    if top_k == 0:
        return logits
    k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability sums to at
    least ``top_p`` (in (0, 1]); set the rest of each row (B, V) to -inf.

    The token whose probability makes the sum cross ``top_p`` is kept. In the ascending sort a
    token is removed when the cumulative probability up to and including it is <= 1 - top_p;
    the ``min_tokens_to_keep`` most likely tokens are always kept. Rule of transformers'
    ``TopPLogitsWarper``.
    """
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    _check_logits(logits)
    if top_p == 1:
        return logits
    sorted_logits, sorted_indices = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(-1, sorted_indices, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the tokens whose probability is at least ``min_p`` (in [0, 1]) times the most likely
    token's probability; set the rest of each row (B, V) to -inf.

    The ``min_tokens_to_keep`` most likely tokens are always kept. Rule of transformers'
    ``MinPLogitsWarper``.
    """
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    _check_logits(logits)
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, keep, False)
    return logits.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """The CTRL rule (Keskar et al., 2019): for every token that occurs in ``input_ids`` (B, T),
    divide its logit by ``penalty`` if positive, multiply it if negative. ``penalty`` > 0; 1 is
    no change, above 1 discourages repeats. Rule of transformers' ``RepetitionPenaltyLogitsProcessor``.
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    _check_logits(logits)
    seen = logits.gather(-1, input_ids)
    penalised = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, input_ids, penalised)


def apply_frequency_presence_penalty(
    logits: torch.Tensor, generated_ids: torch.Tensor, frequency_penalty: float, presence_penalty: float
) -> torch.Tensor:
    """The OpenAI rule: logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
    where count[j] is how often token j occurs in ``generated_ids`` (B, T). Penalties in [-2, 2];
    positive values discourage repeats, the frequency term more the more often a token appeared.
    """
    for name, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
        if not -2 <= value <= 2:
            raise ValueError(f"{name} must be in [-2, 2], got {value}")
    _check_logits(logits)
    ones = torch.ones_like(generated_ids, dtype=logits.dtype)
    counts = torch.zeros_like(logits).scatter_add_(-1, generated_ids, ones)
    return logits - counts * frequency_penalty - (counts > 0).to(logits.dtype) * presence_penalty


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
