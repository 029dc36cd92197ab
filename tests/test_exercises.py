"""The exercise workbooks: every checker passes on the lesson's own solution and fails, with its
message, on the blank stub and on plausible wrong answers; the workbooks are what the lessons
give, and a fresh kernel runs one until its first blank."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import MiniGPT, bpe, checks
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
                 "MiniGPT": MiniGPT, "LoRALinear": LoRALinear, "IGNORE_INDEX": IGNORE_INDEX, "Counter": Counter,
                 "bpe": bpe}
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


def _online(q, k, v, block_size, *, rescale_sum=True, rescale_output=True, subtract_max=True, block_offset=True,
            scaled=True, last_block=True, hide_the_diagonal=False, mask_value=float("-inf")):
    """The lesson's online softmax with one thing a learner might get wrong turned off."""
    T = q.shape[2]
    positions = torch.arange(T)
    running_max = torch.full((*q.shape[:3], 1), float("-inf"))
    running_sum, output = torch.zeros(*q.shape[:3], 1), torch.zeros_like(q)
    stop = T if last_block else T - block_size + 1
    for start in range(0, max(stop, 1), block_size):
        keys, values = k[:, :, start:start + block_size], v[:, :, start:start + block_size]
        scores = q @ keys.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scaled else 1.0)
        key_positions = positions[start:start + block_size] if block_offset else positions[:keys.shape[2]]
        future = key_positions[None, :] >= positions[:, None] + (0 if hide_the_diagonal else 1)
        scores = scores.masked_fill(future, mask_value)
        if subtract_max:
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
        else:
            new_max = torch.zeros_like(running_max)
        rescale = torch.exp(running_max - new_max) if subtract_max else torch.ones_like(running_max)
        weights = torch.exp(scores - new_max)
        running_sum = running_sum * (rescale if rescale_sum else 1.0) + weights.sum(dim=-1, keepdim=True)
        output = output * (rescale if rescale_output else 1.0) + weights @ values
        running_max = new_max
    return output / running_sum


def online_whole_matrix(q, k, v, block_size):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # right answer, but every query against every key
    return scores.masked_fill(~causal_mask(q.shape[2]), float("-inf")).softmax(-1) @ v


def online_never_rescaling(q, k, v, block_size):
    return _online(q, k, v, block_size, rescale_sum=False, rescale_output=False)


def online_rescaling_the_sum_only(q, k, v, block_size):
    return _online(q, k, v, block_size, rescale_output=False)


def online_without_the_max(q, k, v, block_size):
    return _online(q, k, v, block_size, subtract_max=False)  # exact, until exp overflows


def online_mask_without_the_block_offset(q, k, v, block_size):
    return _online(q, k, v, block_size, block_offset=False)


def online_unscaled(q, k, v, block_size):
    return _online(q, k, v, block_size, scaled=False)


def online_dropping_the_last_short_block(q, k, v, block_size):
    return _online(q, k, v, block_size, last_block=False)


def online_hiding_the_diagonal(q, k, v, block_size):
    return _online(q, k, v, block_size, hide_the_diagonal=True)


def online_masked_with_zeros(q, k, v, block_size):
    return _online(q, k, v, block_size, mask_value=0.0)


def online_averaging_each_blocks_softmax(q, k, v, block_size):
    T, outputs = q.shape[2], []
    for start in range(0, T, block_size):
        keys, values = k[:, :, start:start + block_size], v[:, :, start:start + block_size]
        scores = q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
        future = torch.arange(start, start + keys.shape[2])[None, :] > torch.arange(T)[:, None]
        outputs.append(torch.nan_to_num(scores.masked_fill(future, float("-inf")).softmax(-1)) @ values)
    return sum(outputs) / len(outputs)






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


class AttentionScaledByHeads(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # divided by sqrt(n_head), not sqrt(D): the same only when D happens to equal H
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / self.n_head**0.5).masked_fill(_future(T), float("-inf")).softmax(-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class AttentionRowZerosWeights(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # scores from q[0] and k[0], as for one text: every row weighted as row 0
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        scores = q[0] @ k[0].transpose(-2, -1) / (C // self.n_head) ** 0.5  # (H, T, T)
        weights = scores.masked_fill(_future(T), float("-inf")).softmax(-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(B, T, C))


class AttentionHeadsMergedTimeFirst(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # (B, H, T, D) -> (T, B, H, D) -> (B, T, C): right for one row, rows mixed beyond
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(_future(T), float("-inf"))
        return self.c_proj((weights.softmax(-1) @ v).permute(2, 0, 1, 3).reshape(B, T, C))


class AttentionHidingTheDiagonal(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # triu(diagonal=0): a token may not see itself, and the first sees nothing (nan)
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        hidden = torch.triu(torch.ones(T, T, dtype=torch.bool))
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(hidden, float("-inf"))
        return self.c_proj((weights.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))


class AttentionMaskedWithZeros(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # the future's scores set to 0, not -inf: exp(0) = 1 still gives it weight
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(_future(T), 0.0)
        return self.c_proj((weights.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))


class AttentionWithoutTheProjection(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # the heads put side by side but never mixed by c_proj
        B, T, C = x.shape
        q, k, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(_future(T), float("-inf"))
        return (weights.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)


class AttentionQueriesAndKeysSwapped(LESSON_02["CausalSelfAttentionByHand"]):
    def forward(self, x):  # k, q, v = c_attn(x).split(...): the scores transposed, then masked
        B, T, C = x.shape
        k, q, v = _qkv(self, x)
        weights = (q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5).masked_fill(_future(T), float("-inf"))
        return self.c_proj((weights.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))


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


class BlockOneNormTwice(LESSON_02["BlockByHand"]):
    def forward(self, x):  # ln_1 before the MLP too: ln_2's weights never used
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_1(x))


class BlockAddingToTheNormalisedStream(LESSON_02["BlockByHand"]):
    def forward(self, x):  # x = ln(x) first: the residual carries the normalised stream, not x
        x = self.ln_1(x)
        x = x + self.attn(x)
        x = self.ln_2(x)
        return x + self.mlp(x)


class BlockMlpFirst(LESSON_02["BlockByHand"]):
    def forward(self, x):  # the MLP before the attention
        x = x + self.mlp(self.ln_2(x))
        return x + self.attn(self.ln_1(x))


class BlockWithoutTheAttentionResidual(LESSON_02["BlockByHand"]):
    def forward(self, x):  # the attention's output replaces the stream instead of being added to it
        x = self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class BlockNormalisingTheOutputs(LESSON_02["BlockByHand"]):
    def forward(self, x):  # each LayerNorm on its sublayer's output, not its input
        x = x + self.ln_1(self.attn(x))
        return x + self.ln_2(self.mlp(x))


class BlockAddingInPlace(LESSON_02["BlockByHand"]):
    def forward(self, x):  # x += ...: overwrites the caller's tensor, which ln_1 saved for the backward pass
        x += self.attn(self.ln_1(x))
        x += self.mlp(self.ln_2(x))
        return x


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


class GptPositionsFromOne(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # positions 1 .. T, not 0 .. T - 1
        x = self.wte(ids) + self.wpe(torch.arange(1, ids.shape[1] + 1))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GptPositionsOfTheRows(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # arange(ids.shape[0]): counts the rows, not the positions
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[0]))[:, None]
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GptRowZeroForEveryRow(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # written for one text: row 0's logits copied to every row
        x = self.wte(ids[:1]) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x)).expand(ids.shape[0], -1, -1)


class GptLastPositionOnly(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # only the next token's logits (B, 1, V), as generation needs, not (B, T, V)
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x[:, -1:]))


class GptEmbeddingsScaled(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # token embeddings times sqrt(C), as in the 2017 Transformer, not GPT-2
        x = self.wte(ids) * self.wte.weight.shape[1] ** 0.5 + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GptFirstBlockRepeated(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # self.h[0] every time round the loop
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for _ in self.h:
            x = self.h[0](x)
        return self.lm_head(self.ln_f(x))


class GptProbabilities(LESSON_02["MiniGPTByHand"]):
    def forward(self, ids):  # softmax at the end: probabilities, not logits
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x)).softmax(-1)


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


def _shaped(logits, temperature, top_k, top_p):
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


def sampling_row_zero_for_every_row(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # written for one text: row 0's draw appended to every row
        logits = _shaped(model(sequence)[0, -1][None], temperature, top_k, top_p)
        drawn = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        sequence = torch.cat([sequence, drawn.expand(sequence.shape[0], 1)], dim=1)
    return sequence


def sampling_top_p_before_top_k(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # the nucleus of the whole distribution, then its k best
        logits = top_k_filter(top_p_filter(apply_temperature(model(sequence)[:, -1], temperature), top_p), top_k)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def sampling_temperature_multiplied(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # logits * temperature: below 1 flattens instead of sharpening
        logits = top_p_filter(top_k_filter(model(sequence)[:, -1] * temperature, top_k), top_p)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def sampling_temperature_on_the_probabilities(model, prompt, max_new_tokens, temperature, top_k, top_p,
                                              generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # probabilities / temperature: multinomial renormalises, so no effect
        probabilities = top_p_filter(top_k_filter(model(sequence)[:, -1], top_k), top_p).softmax(-1) / temperature
        sequence = torch.cat([sequence, torch.multinomial(probabilities, 1, generator=generator)], dim=1)
    return sequence


def sampling_from_the_prompt_alone(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens):  # the model reads the prompt, never the tokens drawn so far
        logits = _shaped(model(prompt)[:, -1], temperature, top_k, top_p)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def sampling_one_token_short(model, prompt, max_new_tokens, temperature, top_k, top_p, generator):
    sequence = prompt
    for _ in range(max_new_tokens - 1):  # off by one: max_new_tokens - 1 new tokens
        logits = _shaped(model(sequence)[:, -1], temperature, top_k, top_p)
        sequence = torch.cat([sequence, torch.multinomial(logits.softmax(-1), 1, generator=generator)], dim=1)
    return sequence


def _beam_search_variant(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty, *,
                         stop_at_eos=True, normalise=lambda total, new, prompt_length, penalty: total / new**penalty,
                         answer="finished", ranked=lambda num_beams: 2 * num_beams, finish_below_the_top=False,
                         eos_below_the_top_runs=False, copies=1, scores=lambda logits: logits.log_softmax(-1),
                         enough=lambda finished, num_beams: len(finished) == num_beams):
    running, finished = [(prompt[0], 0.0)] * copies, []
    for new in range(1, max_new_tokens + 1):
        log_probs = scores(model(torch.stack([tokens for tokens, _ in running]))[:, -1])
        sums = torch.tensor([score for _, score in running])[:, None] + log_probs
        top_sums, top_indices = sums.flatten().topk(ranked(num_beams))
        continuing = []
        for rank, (total, index) in enumerate(zip(top_sums.tolist(), top_indices.tolist())):
            beam, token = divmod(index, log_probs.shape[1])
            tokens = torch.cat([running[beam][0], torch.tensor([token])])
            ends = (stop_at_eos and token == eos_token_id) or new == max_new_tokens
            if ends and (rank < num_beams or finish_below_the_top):
                finished.append((normalise(total, new, prompt.shape[1], length_penalty), tokens))
            elif (not ends or eos_below_the_top_runs) and len(continuing) < num_beams:
                continuing.append((tokens, total))
        finished = sorted(finished, key=lambda h: h[0], reverse=True)[:num_beams]
        if answer == "running" and continuing:
            best_running = continuing[0][0]
        running = continuing
        if enough(finished, num_beams) or not running:
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


def beams_ranking_only_num_beams(*arguments):  # topk(num_beams), not 2 * num_beams: a beam ending in EOS
    return _beam_search_variant(*arguments, ranked=lambda num_beams: num_beams)  # takes a running beam's place


def beams_finishing_below_the_top(*arguments):  # an EOS candidate ranked num_beams .. 2 num_beams - 1 finishes too
    return _beam_search_variant(*arguments, finish_below_the_top=True)


def beams_running_on_after_eos(*arguments):  # an EOS candidate below the top num_beams keeps running
    return _beam_search_variant(*arguments, eos_below_the_top_runs=True)


def beams_starting_from_copies(*arguments):  # num_beams equal beams at the start: the same candidate num_beams times
    return _beam_search_variant(*arguments, copies=arguments[2])


def beams_summing_logits(*arguments):  # raw logits summed, not log-probabilities
    return _beam_search_variant(*arguments, scores=lambda logits: logits)


def beams_length_penalty_multiplied(*arguments):  # total * length ** penalty: the penalty turned round
    return _beam_search_variant(*arguments, normalise=lambda total, new, prompt_length, penalty: total * new**penalty)


def beams_stopping_at_the_first_finished(*arguments):  # early_stopping read as: stop at the first finished one
    return _beam_search_variant(*arguments, enough=lambda finished, num_beams: len(finished) >= 1)


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


def cached_loop_row_zero_for_every_row(model, prompt, max_new_tokens):  # row 0's choice appended to every row
    cache, sequence = GrowingKVCache(), prompt
    logits = model(prompt, cache=cache)
    for step in range(max_new_tokens):
        chosen = logits[0, -1].argmax().view(1, 1).expand(prompt.shape[0], 1)
        sequence = torch.cat([sequence, chosen], dim=1)
        if step + 1 < max_new_tokens:
            logits = model(chosen, cache=cache)
    return sequence


def cached_loop_prompt_one_token_at_a_time(model, prompt, max_new_tokens):  # T calls where one would do
    cache, sequence = GrowingKVCache(), prompt
    for position in range(prompt.shape[1]):
        logits = model(prompt[:, position : position + 1], cache=cache)
    for step in range(max_new_tokens):
        chosen = logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, chosen], dim=1)
        if step + 1 < max_new_tokens:
            logits = model(chosen, cache=cache)
    return sequence


def cached_loop_from_the_first_position(model, prompt, max_new_tokens):  # logits[:, 0]: fine once one token is fed
    cache, sequence = GrowingKVCache(), prompt
    logits = model(prompt, cache=cache)
    for step in range(max_new_tokens):
        chosen = logits[:, 0].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, chosen], dim=1)
        if step + 1 < max_new_tokens:
            logits = model(chosen, cache=cache)
    return sequence


def cached_loop_with_a_default_cache(model, prompt, max_new_tokens, cache=GrowingKVCache()):  # noqa: B008
    sequence = prompt  # the default cache is made once: each call starts from the last call's keys and values
    logits = model(prompt, cache=cache)
    for step in range(max_new_tokens):
        chosen = logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, chosen], dim=1)
        if step + 1 < max_new_tokens:
            logits = model(chosen, cache=cache)
    return sequence


def cached_loop_returning_the_new_tokens(model, prompt, max_new_tokens):  # (B, max_new_tokens): no prompt
    cache, new = GrowingKVCache(), []
    logits = model(prompt, cache=cache)
    for step in range(max_new_tokens):
        new.append(logits[:, -1].argmax(-1, keepdim=True))
        if step + 1 < max_new_tokens:
            logits = model(new[-1], cache=cache)
    return torch.cat(new, dim=1)


def cached_loop_one_token_too_many(model, prompt, max_new_tokens):  # the prompt's token, then max_new_tokens more
    cache = GrowingKVCache()
    sequence = torch.cat([prompt, model(prompt, cache=cache)[:, -1].argmax(-1, keepdim=True)], dim=1)
    for _ in range(max_new_tokens):
        sequence = torch.cat([sequence, model(sequence[:, -1:], cache=cache)[:, -1].argmax(-1, keepdim=True)], dim=1)
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


def step_zero_grad_first(model, optimizer, inputs, targets, grad_clip):  # cleared before the loss only: this
    optimizer.zero_grad()  # step's gradients are left in .grad after it
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_loss_divided_by_the_batch(model, optimizer, inputs, targets, grad_clip):  # the mean divided by B again
    loss = model(inputs, targets)
    (loss / inputs.shape[0]).backward()  # every gradient B times too small, so the clip binds less often
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clipping_before_backward(model, optimizer, inputs, targets, grad_clip):  # nothing to clip yet: no gradients
    loss = model(inputs, targets)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clipping_to_one(model, optimizer, inputs, targets, grad_clip):  # the usual 1.0, whatever grad_clip says
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clipping_each_tensor(model, optimizer, inputs, targets, grad_clip):  # each tensor's own norm, not the total
    loss = model(inputs, targets)
    loss.backward()
    for parameter in model.parameters():
        torch.nn.utils.clip_grad_norm_([parameter], grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clearing_before_the_step(model, optimizer, inputs, targets, grad_clip):  # zero_grad before step: no update
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def step_returning_the_loss_after_the_step(model, optimizer, inputs, targets, grad_clip):
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return model(inputs, targets).item()  # the loss after the update, not the one the gradients came from


def step_returning_the_loss_tensor(model, optimizer, inputs, targets, grad_clip):
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss  # not loss.item(): a list of the losses keeps every step's graph alive


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


def _residual(p, q):
    residual = (p - q).clamp(min=0)
    return residual / residual.sum()


def step_ratio_upside_down(drafted, p, q, generator):  # min(1, q/p): favours what the drafter over-proposes
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(q[i, x] / p[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_residual_the_wrong_way(drafted, p, q, generator):  # norm(max(0, q - p)): what the drafter over-proposes
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(q[i], p[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_bonus_from_the_last_draft_row(drafted, p, q, generator):  # p[K - 1]: the last draft's row, not the next
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted) - 1], 1, generator=generator))


def step_one_uniform_for_every_draft(drafted, p, q, generator):  # one draw before the loop: the tests not independent
    u = torch.rand(1, generator=generator)
    for i, x in enumerate(drafted.tolist()):
        if u < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_accepting_with_p_alone(drafted, p, q, generator):  # rand < p(x): the drafter's q(x) left out of the ratio
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < p[i, x]:
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_counting_the_rejected_draft(drafted, p, q, generator):  # i + 1: the rejected draft counted as kept
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i + 1, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def step_residual_left_unnormalised(drafted, p, q, generator):  # inverse CDF over max(0, p - q), never divided by
    for i, x in enumerate(drafted.tolist()):  # its sum: a uniform above that sum gives token V, which does not exist
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        cumulative = (p[i] - q[i]).clamp(min=0).cumsum(0)
        return i, int(torch.searchsorted(cumulative, torch.rand(1, generator=generator), right=True))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


# Correct in distribution, but drawing from the generator differently from the library's accept_drafts
# (one uniform per draft, just before its test; torch.multinomial for the token that follows).
def speculative_step_uniforms_up_front(drafted, p, q, generator):  # all K uniforms drawn before the first test
    uniforms = torch.rand(len(drafted), generator=generator)
    for i, x in enumerate(drafted.tolist()):
        if uniforms[i] < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


def _inverse_cdf(probabilities, generator):
    """One token drawn from probabilities (V,): the first whose cumulative sum exceeds a uniform."""
    cumulative = probabilities.cumsum(0)
    u = torch.rand(1, generator=generator) * cumulative[-1]  # times the total, in case rounding left it below 1
    return int(torch.searchsorted(cumulative, u, right=True).clamp(max=len(probabilities) - 1))


def speculative_step_by_inverse_cdf(drafted, p, q, generator):  # the token that follows drawn by inverse CDF
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, _inverse_cdf(_residual(p[i], q[i]), generator)
    return len(drafted), _inverse_cdf(p[len(drafted)], generator)


def speculative_step_with_float64_uniforms(drafted, p, q, generator):  # uniforms in float64, 53 random bits
    for i, x in enumerate(drafted.tolist()):
        if torch.rand(1, dtype=torch.float64, generator=generator) < torch.clamp(p[i, x] / q[i, x], max=1.0):
            continue
        return i, int(torch.multinomial(_residual(p[i], q[i]), 1, generator=generator))
    return len(drafted), int(torch.multinomial(p[len(drafted)], 1, generator=generator))


DIFFERENTLY_DRAWN_SPECULATIVE_STEPS = {
    "uniforms_up_front": speculative_step_uniforms_up_front,
    "inverse_cdf": speculative_step_by_inverse_cdf,
    "float64_uniforms": speculative_step_with_float64_uniforms,
}


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


def rope_row_zeros_positions(x, cos, sin):  # cos[:1]: row 0's positions for every row, wrong once rows are padded
    first, second = x.chunk(2, dim=-1)  # or continued differently
    return x * cos[:1, None] + torch.cat([-second, first], dim=-1) * sin[:1, None]


def rope_written_into_x(x, cos, sin):  # the right values, written over the caller's x (its queries or keys)
    half = x.shape[-1] // 2
    first, second = x.chunk(2, dim=-1)
    c, s = cos[:, None, :, :half], sin[:, None, :, :half]
    x[..., :half], x[..., half:] = first * c - second * s, first * s + second * c
    return x


def rope_in_float64(x, cos, sin):  # computed and returned in float64: a float32 model's next matmul with v fails
    x, cos, sin = x.double(), cos.double(), sin.double()
    first, second = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat([-second, first], dim=-1) * sin[:, None]


def rope_angles_on_the_head_axis(x, cos, sin):  # cos[:, :, None]: (B, T, 1, D) against (B, H, T, D)
    first, second = x.chunk(2, dim=-1)
    return x * cos[:, :, None] + torch.cat([-second, first], dim=-1) * sin[:, :, None]


def rope_without_the_sine(x, cos, sin):  # x cos(m theta) alone: scaled, not rotated
    return x * cos[:, None]


def rope_first_half_only(x, cos, sin):  # x_i turned, x_{i+D/2} left as it was
    first, second = x.chunk(2, dim=-1)
    c, s = cos[:, None, :, : first.shape[-1]], sin[:, None, :, : first.shape[-1]]
    return torch.cat([first * c - second * s, second], dim=-1)


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


def repeat_kv_expanded_before_the_heads(x, n_rep):  # expand to (B, n_rep, K, T, D): the tiled order again
    B, K, T, D = x.shape
    return x[:, None].expand(B, n_rep, K, T, D).reshape(B, K * n_rep, T, D)


def repeat_kv_row_zero_for_every_row(x, n_rep):  # batch row 0's heads copied to every row
    return x[:1].repeat_interleave(n_rep, dim=1).expand(x.shape[0], -1, -1, -1)


def repeat_kv_to_n_rep_heads(x, n_rep):  # n_rep read as the number of heads wanted in all
    return x.repeat_interleave(max(n_rep // x.shape[1], 1), dim=1)


def repeat_kv_along_the_batch(x, n_rep):  # dim 0: more rows, not more heads
    return x.repeat_interleave(n_rep, dim=0)


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


class LoRAScaleInverted(LESSON_09["LoRAByHand"]):
    def forward(self, x):  # divided by the scale: r / alpha instead of alpha / r
        return self.base(x) if self.merged else self.base(x) + (x @ self.lora_A.T) @ self.lora_B.T / self.scale


class LoRABiasAddedTwice(LESSON_09["LoRAByHand"]):
    def forward(self, x):  # F.linear with the base's bias for the update too
        update = F.linear(x, self.scale * self.lora_B @ self.lora_A, self.base.bias)
        return self.base(x) if self.merged else self.base(x) + update


class LoRAFlatteningTheBatch(LESSON_09["LoRAByHand"]):
    def forward(self, x):  # x as (N, in), written for 2-D inputs: (B, T, in) comes back (B * T, out)
        flat = x.reshape(-1, x.shape[-1])
        return self.base(flat) if self.merged else self.base(flat) + self.scale * (flat @ self.lora_A.T) @ self.lora_B.T


class LoRAScaledBySqrtRank(LESSON_09["LoRAByHand"]):
    def forward(self, x):  # alpha / sqrt(r), rsLoRA's scale, not alpha / r
        update = self.scale * self.lora_A.shape[0] ** 0.5 * (x @ self.lora_A.T) @ self.lora_B.T
        return self.base(x) if self.merged else self.base(x) + update


class LoRAMergingInForward(LESSON_09["LoRAByHand"]):
    def forward(self, x):  # folds the update into the base on the first call: right values, but lora_A and
        self.merge()  # lora_B never get a gradient again, and the base weight is changed for good
        return self.base(x)


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


def dpo_log_of_sigmoid(chosen, rejected, reference_chosen, reference_rejected, beta):
    margin = beta * ((chosen - reference_chosen) - (rejected - reference_rejected))
    return -torch.log(torch.sigmoid(margin)).mean()  # sigmoid is 0 in float32 below -104: inf, not -margin


def dpo_subtracting_in_place(chosen, rejected, reference_chosen, reference_rejected, beta):
    chosen -= reference_chosen  # in place: the caller's log-probabilities become rewards
    rejected -= reference_rejected
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def dpo_margin_of_the_means(chosen, rejected, reference_chosen, reference_rejected, beta):
    margin = beta * ((chosen.mean() - reference_chosen.mean()) - (rejected.mean() - reference_rejected.mean()))
    return -F.logsigmoid(margin)  # the loss of the mean margin, not the mean of the pairs' losses


def dpo_beta_outside(chosen, rejected, reference_chosen, reference_rejected, beta):  # beta scales the loss
    return -beta * F.logsigmoid((chosen - reference_chosen) - (rejected - reference_rejected)).mean()


def dpo_references_crossed(chosen, rejected, reference_chosen, reference_rejected, beta):  # each against the other's
    return -F.logsigmoid(beta * ((chosen - reference_rejected) - (rejected - reference_chosen))).mean()


def dpo_through_item(chosen, rejected, reference_chosen, reference_rejected, beta):
    loss = -F.logsigmoid(beta * ((chosen - reference_chosen) - (rejected - reference_rejected))).mean()
    return torch.tensor(loss.item())  # the right number, cut off from the graph: backward() trains nothing


def pairs_unweighted(words):  # each word counted once, whatever its count
    counts = Counter()
    for word in words:
        counts.update(zip(word, word[1:]))
    return counts


def pairs_across_words(words):  # the words run together: pairs join one word's end to the next's start
    ids = [token for word, count in words.items() for _ in range(count) for token in word]
    return Counter(zip(ids, ids[1:]))


def pairs_without_overlap(words):  # (7, 7, 7) counted as one (7, 7): the counting skips like a merge
    counts = Counter()
    for word, count in words.items():
        i = 0
        while i < len(word) - 1:
            counts[word[i], word[i + 1]] += count
            i += 2 if word[i] == word[i + 1] else 1
    return counts


def pairs_missing_the_last(words):  # range(len(word) - 2): the last pair of each word is never counted
    counts = Counter()
    for word, count in words.items():
        for i in range(len(word) - 2):
            counts[word[i], word[i + 1]] += count
    return counts


def pairs_squared(words):  # the count added once per occurrence of the word and again per pair
    counts = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count * count
    return counts


def merge_from_the_right(word, pair, new_id):  # scans right to left: (7, 7, 7) -> (7, new)
    merged, i = [], len(word) - 1
    while i >= 0:
        if i > 0 and word[i - 1 : i + 1] == pair:
            merged.append(new_id)
            i -= 2
        else:
            merged.append(word[i])
            i -= 1
    return tuple(reversed(merged))


def merge_first_only(word, pair, new_id):  # stops after the first occurrence
    for i in range(len(word) - 1):
        if word[i : i + 2] == pair:
            return word[:i] + (new_id,) + word[i + 2 :]
    return word


def merge_overlapping(word, pair, new_id):  # both overlapping occurrences merge: (7, 7, 7) -> (new, new)
    merged = []
    for i in range(len(word)):
        if word[i : i + 2] == pair:
            merged.append(new_id)
        elif not (i > 0 and word[i - 1 : i + 1] == pair):
            merged.append(word[i])
    return tuple(merged)


def merge_scan(word, pair, new_id, *, matches=lambda two, pair: two == pair, stop_before=0):
    """The left-to-right merge, with the test of a match and where the scan stops as a learner got them."""
    merged, i = [], 0
    while i < len(word) - stop_before:
        if matches(word[i : i + 2], pair):
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def merge_dropping_the_last_id(word, pair, new_id):  # while i < len(word) - 1: the last id is lost when unpaired
    return merge_scan(word, pair, new_id, stop_before=1)


def merge_either_order(word, pair, new_id):  # (b, a) merged as if it were (a, b)
    return merge_scan(word, pair, new_id, matches=lambda two, pair: two in (pair, pair[::-1]))


def merge_one_step_after(word, pair, new_id):  # one step past a match, not two: the pair's second id kept too
    merged, i = [], 0
    while i < len(word):
        if word[i : i + 2] == pair:
            merged.append(new_id)
        else:
            merged.append(word[i])
        i += 1
    return tuple(merged)


def bpe_loop(texts, vocab_size, *, best=None, merge=bpe.merge, count=bpe.pair_counts, words=None, first_id=257):
    """The training loop with one piece swapped for a learner's mistake."""
    words = dict(bpe.word_counts(texts)) if words is None else words
    merges = []
    for new_id in range(first_id, vocab_size):
        counts = count(words)
        if not counts:
            break
        pair = best(counts) if best else min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(pair)
        merged = {}
        for word, n in words.items():
            merged[merge(word, pair, new_id)] = merged.get(merge(word, pair, new_id), 0) + n
        words = merged
    return merges


def train_ties_to_the_largest_pair(texts, vocab_size):
    return bpe_loop(texts, vocab_size, best=lambda counts: max(counts, key=lambda pair: (counts[pair], pair)))


def train_ties_to_the_first_seen(texts, vocab_size):  # Counter.most_common keeps the order pairs were seen
    return bpe_loop(texts, vocab_size, best=lambda counts: counts.most_common(1)[0][0])


def train_ties_by_the_bytes(texts, vocab_size):  # among equal counts, the pair whose bytes sort first
    vocab = bpe.byte_vocab()
    return bpe_loop(texts, vocab_size, best=lambda counts: min(
        counts, key=lambda pair: (-counts[pair], [vocab[t] if t < len(vocab) else b"\xff" for t in pair])))


def train_merging_overlaps(texts, vocab_size):
    return bpe_loop(texts, vocab_size, merge=merge_overlapping)


def train_across_pre_tokens(texts, vocab_size):  # the whole text as one word: merges cross the pre-tokens
    to_id = bpe.byte_ids()
    return bpe_loop(texts, vocab_size, words={tuple(to_id[b] for b in "".join(texts).encode()): 1})


def train_each_word_once(texts, vocab_size):  # the distinct pre-tokens, without how often each occurs
    return bpe_loop(texts, vocab_size, words={word: 1 for word in bpe.word_counts(texts)})


def train_counting_without_overlap(texts, vocab_size):
    return bpe_loop(texts, vocab_size, count=pairs_without_overlap)


def train_one_merge_too_many(texts, vocab_size):  # vocab_size - 256 merges: the 257 first ids miscounted
    return bpe_loop(texts, vocab_size + 1, first_id=257)


def train_on_byte_values(texts, vocab_size):  # a byte's value as its id, not its id in the vocabulary
    counts = Counter(piece.encode() for text in texts for piece in bpe.pretokenize(text))
    return bpe_loop(texts, vocab_size, words={tuple(piece): n for piece, n in counts.items()})


def train_ignoring_single_pairs(texts, vocab_size):  # stops when the best pair occurs once: the library does not
    return bpe_loop(texts, vocab_size, count=lambda words: Counter(
        {pair: n for pair, n in bpe.pair_counts(words).items() if n > 1}))


def encode_latest_merge_first(word, merges):  # the rank read backwards
    rank = {pair: -position for position, pair in enumerate(merges)}
    while True:
        known = [pair for pair in zip(word, word[1:]) if pair in rank]
        if not known:
            return word
        pair = min(known, key=rank.get)
        word = bpe.merge(word, pair, merges[pair])


def encode_one_merge(word, merges):  # the earliest-learned merge, once, and no look again
    known = [pair for pair in zip(word, word[1:]) if pair in merges]
    if not known:
        return word
    pair = min(known, key=list(merges).index)
    return bpe.merge(word, pair, merges[pair])


def encode_leftmost_first(word, merges):  # the leftmost pair with a merge, whatever its rank
    while True:
        for i in range(len(word) - 1):
            if word[i : i + 2] in merges:
                word = word[:i] + (merges[word[i : i + 2]],) + word[i + 2 :]
                break
        else:
            return word


def encode_unknown_pairs_first(word, merges):  # rank.get(pair, 0): a pair without a merge looks the earliest
    rank = {pair: position for position, pair in enumerate(merges)}
    while len(word) > 1:
        pair = min(zip(word, word[1:]), key=lambda pair: rank.get(pair, 0))
        if pair not in rank:
            break
        word = bpe.merge(word, pair, merges[pair])
    return word


def encode_most_frequent_pair(word, merges):  # training's rule, not the merges' order: the pair most frequent here
    while True:
        counts = Counter(pair for pair in zip(word, word[1:]) if pair in merges)
        if not counts:
            return word
        pair = min(counts, key=lambda pair: (-counts[pair], pair))
        word = bpe.merge(word, pair, merges[pair])


def encode_a_pass_over_the_pairs(word, merges):  # each pair of the word merged in the order it occurs, one pass
    for pair in list(zip(word, word[1:])):
        if pair in merges:
            word = bpe.merge(word, pair, merges[pair])
    return word


# Right answers written another way than the lesson's: each must pass.
def encode_replaying_every_merge(word, merges):  # every merge in the order learned, once each: the same tokens
    for pair, new_id in merges.items():
        word = bpe.merge(word, pair, new_id)
    return word


def train_with_most_frequent_pair(texts, vocab_size):  # the library's tie rule, words merged as a Counter
    return bpe_loop(texts, vocab_size, best=bpe.most_frequent_pair)


OTHER_RIGHT_ANSWERS = {"encode": [encode_replaying_every_merge], "train_bpe_by_hand": [train_with_most_frequent_pair]}


WRONG_ANSWERS = {
    "pair_counts": [pairs_unweighted, pairs_across_words, pairs_without_overlap, pairs_missing_the_last, pairs_squared],
    "merge": [merge_from_the_right, merge_first_only, merge_overlapping, merge_dropping_the_last_id, merge_either_order,
              merge_one_step_after],
    "train_bpe_by_hand": [train_ties_to_the_largest_pair, train_ties_to_the_first_seen, train_ties_by_the_bytes,
                          train_merging_overlaps, train_across_pre_tokens, train_each_word_once,
                          train_counting_without_overlap, train_one_merge_too_many, train_on_byte_values,
                          train_ignoring_single_pairs],
    "encode": [encode_latest_merge_first, encode_one_merge, encode_leftmost_first, encode_unknown_pairs_first,
               encode_most_frequent_pair, encode_a_pass_over_the_pairs],
    "label_mask": [mask_off_by_one, mask_targets_not_shifted, mask_with_zeros, mask_on_the_inputs],
    "lora_forward": [LoRAWithoutTheScale, LoRAWithoutTheBase, LoRAIgnoringMerged, LoRAScaledByRank, LoRAScaleInverted,
                     LoRABiasAddedTwice, LoRAFlatteningTheBatch, LoRAScaledBySqrtRank, LoRAMergingInForward],
    "dpo_loss": [dpo_without_the_reference, dpo_sign_flipped, dpo_without_beta, dpo_summed,
                 dpo_log_of_sigmoid_missing, dpo_log_of_sigmoid, dpo_subtracting_in_place, dpo_margin_of_the_means,
                 dpo_beta_outside, dpo_references_crossed, dpo_through_item],
    "cached_generation": [cached_loop_without_a_cache, cached_loop_feeding_everything,
                          cached_loop_with_a_new_cache_each_step, cached_loop_skipping_the_prompt,
                          cached_loop_never_calling_the_model, cached_loop_row_zero_for_every_row,
                          cached_loop_prompt_one_token_at_a_time, cached_loop_from_the_first_position,
                          cached_loop_with_a_default_cache, cached_loop_returning_the_new_tokens,
                          cached_loop_one_token_too_many],
    "training_step": [step_without_zero_grad, step_clipping_after_the_update, step_without_clipping,
                      step_clipping_each_value, step_zero_grad_first, step_loss_divided_by_the_batch,
                      step_clipping_before_backward, step_clipping_to_one, step_clipping_each_tensor,
                      step_clearing_before_the_step, step_returning_the_loss_after_the_step,
                      step_returning_the_loss_tensor],
    "induction_score": [induction_on_the_earlier_occurrence, induction_over_every_query, induction_summed],
    "speculative_step": [step_without_the_bonus, step_correcting_from_p, step_accepting_when_p_beats_q,
                         step_ratio_upside_down, step_residual_the_wrong_way, step_bonus_from_the_last_draft_row,
                         step_one_uniform_for_every_draft, step_accepting_with_p_alone,
                         step_counting_the_rejected_draft, step_residual_left_unnormalised],
    "sampling_loop": [sampling_greedily, sampling_with_temperature_last, sampling_from_the_first_position,
                      sampling_without_the_generator, sampling_row_zero_for_every_row, sampling_top_p_before_top_k,
                      sampling_temperature_multiplied, sampling_temperature_on_the_probabilities,
                      sampling_from_the_prompt_alone, sampling_one_token_short],
    "beam_search": [beams_extend_past_eos, beams_without_length_penalty, beams_normalised_by_the_whole_length,
                    beams_returning_a_running_beam, beams_ranking_only_num_beams, beams_finishing_below_the_top,
                    beams_running_on_after_eos, beams_starting_from_copies, beams_summing_logits,
                    beams_length_penalty_multiplied, beams_stopping_at_the_first_finished],
    "apply_rope": [rope_adjacent_pairs, rope_turning_backwards, rope_without_the_rotated_half,
                   rope_cos_and_sin_swapped, rope_row_zeros_positions, rope_written_into_x, rope_in_float64,
                   rope_angles_on_the_head_axis, rope_without_the_sine, rope_first_half_only],
    "rms_norm": [RMSNormCentred, RMSNormEpsOutsideTheRoot, RMSNormWithoutTheWeight, RMSNormByTheStd],
    "swiglu": [SwiGLUWithGelu, SwiGLUGateOnTheWrongSide, SwiGLUWithoutTheGate, SwiGLUAddingInsteadOfGating],
    "repeat_kv": [repeat_kv_tiled, repeat_kv_along_positions, repeat_kv_along_head_size,
                  repeat_kv_expanded_before_the_heads, repeat_kv_row_zero_for_every_row, repeat_kv_to_n_rep_heads,
                  repeat_kv_along_the_batch],
    "attention_module": [AttentionUnscaled, AttentionScaledByWidth, AttentionHeadsMergedWithoutTranspose,
                         AttentionWithoutTheMask, AttentionScaledByHeads, AttentionRowZerosWeights,
                         AttentionHeadsMergedTimeFirst, AttentionHidingTheDiagonal, AttentionMaskedWithZeros,
                         AttentionWithoutTheProjection, AttentionQueriesAndKeysSwapped],
    "block_forward": [BlockPostNorm, BlockWithoutTheMlpResidual, BlockInParallel, BlockWithoutLayerNorms,
                      BlockOneNormTwice, BlockAddingToTheNormalisedStream, BlockMlpFirst,
                      BlockWithoutTheAttentionResidual, BlockNormalisingTheOutputs, BlockAddingInPlace],
    "gpt_forward": [GptWithoutPositions, GptBlocksReversed, GptWithoutFinalNorm, GptPositionsFromOne,
                    GptPositionsOfTheRows, GptRowZeroForEveryRow, GptLastPositionOnly, GptEmbeddingsScaled,
                    GptFirstBlockRepeated, GptProbabilities],
    "cached_attention_step": [step_without_the_cache, step_with_a_square_mask, step_new_key_first],
    "shifted_causal_mask": [mask_not_shifted, mask_shifted_one_too_far],
    "online_softmax": [online_whole_matrix, online_never_rescaling, online_rescaling_the_sum_only,
                       online_without_the_max, online_mask_without_the_block_offset, online_unscaled,
                       online_dropping_the_last_short_block, online_hiding_the_diagonal, online_masked_with_zeros,
                       online_averaging_each_blocks_softmax],
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
# The pieces every learner writes on the way to a working GPT, and the checks the course's certificate rests on:
# each needs at least five plausible wrong answers.
CORE_PIECES = {"attention_module", "block_forward", "gpt_forward", "sampling_loop", "cached_generation",
               "beam_search", "training_step", "speculative_step", "apply_rope", "repeat_kv", "lora_forward",
               "dpo_loss", "merge", "train_bpe_by_hand", "encode"}


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


@pytest.mark.parametrize("name, right", [(name, right) for name, rights in OTHER_RIGHT_ANSWERS.items()
                                         for right in rights],
                         ids=lambda value: getattr(value, "__name__", value))
def test_a_right_answer_written_another_way_passes(name, right, capsys):
    getattr(checks, name)(right)
    assert capsys.readouterr().out.startswith(f"{name}: correct on all ")


def test_every_exercise_has_wrong_answers_tested():
    assert {name for _, name, _, _ in SOLUTIONS} == set(WRONG_ANSWERS)
    new = {name for name in WRONG_ANSWERS if name not in FIRST_EXERCISES}
    assert all(len(WRONG_ANSWERS[name]) >= 3 for name in new), "each new exercise needs three wrong answers"
    assert CORE_PIECES <= set(WRONG_ANSWERS)
    few = {name: len(WRONG_ANSWERS[name]) for name in CORE_PIECES if len(WRONG_ANSWERS[name]) < 5}
    assert not few, f"each core piece needs at least five wrong answers: {few}"


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
GENERIC_LINES = {"with torch.no_grad():", "sequence = prompt", "return sequence", "return counts"}


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


@pytest.mark.parametrize("way", sorted(DIFFERENTLY_DRAWN_SPECULATIVE_STEPS))
def test_a_step_drawing_its_random_numbers_otherwise_is_told_the_order_is_part_of_the_task(way):
    """Right in distribution, other draws: refused, and the message says why (the task fixes the order)."""
    with pytest.raises(ExerciseFailed) as failure:
        checks.speculative_step(DIFFERENTLY_DRAWN_SPECULATIVE_STEPS[way])
    assert "the draw order is part of the task" in str(failure.value)


def test_the_registry_is_what_the_lessons_mark():
    """The grader learns a workbook's exercises from the registry: its names, subjects and order must
    be the lessons' markers, and each module-level name is the exercise of that name."""
    marked = [(lesson[:2], name, subject) for lesson, name, subject, _ in SOLUTIONS]
    assert [(e.lesson, e.name, e.subject) for e in checks.EXERCISES.values()] == marked
    for name, exercise in checks.EXERCISES.items():
        assert getattr(checks, name) is exercise and name in checks.__all__
        assert set(exercise.needs) <= set(checks.EXERCISES), f"{name} needs an exercise that does not exist"


def test_a_tuple_answer_names_its_parts():
    def kept_one_too_many(drafted, choices):
        matches = (drafted == choices[: len(drafted)]).int()
        kept = int(matches.cumprod(0).sum())
        return kept + 1, int(choices[kept])

    with pytest.raises(ExerciseFailed, match=r"problem:  kept: 2 instead of 1"):
        checks.greedy_acceptance(kept_one_too_many)


def test_the_grader_side_reaches_the_learners_verdict(tmp_path):
    """observe (in the learner's kernel) then judge (in the grader's process) gives the verdict the
    workbook's own check gives, for a right and a wrong answer."""
    from course_utils.checks import harness

    path = tmp_path / "records.pt"
    harness.observe("causal_mask", lambda T: torch.tril(torch.ones(T, T, dtype=torch.bool)), str(path))
    assert harness.judge("causal_mask", torch.load(path, weights_only=True)) is None
    harness.observe("causal_mask", mask_transposed, str(path))
    verdict = harness.judge("causal_mask", torch.load(path, weights_only=True))
    assert verdict.status == "failed" and verdict.index == 1 and "entries differ" in verdict.detail()
    forged = [{"answer": torch.ones(T, T, dtype=torch.bool)} for T in (1, 2, 3, 4, 7, 16)]  # made-up answers
    assert harness.judge("causal_mask", forged).status == "failed"
