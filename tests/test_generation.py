import pytest
import torch
from transformers import AutoModelForCausalLM

from course_utils import MiniGPT, generate


@pytest.fixture(scope="module")
def hf_models(random_gpt2_dirs):
    return [AutoModelForCausalLM.from_pretrained(str(folder)).eval() for folder in random_gpt2_dirs]


def hf_greedy(model, input_ids, max_new_tokens, **kwargs):
    return model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)


def test_greedy_equals_transformers_for_minigpt_and_hf_models(hf_models):
    for hf_model in hf_models:
        mini = MiniGPT.from_hf(hf_model)
        prompt = torch.randint(0, hf_model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(1))
        mask = torch.ones_like(prompt)
        expected = hf_greedy(hf_model, prompt, 12, attention_mask=mask, pad_token_id=0)
        assert torch.equal(generate(mini, prompt, 12), expected)
        assert torch.equal(generate(hf_model, prompt, 12), expected)


def test_rows_that_hit_eos_are_padded_like_transformers(hf_models):
    hf_model = hf_models[2]
    mini = MiniGPT.from_hf(hf_model)
    prompt = torch.randint(0, 128, (4, 3), generator=torch.Generator().manual_seed(3))
    free_run = generate(mini, prompt, 10)
    eos = int(free_run[0, 6])  # a token that row 0 emits: make it the EOS
    expected = hf_greedy(hf_model, prompt, 10, attention_mask=torch.ones_like(prompt), eos_token_id=eos, pad_token_id=7)
    got = generate(mini, prompt, 10, eos_token_id=eos, pad_token_id=7)
    assert torch.equal(got, expected)
    assert (got[0, 7:] == 7).all()


def test_left_padded_batch_equals_transformers_and_unpadded_rows(hf_models):
    hf_model = hf_models[0]
    mini = MiniGPT.from_hf(hf_model)
    long = torch.randint(1, 300, (1, 6), generator=torch.Generator().manual_seed(5))
    short = long[:, 3:]
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1)])
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1]])
    expected = hf_greedy(hf_model, batch, 8, attention_mask=mask, pad_token_id=0)
    got = generate(mini, batch, 8, attention_mask=mask)
    assert torch.equal(got, expected)
    assert torch.equal(got[1:, 3:], generate(mini, short, 8))


def test_seeded_sampling_repeats(hf_models):
    mini = MiniGPT.from_hf(hf_models[1])
    prompt = torch.zeros(3, 1, dtype=torch.long)

    def draw(seed):
        seeded = torch.Generator().manual_seed(seed)
        return generate(mini, prompt, 15, do_sample=True, temperature=0.8, generator=seeded)

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(max_new_tokens=100), "exceeds the model's context of 48"),
])
def test_invalid_arguments_name_the_argument(hf_models, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(hf_models[0], torch.zeros(1, 2, dtype=torch.long), **kwargs)


def test_token_ids_beyond_the_vocabulary_are_refused(hf_models):
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 299\]"):
        generate(hf_models[0], torch.tensor([[5, 300]]), 2)
