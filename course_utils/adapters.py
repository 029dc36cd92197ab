"""One interface over the course's own models and ``transformers`` causal LMs.

Every lesson runs on a course model (``MiniGPT``, ``MiniLlama``: anything built on
``model.CourseModel``) or on a ``transformers`` model such as GPT-2. The two differ in small
ways: what ``forward`` returns (logits, or an output object with ``.logits``), what the config
calls the context length and the layer count, how a KV cache is passed, how attention weights
are read, whether the model ships generation defaults. This module is the one
place that tells them apart, always by the same test, ``is_course_model``.

Taught in: lesson 02 and lesson 06 (``attention_weights``, also importable from
``course_utils.attention``), lesson 03 (``next_token_logits``, the step of ``generate``;
``model_generation_config``, the defaults ``generate`` takes from a transformers model), lesson 05
(``logits_fn`` for the evaluation), lesson 07 (``logits_after``, the verifier's and the
draft model's forward passes); lesson 04 (a MiniGPT's cached step takes ``decode.decode_step``,
through ``decode.cached_forward``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .decode import cached_forward
from .model import CourseModel, KVCache, check_token_ids, positions_from_attention_mask

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # (B, T) ids -> (B, T, V) logits


def is_course_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is one of the course's own (MiniGPT, MiniLlama), not a transformers model."""
    return isinstance(model, CourseModel)


def logits_fn(model: torch.nn.Module) -> LogitsFn:
    """A function from ids (B, T) to logits (B, T, V) for a course model or a transformers model."""
    if is_course_model(model):
        return model
    return lambda ids: model(ids).logits


def model_context(model: torch.nn.Module) -> int:
    """The longest sequence ``model`` accepts (a course model, transformers' GPT-2 or Llama)."""
    config = model.config
    for name in ("context_length", "n_positions", "max_position_embeddings"):
        if hasattr(config, name):
            return getattr(config, name)
    raise ValueError(f"cannot tell the context length of a {type(model).__name__}")


def layers_and_heads(model: torch.nn.Module) -> tuple[int, int]:
    """(layers, attention heads) of a course model or a transformers model."""
    config: Any = model.config  # either kind's, each with its own names
    if is_course_model(model):
        return config.n_layer, config.n_head
    return config.num_hidden_layers, config.num_attention_heads


def vocabulary_size(model: torch.nn.Module) -> int:
    """How many token ids ``model`` knows (both kinds call it ``config.vocab_size``)."""
    config: Any = model.config
    return config.vocab_size


def model_generation_config(model: torch.nn.Module):
    """The generation defaults ``model`` ships with: a transformers model's ``generation_config``
    (a ``GenerationConfig``, from its ``generation_config.json``), None for a course model."""
    return None if is_course_model(model) else model.generation_config


def model_device(model: torch.nn.Module) -> torch.device:
    """The device ``model``'s parameters are on."""
    return next(model.parameters()).device


def check_prompt(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> None:
    """The checks every generation loop (``generate``, ``speculative_generate``) makes of its
    prompt, each a ``ValueError`` that names the problem: ``input_ids`` on the model's device,
    (B, T) token ids of an integer dtype within the vocabulary, at least one token per row, and
    T + ``max_new_tokens`` within the model's context."""
    device = model_device(model)
    if input_ids.device != device:  # first: ids on another device cannot even be compared
        raise ValueError(
            f"input_ids is on {input_ids.device} but the model is on {device}; "
            f"move one of them, e.g. input_ids.to({str(device)!r})"
        )
    check_token_ids(input_ids, vocabulary_size(model))
    if input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must hold at least one token per row (a prompt), got shape "
                         f"{tuple(input_ids.shape)}; to start from nothing, start from the end-of-text token")
    context = model_context(model)
    if input_ids.shape[1] + max_new_tokens > context:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's context of {context} tokens"
        )


def next_token_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    cache: KVCache | None = None,
) -> torch.Tensor:
    """The logits (B, V) for the token after ``input_ids`` (B, T), as float32.

    With a course model and a ``cache`` holding the first T_past tokens, only the tokens after
    them are run (all of the prompt in the first call, the prefill; then one token a step).
    A transformers model is run on the whole sequence (its own ``generate()`` has its cache).
    """
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: the plain causal path is the same and faster
    if is_course_model(model):
        new_ids = input_ids if cache is None else input_ids[:, len(cache):]
        return cached_forward(model, new_ids, cache, attention_mask)[:, -1, :].float()
    position_ids = None if attention_mask is None else positions_from_attention_mask(attention_mask)
    output = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.logits[:, -1, :].float()


def logits_after(
    model: torch.nn.Module, input_ids: torch.Tensor, seen: int, cache: KVCache | None = None
) -> torch.Tensor:
    """The logits (B, T - seen, V) at the positions of ``input_ids`` (B, T) from ``seen`` on, in
    the model's dtype. A course model given a ``cache`` holding the first ``seen`` positions runs
    only the tokens after them (the cache then holds all T); otherwise, and always for a
    transformers model, the whole sequence is run."""
    if is_course_model(model):
        return cached_forward(model, input_ids[:, seen:], cache) if cache is not None else model(input_ids)[:, seen:]
    return model(input_ids, use_cache=False).logits[:, seen:]


@torch.no_grad()
def attention_weights(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Every layer's attention weights, a list of L tensors (B, H, T, T), for a course model
    (``MiniGPT``, ``MiniLlama``: its own explicit path) or a ``transformers`` causal LM (eager
    attention, ``output_attentions=True``; a model loaded with another attention implementation
    is switched to eager for the call).

    ``attention_mask`` (B, T) marks real tokens with 1 and left padding with 0; positions then
    count from the first real token, as ``generate`` does.
    """
    if is_course_model(model):
        course_model: Any = model  # a MiniGPT or a MiniLlama, each with its forward_with_attention
        return course_model.forward_with_attention(input_ids, attention_mask)[1]
    hf_model: Any = model  # a transformers model, with its set_attn_implementation
    config = model.config
    before = getattr(config, "_attn_implementation", "eager")
    if before != "eager":
        hf_model.set_attn_implementation("eager")
    try:
        arguments = {}
        if attention_mask is not None:
            arguments = dict(attention_mask=attention_mask, position_ids=positions_from_attention_mask(attention_mask))
        output = model(input_ids, output_attentions=True, use_cache=False, **arguments)
    finally:
        if before != "eager":
            hf_model.set_attn_implementation(before)
    return [weights.float() for weights in output.attentions]
