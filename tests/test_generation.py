import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from course_utils import GPTConfig, MiniGPT, generate


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
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(max_new_tokens=100), "exceeds the model's context of 48"),
])
def test_invalid_arguments_name_the_argument(hf_models, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(hf_models[0], torch.zeros(1, 2, dtype=torch.long), **kwargs)


def test_token_ids_beyond_the_vocabulary_are_refused(hf_models):
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 299\]"):
        generate(hf_models[0], torch.tensor([[5, 300]]), 2)


BEAM_CASES = [
    dict(num_beams=2, length_penalty=1.0, early_stopping=False, num_return_sequences=1),
    dict(num_beams=3, length_penalty=0.5, early_stopping=True, num_return_sequences=2),
    dict(num_beams=4, length_penalty=2.0, early_stopping="never", num_return_sequences=4),
    dict(num_beams=5, length_penalty=-1.0, early_stopping=False, num_return_sequences=3),
    dict(num_beams=5, length_penalty=1.0, early_stopping=True, num_return_sequences=1),
]


@pytest.mark.parametrize("case", BEAM_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("model_index", [0, 2])
@pytest.mark.parametrize("hits_eos", [False, True])
def test_beam_search_equals_transformers(hf_models, case, model_index, hits_eos):
    hf_model = hf_models[model_index]
    mini = MiniGPT.from_hf(hf_model)
    V = hf_model.config.vocab_size
    prompt = torch.randint(1, V, (2, 4), generator=torch.Generator().manual_seed(case["num_beams"]))
    # An EOS the search really meets: a token its first beam emits mid-way; else a rare token.
    eos = int(generate(mini, prompt, 10, num_beams=case["num_beams"])[0, 7]) if hits_eos else V - 1
    arguments = dict(case, eos_token_id=eos, pad_token_id=0)
    expected = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10,
                                 do_sample=False, **arguments)
    got = generate(mini, prompt, 10, **arguments)
    assert torch.equal(got, expected)  # with hits_eos, 6 of these 10 cases return EOS-ended beams


def test_beam_search_on_a_left_padded_batch_equals_transformers(hf_models):
    hf_model = hf_models[0]
    mini = MiniGPT.from_hf(hf_model)
    prompt = torch.randint(1, 300, (3, 6), generator=torch.Generator().manual_seed(11))
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0
    mask[2, :4] = 0
    prompt = prompt.masked_fill(mask == 0, 0)
    arguments = dict(num_beams=3, num_return_sequences=2, length_penalty=0.7, pad_token_id=0, eos_token_id=299)
    expected = hf_model.generate(prompt, attention_mask=mask, max_new_tokens=8, do_sample=False, **arguments)
    assert torch.equal(generate(mini, prompt, 8, attention_mask=mask, **arguments), expected)


SAMPLING_CASES = [
    dict(),  # transformers' defaults: temperature 1, top_k 50
    dict(temperature=0.7, top_k=0),
    dict(temperature=1.3, top_k=10, top_p=0.8),
    dict(top_k=0, top_p=0.5),
    dict(top_k=0, min_p=0.1, temperature=1.5),
    dict(repetition_penalty=1.5, top_k=20),
    dict(num_return_sequences=3, top_p=0.9),
]


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_seeded_sampling_equals_transformers(hf_models, case):
    """Same global seed, same processed distribution, same draws (no cache: bitwise-equal logits)."""
    hf_model = hf_models[1]
    prompt = torch.randint(0, 517, (2, 3), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(prompt)
    torch.manual_seed(123)
    expected = hf_model.generate(prompt, attention_mask=mask, max_new_tokens=12, do_sample=True, use_cache=False,
                                 pad_token_id=0, **case)
    torch.manual_seed(123)
    got = generate(hf_model, prompt, 12, do_sample=True, attention_mask=mask, pad_token_id=0, **case)
    assert torch.equal(got, expected)


def test_greedy_with_repetition_penalty_equals_transformers(hf_models):
    hf_model = hf_models[0]
    mini = MiniGPT.from_hf(hf_model)
    prompt = torch.randint(0, 300, (2, 5), generator=torch.Generator().manual_seed(4))
    expected = hf_greedy(hf_model, prompt, 15, attention_mask=torch.ones_like(prompt), repetition_penalty=1.8)
    assert torch.equal(generate(mini, prompt, 15, repetition_penalty=1.8, eos_token_id=299), expected)


def test_stopping_criteria_finish_rows_like_eos(hf_models):
    mini = MiniGPT.from_hf(hf_models[2])
    prompt = torch.randint(0, 128, (3, 2), generator=torch.Generator().manual_seed(8))
    free_run = generate(mini, prompt, 12)
    stop_token = int(free_run[1, 5])

    def stop_on_token(input_ids, scores):
        return input_ids[:, -1] == stop_token

    got = generate(mini, prompt, 12, stopping_criteria=[stop_on_token], pad_token_id=0)
    assert torch.equal(got, generate(mini, prompt, 12, eos_token_id=stop_token, pad_token_id=0))


def test_stop_on_text_and_streamer(hf_models):
    from course_utils.generation import StopOnText
    from course_utils.hub import load_tokenizer

    tokenizer = load_tokenizer("shakespeare-gpt")
    mini = MiniGPT.from_hf(hf_models[2])
    prompt = torch.tensor([[5, 6]])
    full = generate(mini, prompt, 12)
    target_text = tokenizer.decode(full[0, 2:6])

    class Collect:
        def __init__(self):
            self.pieces = []

        def put(self, ids):
            self.pieces.append(ids.tolist())

        def end(self):
            self.pieces.append("end")

    streamer = Collect()
    got = generate(mini, prompt, 12, stopping_criteria=[StopOnText(tokenizer, [target_text], 2)], streamer=streamer)
    assert target_text in tokenizer.decode(got[0, 2:]) and got.shape[1] < full.shape[1]
    assert streamer.pieces[0] == [[5, 6]] and streamer.pieces[-1] == "end"
    assert [piece[0] for piece in streamer.pieces[1:-1]] == got[0, 2:].tolist()


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_p=0.0, do_sample=True), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.2, do_sample=True), r"top_p must be in \(0, 1\]"),
    (dict(top_k=-1, do_sample=True), r"top_k must be an integer >= 0"),
    (dict(min_p=1.5, do_sample=True), r"min_p must be in \[0, 1\]"),
    (dict(temperature=-0.5, do_sample=True), "temperature must be > 0"),
    (dict(num_beams=0), "num_beams must be an integer >= 1"),
    (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences must be in \[1, num_beams=2\]"),
    (dict(num_beams=3, length_penalty=float("nan")), "length_penalty must be a finite number, got nan"),
    (dict(num_beams=3, length_penalty=float("inf")), "length_penalty must be a finite number, got inf"),
    (dict(num_beams=3, length_penalty=-float("inf")), "length_penalty must be a finite number, got -inf"),
    (dict(temperature=float("nan"), do_sample=True), "temperature must be a finite number, got nan"),
    (dict(temperature=float("nan")), "temperature must be a finite number, got nan"),  # even when greedy
    (dict(temperature=float("inf"), do_sample=True), "temperature must be a finite number, got inf"),
])
def test_more_invalid_arguments(hf_models, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(hf_models[0], torch.zeros(1, 2, dtype=torch.long), 3, **kwargs)


@pytest.mark.parametrize("case", [dict(temperature=0.8, top_k=0), dict(temperature=1.2, top_k=12, top_p=0.9),
                                  dict(top_k=0, min_p=0.3), dict(top_k=5, temperature=2.0)])
def test_twenty_thousand_draws_follow_the_filtered_distribution(case):
    """Chi-square goodness of fit of 20,000 one-step draws against the filtered distribution."""
    from course_utils import GPTConfig
    from course_utils.generation import GenerationSettings

    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=40, context_length=8, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        mini.wte.weight.mul_(4)  # an uneven distribution
    prompt = torch.tensor([[3, 1]])
    n = 20_000
    draws = generate(mini, prompt.expand(n, 2), 1, do_sample=True, generator=torch.Generator().manual_seed(1), **case)
    counts = torch.bincount(draws[:, -1], minlength=40).double()

    settings = GenerationSettings(do_sample=True, **case)
    with torch.no_grad():
        logits = settings.process(mini(prompt)[:, -1], prompt, torch.ones_like(prompt), 2)
    probs = logits.softmax(-1)[0].double()
    assert counts[probs == 0].sum() == 0  # filtered tokens are never drawn
    assert (probs > 0).sum() >= 3  # the test is not trivial
    if case.get("top_k") or case.get("min_p"):
        assert (probs == 0).any()  # ... and the filters did remove tokens
    expected = probs * n
    kept = expected > 0
    statistic = ((counts[kept] - expected[kept]) ** 2 / expected[kept]).sum()
    dof = int(kept.sum()) - 1
    p_value = torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), statistic / 2)
    assert p_value > 0.001, f"chi-square {statistic:.1f} with {dof} degrees of freedom: p = {p_value:.2g}"


CACHE_CASES = [
    dict(),
    dict(do_sample=True, temperature=0.9, top_p=0.9),
    dict(num_beams=3, num_return_sequences=2, length_penalty=0.7),
    dict(num_beams=4, early_stopping=True, repetition_penalty=1.3),
]


@pytest.mark.parametrize("case", CACHE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "greedy")
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("implementation", ["preallocated", "growing"])
def test_cached_generation_gives_the_same_tokens(hf_models, case, padded, implementation):
    mini = MiniGPT.from_hf(hf_models[0])
    prompt = torch.randint(1, 300, (2, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(prompt)
    if padded:
        mask[1, :3] = 0
        prompt = prompt.masked_fill(mask == 0, 0)

    def run(use_cache):
        return generate(mini, prompt, 14, attention_mask=mask, eos_token_id=7, use_cache=use_cache,
                        cache_implementation=implementation, generator=torch.Generator().manual_seed(0), **case)

    assert torch.equal(run(True), run(False))


@pytest.mark.parametrize("preallocated", [False, True], ids=["growing", "preallocated"])
def test_cached_logits_match_a_full_forward_pass(preallocated):
    from course_utils import GPTConfig
    from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache

    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (2, 20))
    cache = PreallocatedKVCache(24) if preallocated else GrowingKVCache()
    with torch.no_grad():
        full = mini(ids)
        pieces = [mini(ids[:, :8], cache=cache)] + [mini(ids[:, t : t + 1], cache=cache) for t in range(8, 20)]
    assert (torch.cat(pieces, dim=1) - full).abs().max() < 1e-5
    assert len(cache) == 20
    held = 24 if preallocated else 20  # a preallocated cache holds all its positions from the start
    assert cache.nbytes() == 2 * 2 * 2 * held * 16 * 4  # keys and values x layers x batch x T x C x float32
    with pytest.raises(ValueError, match="cached ones included"):
        mini(torch.zeros(2, 13, dtype=torch.long), cache=cache)


def test_int8_quantisation_rounds_each_vector_to_within_half_a_step():
    from course_utils.kv_cache import quantize_int8

    sizes = torch.tensor([1e-3, 1.0, 50.0])[:, None, None]  # a scale per head, each far from the others
    x = torch.randn(2, 3, 5, 16, generator=torch.Generator().manual_seed(0)) * sizes
    x[0, 0, 0] = 0.0  # an all-zero vector must not divide by zero
    values, scales = quantize_int8(x)
    assert values.dtype == torch.int8 and scales.shape == (2, 3, 5, 1)
    assert values.abs().amax(-1).eq(127).sum() == 2 * 3 * 5 - 1  # each vector's largest value uses the full range
    assert ((values * scales - x).abs() <= scales / 2 + 1e-7 * x.abs()).all()
    assert values[0, 0, 0].eq(0).all()


def test_an_int8_cache_stores_a_quarter_and_changes_logits_only_slightly():
    from course_utils import GPTConfig
    from course_utils.kv_cache import GrowingKVCache, Int8KVCache

    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (2, 20))
    caches = {"float": GrowingKVCache(), "int8": Int8KVCache()}
    with torch.no_grad():
        logits = {name: torch.cat([mini(ids[:, :8], cache=cache)] + [mini(ids[:, t : t + 1], cache=cache)
                                                                    for t in range(8, 20)], dim=1)
                  for name, cache in caches.items()}
        difference = (logits["int8"] - logits["float"]).abs().max()
    assert 0 < difference < 1e-2  # rounded, so not equal; but close
    assert len(caches["int8"]) == 20
    # keys and values x layers x batch x T x heads x (D int8 bytes + one float32 scale)
    assert caches["int8"].nbytes() == 2 * 2 * 2 * 20 * 2 * (8 + 4)
    caches["int8"].reorder(torch.tensor([1, 1, 0]))
    assert caches["int8"].keys[0].shape[0] == 3 and caches["int8"].key_scales[1].shape[0] == 3


@pytest.mark.parametrize("case", [dict(), dict(num_beams=3)], ids=["greedy", "beams"])
def test_generate_with_an_int8_cache_on_a_padded_batch(hf_models, case):
    mini = MiniGPT.from_hf(hf_models[0])
    prompt = torch.randint(1, 300, (2, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(prompt)
    mask[1, :3] = 0
    out = generate(mini, prompt, 10, attention_mask=mask, cache_implementation="int8", **case)
    assert out.shape == (2, 16) and torch.equal(out[:, :6], prompt)


def test_a_preallocated_cache_refuses_to_overflow_and_bad_sizes():
    from course_utils import GPTConfig
    from course_utils.kv_cache import PreallocatedKVCache

    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    cache = PreallocatedKVCache(4)
    with torch.no_grad():
        mini(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="max_length=4"):
            mini(torch.zeros(1, 2, dtype=torch.long), cache=cache)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_length must be a positive int"):
            PreallocatedKVCache(bad)


def test_generate_refuses_an_unknown_cache_implementation(hf_models):
    mini = MiniGPT.from_hf(hf_models[0])
    with pytest.raises(ValueError, match="cache_implementation must be one of"):
        generate(mini, torch.ones(1, 3, dtype=torch.long), 2, cache_implementation="static")


def test_temperature_zero_is_greedy_unless_sampling_as_in_transformers(hf_models):
    hf_model = hf_models[0]
    prompt = torch.randint(0, 300, (2, 4), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(prompt)
    plain = generate(hf_model, prompt, 8, attention_mask=mask)
    assert torch.equal(generate(hf_model, prompt, 8, attention_mask=mask, temperature=0.0), plain)
    assert torch.equal(generate(MiniGPT.from_hf(hf_model), prompt, 8, temperature=0.0, num_beams=2),
                       hf_model.generate(prompt, attention_mask=mask, max_new_tokens=8, temperature=0.0, num_beams=2))
    assert torch.equal(hf_model.generate(prompt, attention_mask=mask, max_new_tokens=8, temperature=0.0), plain)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(hf_model, prompt, 8, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="strictly positive"):  # transformers refuses it too
        hf_model.generate(prompt, attention_mask=mask, max_new_tokens=8, do_sample=True, temperature=0.0)


def test_a_models_generation_config_supplies_the_defaults_and_explicit_arguments_win(random_gpt2_dirs):
    hf_model = AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[1])).eval()
    hf_model.generation_config.update(do_sample=True, top_k=7, temperature=0.6, max_new_tokens=9)
    prompt = torch.randint(0, 517, (2, 3), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(prompt)
    torch.manual_seed(5)
    expected = hf_model.generate(prompt, attention_mask=mask, use_cache=False, pad_token_id=0)
    torch.manual_seed(5)
    got = generate(hf_model, prompt, attention_mask=mask, pad_token_id=0)  # samples, top-k 7, 9 tokens
    assert got.shape[1] == 3 + 9 and torch.equal(got, expected)
    greedy = generate(hf_model, prompt, 4, attention_mask=mask, do_sample=False)  # explicit wins
    assert torch.equal(greedy, hf_model.generate(prompt, attention_mask=mask, max_new_tokens=4, do_sample=False))
    mini = MiniGPT.from_hf(hf_model)  # a MiniGPT has no generation config: transformers' defaults
    assert torch.equal(generate(mini, prompt), generate(hf_model, prompt, 20, do_sample=False, top_k=50))


def test_a_settings_object_passed_whole_equals_its_arguments_and_explicit_ones_win(hf_models):
    from transformers import GenerationConfig

    from course_utils.sampling import GenerationSettings

    mini = MiniGPT.from_hf(hf_models[1])
    prompt = torch.randint(0, 517, (2, 3), generator=torch.Generator().manual_seed(3))
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.7, top_k=11, top_p=0.9,
                                  repetition_penalty=1.2, presence_penalty=0.5)
    whole = generate(mini, prompt, generation_config=settings, generator=torch.Generator().manual_seed(4))
    spelled = generate(mini, prompt, 8, do_sample=True, temperature=0.7, top_k=11, top_p=0.9, repetition_penalty=1.2,
                       presence_penalty=0.5, generator=torch.Generator().manual_seed(4))
    assert whole.shape == (2, 11) and torch.equal(whole, spelled)
    without_presence = generate(mini, prompt, 8, do_sample=True, temperature=0.7, top_k=11, top_p=0.9,
                                repetition_penalty=1.2, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(whole, without_presence)  # every field counts, not a hand-picked six
    greedy = generate(mini, prompt, generation_config=settings, do_sample=False, max_new_tokens=5)  # explicit wins
    assert torch.equal(greedy, generate(mini, prompt, 5, repetition_penalty=1.2, presence_penalty=0.5))
    transformers_config = GenerationConfig(max_new_tokens=6, num_beams=3)
    assert torch.equal(generate(mini, prompt, generation_config=transformers_config),
                       generate(mini, prompt, 6, num_beams=3))
    with pytest.raises(ValueError, match="top_k must be an integer >= 0"):
        generate(mini, prompt, generation_config=GenerationSettings(), top_k=-1)


# Every field of GenerationSettings, each with a value that changes what a tiny model generates, and
# the settings it needs beside it (sampling for the warpers, beams for the beam fields).
HONOURED_FIELDS = {
    "max_new_tokens": (dict(max_new_tokens=4), {}),
    "do_sample": (dict(do_sample=True), {}),
    "temperature": (dict(temperature=0.5), dict(do_sample=True)),
    "top_k": (dict(top_k=3), dict(do_sample=True)),
    "top_p": (dict(top_p=0.5), dict(do_sample=True, top_k=0)),
    "min_p": (dict(min_p=0.2), dict(do_sample=True, top_k=0)),
    "repetition_penalty": (dict(repetition_penalty=3.0), {}),
    "frequency_penalty": (dict(frequency_penalty=2.0), {}),
    "presence_penalty": (dict(presence_penalty=2.0), {}),
    "num_beams": (dict(num_beams=3), {}),
    "length_penalty": (dict(length_penalty=-3.0), dict(num_beams=3, eos_token_id="emitted")),
    "early_stopping": (dict(early_stopping=True), dict(num_beams=2, length_penalty=2.0, eos_token_id="first")),
    "num_return_sequences": (dict(num_return_sequences=2), dict(num_beams=3)),
    "eos_token_id": (dict(eos_token_id="emitted"), {}),
    "pad_token_id": (dict(pad_token_id=1), dict(eos_token_id="first")),
}


def test_every_setting_is_honoured_alike_as_a_keyword_and_in_a_generation_config(hf_models):
    from dataclasses import fields

    from transformers import GenerationConfig

    from course_utils.sampling import GenerationSettings

    assert set(HONOURED_FIELDS) == {f.name for f in fields(GenerationSettings)}  # a new field needs a case here
    mini = MiniGPT.from_hf(hf_models[1])
    prompt = torch.randint(0, 517, (2, 3), generator=torch.Generator().manual_seed(3))
    greedy = generate(mini, prompt, 12)
    # tokens row 0 emits greedily, its first and its fourth: EOS ids that stop it early
    emitted = {"first": int(greedy[0, 3]), "emitted": int(greedy[0, 6])}

    def run(as_config: bool, arguments: dict) -> torch.Tensor:
        arguments = {name: emitted.get(value, value) if isinstance(value, str) else value
                     for name, value in arguments.items()}
        arguments.setdefault("max_new_tokens", 12)
        seeded = torch.Generator().manual_seed(4)
        if as_config:
            return generate(mini, prompt, generation_config=GenerationConfig(**arguments), generator=seeded)
        return generate(mini, prompt, generator=seeded, **arguments)

    for name, (changed, beside) in HONOURED_FIELDS.items():
        as_keyword, in_config = run(False, {**beside, **changed}), run(True, {**beside, **changed})
        assert torch.equal(as_keyword, in_config), f"{name}: a GenerationConfig gives other tokens than the keyword"
        without = run(False, beside)
        assert as_keyword.shape != without.shape or not torch.equal(as_keyword, without), f"{name} changed nothing"


def test_a_generation_configs_eos_stops_generation_as_the_keyword_does_speculative_too(hf_models):
    from transformers import GenerationConfig

    mini = MiniGPT.from_hf(hf_models[1])
    prompt = torch.randint(0, 517, (1, 3), generator=torch.Generator().manual_seed(3))
    eos = int(generate(mini, prompt, 10)[0, 5])
    config = GenerationConfig(eos_token_id=eos, max_new_tokens=10)
    stopped = generate(mini, prompt, eos_token_id=eos, max_new_tokens=10)
    assert stopped.shape[1] < 3 + 10 and int(stopped[0, -1]) == eos
    assert torch.equal(generate(mini, prompt, generation_config=config), stopped)
    for drafting in (dict(assistant_model=mini), dict(prompt_lookup_num_tokens=2)):
        assert torch.equal(generate(mini, prompt, generation_config=config, **drafting), stopped)
    several = GenerationConfig(eos_token_id=[9999 % 517, eos], max_new_tokens=10)  # any of a list stops a row
    assert torch.equal(generate(mini, prompt, generation_config=several), stopped)


def test_a_generation_config_field_the_course_does_not_honour_is_refused_by_name(hf_models):
    from transformers import GenerationConfig

    mini = MiniGPT.from_hf(hf_models[1])
    prompt = torch.zeros(1, 3, dtype=torch.long)
    for field, value in (("no_repeat_ngram_size", 3), ("typical_p", 0.5), ("bad_words_ids", [[1]])):
        with pytest.raises(ValueError, match=f"generation_config sets \\['{field}'\\]"):
            generate(mini, prompt, generation_config=GenerationConfig(**{field: value}))
    for wrong in (-1, [], [3, -2], 2.0):
        with pytest.raises(ValueError, match="eos_token_id must be a token id"):
            generate(mini, prompt, 3, eos_token_id=wrong)
    with pytest.raises(ValueError, match="pad_token_id must be a token id"):
        generate(mini, prompt, 3, pad_token_id=-1)


def _tiny_gpt() -> MiniGPT:
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=300, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()


def test_padding_without_a_mask_warns_and_a_mask_row_of_zeros_is_refused():
    """Both once answered wrongly without a word: a padded row read its padding as text, and an
    all-zero mask row gave garbage."""
    model = _tiny_gpt()
    padded = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    with pytest.warns(UserWarning, match="hold pad_token_id 0 but no attention_mask was passed"):
        generate(model, padded, 3, pad_token_id=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the mask, or one row, or no pad id: no warning
        generate(model, padded, 3, pad_token_id=0, attention_mask=(padded != 0).long())
        generate(model, padded[:1], 3, pad_token_id=0)
        generate(model, padded, 3)
    with pytest.raises(ValueError, match=r"attention_mask rows \[0\] are all zeros"):
        generate(model, padded, 3, attention_mask=torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))


@pytest.mark.parametrize("call", ["generate", "speculative_generate"])
def test_an_empty_prompt_is_refused_by_both_loops(call):
    from course_utils.sampling import GenerationSettings
    from course_utils.speculative import ModelDrafter, speculative_generate

    model, empty = _tiny_gpt(), torch.zeros(1, 0, dtype=torch.long)
    settings = GenerationSettings(max_new_tokens=3)
    with pytest.raises(ValueError, match=r"input_ids must hold at least one token per row \(a prompt\), got shape"):
        if call == "generate":
            generate(model, empty, 3)
        else:
            speculative_generate(model, ModelDrafter(model, settings, 8), empty, 2, settings)
