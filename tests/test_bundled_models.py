"""The bundled models: they load offline, match MiniGPT, and meet their published numbers."""

import json

import pytest
import torch

from course_utils import MiniGPT, load_model
from course_utils.hub import ASSETS, BUNDLED_MODELS
from course_utils.kv_cache import multiply_adds_per_token


@pytest.fixture(scope="module")
def bundled():
    return {name: load_model(name) for name in BUNDLED_MODELS}


def metrics(name):
    return json.loads((ASSETS / name / "metrics.json").read_text())


def test_default_model_is_the_bundled_target(monkeypatch, bundled):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    model, tokenizer = load_model()
    assert model.config.to_dict() == bundled["shakespeare-gpt"][0].config.to_dict()
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == model.config.eos_token_id


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_minigpt_logits_match_transformers(bundled, name):
    hf_model, _ = bundled[name]
    mini = MiniGPT.from_hf(hf_model)
    ids = torch.randint(0, hf_model.config.vocab_size, (2, hf_model.config.n_positions),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (mini(ids) - hf_model(ids).logits).abs().max() < 1e-4


def test_both_models_share_one_tokenizer(bundled):
    target_tokenizer, draft_tokenizer = bundled["shakespeare-gpt"][1], bundled["shakespeare-gpt-draft"][1]
    assert target_tokenizer.get_vocab() == draft_tokenizer.get_vocab()
    assert (ASSETS / "shakespeare-gpt" / "tokenizer.json").read_text() == (
        ASSETS / "shakespeare-gpt-draft" / "tokenizer.json").read_text()


def test_draft_needs_at_least_five_times_fewer_multiply_adds(bundled):
    target = MiniGPT.from_hf(bundled["shakespeare-gpt"][0]).config
    draft = MiniGPT.from_hf(bundled["shakespeare-gpt-draft"][0]).config
    for n_past in (0, 255, 511):
        assert multiply_adds_per_token(target, n_past) >= 5 * multiply_adds_per_token(draft, n_past)


def test_assets_fit_in_40_mb():
    total = sum(path.stat().st_size for path in ASSETS.rglob("*") if path.is_file())
    assert total <= 40 * 2**20, f"{total / 2**20:.1f} MiB"


def test_published_metrics_meet_their_goals():
    assert metrics("shakespeare-gpt")["validation_bits_per_byte"] <= 2.20
    assert metrics("shakespeare-gpt-draft")["greedy_agreement_with_teacher"] >= 0.55
    for name in BUNDLED_MODELS:
        card = (ASSETS / name / "README.md").read_text()
        for key, value in metrics(name).items():
            if key.endswith(("bits_per_byte", "agreement_with_teacher")):
                assert f"{key}: {value}" in card


def test_bundled_tokenizer_is_what_training_produces():
    """Retrain the tokenizer from the corpus (fetched through pip and verified) and compare."""
    from course_utils.data import load_corpus
    from course_utils.recipes import PRESETS
    from course_utils.tokenizer import train_bpe

    corpus = load_corpus()
    vocab_size = PRESETS["shakespeare-gpt"].model.vocab_size
    retrained = train_bpe([corpus.train[name] for name in sorted(corpus.train)], vocab_size)
    bundled_json = json.loads((ASSETS / "shakespeare-gpt" / "tokenizer.json").read_text())
    assert json.loads(retrained.to_str())["model"] == bundled_json["model"]


def test_evaluation_reproduces_the_published_metrics(bundled):
    """The full validation scoring, as `python -m course_utils.evaluate` runs it (~1 minute)."""
    from course_utils.data import load_corpus
    from course_utils.evaluation import bits_per_byte, greedy_agreement

    validation = [text for _, text in sorted(load_corpus().validation.items())]
    target, tokenizer = bundled["shakespeare-gpt"]
    target_mini = MiniGPT.from_hf(target)
    bpb = bits_per_byte(target_mini, tokenizer, validation)
    assert bpb == pytest.approx(metrics("shakespeare-gpt")["validation_bits_per_byte"], abs=1e-3)
    draft_mini = MiniGPT.from_hf(bundled["shakespeare-gpt-draft"][0])
    rate = greedy_agreement(draft_mini, target_mini, tokenizer, validation, target.config.n_positions)
    assert rate == pytest.approx(metrics("shakespeare-gpt-draft")["greedy_agreement_with_teacher"], abs=2e-3)


PROMPTS = ["ROMEO.\n", "KING LEAR.\nBlow, winds, and crack your cheeks!", "HAMLET.\nTo be, or not to be,"]


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_greedy_and_beam_search_equal_transformers_on_bundled_models(bundled, name):
    from course_utils import generate

    hf_model, tokenizer = bundled[name]
    mini = MiniGPT.from_hf(hf_model)
    eos = tokenizer.eos_token_id
    cases = [dict(num_beams=1), dict(num_beams=2, length_penalty=0.8), dict(num_beams=3, early_stopping=True,
             num_return_sequences=2), dict(num_beams=5, length_penalty=1.5, num_return_sequences=5)]
    for text in PROMPTS:
        ids = tokenizer(text, return_tensors="pt").input_ids
        for case in cases:
            expected = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                                         pad_token_id=eos, **case)
            assert torch.equal(generate(mini, ids, 24, eos_token_id=eos, **case), expected), (text, case)


def test_left_padded_batch_on_the_bundled_model_equals_transformers(bundled):
    from course_utils import generate

    hf_model, tokenizer = bundled["shakespeare-gpt"]
    tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.eos_token
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    for case in (dict(num_beams=1), dict(num_beams=3, num_return_sequences=2, length_penalty=0.5)):
        expected = hf_model.generate(**batch, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.eos_token_id,
                                     **case)
        got = generate(MiniGPT.from_hf(hf_model), batch.input_ids, 16, attention_mask=batch.attention_mask,
                       eos_token_id=tokenizer.eos_token_id, **case)
        assert torch.equal(got, expected), case
