"""Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding", Algorithm 1; Chen et al. 2023): a cheap drafter proposes K tokens, the target model
checks them all in one forward pass, and the rule below keeps the output distribution exactly
the target's.

For each drafted token x_i, with p_i the target's and q_i the drafter's (processed) next-token
distributions at that position:

- accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); greedy: accept if x_i = argmax p_i;
- at the first rejection, draw the correction from the residual norm(max(0, p_i - q_i)) (greedy:
  argmax p_i) and stop;
- if all K are accepted, draw one more "bonus" token from the target's next distribution.

Each target pass therefore adds between 1 and K + 1 tokens. Batch size 1 throughout.
Shapes: T tokens so far, K drafted, V vocabulary.

Taught in: lesson 07. ``generate(..., assistant_model=...)`` and
``generate(..., prompt_lookup_num_tokens=...)`` run ``assisted_generate``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .adapters import check_prompt, is_course_model, logits_after, model_device, vocabulary_size
from .hardware import torch_threads
from .kv_cache import PreallocatedKVCache
from .sampling import GenerationSettings


def distributions(logits: torch.Tensor, settings: GenerationSettings) -> torch.Tensor:
    """(N, V) logits -> (N, V) next-token probabilities after ``settings``' temperature, top-k,
    top-p and min-p, as used when sampling (greedy decoding uses the argmax of the logits)."""
    mask = torch.ones(logits.shape[0], 1, dtype=torch.long, device=logits.device)
    empty = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
    return settings.process(logits.float(), empty, mask, 0).softmax(dim=-1)


class Stepper:
    """Runs a model along a growing sequence: a course model through a preallocated KV cache of
    ``max_length`` positions, so that each call computes only the tokens it has not seen; a
    transformers model on the whole sequence each time (``adapters.logits_after``)."""

    def __init__(self, model: torch.nn.Module, max_length: int) -> None:
        self.model = model
        self.cache = PreallocatedKVCache(max_length) if is_course_model(model) else None
        self.seen = 0

    def logits(self, sequence: torch.Tensor) -> torch.Tensor:
        """Logits (T_new, V) at the positions of ``sequence`` (1, T) not seen before."""
        out = logits_after(self.model, sequence, self.seen, self.cache)[0]
        self.seen = sequence.shape[1]
        return out

    def rollback(self, length: int) -> None:
        """Forget the positions from ``length`` on (no copy for a cache)."""
        self.seen = min(length, self.seen)
        if self.cache is not None:
            self.cache.crop(self.seen)


class Drafter(Protocol):
    """What speculative decoding needs from a drafter: propose up to ``k`` tokens after
    ``sequence`` (1, T), with the drafter's distribution for each (K, V), or None when the drafter
    is deterministic (its proposal has probability 1); and forget everything after ``length``
    tokens once the target has decided how many to keep."""

    def propose(self, sequence: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def rollback(self, length: int) -> None: ...


# The draft runs on one thread (a CPU's; torch's setting changes nothing on a GPU). Its matrices
# (128 x 384 for the bundled draft) are too small to gain from splitting, and every split operation
# ends by waiting for all threads: when another program holds a core, that wait is a slice of the
# scheduler's time, for each of the draft's operations. Its logits may then differ from the draft's
# on more threads in the last bits, but the target alone decides what is kept: greedy output and
# the sampled distribution are exactly the target's either way (tested).
DRAFT_THREADS = 1


class ModelDrafter:
    """A small model drafts: greedy, or sampling with the same settings as the target, on
    ``threads`` of torch's threads. It keeps its own KV cache (a ``MiniGPT`` or ``MiniLlama``) of
    ``max_length`` positions."""

    def __init__(self, model: torch.nn.Module, settings: GenerationSettings, max_length: int,
                 generator: torch.Generator | None = None, threads: int = DRAFT_THREADS) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int (torch threads for the draft), got {threads!r}")
        self.settings, self.generator, self.threads = settings, generator, threads
        self.stepper = Stepper(model, max_length)

    def propose(self, sequence: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch_threads(self.threads):
            return self._propose(sequence, k)

    def _propose(self, sequence: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens, probabilities = [], []
        current = sequence
        for _ in range(k):
            logits = self.stepper.logits(current)[-1:]  # (1, V): the next token's
            if self.settings.do_sample:
                q = distributions(logits, self.settings)
                token = torch.multinomial(q, 1, generator=self.generator)
                probabilities.append(q)
            else:
                token = logits.argmax(dim=-1, keepdim=True)
            tokens.append(token)
            current = torch.cat([current, token], dim=1)
        drafted = torch.cat(tokens, dim=1)  # (1, k)
        return drafted, torch.cat(probabilities) if probabilities else None

    def rollback(self, length: int) -> None:
        self.stepper.rollback(length)


class PromptLookupDrafter:
    """Drafts by copying: find the most recent earlier occurrence of the sequence's last n tokens
    (n from ``max_ngram`` down to 1) and propose the tokens that followed it. Deterministic: its
    proposal has probability 1.

    Prompt lookup decoding (Saxena 2023), matched differently: Saxena's code and transformers'
    ``PromptLookupCandidateGenerator`` (what its ``generate(prompt_lookup_num_tokens=...)`` runs)
    take the first valid match from the left, the earliest occurrence, and transformers matches at
    most 2 tokens by default (``max_matching_ngram_size=2``); this drafter takes the latest match
    of up to ``max_ngram`` (3) tokens. Greedy output is the target's either way; the drafts
    differ."""

    def __init__(self, max_ngram: int = 3) -> None:
        if not isinstance(max_ngram, int) or max_ngram < 1:
            raise ValueError(f"max_ngram must be a positive integer, got {max_ngram!r}")
        self.max_ngram = max_ngram

    def propose(self, sequence: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = sequence[0]
        T = tokens.shape[0]
        for n in range(min(self.max_ngram, T - 1), 0, -1):
            windows = tokens.unfold(0, n, 1)[:-1]  # every earlier n-gram, (T - n, n), excluding the last
            matches = (windows == tokens[T - n:]).all(dim=1).nonzero()
            if len(matches):
                start = int(matches[-1]) + n  # what followed the latest earlier match
                follow = tokens[start : start + k]
                if len(follow):
                    return follow[None], None
        return tokens[:0][None], None

    def rollback(self, length: int) -> None:
        """Nothing to forget: the drafter keeps no state."""


# "constant": K drafted tokens every step; "heuristic": transformers' schedule, K + 2 after a
# step whose drafts were all accepted, else K - 1 (at least 1).
SCHEDULES = ("constant", "heuristic")


@dataclass
class SpeculativeStats:
    """What a speculative run did: tokens drafted, target passes, and how often the drafted token
    at each position (0 .. K-1) was accepted."""

    drafted: int = 0
    target_steps: int = 0
    accepted_at: list[int] = field(default_factory=list)
    proposed_at: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.accepted_at)

    @property
    def acceptance_rate(self) -> float:
        """Accepted drafted tokens / drafted tokens."""
        return self.accepted / self.drafted if self.drafted else 0.0

    def record(self, proposed: int, accepted: int) -> None:
        """Count one target pass that checked ``proposed`` drafts and kept the first ``accepted``."""
        self._grow(proposed)
        for position in range(proposed):
            self.proposed_at[position] += 1
            self.accepted_at[position] += position < accepted
        self.drafted += proposed
        self.target_steps += 1

    def merge(self, other: SpeculativeStats) -> None:
        """Add another run's counts to these (statistics over several prompts)."""
        self._grow(len(other.proposed_at))
        for position, (proposed, accepted) in enumerate(zip(other.proposed_at, other.accepted_at)):
            self.proposed_at[position] += proposed
            self.accepted_at[position] += accepted
        self.drafted += other.drafted
        self.target_steps += other.target_steps

    def _grow(self, positions: int) -> None:
        while len(self.proposed_at) < positions:
            self.proposed_at.append(0)
            self.accepted_at.append(0)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) for the target's and the drafter's distributions (..., V): where a
    rejected draft's replacement is drawn from, the target's mass the drafter under-proposed.
    Defined when p and q differ (a rejection implies they do)."""
    residual = (p - q).clamp(min=0)
    return residual / residual.sum(dim=-1, keepdim=True)


def accept_drafts(
    drafted: torch.Tensor,
    target_logits: torch.Tensor,
    draft_probabilities: torch.Tensor | None,
    settings: GenerationSettings,
    generator: torch.Generator | None = None,
) -> tuple[int, torch.Tensor]:
    """The acceptance rule for one step. drafted (1, K); target_logits (K + 1, V), row i predicting
    the token at drafted position i (row K: the bonus); draft_probabilities (K, V) or None for a
    deterministic drafter. Returns how many drafted tokens are kept, m, and the token that follows
    them (1, 1): the correction at position m, or the bonus when m = K."""
    K = drafted.shape[1]
    if not settings.do_sample:
        choices = target_logits.argmax(dim=-1)  # (K + 1,)
        agree = (choices[:K] == drafted[0]).int()
        kept = int(agree.cumprod(0).sum())
        return kept, choices[kept].view(1, 1)
    p = distributions(target_logits, settings)  # (K + 1, V)
    for i in range(K):
        x = drafted[0, i]
        q_x = draft_probabilities[i, x] if draft_probabilities is not None else torch.tensor(1.0, device=p.device)
        if torch.rand(1, generator=generator, device=p.device) < torch.clamp(p[i, x] / q_x, max=1.0):
            continue
        q = draft_probabilities[i] if draft_probabilities is not None else torch.nn.functional.one_hot(
            x, p.shape[-1]).float()
        return i, torch.multinomial(residual_distribution(p[i], q), 1, generator=generator).view(1, 1)
    return K, torch.multinomial(p[K], 1, generator=generator).view(1, 1)


def expected_tokens_per_step(acceptance: float, k: int) -> float:
    """Leviathan et al.'s expected tokens per target pass, (1 - a^(K+1)) / (1 - a), when each of
    the K drafted tokens is accepted with probability a independently of the others (K + 1 when
    a = 1): the accepted run plus the one token the target adds itself."""
    if not 0.0 <= acceptance <= 1.0:
        raise ValueError(f"acceptance must be a probability in [0, 1], got {acceptance!r}")
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if acceptance == 1.0:
        return float(k + 1)
    return (1 - acceptance ** (k + 1)) / (1 - acceptance)


def predicted_speedup(acceptance: float, k: int, draft_cost: float, verify_cost: float) -> float:
    """Tokens per second of speculative decoding over plain decoding, from the cost of one
    speculative step in units of one plain target step: K draft steps of ``draft_cost`` (c) and
    one verification of K + 1 tokens costing ``verify_cost`` (1 if a chunk cost no more than one
    token). Speedup = expected_tokens_per_step(a, K) / (K c + verify_cost)."""
    if draft_cost < 0 or verify_cost <= 0:
        raise ValueError(f"draft_cost must be >= 0 and verify_cost > 0, got {draft_cost!r} and {verify_cost!r}")
    return expected_tokens_per_step(acceptance, k) / (k * draft_cost + verify_cost)


@torch.no_grad()
def check_assistant(assistant_model: torch.nn.Module, target: torch.nn.Module) -> None:
    """The draft model's rules: the target's vocabulary (the same tokenizer, so that a drafted id
    means the same token to both; the rule transformers' assisted generation states too) and the
    target's device. Each broken rule is a ``ValueError`` naming ``assistant_model``."""
    if vocabulary_size(assistant_model) != vocabulary_size(target):
        raise ValueError(f"assistant_model has a vocabulary of {vocabulary_size(assistant_model)} tokens but "
                         f"the model has {vocabulary_size(target)}; they must share a tokenizer")
    if model_device(assistant_model) != model_device(target):
        raise ValueError(f"assistant_model is on {model_device(assistant_model)} but the model on "
                         f"{model_device(target)}; put both on one device")


def speculative_generate(
    target: torch.nn.Module,
    drafter: Drafter,
    input_ids: torch.Tensor,
    num_assistant_tokens: int,
    settings: GenerationSettings,
    generator: torch.Generator | None = None,
    schedule: str = "constant",
) -> tuple[torch.Tensor, SpeculativeStats]:
    """Generate up to ``settings.max_new_tokens`` after ``input_ids`` (1, T) with ``target`` (a
    MiniGPT, run through its KV cache, or a transformers causal LM, run on the whole sequence),
    checking ``num_assistant_tokens`` drafted tokens per target pass. Returns the ids (1, T + new)
    and the run's statistics. Greedy (``settings.do_sample`` False) gives exactly the target's
    greedy tokens; sampling gives exactly the target's distribution."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"speculative decoding takes one sequence (batch size 1, as transformers), input_ids "
                         f"(1, T); got {tuple(input_ids.shape)}")
    check_prompt(target, input_ids, settings.max_new_tokens)  # generate's own checks
    if isinstance(drafter, ModelDrafter):
        check_assistant(drafter.stepper.model, target)
    if not isinstance(num_assistant_tokens, int) or num_assistant_tokens < 1:
        raise ValueError(f"num_assistant_tokens must be a positive integer, got {num_assistant_tokens!r}")
    if settings.repetition_penalty != 1.0 or settings.frequency_penalty or settings.presence_penalty:
        raise ValueError("speculative decoding does not support repetition, frequency or presence penalties here")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if settings.num_beams != 1 or settings.num_return_sequences != 1:
        raise ValueError(f"speculative decoding does not combine with beam search or num_return_sequences > 1 "
                         f"(got num_beams={settings.num_beams}, num_return_sequences={settings.num_return_sequences})")
    total = input_ids.shape[1] + settings.max_new_tokens
    verifier = Stepper(target, total)
    sequence = input_ids
    stats = SpeculativeStats()
    k = num_assistant_tokens
    while sequence.shape[1] < total:
        room = total - sequence.shape[1] - 1  # the step always adds one token of the target's own
        drafted, draft_probabilities = drafter.propose(sequence, min(k, room)) if room else (
            sequence[:, :0], None)
        K = drafted.shape[1]
        target_logits = verifier.logits(torch.cat([sequence, drafted], dim=1))[-(K + 1):]  # (K + 1, V)
        kept, following = accept_drafts(drafted, target_logits, draft_probabilities, settings, generator)
        stats.record(K, kept)
        if schedule == "heuristic":  # transformers' rule: longer drafts after a full acceptance
            k = k + 2 if kept == K else max(1, k - 1)
        new_tokens = torch.cat([drafted[:, :kept], following], dim=1)
        ends = settings.is_eos(new_tokens[0])  # settings.eos_token_id: one id or several
        if ends.any():
            first_eos = int(ends.nonzero()[0])
            return torch.cat([sequence, new_tokens[:, : first_eos + 1]], dim=1), stats
        sequence = torch.cat([sequence, new_tokens], dim=1)
        verifier.rollback(sequence.shape[1] - 1)  # keep what the target saw of the kept tokens
        drafter.rollback(sequence.shape[1] - 1)
    return sequence, stats


# Measured on the bundled pair by `bench speculative` (greedy, 5 prompts x 200 tokens, interleaved,
# median of paired ratios, 2 cores of an AMD EPYC; the README's table): K = 5 gave 1.68x plain
# cached generation with AVX-512 and 1.48x limited to AVX2, K = 3 1.53x and 1.36x, K = 7 1.83x and
# 1.66x (the machine's noise is about 0.2x); K = 1 about 1x. Longer drafts (K = 7, 8) did as well or
# better on this greedy benchmark; 5 wastes fewer drafts where fewer are accepted (sampling, other
# text). transformers' heuristic schedule was slower than a constant K (measured with the earlier
# draft: 1.20x, 1.14x, 1.01x from 5, 10, 20).
DEFAULT_ASSISTANT_TOKENS = 5
# The prompts lessons 04 and 07 and the speculative benchmark generate from.
SPECULATIVE_PROMPTS = ("ROMEO.\n", "KING LEAR.\nBlow, winds,", "PORTIA.\nThe quality of mercy", "MACBETH.\nIs this",
                       "HAMLET.\nTo be")


def assisted_generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    generator: torch.Generator | None,
    assistant_model: torch.nn.Module | None,
    num_assistant_tokens: int | None,
    schedule: str,
    prompt_lookup_num_tokens: int | None,
) -> torch.Tensor:
    """``generate``'s speculative path, with transformers' argument names: a draft model
    (``assistant_model``, ``num_assistant_tokens`` per step, default ``DEFAULT_ASSISTANT_TOKENS``)
    or prompt lookup (``prompt_lookup_num_tokens``) drafts for ``model``. Returns (1, T + new)."""
    if assistant_model is not None and prompt_lookup_num_tokens is not None:
        raise ValueError("pass either assistant_model or prompt_lookup_num_tokens, not both")
    if num_assistant_tokens is not None and assistant_model is None:
        raise ValueError("num_assistant_tokens needs an assistant_model; prompt lookup takes prompt_lookup_num_tokens")
    if not bool(attention_mask.all()):
        raise ValueError("speculative decoding takes one unpadded prompt; attention_mask has padding")
    drafter: Drafter
    if assistant_model is not None:  # (speculative_generate checks it: check_assistant)
        k = DEFAULT_ASSISTANT_TOKENS if num_assistant_tokens is None else num_assistant_tokens
        drafter = ModelDrafter(assistant_model, settings, input_ids.shape[1] + settings.max_new_tokens, generator)
    else:
        if not isinstance(prompt_lookup_num_tokens, int) or prompt_lookup_num_tokens < 1:
            raise ValueError(f"prompt_lookup_num_tokens must be a positive integer, got {prompt_lookup_num_tokens!r}")
        k, drafter = prompt_lookup_num_tokens, PromptLookupDrafter()
    if settings.max_new_tokens == 0:
        return input_ids
    out, _ = speculative_generate(model, drafter, input_ids, k, settings, generator, schedule)
    return out


def drafting_like_ours(hf_draft: torch.nn.Module, num_assistant_tokens: int) -> torch.nn.Module:
    """A copy of a ``transformers`` draft model that drafts as our ``generate`` does: exactly
    ``num_assistant_tokens`` tokens per step (schedule "constant") and no confidence threshold.
    transformers 5.x drafts up to 20 tokens by default and stops a draft early once the draft's
    top probability falls below 0.4 (``assistant_confidence_threshold``); comparing the two
    loops at the same drafting policy leaves only what each does around the models."""
    if not isinstance(num_assistant_tokens, int) or num_assistant_tokens < 1:
        raise ValueError(f"num_assistant_tokens must be a positive integer, got {num_assistant_tokens!r}")
    draft = copy.deepcopy(hf_draft)
    generation_config: Any = draft.generation_config  # a transformers GenerationConfig
    generation_config.num_assistant_tokens = num_assistant_tokens
    generation_config.num_assistant_tokens_schedule = "constant"
    generation_config.assistant_confidence_threshold = 0.0
    return draft
