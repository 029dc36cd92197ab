"""The exercise workbooks: every checker passes on the lesson's own solution and fails, with its
message, on the blank stub and on plausible wrong answers; the workbooks are what the lessons
give, and a fresh kernel runs one until its first blank."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import MiniGPT, checks
from course_utils.checks import ExerciseFailed
from course_utils.generation import apply_temperature, top_k_filter, top_p_filter
from course_utils.hints import HINTS
from course_utils.kv_cache import GrowingKVCache
from course_utils.model import MLP, GPTConfig, causal_mask
from course_utils.post_training import IGNORE_INDEX, LoRALinear

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def lesson_solutions() -> list[tuple[str, str, str, str]]:
    """(lesson, checker name, what the checker is given (a function or a class), the solved source
    of that definition) for every marked exercise."""
    found = []
    for lesson in LESSONS:
        for cell in jupytext.read(lesson).cells:
            if cell.cell_type != "code" or "# EXERCISE" not in cell.source:
                continue
            _, exercises = make_exercises.blank_cell(cell.source, lesson.name)
            lines = cell.source.split("\n")
            for name, subject in dict(exercises).items():
                heads = (f"def {subject}(", f"class {subject}")
                start = next(i for i, line in enumerate(lines) if line.startswith(heads))
                source = "\n".join(lines[start:make_exercises.definition_end(lines, start)])
                found.append((lesson.name, name, subject, source))
    return found


SOLUTIONS = lesson_solutions()
IDS = [f"{s[0][:2]}-{s[1]}" for s in SOLUTIONS]


def lesson_namespace(lesson: str) -> dict:
    """The names a lesson's solved exercises define, in order, beside the names lessons import."""
    namespace = {"torch": torch, "F": F, "math": math, "nn": torch.nn, "causal_mask": causal_mask,
                 "GPTConfig": GPTConfig, "MLP": MLP, "apply_temperature": apply_temperature,
                 "top_k_filter": top_k_filter, "top_p_filter": top_p_filter, "GrowingKVCache": GrowingKVCache,
                 "MiniGPT": MiniGPT, "LoRALinear": LoRALinear, "IGNORE_INDEX": IGNORE_INDEX}
    for other, _, _, source in SOLUTIONS:
        if other == lesson:
            exec(source, namespace)
    return namespace


def define(source: str, subject: str, lesson: str):
    """What ``source`` defines under ``subject``, among the rest of its lesson's solved exercises."""
    namespace = lesson_namespace(lesson)
    exec(source, namespace)
    return namespace[subject]


@pytest.mark.parametrize("lesson, name, subject, source", SOLUTIONS, ids=IDS)
def test_every_checker_passes_on_the_lessons_solution(lesson, name, subject, source, capsys):
    getattr(checks, name)(define(source, subject, lesson))
    assert capsys.readouterr().out.startswith(f"{name}: correct on all ")


@pytest.mark.parametrize("lesson, name, subject, source", SOLUTIONS, ids=IDS)
def test_a_blank_stub_says_what_to_write(lesson, name, subject, source):
    blank, _ = make_exercises.blank_cell(source, lesson)
    with pytest.raises(ExerciseFailed, match=f"{name}: not written yet. The task: "):
        getattr(checks, name)(define(blank, subject, lesson))


# Plausible wrong answers, each a mistake a learner makes; every one must fail with a message that
# shows the input, the expected and the actual output, and the hint.
def mask_without_the_diagonal(T):
    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)  # a token may not see itself


def mask_transposed(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool))  # sees the future, not the past


def mask_of_ones_and_zeros(T):
    return torch.tril(torch.ones(T, T))  # right pattern, float instead of bool


def attention_unscaled(q, k, v, causal=True):
    scores = q @ k.transpose(-2, -1)  # forgot / sqrt(d)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_softmax_over_queries(q, k, v, causal=True):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-2) @ v


def attention_masked_after_softmax(q, k, v, causal=True):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if causal:
        weights = weights.masked_fill(~causal_mask(q.shape[-2]), 0.0)  # rows no longer sum to 1
    return weights @ v


def attention_ignoring_causal(q, k, v, causal=True):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def log_probs_off_by_one(logits, ids):
    return F.log_softmax(logits[1:], dim=-1).gather(1, ids[1:, None]).squeeze(1)  # logits t scored against t


def log_probs_without_log(logits, ids):
    return F.softmax(logits[:-1], dim=-1).gather(1, ids[1:, None]).squeeze(1)


def log_probs_over_positions(logits, ids):
    return F.log_softmax(logits[:-1], dim=0).gather(1, ids[1:, None]).squeeze(1)


def heads_viewed_directly(t, n_head):
    B, T, C = t.shape
    return t.view(B, n_head, T, C // n_head)  # the right shape, positions and channels mixed


def heads_with_channels_interleaved(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)  # head h gets every H-th channel


def heads_not_transposed(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head)














def top_k_by_index(logits, top_k):
    keep = torch.topk(logits, top_k, dim=-1).indices  # exactly k: a token tied with the k-th is dropped
    return torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))


def top_k_keeps_one_too_many(logits, top_k):
    kth = torch.topk(logits, min(top_k + 1, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_drops_the_crossing_token(logits, top_p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    remove_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > top_p  # includes the token itself
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))


def top_p_without_sorting(logits, top_p):
    remove = logits.softmax(dim=-1).cumsum(dim=-1) - logits.softmax(dim=-1) >= top_p  # in vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def penalty_divides_negatives(logits, input_ids, penalty):
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, input_ids, True)
    return torch.where(seen, logits / penalty, logits)  # a negative logit rises


def penalty_per_occurrence(logits, input_ids, penalty):
    counts = torch.zeros_like(logits).scatter_add(-1, input_ids, torch.ones_like(input_ids, dtype=logits.dtype))
    factor = penalty ** counts
    return torch.where(logits < 0, logits * factor, logits / factor)


def previous_token_above_the_diagonal(w):
    return torch.diagonal(w, offset=1).mean()  # the future: always 0 under the mask


def previous_token_over_all_queries(w):
    return torch.diagonal(w, offset=-1).sum() / w.shape[-1]  # divides by T, counting query 0


def distance_without_clamp_forward(w):
    positions = torch.arange(w.shape[-1], dtype=w.dtype)
    return (w * (positions[None, :] - positions[:, None])).sum(-1).mean()  # j - i: negative


def distance_summed_over_queries(w):
    positions = torch.arange(w.shape[-1], dtype=w.dtype)
    return (w * (positions[:, None] - positions[None, :]).clamp(min=0)).sum()


def entropy_with_log(w):
    return -(w * torch.log(w)).sum(-1).mean()  # 0 * -inf = nan on the masked future


def entropy_in_bits(w):
    return -torch.special.xlogy(w, w).sum(-1).mean() / math.log(2)


def windows_targets_not_shifted(tokens, starts, length):
    inputs = torch.stack([tokens[s : s + length] for s in starts.tolist()])
    return inputs, inputs.clone()  # predicting the token itself


def windows_targets_shifted_back(tokens, starts, length):
    inputs = torch.stack([tokens[s + 1 : s + 1 + length] for s in starts.tolist()])
    targets = torch.stack([tokens[s : s + length] for s in starts.tolist()])
    return inputs, targets  # inputs and targets swapped






def bpb_per_character(nll, text):
    return nll.sum().item() / math.log(2) / len(text)  # characters, not bytes


def bpb_in_nats(nll, text):
    return nll.sum().item() / len(text.encode("utf-8"))


def bpb_from_the_mean(nll, text):
    return nll.mean().item() / math.log(2) / len(text.encode("utf-8"))


def residual_not_normalised(p, q):
    return (p - q).clamp(min=0)


def residual_without_clamp(p, q):
    return (p - q) / (p - q).sum()  # sums to 0: negative "probabilities", a division by 0


def residual_from_p(p, q):
    return p  # drawing the correction from the target alone over-weights what the drafter proposed


def greedy_counts_all_matches(drafted, choices):
    kept = int((drafted == choices[: len(drafted)]).sum())  # a match after a mismatch counts too
    return kept, int(choices[kept])


def greedy_bonus_from_the_draft(drafted, choices):
    kept = int((drafted == choices[: len(drafted)]).int().cumprod(0).sum())
    return kept, int(choices[kept - 1]) if kept else int(choices[0])  # off by one






def step_without_the_cache(q_new, k_new, v_new, cached_k, cached_v):
    return (q_new @ k_new.transpose(-2, -1) / q_new.shape[-1] ** 0.5).softmax(-1) @ v_new  # sees itself only


def step_with_a_square_mask(q_new, k_new, v_new, cached_k, cached_v):
    keys, values = torch.cat([cached_k, k_new], dim=2), torch.cat([cached_v, v_new], dim=2)
    scores = q_new @ keys.transpose(-2, -1) / q_new.shape[-1] ** 0.5
    scores = scores.masked_fill(~causal_mask(keys.shape[2])[:1], float("-inf"))  # row 0: only the first key
    return scores.softmax(-1) @ values


def step_new_key_first(q_new, k_new, v_new, cached_k, cached_v):
    keys = torch.cat([k_new, cached_k], dim=2)  # keys reordered, values not: mismatched pairs
    values = torch.cat([cached_v, v_new], dim=2)
    return (q_new @ keys.transpose(-2, -1) / q_new.shape[-1] ** 0.5).softmax(-1) @ values


def mask_not_shifted(n_new, n_past):
    return torch.tril(torch.ones(n_new, n_past + n_new, dtype=torch.bool))  # hides the cached keys


def mask_shifted_one_too_far(n_new, n_past):
    return ~torch.triu(torch.ones(n_new, n_past + n_new, dtype=torch.bool), diagonal=n_past + 2)






LESSON_02 = lesson_namespace("02_mini_gpt.py")


def _qkv(module, x):
    B, T, C = x.shape
    q, k, v = module.c_attn(x).split(C, dim=2)
    return [t.view(B, T, module.n_head, C // module.n_head).transpose(1, 2) for t in (q, k, v)]


def _future(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


class AttentionUnscaled(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # scores not divided by sqrt(D)
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1)).masked_fill(_future(T), float("-inf")).softmax(-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class AttentionScaledByWidth(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # divided by sqrt(C), the model's width, not the head's
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / C**0.5).masked_fill(_future(T), float("-inf")).softmax(-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class AttentionHeadsMergedWithoutTranspose(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # (B, H, T, D) reshaped straight to (B, T, C): positions and heads mixed
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(_future(T), float("-inf"))
        return self.c_proj((weights.softmax(-1) @ v).reshape(B, T, C))


class AttentionWithoutTheMask(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).softmax(-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class BlockPostNorm(LESSON_02["BlockByHand"]):
    def forward(self, x):  # the 2017 layout: normalise after adding
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class BlockWithoutTheMlpResidual(LESSON_02["BlockByHand"]):
    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return self.mlp(self.ln_2(x))


class BlockInParallel(LESSON_02["BlockByHand"]):
    def forward(self, x):  # the MLP reads the block's input, not the stream after attention
        return x + self.attn(self.ln_1(x)) + self.mlp(self.ln_2(x))


class BlockWithoutLayerNorms(LESSON_02["BlockByHand"]):
    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class GptWithoutPositions(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):
        x = self.wte(ids)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GptBlocksReversed(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in reversed(self.h):
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GptWithoutFinalNorm(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(x)


def sampling_greedily(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):
        logits = model(sequence)[:, -1]
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    return sequence


def sampling_with_temperature_last(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # the filters see the unscaled distribution
        logits = apply_temperature(top_p_filter(top_k_filter(model(sequence)[:, -1], top_k), top_p), temperature)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def sampling_from_the_first_position(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):
        logits = top_p_filter(top_k_filter(apply_temperature(model(sequence)[:, 0], temperature), top_k), top_p)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def sampling_without_the_generator(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    torch.manual_seed(1234)  # draws that no seed passed in can repeat
    sequence = prompt
    for _ in range(max_new_tokens):
        logits = top_p_filter(top_k_filter(apply_temperature(model(sequence)[:, -1], temperature), top_k), top_p)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1)], dim=1)
    return sequence


def _beam_search_variant(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty, *,
                         stop_at_eos=True, normalise=lambda total, new, prompt_length, penalty: total / new**penalty,
                         answer="finished"):
    running, finished = [(prompt[0], 0.0)], []
    for new in range(1, max_new_tokens + 1):
        log_probs = model(torch.stack([tokens for tokens, _ in running]))[:, -1].log_softmax(-1)
        sums = torch.tensor([score for _, score in running])[:, None] + log_probs
        top_sums, top_indices = sums.flatten().topk(2 * num_beams)
        continuing = []
        for rank, (total, index) in enumerate(zip(top_sums.tolist(), top_indices.tolist())):
            beam, token = divmod(index, log_probs.shape[1])
            tokens = torch.cat([running[beam][0], torch.tensor([token])])
            if (stop_at_eos and token == eos_token_id) or new == max_new_tokens:
                if rank < num_beams:
                    finished.append((normalise(total, new, prompt.shape[1], length_penalty), tokens))
            elif len(continuing) < num_beams:
                continuing.append((tokens, total))
        finished = sorted(finished, key=lambda h: h[0], reverse=True)[:num_beams]
        if answer == "running" and continuing:
            best_running = continuing[0][0]
        running = continuing
        if len(finished) == num_beams:
            break
    if answer == "running" and running:
        return best_running[None]  # the best beam still running when the search stops
    return finished[0][1][None]


def beams_extend_past_eos(*arguments):  # EOS treated as any other token
    return _beam_search_variant(*arguments, stop_at_eos=False)


def beams_without_length_penalty(*arguments):
    return _beam_search_variant(*arguments, normalise=lambda total, new, prompt_length, penalty: total)


def beams_normalised_by_the_whole_length(*arguments):  # the prompt counted in the length
    def by_whole_length(total, new, prompt_length, penalty):
        return total / (new + prompt_length) ** penalty

    return _beam_search_variant(*arguments, normalise=by_whole_length)


def beams_returning_a_running_beam(*arguments):
    return _beam_search_variant(*arguments, answer="running")


def cached_loop_without_a_cache(model, prompt, max_new_tokens):  # right tokens, the whole sequence every step
    sequence = prompt
    for _ in range(max_new_tokens):
        sequence = torch.cat([sequence, model(sequence)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return sequence


def cached_loop_feeding_everything(model, prompt, max_new_tokens):  # the cache sees each token again
    cache, sequence = GrowingKVCache(), prompt
    for _ in range(max_new_tokens):
        sequence = torch.cat([sequence, model(sequence, cache=cache)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return sequence


def cached_loop_with_a_new_cache_each_step(model, prompt, max_new_tokens):
    sequence = prompt
    logits = model(prompt, cache=GrowingKVCache())
    for _ in range(max_new_tokens):
        chosen = logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, chosen], dim=1)
        logits = model(chosen, cache=GrowingKVCache())  # no past: each token alone
    return sequence


def cached_loop_never_calling_the_model(model, prompt, max_new_tokens):  # a guess, no model at all
    return torch.cat([prompt, torch.zeros(prompt.shape[0], max_new_tokens, dtype=prompt.dtype)], dim=1)


def cached_loop_skipping_the_prompt(model, prompt, max_new_tokens):  # only the last prompt token is run
    cache, sequence = GrowingKVCache(), prompt
    logits = model(prompt[:, -1:], cache=cache)
    for _ in range(max_new_tokens):
        chosen = logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, chosen], dim=1)
        logits = model(chosen, cache=cache)
    return sequence


def step_without_zero_grad(model, optimizer, inputs, targets, grad_clip):  # gradients pile up
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_clipping_after_the_update(model, optimizer, inputs, targets, grad_clip):
    loss = model(inputs, targets)
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    return loss.item()


def step_without_clipping(model, optimizer, inputs, targets, grad_clip):
    loss = model(inputs, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clipping_each_value(model, optimizer, inputs, targets, grad_clip):  # by value, not by the total norm
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def induction_on_the_earlier_occurrence(w, block):  # the same token, not the one after it
    queries = torch.arange(block, 2 * block)
    return w[queries, queries - block].mean()


def induction_over_every_query(w, block):
    queries = torch.arange(1, 2 * block)
    return w[queries, (queries - block + 1).clamp(min=0)].mean()


def induction_summed(w, block):
    queries = torch.arange(block, 2 * block)
    return w[queries, queries - block + 1].sum()


def step_without_the_bonus(drafted, p, q, generator):
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    return len(drafted), int(drafted[-1])  # no bonus: the last draft again


def step_correcting_from_p(drafted, p, q, generator):  # the correction drawn from p, not the residual
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(p[i], 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_accepting_when_p_beats_q(drafted, p, q, generator):  # no random draw: accept only if p >= q
    for i, x in enumerate(drafted.tolist()):
        if p[i, x] >= q[i, x]:
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


LESSON_08 = lesson_namespace("08_modern_decoders.py")


def rope_adjacent_pairs(x, cos, sin):  # pairs (x_0, x_1), (x_2, x_3), ...: not Llama's layout
    even, odd = x[..., 0::2], x[..., 1::2]
    c, s_ = cos[:, None, :, : x.shape[-1] // 2], sin[:, None, :, : x.shape[-1] // 2]
    return torch.stack([even * c - odd * s_, even * s_ + odd * c], dim=-1).flatten(-2)


def rope_turning_backwards(x, cos, sin):
    first, second = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat([second, -first], dim=-1) * sin[:, None]


def rope_without_the_rotated_half(x, cos, sin):
    return x * cos[:, None] + x * sin[:, None]


def rope_cos_and_sin_swapped(x, cos, sin):
    first, second = x.chunk(2, dim=-1)
    return x * sin[:, None] + torch.cat([-second, first], dim=-1) * cos[:, None]


class RMSNormCentred(LESSON_08["RMSNormByHand"]):
    def forward(self, x):  # LayerNorm's centring, which RMSNorm leaves out
        centred = x - x.mean(-1, keepdim=True)
        return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RMSNormEpsOutsideTheRoot(LESSON_08["RMSNormByHand"]):
    def forward(self, x):
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + self.eps) * self.weight


class RMSNormWithoutTheWeight(LESSON_08["RMSNormByHand"]):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class RMSNormByTheStd(LESSON_08["RMSNormByHand"]):
    def forward(self, x):  # the standard deviation is not the root-mean-square
        return x / (x.var(-1, keepdim=True, unbiased=False) + self.eps).sqrt() * self.weight


class SwiGLUWithGelu(LESSON_08["SwiGLUByHand"]):
    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x)) * self.up_proj(x))


class SwiGLUGateOnTheWrongSide(LESSON_08["SwiGLUByHand"]):
    def forward(self, x):
        return self.down_proj(self.gate_proj(x) * F.silu(self.up_proj(x)))


class SwiGLUWithoutTheGate(LESSON_08["SwiGLUByHand"]):
    def forward(self, x):
        return self.down_proj(F.silu(self.up_proj(x)))


class SwiGLUAddingInsteadOfGating(LESSON_08["SwiGLUByHand"]):
    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) + self.up_proj(x))


def repeat_kv_tiled(x, n_rep):  # heads a, b -> a, b, a, b: query head h reads kv head h % K
    return x.repeat(1, n_rep, 1, 1)


def repeat_kv_along_positions(x, n_rep):
    return x.repeat_interleave(n_rep, dim=2)


def repeat_kv_along_head_size(x, n_rep):
    return x.repeat_interleave(n_rep, dim=-1)


def mask_off_by_one(prompt, answer):  # forgot the shift: the answer's first token is never a target
    sequence = torch.tensor(prompt + answer)
    targets = sequence[1:].clone()
    targets[: len(prompt)] = IGNORE_INDEX
    return sequence[:-1], targets


def mask_targets_not_shifted(prompt, answer):
    sequence = torch.tensor(prompt + answer)
    targets = sequence[:-1].clone()
    targets[: len(prompt)] = IGNORE_INDEX
    return sequence[:-1], targets


def mask_with_zeros(prompt, answer):  # 0 is a real token: the loss would train the model to say it
    sequence = torch.tensor(prompt + answer)
    targets = sequence[1:].clone()
    targets[: len(prompt) - 1] = 0
    return sequence[:-1], targets


def mask_on_the_inputs(prompt, answer):  # the inputs masked as well: the model cannot read the prompt
    sequence = torch.tensor(prompt + answer)
    targets = sequence[1:].clone()
    targets[: len(prompt) - 1] = IGNORE_INDEX
    inputs = sequence[:-1].clone()
    inputs[: len(prompt) - 1] = IGNORE_INDEX
    return inputs, targets


LESSON_09 = lesson_namespace("09_assistant.py")


class LoRAWithoutTheScale(LESSON_09["LoRAByHand"]):
    def forward(self, x):
        return self.base(x) if self.merged else self.base(x) + (x @ self.lora_A.T) @ self.lora_B.T


class LoRAWithoutTheBase(LESSON_09["LoRAByHand"]):
    def forward(self, x):
        return self.scale * (x @ self.lora_A.T) @ self.lora_B.T


class LoRAIgnoringMerged(LESSON_09["LoRAByHand"]):  # the update counted twice once it is merged
    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T


class LoRAScaledByRank(LESSON_09["LoRAByHand"]):
    def forward(self, x):
        update = (x @ self.lora_A.T) @ self.lora_B.T / self.lora_A.shape[0]
        return self.base(x) if self.merged else self.base(x) + update


def dpo_without_the_reference(chosen, rejected, reference_chosen, reference_rejected, beta):
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def dpo_sign_flipped(chosen, rejected, reference_chosen, reference_rejected, beta):
    return -F.logsigmoid(beta * ((rejected - reference_rejected) - (chosen - reference_chosen))).mean()


def dpo_without_beta(chosen, rejected, reference_chosen, reference_rejected, beta):
    return -F.logsigmoid((chosen - reference_chosen) - (rejected - reference_rejected)).mean()


def dpo_summed(chosen, rejected, reference_chosen, reference_rejected, beta):
    return -F.logsigmoid(beta * ((chosen - reference_chosen) - (rejected - reference_rejected))).sum()


def dpo_log_of_sigmoid_missing(chosen, rejected, reference_chosen, reference_rejected, beta):
    return -torch.sigmoid(beta * ((chosen - reference_chosen) - (rejected - reference_rejected))).mean()


WRONG_ANSWERS = {
    "label_mask": [mask_off_by_one, mask_targets_not_shifted, mask_with_zeros, mask_on_the_inputs],
    "lora_forward": [LoRAWithoutTheScale, LoRAWithoutTheBase, LoRAIgnoringMerged, LoRAScaledByRank],
    "dpo_loss": [dpo_without_the_reference, dpo_sign_flipped, dpo_without_beta, dpo_summed,
                 dpo_log_of_sigmoid_missing],
    "cached_generation": [cached_loop_without_a_cache, cached_loop_feeding_everything,
                          cached_loop_with_a_new_cache_each_step, cached_loop_skipping_the_prompt,
                          cached_loop_never_calling_the_model],
    "training_step": [step_without_zero_grad, step_clipping_after_the_update, step_without_clipping,
                      step_clipping_each_value],
    "induction_score": [induction_on_the_earlier_occurrence, induction_over_every_query, induction_summed],
    "speculative_step": [step_without_the_bonus, step_correcting_from_p, step_accepting_when_p_beats_q],
    "sampling_loop": [sampling_greedily, sampling_with_temperature_last, sampling_from_the_first_position,
                      sampling_without_the_generator],
    "beam_search": [beams_extend_past_eos, beams_without_length_penalty, beams_normalised_by_the_whole_length,
                    beams_returning_a_running_beam],
    "apply_rope": [rope_adjacent_pairs, rope_turning_backwards, rope_without_the_rotated_half,
                   rope_cos_and_sin_swapped],
    "rms_norm": [RMSNormCentred, RMSNormEpsOutsideTheRoot, RMSNormWithoutTheWeight, RMSNormByTheStd],
    "swiglu": [SwiGLUWithGelu, SwiGLUGateOnTheWrongSide, SwiGLUWithoutTheGate, SwiGLUAddingInsteadOfGating],
    "repeat_kv": [repeat_kv_tiled, repeat_kv_along_positions, repeat_kv_along_head_size],
    "attention_module": [AttentionUnscaled, AttentionScaledByWidth, AttentionHeadsMergedWithoutTranspose,
                         AttentionWithoutTheMask],
    "block_forward": [BlockPostNorm, BlockWithoutTheMlpResidual, BlockInParallel, BlockWithoutLayerNorms],
    "gpt_forward": [GptWithoutPositions, GptBlocksReversed, GptWithoutFinalNorm],
    "cached_attention_step": [step_without_the_cache, step_with_a_square_mask, step_new_key_first],
    "shifted_causal_mask": [mask_not_shifted, mask_shifted_one_too_far],
    "residual_distribution": [residual_not_normalised, residual_without_clamp, residual_from_p],
    "greedy_acceptance": [greedy_counts_all_matches, greedy_bonus_from_the_draft],
    "next_token_windows": [windows_targets_not_shifted, windows_targets_shifted_back],
    "bits_per_byte": [bpb_per_character, bpb_in_nats, bpb_from_the_mean],
    "previous_token_score": [previous_token_above_the_diagonal, previous_token_over_all_queries],
    "mean_distance": [distance_without_clamp_forward, distance_summed_over_queries],
    "attention_entropy": [entropy_with_log, entropy_in_bits],
    "top_k": [top_k_by_index, top_k_keeps_one_too_many],
    "top_p": [top_p_drops_the_crossing_token, top_p_without_sorting],
    "repetition_penalty": [penalty_divides_negatives, penalty_per_occurrence],
    "split_heads": [heads_viewed_directly, heads_with_channels_interleaved, heads_not_transposed],
    "causal_mask": [mask_without_the_diagonal, mask_transposed, mask_of_ones_and_zeros],
    "attention": [attention_unscaled, attention_softmax_over_queries, attention_masked_after_softmax,
                  attention_ignoring_causal],
    "token_log_probs": [log_probs_off_by_one, log_probs_without_log, log_probs_over_positions],
}
# The exercises of the first workbooks (issue 14); every later one has at least three wrong answers.
FIRST_EXERCISES = {"token_log_probs", "causal_mask", "attention", "split_heads", "top_k", "top_p",
                   "repetition_penalty", "cached_attention_step", "shifted_causal_mask", "next_token_windows",
                   "bits_per_byte", "previous_token_score", "mean_distance", "attention_entropy",
                   "residual_distribution", "greedy_acceptance"}


@pytest.mark.parametrize("name, wrong", [(name, wrong) for name, wrongs in WRONG_ANSWERS.items() for wrong in wrongs],
                         ids=lambda value: getattr(value, "__name__", value))
def test_a_wrong_answer_fails_with_what_differs_and_where_the_hints_are(name, wrong):
    with pytest.raises(ExerciseFailed) as failure:
        getattr(checks, name)(wrong)
    message = str(failure.value)
    assert message.startswith(f"{name}: wrong answer on the smallest input it fails on")
    for part in ("input:", "expected:", "got:", "problem:", f"checks.hint({name!r})"):
        assert part in message, f"{part!r} missing from:\n{message}"
    assert not any(level in message for level in HINTS[name]), "a failure must not show a hint unasked"


def test_every_exercise_has_wrong_answers_tested():
    assert {name for _, name, _, _ in SOLUTIONS} == set(WRONG_ANSWERS)
    new = {name for name in WRONG_ANSWERS if name not in FIRST_EXERCISES}
    assert all(len(WRONG_ANSWERS[name]) >= 3 for name in new), "each new exercise needs three wrong answers"


def test_every_exercise_has_hints_from_a_nudge_to_a_near_solution():
    assert {name for _, name, _, _ in SOLUTIONS} <= set(HINTS)
    assert all(2 <= len(levels) <= 3 for levels in HINTS.values())


def test_the_model_checks_name_the_first_layer_that_differs():
    """gpt_forward and block_forward locate a wrong answer: the first module whose output differs."""
    expected = {GptWithoutPositions: "wpe is never called", GptWithoutFinalNorm: "ln_f is never called",
                GptBlocksReversed: "the first module whose output differs is h.0", BlockPostNorm: "differs is ln_1"}
    for wrong, where in expected.items():
        checker = checks.block_forward if issubclass(wrong, LESSON_02["BlockByHand"]) else checks.gpt_forward
        with pytest.raises(ExerciseFailed) as failure:
            checker(wrong)
        where_line = next(line for line in str(failure.value).splitlines() if line.startswith("  where:"))
        assert where in where_line, str(failure.value)


def test_a_module_that_cannot_take_the_weights_says_so():
    class Renamed(LESSON_02["CausalSelfAttentionByHand"]):
        def __init__(self, config):
            super().__init__(config)
            self.qkv = self.c_attn
            del self.c_attn

    with pytest.raises(ExerciseFailed, match="keep the lesson's __init__"):
        checks.attention_module(Renamed)


def test_hints_come_one_level_at_a_time(capsys):
    from course_utils import hints

    hints._given.pop("causal_mask", None)
    for level in range(1, 5):
        checks.hint("causal_mask")
        shown = capsys.readouterr().out
        assert f"hint {min(level, 3)} of 3" in shown and HINTS["causal_mask"][min(level, 3) - 1] in shown
    with pytest.raises(ValueError, match="no exercise named 'causal_mask_'"):
        checks.hint("causal_mask_")


# Lines a solution shares with code the lesson shows elsewhere, which give nothing away.
GENERIC_LINES = {"with torch.no_grad():", "sequence = prompt", "return sequence"}


def solution_body(source: str, name: str) -> list[str]:
    """The solution's lines between the exercise's markers, stripped, blank lines left out."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if f"# EXERCISE {name}:" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "# END EXERCISE")
    return [line.strip() for line in lines[start + 1:end] if line.strip()]


def test_no_workbook_shows_a_solution_or_a_hint():
    """A solution's lines appear in no workbook up to its own lesson (a later lesson may use what an
    earlier one had the learner write), and no hint appears in any workbook."""
    for lesson, name, _, source in SOLUTIONS:
        workbooks = "\n".join(path.read_text() for path in (ROOT / "exercises").iterdir()
                              if path.name[:2] <= lesson[:2])
        body = solution_body(source, name)
        shown = [line for line in body if len(line) > 12 and line in workbooks and line not in GENERIC_LINES]
        assert not shown, f"{name}: the workbook shows the solution's lines {shown}"
        for level in HINTS[name]:
            assert level not in workbooks and json.dumps(level)[1:-1] not in workbooks, f"{name}: a hint in a workbook"


def test_the_workbooks_are_what_the_lessons_give():
    assert make_exercises.main(["--check"]) == 0, "run python scripts/make_exercises.py"


def test_a_learners_exception_is_reported_with_its_input():
    def crashes(T):
        return torch.ones(T)[T]

    with pytest.raises(ExerciseFailed, match=r"causal_mask raised IndexError: .*\n  on the input: T=1"):
        checks.causal_mask(crashes)


def test_malformed_markers_are_refused():
    with pytest.raises(make_exercises.MarkerError, match="not inside a function"):
        make_exercises.blank_cell("# EXERCISE x: task\npass\n# END EXERCISE", "here")
    with pytest.raises(make_exercises.MarkerError, match="no '# END EXERCISE'"):
        make_exercises.blank_cell("def f():\n    # EXERCISE x: task\n    return 1", "here")
    with pytest.raises(make_exercises.MarkerError, match="not '# EXERCISE name: task'"):
        make_exercises.blank_cell("def f():\n    # EXERCISE: task\n    return 1", "here")


@pytest.mark.parametrize("workbook", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name[:2])
def test_a_workbook_runs_until_its_first_blank(workbook, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(workbook, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as stopped:
        client.execute()
    failed = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              and any(output.output_type == "error" for output in cell.outputs)]
    first_check = next(i for i, cell in enumerate(notebook.cells)
                       if cell.cell_type == "code" and cell.source.startswith("checks."))
    assert failed == [first_check], f"the first error should be the first check cell ({first_check}), got {failed}"
    assert "not written yet. The task: " in str(stopped.value)
