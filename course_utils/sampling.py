"""Sampling rules: the logits filters and penalties, and the settings of one generation.

Each filter is a plain function of logits (B, V) with the exact rule of the ``transformers``
logits processor it names (ties, the token that crosses top-p, ``min_tokens_to_keep``).
``GenerationSettings`` holds one call's validated choices, with ``transformers``' defaults,
and applies the filters in ``transformers``' order.

Taught in: lesson 03 (every filter, penalties, ``generate``'s settings), lesson 07 (the
processed distributions speculative decoding compares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from .adapters import model_generation_config


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
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens}")
        self._check_filters()
        self._check_search()
        self._check_special_tokens()

    def _check_filters(self) -> None:
        """The filters' own checks, run up front so that bad arguments fail before any forward pass.
        Greedy and beam search ignore the temperature, so, as in transformers, only sampling
        refuses temperature=0; a temperature that is no finite number is refused whatever the mode."""
        if not isinstance(self.temperature, int | float) or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number, got {self.temperature!r}")
        if self.do_sample:
            _check_temperature(self.temperature)
        _check_top_k(self.top_k)
        _check_top_p(self.top_p)
        if self.min_p is not None:
            _check_min_p(self.min_p)
        _check_repetition_penalty(self.repetition_penalty)
        _check_openai_penalty("frequency_penalty", self.frequency_penalty)
        _check_openai_penalty("presence_penalty", self.presence_penalty)

    def _check_search(self) -> None:
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
        if not isinstance(self.length_penalty, int | float) or not math.isfinite(self.length_penalty):
            raise ValueError(f"length_penalty must be a finite number, got {self.length_penalty!r}")

    def _check_special_tokens(self) -> None:
        eos = [self.eos_token_id] if isinstance(self.eos_token_id, int) else self.eos_token_id
        if eos is not None and (not isinstance(eos, list | tuple) or not eos
                                or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in eos)):
            raise ValueError(f"eos_token_id must be a token id >= 0, a non-empty list of them, or None, "
                             f"got {self.eos_token_id!r}")
        if self.pad_token_id is not None and (not isinstance(self.pad_token_id, int) or self.pad_token_id < 0):
            raise ValueError(f"pad_token_id must be a token id >= 0 or None, got {self.pad_token_id!r}")

    @property
    def eos_ids(self) -> list[int]:
        """The end-of-sequence ids (any of them ends a row), a list; empty when there is none."""
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def fill_id(self) -> int | None:
        """What a finished row is padded with: ``pad_token_id``, else the first EOS id, else None."""
        return self.pad_token_id if self.pad_token_id is not None else next(iter(self.eos_ids), None)

    def is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        """A bool tensor of the shape of ``tokens``: True where a token is one of the EOS ids."""
        return torch.isin(tokens, torch.tensor(self.eos_ids, dtype=tokens.dtype, device=tokens.device))

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


# Fields a transformers GenerationConfig may set that do not change the tokens generate() returns.
NOT_DECODING = frozenset({"transformers_version", "_from_model_config", "bos_token_id", "use_cache",
                          "output_attentions", "output_hidden_states"})


def resolve_settings(model: torch.nn.Module, generation_config=None, **explicit) -> GenerationSettings:
    """The settings of one ``generate`` call, merged once, special tokens included. Each field is
    the value passed in ``explicit`` (not None), else ``generation_config``'s (a
    ``GenerationSettings`` or a ``transformers`` ``GenerationConfig``), else the model's own
    (``adapters.model_generation_config``: a transformers model's), else ``GenerationSettings``'
    default, which is ``transformers``' (so a model whose config turns sampling on samples by default, as with
    ``model.generate()``). A ``GenerationConfig`` that sets a field the course does not honour
    (``no_repeat_ngram_size``, say) is refused with a ``ValueError`` naming it."""
    allowed = [f.name for f in fields(GenerationSettings)]
    unknown = set(explicit) - set(allowed)
    if unknown:
        raise ValueError(f"unknown generation settings {sorted(unknown)}; allowed: {allowed}")
    if generation_config is not None and not isinstance(generation_config, GenerationSettings):
        given = generation_config.to_diff_dict() if hasattr(generation_config, "to_diff_dict") else {}
        if unhonoured := sorted(set(given) - set(allowed) - NOT_DECODING):
            raise ValueError(f"generation_config sets {unhonoured}, which the course's generate() does not "
                             f"honour; it honours: {allowed}")
    sources = [config for config in (generation_config, model_generation_config(model)) if config is not None]
    chosen = {}
    for name in allowed:
        candidates = [explicit.get(name)] + [getattr(config, name, None) for config in sources]
        value = next((candidate for candidate in candidates if candidate is not None), None)
        if value is not None:
            chosen[name] = value
    return GenerationSettings(**chosen)
