"""Drive the sampling playground's sliders as a learner would and check what it shows."""

import html

import pytest
import torch

from course_utils import MiniGPT
from course_utils.generation import GenerationSettings, top_k_filter
from course_utils.hub import load_tokenizer
from course_utils.playground import SamplingPlayground, distribution_html, distribution_rows, seeded_continuation


@pytest.fixture(scope="module")
def model_and_tokenizer(random_gpt2_dirs):
    from transformers import AutoModelForCausalLM

    # A random GPT-2 with the bundled tokenizer's vocabulary size would be large; reuse a small
    # one and keep to token ids it knows by using the bundled tokenizer only for decoding.
    hf_model = AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[0])).eval()
    return MiniGPT.from_hf(hf_model), load_tokenizer("shakespeare-gpt")


class SmallTokenizer:
    """Maps text to ids below 300 so that the random 300-token model can read it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text, return_tensors="pt"):
        ids = torch.tensor([[i % 300 for i in self.tokenizer.encode(text)]])
        return type("Encoded", (), {"input_ids": ids})()

    def decode(self, ids):
        return self.tokenizer.decode(ids)


@pytest.fixture
def playground(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return SamplingPlayground(model, SmallTokenizer(tokenizer), "To be, or not", max_new_tokens=8)


def test_rows_show_probabilities_before_and_after(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = torch.tensor([[1, 2, 3]])
    rows, kept = distribution_rows(model, tokenizer, ids, GenerationSettings(do_sample=True, top_k=3))
    assert kept == int((~torch.isinf(top_k_filter(model(ids)[:, -1], 3))).sum())
    assert sum(row.after > 0 for row in rows) == 3
    assert sum(row.after for row in rows) == pytest.approx(1.0, abs=1e-5)
    assert "<table>" in distribution_html(rows, kept) and f"<b>{kept}</b>" in distribution_html(rows, kept)


def test_continuation_is_seeded(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = torch.tensor([[1, 2, 3]])
    settings = GenerationSettings(do_sample=True, max_new_tokens=10, temperature=1.5, top_k=0)
    first = seeded_continuation(model, tokenizer, ids, settings, seed=0)
    assert first == seeded_continuation(model, tokenizer, ids, settings, seed=0)
    assert first != seeded_continuation(model, tokenizer, ids, settings, seed=1)


def test_the_continuation_uses_every_setting_not_a_hand_picked_few(model_and_tokenizer):
    """The settings go to generate() whole; a copied list of six names once dropped the rest."""
    from dataclasses import replace

    from course_utils import generate

    model, tokenizer = model_and_tokenizer
    ids = torch.tensor([[1, 2, 3]])
    # a low temperature and a negative penalty: repeats become near certain, so the penalty shows
    settings = GenerationSettings(do_sample=True, max_new_tokens=12, top_k=0, temperature=0.2, frequency_penalty=-2.0)
    expected = generate(model, ids, 12, do_sample=True, top_k=0, temperature=0.2, frequency_penalty=-2.0,
                        generator=torch.Generator().manual_seed(0))
    assert seeded_continuation(model, tokenizer, ids, settings, seed=0) == tokenizer.decode(expected[0, 3:])
    plain = seeded_continuation(model, tokenizer, ids, replace(settings, frequency_penalty=0.0), seed=0)
    assert plain != seeded_continuation(model, tokenizer, ids, settings, seed=0)


def test_moving_top_k_updates_the_distribution(playground):
    assert playground.kept == 300  # no filter at the start
    playground.sliders["top_k"].value = 5
    assert playground.kept == 5
    assert "<b>5</b> tokens" in playground.distribution.value


def test_moving_top_p_and_min_p_shrink_the_candidates(playground):
    playground.sliders["top_p"].value = 0.3
    after_top_p = playground.kept
    assert 1 <= after_top_p < 300
    playground.sliders["top_p"].value = 1.0
    playground.sliders["min_p"].value = 0.5
    assert 1 <= playground.kept < 300


def test_temperature_changes_the_continuation_and_sharpens(playground):
    text_at_one = playground.text
    top_at_one = playground.rows[0].after
    playground.sliders["temperature"].value = 0.1
    assert playground.rows[0].after > top_at_one  # sharper: the favourite gains probability
    assert playground.text != text_at_one or playground.rows[0].after > 0.9
    assert playground.continuation.value.startswith("<pre>")


def test_out_of_range_values_are_clamped(playground):
    playground.sliders["top_p"].value = 1.7
    assert playground.sliders["top_p"].value == 1.0
    playground.sliders["repetition_penalty"].value = 0.2
    assert playground.sliders["repetition_penalty"].value == 1.0


def test_typing_a_seed_draws_another_continuation(playground):
    playground.sliders["temperature"].value = 1.5
    text_at_seed_zero = playground.text
    playground.seed_box.value = 1
    assert playground.text != text_at_seed_zero
    assert playground.continuation.value == f"<pre>{html.escape(playground.text)}</pre>"
    playground.seed_box.value = 0
    assert playground.text == text_at_seed_zero
