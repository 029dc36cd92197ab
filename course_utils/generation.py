"""Autoregressive generation for a MiniGPT, a MiniLlama or a transformers causal LM.

``generate`` follows ``transformers``' ``model.generate()`` for the arguments they share and
returns the prompt followed by the new tokens, shape (B, T_prompt + new). The loop is here:
greedy and sampling (``_sample_or_greedy``), beam search (``_beam_search``), stopping. The rules
that shape each step's distribution are in ``sampling.py`` (re-exported here), the caches in
``kv_cache.py``, speculative decoding in ``speculative.py``.

Taught in: lesson 03 (the loop, sampling, beam search, stopping, batches), lesson 04 (the cache),
lesson 07 (``assistant_model``, ``prompt_lookup_num_tokens``).
"""

from __future__ import annotations

import warnings

import torch

from .adapters import check_prompt, is_course_model, next_token_logits
from .kv_cache import KVCache, make_cache
from .sampling import (  # noqa: F401  (the filters' documented home is course_utils.generation too)
    GenerationSettings,
    apply_frequency_presence_penalty,
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    resolve_settings,
    top_k_filter,
    top_p_filter,
)
from .speculative import assisted_generate


def _check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor,
                          pad_token_id: int | None) -> None:
    """``attention_mask`` (B, T) must match ``input_ids`` and mark at least one real token per row
    (a row of zeros has nothing to attend to: its text would be garbage), else a ``ValueError``.
    Without a mask, a batch of several rows holding ``pad_token_id`` gets a warning, as in
    transformers: the padding is then read as text, and those rows differ from the same prompts
    alone. (A warning, not an error: a pad id may also be an ordinary token of the text.)"""
    if attention_mask is None:
        if pad_token_id is not None and input_ids.shape[0] > 1 and bool((input_ids == pad_token_id).any()):
            warnings.warn(f"input_ids hold pad_token_id {pad_token_id} but no attention_mask was passed: the padding "
                          "is read as text. Pass the tokenizer's attention_mask (padding_side='left').", stacklevel=3)
        return
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    empty = (attention_mask == 0).all(dim=-1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"attention_mask rows {empty} are all zeros: each row needs at least one real token (1)")


def _is_stopped(stopping_criteria: list, sequences: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B,) bool: rows for which any criterion ``(input_ids, scores) -> bool | (B,) bool`` holds."""
    stopped = torch.zeros(sequences.shape[0], dtype=torch.bool, device=sequences.device)
    for criterion in stopping_criteria:
        stopped |= torch.as_tensor(criterion(sequences, logits), device=sequences.device).bool().expand_as(stopped)
    return stopped


class StopOnText:
    """A stopping criterion: a row is done once its decoded new text contains any of ``texts``."""

    def __init__(self, tokenizer, texts: list[str], prompt_length: int) -> None:
        if not texts or any(not text for text in texts):
            raise ValueError(f"texts must be a non-empty list of non-empty strings, got {texts!r}")
        self.tokenizer, self.texts, self.prompt_length = tokenizer, list(texts), prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        decoded = self.tokenizer.decode(input_ids[:, self.prompt_length :])  # (B, T) ids: one text per row
        return torch.tensor([any(text in row for text in self.texts) for row in decoded])


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    generation_config: GenerationSettings | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    early_stopping: bool | str | None = None,
    num_return_sequences: int | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    cache_implementation: str = "preallocated",
    generator: torch.Generator | None = None,
    streamer=None,
    stopping_criteria: list | None = None,
    assistant_model: torch.nn.Module | None = None,
    num_assistant_tokens: int | None = None,
    num_assistant_tokens_schedule: str = "constant",
    prompt_lookup_num_tokens: int | None = None,
) -> torch.Tensor:
    """Extend ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B', T + new),
    B' = B * num_return_sequences, prompt included.

    Follows ``transformers``' ``model.generate()`` for the arguments they share. The settings
    (``max_new_tokens`` to ``pad_token_id``, the fields of ``GenerationSettings``, special tokens
    included) may come whole in ``generation_config`` (a ``GenerationSettings``, or a transformers
    ``GenerationConfig``), as in transformers; an argument passed explicitly overrides it. A
    setting left at None takes ``generation_config``'s value, else the model's own
    ``generation_config`` value when the model is a transformers model (so a model whose config
    turns sampling on samples by default), else transformers' default: 20 new tokens, greedy,
    temperature 1, top-k 50, top-p 1, one beam, no EOS (``GenerationSettings``' defaults). They
    are merged once (``resolve_settings``), and every strategy takes the merged settings whole. A
    ``GenerationConfig`` that sets a field the course does not honour raises, naming it.

    - greedy (default): the most likely token each step; ``temperature`` (even 0), ``top_k``,
      ``top_p`` and ``min_p`` are ignored, as in transformers;
    - ``do_sample=True``: draw from the distribution after temperature, top-k (default 50, as
      transformers' default generation config; 0 disables it), top-p and min-p, using
      ``generator`` for reproducible draws;
    - ``num_beams > 1``: beam search with ``length_penalty`` (scores are divided by
      length ** length_penalty), ``early_stopping`` (True: stop once ``num_beams`` hypotheses
      are finished; False: a heuristic; "never": only when no better one is possible) and
      ``num_return_sequences`` best hypotheses per prompt;
    - ``repetition_penalty`` (transformers' rule) over the prompt and the new tokens;
      ``frequency_penalty`` and ``presence_penalty`` (OpenAI rule) over the new tokens;
    - a row that emits ``eos_token_id`` (one id, or a list of which any ends a row) or meets a
      ``stopping_criteria`` callable ``(input_ids, scores) -> (B,) bool`` is finished: its later
      positions hold ``pad_token_id`` (default: the first EOS id) and generation stops when every
      row has finished;
    - ``attention_mask`` (B, T) marks the real tokens of a left-padded batch with 1; positions are
      counted from the first real token;
    - ``streamer``: an object with ``put(token_ids)`` and ``end()``, such as transformers'
      ``TextStreamer``; it receives the prompt, then each new token (batch size 1, no beams).

    ``use_cache=True`` (the default, as in transformers) with a course model (MiniGPT, MiniLlama) keeps a KV cache: the
    prompt is run once, then each step runs only the new token (beam search reorders the cache as
    beams swap). ``cache_implementation`` picks its form: "preallocated" (buffers for prompt +
    max_new_tokens positions, written in place; faster here, lesson 04 measures it) or
    "growing" (concatenated each step) or "int8" (growing, stored as int8 with a scale per head and
    position: about a quarter of float32's memory, with rounded keys and values; lesson 04
    measures what that changes). ``use_cache=False`` re-runs the whole sequence every step.
    Transformers models are always run on the full sequence here; their own ``generate()`` has
    its cache.

    Speculative decoding (``course_utils.speculative``, batch size 1, as transformers):
    ``assistant_model`` drafts ``num_assistant_tokens`` tokens per target pass (default
    ``DEFAULT_ASSISTANT_TOKENS``; ``num_assistant_tokens_schedule="heuristic"`` adapts it as
    transformers does), or ``prompt_lookup_num_tokens`` > 0 drafts that many by copying from the
    context. Greedy gives the target's own tokens; sampling its own distribution.
    """
    settings = resolve_settings(
        model, generation_config, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
        frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, num_beams=num_beams,
        length_penalty=length_penalty, early_stopping=early_stopping, num_return_sequences=num_return_sequences,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )
    check_prompt(model, input_ids, settings.max_new_tokens)
    _check_attention_mask(attention_mask, input_ids, settings.pad_token_id)
    one_row = input_ids.shape[0] == 1 and settings.num_beams == 1 and settings.num_return_sequences == 1
    if streamer is not None and not one_row:
        raise ValueError("streamer needs a batch of one prompt, num_beams=1 and num_return_sequences=1")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    # make_cache checks the name too
    cache: KVCache | None = make_cache(cache_implementation, input_ids.shape[1] + settings.max_new_tokens)
    if not (use_cache and is_course_model(model)):
        cache = None
    if assistant_model is not None or num_assistant_tokens is not None or prompt_lookup_num_tokens is not None:
        if streamer is not None or stopping_criteria:
            raise ValueError("speculative decoding does not support streamer or stopping_criteria here")
        return assisted_generate(model, input_ids, mask, settings, generator, assistant_model,
                                 num_assistant_tokens, num_assistant_tokens_schedule, prompt_lookup_num_tokens)
    if settings.num_beams > 1:
        criteria = stopping_criteria or []
        return _beam_search(model, input_ids, mask, settings, criteria, cache)
    if settings.num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(settings.num_return_sequences, dim=0)
        mask = mask.repeat_interleave(settings.num_return_sequences, dim=0)
    return _sample_or_greedy(model, input_ids, mask, settings, generator, streamer, stopping_criteria or [], cache)


def _sample_or_greedy(model, input_ids, mask, settings, generator, streamer, criteria, cache):
    """The plain loop: forward, last-position logits, process, pick, append, stop."""
    pad_token_id = settings.fill_id
    prompt_length = input_ids.shape[1]
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    if streamer is not None:
        streamer.put(input_ids.cpu())
    for _ in range(settings.max_new_tokens):
        logits = settings.process(next_token_logits(model, sequences, mask, cache), sequences, mask, prompt_length)
        if settings.do_sample:
            next_tokens = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            next_tokens = logits.argmax(dim=-1)
        if pad_token_id is not None:
            next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_token_id), next_tokens)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        finished |= settings.is_eos(next_tokens)
        finished |= _is_stopped(criteria, sequences, logits)
        if finished.all():
            break
    if streamer is not None:
        streamer.end()
    return sequences


def _beam_search(model, input_ids, mask, settings, criteria, cache):
    """Beam search with transformers' rules, for a batch of B prompts with K = num_beams beams each.

    Each step every running beam is extended by every token: K * V candidates per prompt, scored
    by their summed log-probabilities. The best 2K (enough to keep K running after some finish)
    are taken. A candidate that ends in EOS (or meets a stopping criterion, or reaches the
    length limit) and ranks among the top K is a finished hypothesis, scored by its sum divided
    by (new tokens) ** length_penalty; the best K finished hypotheses per prompt are kept. The K
    best unfinished candidates continue.
    """
    B, prompt_length = input_ids.shape
    device = input_ids.device
    K = settings.num_beams
    max_length = prompt_length + settings.max_new_tokens
    n_keep = max(2, 1 + len(settings.eos_ids)) * K  # transformers' rule: enough to keep K running
    fill = settings.pad_token_id if settings.pad_token_id else next(iter(settings.eos_ids), -1)
    NEG = -1.0e9
    running = input_ids.repeat_interleave(K, dim=0).view(B, K, prompt_length)  # (B, K, T)
    running_mask = mask.repeat_interleave(K, dim=0)  # (B*K, T)
    running_scores = torch.full((B, K), NEG, device=device)
    running_scores[:, 0] = 0.0  # all beams start equal: keep only the first, or K copies would win
    finished = torch.full((B, K, max_length), fill, dtype=torch.long, device=device)
    finished[:, :, :prompt_length] = running  # placeholders: the prompt, scored -1e9, never returned
    finished_lengths = torch.zeros(B, K, dtype=torch.long, device=device)  # new tokens in each finished hypothesis
    finished_scores = torch.full((B, K), NEG, device=device)
    finished_filled = torch.zeros(B, K, dtype=torch.bool, device=device)
    improvable = torch.ones(B, dtype=torch.bool, device=device)  # may a running beam still beat the finished ones?
    batch_index = torch.arange(B, device=device)[:, None]

    for cur_len in range(prompt_length, max_length):
        flat = running.reshape(B * K, cur_len)
        log_probs = next_token_logits(model, flat, running_mask, cache).log_softmax(dim=-1)
        log_probs = settings.process(log_probs, flat, running_mask, prompt_length)
        V = log_probs.shape[-1]
        totals = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)
        top_scores, top_indices = torch.topk(totals, n_keep, dim=-1)  # (B, n_keep), best first
        source_beam, token = top_indices // V, top_indices % V
        candidates = torch.cat([running[batch_index, source_beam], token[:, :, None]], dim=-1)
        new_token_mask = torch.ones(B, n_keep, 1, dtype=running_mask.dtype, device=device)
        candidate_mask = torch.cat([running_mask.view(B, K, -1)[batch_index, source_beam], new_token_mask], dim=-1)
        ends = torch.full_like(token, cur_len + 1 == max_length, dtype=torch.bool)
        ends |= settings.is_eos(token)
        if criteria:
            ends |= _is_stopped(criteria, candidates.view(B * n_keep, -1), log_probs).view(B, n_keep)

        # The K best candidates that do not end keep running.
        keep = torch.topk(top_scores + ends.float() * NEG, K, dim=-1).indices
        if cache is not None:  # each kept candidate continues the cache row of the beam it extends
            cache.reorder((batch_index * K + source_beam)[batch_index, keep].flatten())
        new_running = candidates[batch_index, keep]
        new_running_scores = (top_scores + ends.float() * NEG)[batch_index, keep]
        running_mask = candidate_mask[batch_index, keep].view(B * K, -1)

        # Ending candidates among the top K join the finished hypotheses if they beat them.
        new_tokens = cur_len + 1 - prompt_length
        normalised = top_scores / (new_tokens**settings.length_penalty)
        eligible = ends & (torch.arange(n_keep, device=device) < K)[None, :] & improvable[:, None]
        if settings.early_stopping is True:
            eligible &= ~finished_filled.all(dim=1, keepdim=True)
        normalised = torch.where(eligible, normalised, normalised + NEG)  # (score + -1e9, as transformers)
        padded = torch.full((B, n_keep, max_length), fill, dtype=torch.long, device=device)
        padded[:, :, : cur_len + 1] = candidates
        merged = torch.cat([finished, padded], dim=1)
        merged_scores = torch.cat([finished_scores, normalised], dim=1)
        merged_filled = torch.cat([finished_filled, eligible], dim=1)
        merged_lengths = torch.cat([finished_lengths, torch.full((B, n_keep), new_tokens, device=device)], dim=1)
        best = torch.topk(merged_scores, K, dim=-1).indices
        finished, finished_scores = merged[batch_index, best], merged_scores[batch_index, best]
        finished_filled, finished_lengths = merged_filled[batch_index, best], merged_lengths[batch_index, best]
        running, running_scores = new_running, new_running_scores

        # Could the best running beam still beat the worst finished hypothesis?
        if settings.early_stopping == "never" and settings.length_penalty > 0:
            best_length = max_length - prompt_length
        else:
            best_length = new_tokens
        best_possible = running_scores[:, 0] / (best_length**settings.length_penalty)
        worst_finished = finished_scores.min(dim=1).values
        beatable = torch.where(finished_filled, worst_finished[:, None], torch.full_like(finished_scores, NEG))
        improvable &= (best_possible[:, None] > beatable).any(dim=1)

        all_full = bool(finished_filled.all()) and settings.early_stopping is True
        if not improvable.any() or all_full or bool(ends.all()):
            break

    n = settings.num_return_sequences
    sequences = finished[:, :n].reshape(B * n, max_length)
    length = prompt_length + int(finished_lengths[:, :n].max())
    return sequences[:, :length]
