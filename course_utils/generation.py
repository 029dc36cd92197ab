"""Autoregressive generation for a MiniGPT, a MiniLlama or a transformers causal LM.

``generate`` follows ``transformers``' ``model.generate()`` for the arguments they share and
returns the prompt followed by the new tokens, shape (B, T_prompt + new).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .evaluation import model_context
from .model import (
    CourseModel,
    GrowingKVCache,
    Int8KVCache,
    KVCache,
    PreallocatedKVCache,
    check_token_ids,
    positions_from_attention_mask,
)


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_top_k(top_k: int) -> None:
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 disables it), got {top_k}")


def _check_top_p(top_p: float) -> None:
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _check_min_p(min_p: float) -> None:
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")


def _check_repetition_penalty(penalty: float) -> None:
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")


def _check_openai_penalty(name: str, value: float) -> None:
    if not -2 <= value <= 2:
        raise ValueError(f"{name} must be in [-2, 2], got {value}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits (B, V) by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    Rule of transformers' ``TemperatureLogitsWarper``.
    """
    _check_temperature(temperature)
    _check_logits(logits)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (B, V); set the rest to -inf.

    Every token whose logit equals the k-th largest is kept, so ties can keep more than k.
    ``top_k = 0`` keeps everything; at least ``min_tokens_to_keep`` tokens are kept.
    Rule of transformers' ``TopKLogitsWarper``.
    """
    _check_top_k(top_k)
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
    _check_top_p(top_p)
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
    _check_min_p(min_p)
    _check_logits(logits)
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, keep, False)
    return logits.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(
    logits: torch.Tensor, input_ids: torch.Tensor, penalty: float, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """transformers' repetition penalty (``RepetitionPenaltyLogitsProcessor``): for every token
    that occurs in ``input_ids`` (B, T), the prompt included, divide its logit by ``penalty`` if
    positive, multiply it if negative. ``penalty`` > 0; 1 is no change, above 1 discourages
    repeats. Positions where ``attention_mask`` (B, T) is 0 (padding) do not count. (CTRL, Keskar
    et al. 2019, where the idea comes from, divides every penalised logit, of generated tokens only.)
    """
    _check_repetition_penalty(penalty)
    _check_logits(logits)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    counted = attention_mask.to(logits.dtype)
    seen = torch.zeros_like(logits).scatter_add_(-1, input_ids, counted) > 0
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def apply_frequency_presence_penalty(
    logits: torch.Tensor, generated_ids: torch.Tensor, frequency_penalty: float, presence_penalty: float
) -> torch.Tensor:
    """The OpenAI rule: logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty,
    where count[j] is how often token j occurs in ``generated_ids`` (B, T). Penalties in [-2, 2];
    positive values discourage repeats, the frequency term more the more often a token appeared.
    """
    _check_openai_penalty("frequency_penalty", frequency_penalty)
    _check_openai_penalty("presence_penalty", presence_penalty)
    _check_logits(logits)
    ones = torch.ones_like(generated_ids, dtype=logits.dtype)
    counts = torch.zeros_like(logits).scatter_add_(-1, generated_ids, ones)
    return logits - counts * frequency_penalty - (counts > 0).to(logits.dtype) * presence_penalty


def next_token_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    cache: KVCache | None = None,
) -> torch.Tensor:
    """The logits (B, V) for the token after ``input_ids`` (B, T), as float32.

    With a course model (MiniGPT, MiniLlama) and a ``cache`` holding the first T_past tokens, only the tokens after them
    are run (all of the prompt in the first call, the prefill; then one token a step).
    """
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: the plain causal path is the same and faster
    if isinstance(model, CourseModel):
        new_ids = input_ids if cache is None else input_ids[:, len(cache):]
        return model(new_ids, attention_mask=attention_mask, cache=cache)[:, -1, :].float()
    position_ids = None if attention_mask is None else positions_from_attention_mask(attention_mask)
    output = model(input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return output.logits[:, -1, :].float()


@dataclass
class GenerationSettings:
    """The validated arguments of one ``generate`` call (see ``generate`` for their meaning)."""

    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens}")
        # The filters' own checks, run up front so that bad arguments fail before any forward pass.
        # Greedy and beam search ignore the temperature, so, as in transformers, only sampling
        # refuses temperature=0.
        if self.do_sample:
            _check_temperature(self.temperature)
        _check_top_k(self.top_k)
        _check_top_p(self.top_p)
        if self.min_p is not None:
            _check_min_p(self.min_p)
        _check_repetition_penalty(self.repetition_penalty)
        _check_openai_penalty("frequency_penalty", self.frequency_penalty)
        _check_openai_penalty("presence_penalty", self.presence_penalty)
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams}")
        if not isinstance(self.num_return_sequences, int) or self.num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences must be in [1, num_beams={self.num_beams}] in beam search, "
                f"got {self.num_return_sequences}"
            )
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("do_sample=True with num_beams > 1 (beam sampling) is not supported; use one of them")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")

    def process(
        self, logits: torch.Tensor, sequences: torch.Tensor, mask: torch.Tensor, prompt_length: int
    ) -> torch.Tensor:
        """Apply the penalties and, when sampling, the warpers, in transformers' order:
        repetition penalty, frequency/presence penalties, temperature, top-k, top-p, min-p.

        logits (B, V); sequences and mask (B, T) hold the prompt and the tokens so far.
        """
        if self.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, sequences, self.repetition_penalty, mask)
        if self.frequency_penalty or self.presence_penalty:
            logits = apply_frequency_presence_penalty(
                logits, sequences[:, prompt_length:], self.frequency_penalty, self.presence_penalty
            )
        if self.do_sample:
            if self.temperature != 1.0:
                logits = apply_temperature(logits, self.temperature)
            logits = top_k_filter(logits, self.top_k)
            logits = top_p_filter(logits, self.top_p)
            if self.min_p is not None:
                logits = min_p_filter(logits, self.min_p)
        return logits


def _check_inputs(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int) -> None:
    model_device = next(model.parameters()).device
    if input_ids.device != model_device:  # first: ids on another device cannot even be compared
        raise ValueError(
            f"input_ids is on {input_ids.device} but the model is on {model_device}; "
            f"move one of them, e.g. input_ids.to({str(model_device)!r})"
        )
    check_token_ids(input_ids, model.config.vocab_size)
    context = model_context(model)
    if input_ids.shape[1] + max_new_tokens > context:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's context of {context} tokens"
        )


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
        decoded = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :])
        return torch.tensor([any(text in row for text in self.texts) for row in decoded])


CACHE_IMPLEMENTATIONS = ("preallocated", "growing", "int8")
# The arguments a transformers model's generation_config can set, with transformers' own defaults
# (max_new_tokens: 20 new tokens; transformers' max_length=20 would count the prompt too).
GENERATION_CONFIG_DEFAULTS = dict(
    max_new_tokens=20, do_sample=False, temperature=1.0, top_k=50, top_p=1.0, min_p=None, repetition_penalty=1.0,
    num_beams=1, length_penalty=1.0, early_stopping=False, num_return_sequences=1,
)


def resolve_generation_arguments(model: torch.nn.Module, explicit: dict) -> dict:
    """Each of ``GENERATION_CONFIG_DEFAULTS``' arguments: the value passed (not None), else the
    model's ``generation_config`` value (a transformers model), else transformers' default, as
    ``model.generate()`` does."""
    config = getattr(model, "generation_config", None)
    resolved = {}
    for name, default in GENERATION_CONFIG_DEFAULTS.items():
        value = explicit.get(name)
        if value is None and config is not None:
            value = getattr(config, name, None)
        resolved[name] = default if value is None else value
    return resolved


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    early_stopping: bool | str | None = None,
    num_return_sequences: int | None = None,
    eos_token_id: int | None = None,
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

    Follows ``transformers``' ``model.generate()`` for the arguments they share. An argument left
    at None takes the model's ``generation_config`` value when the model is a transformers model
    (so a model whose config turns sampling on samples by default), else transformers' default:
    20 new tokens, greedy, temperature 1, top-k 50, top-p 1, one beam. Explicit arguments win.

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
    - a row that emits ``eos_token_id`` (for a transformers model, default: its generation
      config's) or meets a ``stopping_criteria`` callable
      ``(input_ids, scores) -> (B,) bool`` is finished: its later positions hold ``pad_token_id``
      (default: the EOS id) and generation stops when every row has finished;
    - ``attention_mask`` (B, T) marks the real tokens of a left-padded batch with 1; positions are
      counted from the first real token;
    - ``streamer``: an object with ``put(token_ids)`` and ``end()``, such as transformers'
      ``TextStreamer``; it receives the prompt, then each new token (batch size 1, no beams).

    ``use_cache=True`` (the default, as in transformers) with a course model (MiniGPT, MiniLlama) keeps a KV cache: the
    prompt is run once, then each step runs only the new token (beam search reorders the cache as
    beams swap). ``cache_implementation`` picks its form: "preallocated" (buffers for prompt +
    max_new_tokens positions, written in place; faster here, see ``course_utils.bench``) or
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
    arguments = resolve_generation_arguments(model, dict(
        max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
        min_p=min_p, repetition_penalty=repetition_penalty, num_beams=num_beams, length_penalty=length_penalty,
        early_stopping=early_stopping, num_return_sequences=num_return_sequences,
    ))
    settings = GenerationSettings(
        **arguments, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty
    )
    max_new_tokens, num_beams, num_return_sequences = (
        settings.max_new_tokens, settings.num_beams, settings.num_return_sequences
    )
    _check_inputs(model, input_ids, max_new_tokens)
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    if streamer is not None and (input_ids.shape[0] > 1 or num_beams > 1 or num_return_sequences > 1):
        raise ValueError("streamer needs a batch of one prompt, num_beams=1 and num_return_sequences=1")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    # Like transformers: a model's own generation config supplies the EOS and padding ids.
    defaults = getattr(model, "generation_config", None)
    if eos_token_id is None and defaults is not None:
        eos_token_id = _first_id(defaults.eos_token_id)
    if pad_token_id is None and defaults is not None:
        pad_token_id = _first_id(defaults.pad_token_id)
    if cache_implementation not in CACHE_IMPLEMENTATIONS:
        raise ValueError(f"cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, got {cache_implementation!r}")
    cache = None
    if use_cache and isinstance(model, CourseModel):
        total = input_ids.shape[1] + max_new_tokens
        caches = {"preallocated": lambda: PreallocatedKVCache(total), "growing": GrowingKVCache, "int8": Int8KVCache}
        cache = caches[cache_implementation]()
    if num_assistant_tokens is not None and assistant_model is None:
        raise ValueError("num_assistant_tokens needs an assistant_model; prompt lookup takes "
                         "prompt_lookup_num_tokens")
    if assistant_model is not None or prompt_lookup_num_tokens is not None:
        return _speculative(model, input_ids, mask, settings, eos_token_id, generator, streamer, stopping_criteria,
                            assistant_model, num_assistant_tokens, num_assistant_tokens_schedule,
                            prompt_lookup_num_tokens)
    if settings.num_beams > 1:
        criteria = stopping_criteria or []
        return _beam_search(model, input_ids, mask, settings, eos_token_id, pad_token_id, criteria, cache)
    if num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        mask = mask.repeat_interleave(num_return_sequences, dim=0)
    return _sample_or_greedy(
        model, input_ids, mask, settings, eos_token_id, pad_token_id, generator, streamer, stopping_criteria or [],
        cache,
    )


# Measured on the bundled pair (greedy, 5 prompts x 200 tokens, interleaved, median of paired
# ratios, 2 cores): K = 5 gave 1.90x plain cached generation, K = 3, 4, 6, 8 1.74x, 1.64x, 1.46x,
# 1.96x (the machine's noise is about 0.2x); K = 1-2 1.23x-1.27x. transformers' heuristic schedule
# was slower than a constant K (measured with the earlier draft: 1.20x, 1.14x, 1.01x from 5, 10, 20).
DEFAULT_ASSISTANT_TOKENS = 5


def _vocabulary_size(model: torch.nn.Module) -> int:
    return model.config.vocab_size


def _speculative(model, input_ids, mask, settings, eos_token_id, generator, streamer, stopping_criteria,
                 assistant_model, num_assistant_tokens, schedule, prompt_lookup_num_tokens) -> torch.Tensor:
    """generate()'s speculative path: check what it cannot do, build the drafter, run."""
    from .speculative import ModelDrafter, PromptLookupDrafter, speculative_generate

    if assistant_model is not None and prompt_lookup_num_tokens is not None:
        raise ValueError("pass either assistant_model or prompt_lookup_num_tokens, not both")
    if input_ids.shape[0] != 1 or not bool(mask.all()):
        raise ValueError(f"speculative decoding takes one unpadded prompt (batch size 1, as transformers); "
                         f"got input_ids {tuple(input_ids.shape)}")
    if settings.num_beams > 1 or settings.num_return_sequences > 1:
        raise ValueError("speculative decoding does not combine with beam search or num_return_sequences > 1")
    if streamer is not None or stopping_criteria:
        raise ValueError("speculative decoding does not support streamer or stopping_criteria here")
    if assistant_model is not None:
        if _vocabulary_size(assistant_model) != _vocabulary_size(model):
            raise ValueError(f"assistant_model has a vocabulary of {_vocabulary_size(assistant_model)} tokens but "
                             f"the model has {_vocabulary_size(model)}; they must share a tokenizer")
        k = DEFAULT_ASSISTANT_TOKENS if num_assistant_tokens is None else num_assistant_tokens
        drafter = ModelDrafter(assistant_model, settings, input_ids.shape[1] + settings.max_new_tokens, generator)
    else:
        if not isinstance(prompt_lookup_num_tokens, int) or prompt_lookup_num_tokens < 1:
            raise ValueError(f"prompt_lookup_num_tokens must be a positive integer, got {prompt_lookup_num_tokens!r}")
        k, drafter = prompt_lookup_num_tokens, PromptLookupDrafter()
    if settings.max_new_tokens == 0:
        return input_ids
    out, _ = speculative_generate(model, drafter, input_ids, settings.max_new_tokens, k, settings, eos_token_id,
                                  generator, schedule)
    return out


def _first_id(token_ids: int | list[int] | None) -> int | None:
    return token_ids[0] if isinstance(token_ids, list) else token_ids


def _sample_or_greedy(
    model, input_ids, mask, settings, eos_token_id, pad_token_id, generator, streamer, criteria, cache
):
    """The plain loop: forward, last-position logits, process, pick, append, stop."""
    if pad_token_id is None:
        pad_token_id = eos_token_id
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
        if eos_token_id is not None:
            finished |= next_tokens == eos_token_id
        finished |= _is_stopped(criteria, sequences, logits)
        if finished.all():
            break
    if streamer is not None:
        streamer.end()
    return sequences


def _beam_search(model, input_ids, mask, settings, eos_token_id, pad_token_id, criteria, cache):
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
    n_keep = max(2, 1 + (eos_token_id is not None)) * K
    fill = pad_token_id if pad_token_id else (eos_token_id if eos_token_id is not None else -1)
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
        if eos_token_id is not None:
            ends |= token == eos_token_id
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
