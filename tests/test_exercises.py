"""The exercise workbooks: every checker passes on the lesson's own solution and fails, with its
message, on the blank stub and on plausible wrong answers; the workbooks are what the lessons
give, and a fresh kernel runs one until its first blank."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import ExerciseFailed
from course_utils.model import causal_mask

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def lesson_solutions() -> list[tuple[str, str, str, str | None]]:
    """(lesson, checker name, the solved function's source, hint) for every marked exercise."""
    found = []
    for lesson in LESSONS:
        for cell in jupytext.read(lesson).cells:
            if cell.cell_type != "code" or "# EXERCISE" not in cell.source:
                continue
            lines = cell.source.split("\n")
            _, exercises = make_exercises.blank_cell(cell.source, lesson.name)
            for name, function, hint in exercises:
                start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
                found.append((lesson.name, name, "\n".join(lines[start:make_exercises.definition_end(lines, start)]),
                              hint))
    return found


SOLUTIONS = lesson_solutions()


def define(source: str):
    """The function a lesson defines, with the names lessons import."""
    namespace = {"torch": torch, "F": F, "math": math, "causal_mask": causal_mask}
    exec(source, namespace)
    return namespace[re.match(r"def (\w+)\(", source).group(1)]


@pytest.mark.parametrize("lesson, name, source, hint", SOLUTIONS, ids=[f"{s[0][:2]}-{s[1]}" for s in SOLUTIONS])
def test_every_checker_passes_on_the_lessons_solution(lesson, name, source, hint, capsys):
    getattr(checks, name)(define(source), hint=hint)
    assert capsys.readouterr().out.startswith(f"{name}: correct on all ")


@pytest.mark.parametrize("lesson, name, source, hint", SOLUTIONS, ids=[f"{s[0][:2]}-{s[1]}" for s in SOLUTIONS])
def test_a_blank_stub_says_what_to_write(lesson, name, source, hint):
    blank, _ = make_exercises.blank_cell(source, lesson)
    with pytest.raises(ExerciseFailed, match=f"{name}: not written yet. The task: "):
        getattr(checks, name)(define(blank), hint=hint)


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


def gelu_exact(x):
    return F.gelu(x)  # the exact GELU, not GPT-2's approximation


def gelu_with_square(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**2)))


def gelu_without_half(x):
    return x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def count_without_norm_biases(V, T_max, C, L, tied=True):
    return V * C + T_max * C + L * (12 * C * C + 11 * C) + C + (0 if tied else V * C)


def count_without_final_norm(V, T_max, C, L, tied=True):
    return V * C + T_max * C + L * (12 * C * C + 13 * C) + (0 if tied else V * C)


def count_head_twice(V, T_max, C, L, tied=True):
    return 2 * V * C + T_max * C + L * (12 * C * C + 13 * C) + 2 * C  # tying ignored


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


def rate_warmup_from_zero(step, warmup_steps, max_steps, learning_rate, min_lr):
    if step < warmup_steps:
        return learning_rate * step / warmup_steps  # step 0 gets a rate of 0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + (learning_rate - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def rate_decays_to_zero(step, warmup_steps, max_steps, learning_rate, min_lr):
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


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


def tokens_without_the_target_token(acceptance, k):
    return sum(acceptance ** i for i in range(1, k + 1))  # forgets the token the target adds


def tokens_with_k_not_k_plus_one(acceptance, k):
    return float(k) if acceptance == 1.0 else (1 - acceptance ** k) / (1 - acceptance)


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


def bytes_without_values(n_layer, batch, seq_len, n_head, head_size, bytes_per_value):
    return n_layer * batch * seq_len * n_head * head_size * bytes_per_value  # keys only


def bytes_per_width_and_head(n_layer, batch, seq_len, n_head, head_size, bytes_per_value):
    return 2 * n_layer * batch * seq_len * n_head * (n_head * head_size) * bytes_per_value  # C per head


WRONG_ANSWERS = {
    "cached_attention_step": [step_without_the_cache, step_with_a_square_mask, step_new_key_first],
    "shifted_causal_mask": [mask_not_shifted, mask_shifted_one_too_far],
    "kv_cache_bytes": [bytes_without_values, bytes_per_width_and_head],
    "residual_distribution": [residual_not_normalised, residual_without_clamp, residual_from_p],
    "greedy_acceptance": [greedy_counts_all_matches, greedy_bonus_from_the_draft],
    "expected_tokens": [tokens_without_the_target_token, tokens_with_k_not_k_plus_one],
    "next_token_windows": [windows_targets_not_shifted, windows_targets_shifted_back],
    "learning_rate": [rate_warmup_from_zero, rate_decays_to_zero],
    "bits_per_byte": [bpb_per_character, bpb_in_nats, bpb_from_the_mean],
    "previous_token_score": [previous_token_above_the_diagonal, previous_token_over_all_queries],
    "mean_distance": [distance_without_clamp_forward, distance_summed_over_queries],
    "attention_entropy": [entropy_with_log, entropy_in_bits],
    "top_k": [top_k_by_index, top_k_keeps_one_too_many],
    "top_p": [top_p_drops_the_crossing_token, top_p_without_sorting],
    "repetition_penalty": [penalty_divides_negatives, penalty_per_occurrence],
    "split_heads": [heads_viewed_directly, heads_with_channels_interleaved, heads_not_transposed],
    "gelu_tanh": [gelu_exact, gelu_with_square, gelu_without_half],
    "parameter_count": [count_without_norm_biases, count_without_final_norm, count_head_twice],
    "causal_mask": [mask_without_the_diagonal, mask_transposed, mask_of_ones_and_zeros],
    "attention": [attention_unscaled, attention_softmax_over_queries, attention_masked_after_softmax,
                  attention_ignoring_causal],
    "token_log_probs": [log_probs_off_by_one, log_probs_without_log, log_probs_over_positions],
}
HINTS = {name: hint for _, name, _, hint in SOLUTIONS}


@pytest.mark.parametrize("name, wrong", [(name, wrong) for name, wrongs in WRONG_ANSWERS.items() for wrong in wrongs],
                         ids=lambda value: getattr(value, "__name__", value))
def test_a_wrong_answer_fails_with_the_smallest_input_and_the_hint(name, wrong):
    with pytest.raises(ExerciseFailed) as failure:
        getattr(checks, name)(wrong, hint=HINTS[name])
    message = str(failure.value)
    assert message.startswith(f"{name}: wrong answer on the smallest input it fails on")
    for part in ("input:", "expected:", "got:", "problem:", f"hint:     {HINTS[name]}"):
        assert part in message, f"{part!r} missing from:\n{message}"


def test_every_exercise_has_wrong_answers_tested():
    assert {name for _, name, _, _ in SOLUTIONS} == set(WRONG_ANSWERS)


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
