"""Lesson 03's exercises: the top-k and top-p filters, the repetition penalty, the sampling loop
and beam search, each against the library's ``generate`` (which matches transformers').

Taught in: lesson 03's workbook (``exercises/03_sampling_and_generate``).
"""

from __future__ import annotations

import torch

from ..generation import generate
from ..sampling import apply_repetition_penalty, top_k_filter, top_p_filter
from .harness import Exercise, generator
from .models import BUNDLED, TINY, bundled_tokenizer, prompts, reference_model


def _filter_cases(seed: int) -> list[torch.Tensor]:
    """Logits (B, V) for the filters, small first: ties, a uniform row, a peaked row, random rows."""
    draws = generator(seed)
    return [
        torch.tensor([[1.0, 2.0]]),
        torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]]),  # a tie for second place
        torch.zeros(1, 4),  # all tied: probabilities exactly 1/4, sums that land on 0.5 and 0.75
        torch.tensor([[0.35, 0.25, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03]]).log(),
        torch.randn(3, 10, generator=draws) * 2,
        torch.randint(-3, 3, (4, 50), generator=draws).float(),  # many ties
    ]


def _sorted_rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.sort(dim=-1).values  # which of several tied tokens is kept does not matter


TOP_K = Exercise(
    name="top_k", lesson="03", subject="top_k_by_hand",
    cases=lambda: [{"logits": logits, "top_k": k} for logits in _filter_cases(5) for k in (1, 2, 3)
                   if k <= logits.shape[-1]],
    reference=top_k_filter, atol=0.0)
"""``subject(logits, top_k)``: every token below its row's top_k-th largest logit set to -inf, ties
with it kept (the rule of ``generation.top_k_filter`` and transformers)."""

TOP_P = Exercise(
    name="top_p", lesson="03", subject="top_p_by_hand",
    cases=lambda: [{"logits": logits, "top_p": p} for logits in _filter_cases(6) for p in (0.25, 0.5, 0.75, 0.9)],
    reference=top_p_filter, atol=1e-6, canonical=_sorted_rows)
"""``subject(logits, top_p)``: the nucleus of each row kept, the crossing token included (the rule
of ``generation.top_p_filter`` and transformers). Tied tokens may be kept either way."""


def _penalty_cases() -> list[dict]:
    draws = generator(7)
    return [
        {"logits": torch.tensor([[2.0, -1.0]]), "input_ids": torch.tensor([[0]]), "penalty": 2.0},
        {"logits": torch.tensor([[2.0, -1.0]]), "input_ids": torch.tensor([[1]]), "penalty": 2.0},  # a negative logit
        {"logits": torch.tensor([[2.0, 1.0, -1.0, 0.5]]), "input_ids": torch.tensor([[0, 2, 2]]), "penalty": 1.5},
        {"logits": torch.randn(3, 20, generator=draws), "input_ids": torch.randint(0, 20, (3, 6), generator=draws),
         "penalty": 1.3},
        {"logits": torch.randn(2, 20, generator=draws), "input_ids": torch.randint(0, 20, (2, 9), generator=draws),
         "penalty": 0.7},  # below 1 encourages repeats
    ]


REPETITION_PENALTY = Exercise(
    name="repetition_penalty", lesson="03", subject="repetition_penalty_by_hand", cases=_penalty_cases,
    reference=apply_repetition_penalty)
"""``subject(logits, input_ids, penalty)``: the rule of ``generation.apply_repetition_penalty``."""


def _sampling_cases() -> list[dict]:
    settings = [(1.0, 3, 1.0), (0.7, 5, 0.9), (1.5, 8, 0.8), (0.8, 40, 0.9), (1.0, 50, 0.5)]
    shapes = [(TINY, 1, 2), (TINY, 1, 3), (TINY, 2, 4), (BUNDLED, 1, 6), (BUNDLED, 2, 5)]
    return [{"model": label, "prompt": prompt, "max_new_tokens": 6, "temperature": t, "top_k": k, "top_p": p,
             "seed": seed} for seed, ((label, prompt), (t, k, p)) in enumerate(zip(prompts(14, shapes), settings))]


def _sampling_answer(learner, model, prompt, max_new_tokens, temperature, top_k, top_p, seed):
    return learner(reference_model(model), prompt, max_new_tokens, temperature, top_k, top_p,
                   torch.Generator().manual_seed(seed))


def _sampling_reference(model, prompt, max_new_tokens, temperature, top_k, top_p, seed):
    return generate(reference_model(model), prompt, max_new_tokens, do_sample=True, temperature=temperature,
                    top_k=top_k, top_p=top_p, generator=torch.Generator().manual_seed(seed))


SAMPLING_LOOP = Exercise(
    name="sampling_loop", lesson="03", subject="sample_by_hand", cases=_sampling_cases, answer=_sampling_answer,
    reference=_sampling_reference, atol=0.0)
"""``subject(model, prompt, max_new_tokens, temperature, top_k, top_p, generator)``: prompt (B, T)
extended by max_new_tokens tokens, each drawn from the last position's logits after temperature,
top-k and top-p; with the same seed, exactly ``generate(do_sample=True)``'s tokens."""


def _beam_cases() -> list[dict]:
    """Small prompts first, end-of-text each case's first or second most likely first token (so
    that hypotheses finish early), length penalties from 0 to 3; last, a lesson-sized run: ROMEO's
    line, 3 beams, 30 new tokens, end of line as EOS (a frequent one), length_penalty 2."""
    cases = []
    settings = [(2, 3, None, 1.0), (2, 4, 0, 1.0), (3, 5, 1, 1.0), (3, 6, 0, 0.5), (2, 6, 1, 2.0), (4, 8, 1, 0.0),
                (4, 10, None, 1.0), (3, 8, 0, 3.0)]
    shapes = [(TINY, 1, 2), (TINY, 1, 2), (TINY, 1, 3), (TINY, 1, 4), (BUNDLED, 1, 4), (BUNDLED, 1, 6),
              (BUNDLED, 1, 5), (BUNDLED, 1, 3)]
    for (label, prompt), (beams, new, eos_rank, penalty) in zip(prompts(15, shapes), settings):
        eos = None
        if eos_rank is not None:
            with torch.no_grad():
                eos = int(reference_model(label)(prompt)[0, -1].topk(2).indices[eos_rank])
        cases.append({"model": label, "prompt": prompt, "num_beams": beams, "max_new_tokens": new,
                      "eos_token_id": eos, "length_penalty": penalty})
    # A frequent EOS (token 0 of the tiny model): an ending candidate ranked below the best num_beams
    # must be dropped, neither finished nor continued.
    cases.insert(4, {"model": TINY, "prompt": torch.tensor([[7]]), "num_beams": 2, "max_new_tokens": 5,
                     "eos_token_id": 6, "length_penalty": 2.0})
    tokenizer = bundled_tokenizer()
    romeo = torch.tensor([tokenizer("ROMEO.\nBut soft, what light")["input_ids"]])
    newline = tokenizer("\n")["input_ids"][0]
    cases.append({"model": BUNDLED, "prompt": romeo, "num_beams": 3, "max_new_tokens": 30, "eos_token_id": newline,
                  "length_penalty": 2.0})
    return cases


def _beam_answer(learner, model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty):
    return learner(reference_model(model), prompt, num_beams, max_new_tokens, eos_token_id, length_penalty)


def _beam_reference(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty):
    return generate(reference_model(model), prompt, max_new_tokens, num_beams=num_beams, eos_token_id=eos_token_id,
                    length_penalty=length_penalty, early_stopping=True)


BEAM_SEARCH = Exercise(
    name="beam_search", lesson="03", subject="beam_search_by_hand", cases=_beam_cases, answer=_beam_answer,
    reference=_beam_reference, atol=0.0)
"""``subject(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty)``: the best
finished hypothesis for one prompt (1, T), token for token ``generate(num_beams=...,
early_stopping=True)``."""

EXERCISES = (TOP_K, TOP_P, SAMPLING_LOOP, BEAM_SEARCH, REPETITION_PENALTY)
