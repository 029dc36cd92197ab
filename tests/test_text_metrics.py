import math

import pytest
import torch

from course_utils import GPTConfig, MiniGPT
from course_utils.text_metrics import continuation_perplexity, distinct_n, ngrams, repeated_ngram_rate


def test_ngrams_and_distinct_n():
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    assert distinct_n([[1, 2, 1, 2, 1]], 2) == pytest.approx(2 / 4)
    assert distinct_n([[1, 2, 3], [4, 5, 6]], 2) == 1.0
    assert distinct_n([[1]], 2) == 0.0


def test_repeated_ngram_rate():
    assert repeated_ngram_rate([1, 2, 3, 4, 5], 2) == 0.0
    assert repeated_ngram_rate([7, 7, 7, 7, 7], 2) == pytest.approx(3 / 4)
    assert repeated_ngram_rate([1, 2, 1, 2, 1, 2], 2) == pytest.approx(3 / 5)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = MiniGPT(GPTConfig(vocab_size=32, context_length=16, n_layer=1, n_head=1, n_embd=8)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    assert continuation_perplexity(model, torch.arange(10), 3) == pytest.approx(32, rel=1e-5)
    with pytest.raises(ValueError, match="prompt_length"):
        continuation_perplexity(model, torch.arange(10), 10)
    assert math.isfinite(continuation_perplexity(model, torch.arange(10), 1))
