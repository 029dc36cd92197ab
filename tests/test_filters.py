"""Each filter equals the transformers logits processor of the same rule, ties included."""

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from course_utils.generation import (
    apply_frequency_presence_penalty,
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)

DUMMY_IDS = torch.zeros(6, 1, dtype=torch.long)


def random_logits(seed, rows=6, vocab=50, with_ties=True):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=generator) * 2
    if with_ties:  # round to coarse steps: many exact ties, including at the k-th value
        logits = (logits * 2).round() / 2
    return logits


def same(ours, theirs):
    return torch.equal(torch.isinf(ours), torch.isinf(theirs)) and torch.equal(ours[~torch.isinf(ours)],
                                                                               theirs[~torch.isinf(theirs)])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature(seed, temperature):
    logits = random_logits(seed)
    assert same(apply_temperature(logits, temperature), TemperatureLogitsWarper(temperature)(DUMMY_IDS, logits))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_k,keep", [(1, 1), (3, 1), (10, 1), (1, 2), (50, 1), (80, 1)])
def test_top_k(seed, top_k, keep):
    logits = random_logits(seed)
    expected = TopKLogitsWarper(top_k, min_tokens_to_keep=keep)(DUMMY_IDS, logits)
    assert same(top_k_filter(logits, top_k, keep), expected)


def test_top_k_keeps_ties_at_the_kth_value():
    logits = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[False, False, False, False, True]]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_p,keep", [(0.1, 1), (0.5, 1), (0.9, 1), (0.95, 3), (1.0, 1), (1e-6, 1)])
def test_top_p(seed, top_p, keep):
    logits = random_logits(seed)
    expected = TopPLogitsWarper(top_p, min_tokens_to_keep=keep)(DUMMY_IDS, logits)
    assert same(top_p_filter(logits, top_p, keep), expected)


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert torch.isinf(top_p_filter(logits, 0.6)).tolist() == [[False, False, True]]  # 0.5 < 0.6 <= 0.8


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_p,keep", [(0.0, 1), (0.05, 1), (0.3, 1), (0.9, 2), (1.0, 1)])
def test_min_p(seed, min_p, keep):
    logits = random_logits(seed)
    expected = MinPLogitsWarper(min_p, min_tokens_to_keep=keep)(DUMMY_IDS, logits)
    assert same(min_p_filter(logits, min_p, keep), expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
def test_repetition_penalty(seed, penalty):
    logits = random_logits(seed)
    ids = torch.randint(0, 50, (6, 12), generator=torch.Generator().manual_seed(seed))
    expected = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    assert same(apply_repetition_penalty(logits, ids, penalty), expected)


def test_frequency_and_presence_penalties_follow_the_openai_rule():
    logits = torch.zeros(1, 5)
    generated = torch.tensor([[1, 1, 1, 3]])
    out = apply_frequency_presence_penalty(logits, generated, frequency_penalty=0.5, presence_penalty=0.25)
    assert out.tolist() == [[0.0, -1.75, 0.0, -0.75, 0.0]]


@pytest.mark.parametrize("call,match", [
    (lambda x: apply_temperature(x, 0.0), "temperature must be > 0"),
    (lambda x: apply_temperature(x, -1.0), "temperature must be > 0"),
    (lambda x: top_k_filter(x, -1), r"top_k must be an integer >= 0"),
    (lambda x: top_p_filter(x, 0.0), r"top_p must be in \(0, 1\]"),
    (lambda x: top_p_filter(x, 1.5), r"top_p must be in \(0, 1\]"),
    (lambda x: min_p_filter(x, -0.1), r"min_p must be in \[0, 1\]"),
    (lambda x: min_p_filter(x, 1.1), r"min_p must be in \[0, 1\]"),
    (lambda x: apply_repetition_penalty(x, torch.zeros(1, 1, dtype=torch.long), 0.0), "repetition_penalty"),
    (lambda x: apply_frequency_presence_penalty(x, torch.zeros(1, 1, dtype=torch.long), 3.0, 0.0),
     r"frequency_penalty must be in \[-2, 2\]"),
])
def test_invalid_arguments_name_the_argument_and_range(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.zeros(1, 5))
