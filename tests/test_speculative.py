"""Speculative decoding: greedy equals plain greedy, sampling keeps the target's distribution,
caches roll back, bad arguments are refused."""

import copy

import pytest
import torch
from scipy.stats import chisquare

from course_utils import GPTConfig, MiniGPT, generate
from course_utils.generation import GenerationSettings
from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache
from course_utils.speculative import (
    ModelDrafter,
    PromptLookupDrafter,
    accept_drafts,
    expected_tokens_per_step,
    predicted_speedup,
    speculative_generate,
)


def noisy_copy(model: MiniGPT, noise: float, seed: int) -> MiniGPT:
    """A draft that agrees with ``model`` often but not always: its weights plus some noise."""
    torch.manual_seed(seed)
    draft = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in draft.parameters():
            parameter.add_(torch.randn_like(parameter) * noise)
    return draft


def tiny(seed: int, vocab: int = 50, layers: int = 2, width: int = 32) -> MiniGPT:
    torch.manual_seed(seed)
    model = MiniGPT(GPTConfig(vocab_size=vocab, context_length=64, n_layer=layers, n_head=2, n_embd=width)).eval()
    with torch.no_grad():  # sharper logits than at initialisation, so that drafts are often rejected
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


@pytest.mark.parametrize("k", range(1, 9))
def test_greedy_speculative_and_prompt_lookup_equal_plain_greedy(k):
    target = tiny(0)
    draft = noisy_copy(target, 0.1, seed=k)
    prompt = torch.randint(0, 50, (1, 7), generator=torch.Generator().manual_seed(k))
    plain = generate(target, prompt, 30)
    greedy = GenerationSettings(max_new_tokens=30)
    ours, stats = speculative_generate(target, ModelDrafter(draft, greedy, 37), prompt, k, greedy)
    assert torch.equal(ours, plain)
    assert 0 < stats.accepted < stats.drafted  # both outcomes happened: the test means something
    lookup, _ = speculative_generate(target, PromptLookupDrafter(), prompt, k, greedy)
    assert torch.equal(lookup, plain)


def test_greedy_stops_at_eos_like_plain_generate():
    target = tiny(0)
    draft = noisy_copy(target, 0.1, seed=0)
    prompt = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(0))
    plain = generate(target, prompt, 30)[0, 5:]
    eos = int(plain[6])  # a token the target produces: generation must stop right after it
    expected = generate(target, prompt, 30, eos_token_id=eos)
    expected = expected[:, : 5 + int((expected[0, 5:] == eos).nonzero()[0]) + 1]
    ours, _ = speculative_generate(target, ModelDrafter(draft, GenerationSettings(), 35), prompt, 4,
                                   GenerationSettings(max_new_tokens=30, eos_token_id=eos))
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("make", [GrowingKVCache, lambda: PreallocatedKVCache(20)], ids=["growing", "preallocated"])
def test_a_cropped_cache_continues_as_if_the_cropped_tokens_were_never_seen(make):
    model = tiny(2)
    ids = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(0))
    other = torch.randint(0, 50, (1, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cache = make()
        model(ids[:, :8], cache=cache)
        model(other, cache=cache)  # four wrong tokens...
        cache.crop(8)  # ...forgotten
        assert len(cache) == 8
        continued = model(ids[:, 8:], cache=cache)
        fresh_cache = make()
        model(ids[:, :8], cache=fresh_cache)
        expected = model(ids[:, 8:], cache=fresh_cache)
    assert (continued - expected).abs().max() < 1e-5
    with pytest.raises(ValueError, match="length must be an integer in"):
        cache.crop(13)


def test_a_preallocated_cache_crops_without_copying():
    model = tiny(2)
    cache = PreallocatedKVCache(16)
    with torch.no_grad():
        model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    address = cache.keys[0].data_ptr()
    cache.crop(4)
    assert cache.keys[0].data_ptr() == address and len(cache) == 4


def exact_joint(target: MiniGPT, prompt: torch.Tensor, settings: GenerationSettings) -> dict[tuple, float]:
    """The target's exact probability of every pair of next two tokens."""
    from course_utils.speculative import distributions

    V = target.config.vocab_size
    with torch.no_grad():
        first = distributions(target(prompt)[:, -1], settings)[0]
        joint = {}
        for a in range(V):
            second = distributions(target(torch.cat([prompt, torch.tensor([[a]])], 1))[:, -1], settings)[0]
            for b in range(V):
                joint[a, b] = float(first[a] * second[b])
    return joint


def two_token_counts(sample, draws: int) -> dict[tuple, int]:
    counts = {}
    for seed in range(draws):
        pair = tuple(sample(torch.Generator().manual_seed(seed)))
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def chi_square_p(counts: dict[tuple, int], joint: dict[tuple, float], draws: int) -> float:
    cells = [cell for cell in joint if joint[cell] * draws >= 5]  # pool the rare cells into one
    observed = [counts.get(cell, 0) for cell in cells] + [draws - sum(counts.get(cell, 0) for cell in cells)]
    expected = [joint[cell] * draws for cell in cells] + [draws * (1 - sum(joint[cell] for cell in cells))]
    return chisquare(observed, expected).pvalue


def test_sampling_keeps_the_targets_distribution_and_the_draft_alone_does_not():
    target, draft = tiny(3, vocab=6, width=16), tiny(4, vocab=6, layers=1, width=16)
    prompt = torch.tensor([[1, 4, 2]])
    settings = GenerationSettings(do_sample=True, max_new_tokens=2, temperature=1.0, top_k=0)
    joint = exact_joint(target, prompt, settings)
    draws = 4000

    def speculative(generator):
        out, _ = speculative_generate(target, ModelDrafter(draft, settings, 5, generator), prompt, 2, settings,
                                      generator=generator)
        return out[0, 3:].tolist()

    def draft_alone(generator):
        return generate(draft, prompt, 2, do_sample=True, top_k=0, generator=generator)[0, 3:].tolist()

    assert chi_square_p(two_token_counts(speculative, draws), joint, draws) > 0.001
    assert chi_square_p(two_token_counts(draft_alone, draws), joint, draws) < 1e-6


def test_the_acceptance_rule_on_a_hand_made_step():
    settings = GenerationSettings(do_sample=True, top_k=0)
    target_logits = torch.log(torch.tensor([[0.5, 0.5, 0.0 + 1e-9], [0.1, 0.2, 0.7]]))
    drafted = torch.tensor([[0]])
    always = torch.tensor([[0.25, 0.25, 0.5]])  # q(0) = 0.25 < p(0) = 0.5: always accepted
    kept, bonus = accept_drafts(drafted, target_logits, always, settings, torch.Generator().manual_seed(0))
    assert kept == 1
    never = torch.tensor([[1.0, 0.0, 0.0]])  # q(0) = 1, p(0) = 0.5: accepted half the time
    outcomes = [accept_drafts(drafted, target_logits, never, settings, torch.Generator().manual_seed(s))
                for s in range(2000)]
    rejected = [int(token) for kept, token in outcomes if kept == 0]
    assert abs(len(rejected) / 2000 - 0.5) < 0.05
    assert set(rejected) == {1}  # the residual max(0, p - q) puts all its mass on token 1


def test_bad_arguments_are_refused():
    target = tiny(0)
    greedy = GenerationSettings()
    with pytest.raises(ValueError, match="one sequence"):
        speculative_generate(target, PromptLookupDrafter(), torch.zeros(2, 3, dtype=torch.long), 2, greedy)
    with pytest.raises(ValueError, match="num_assistant_tokens must be a positive integer"):
        speculative_generate(target, PromptLookupDrafter(), torch.zeros(1, 3, dtype=torch.long), 0, greedy)
    with pytest.raises(ValueError, match="penalties"):
        speculative_generate(target, PromptLookupDrafter(), torch.zeros(1, 3, dtype=torch.long), 2,
                             GenerationSettings(repetition_penalty=1.2))
    with pytest.raises(ValueError, match="max_ngram"):
        PromptLookupDrafter(0)


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    drafter = PromptLookupDrafter(max_ngram=2)
    sequence = torch.tensor([[5, 6, 7, 8, 1, 5, 6, 9, 2, 5, 6]])
    drafted, probabilities = drafter.propose(sequence, 3)
    assert drafted.tolist() == [[9, 2, 5]] and probabilities is None  # after the later "5 6"
    assert drafter.propose(torch.tensor([[1, 2, 3]]), 3)[0].shape == (1, 0)  # nothing to copy


def test_generate_takes_transformers_names_for_minigpt_and_transformers_models(random_gpt2_dirs):
    from transformers import AutoModelForCausalLM

    hf_target = AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[0])).eval()
    target = MiniGPT.from_hf(hf_target)
    draft = noisy_copy(target, 0.05, seed=0)
    prompt = torch.randint(0, 300, (1, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(prompt)
    plain = generate(target, prompt, 25)
    assert torch.equal(generate(target, prompt, 25, assistant_model=draft), plain)
    assert torch.equal(generate(target, prompt, 25, assistant_model=draft, num_assistant_tokens=3), plain)
    assert torch.equal(generate(target, prompt, 25, prompt_lookup_num_tokens=4), plain)
    assert torch.equal(generate(target, prompt, 25, assistant_model=draft, num_assistant_tokens_schedule="heuristic"),
                       plain)
    hf_plain = generate(hf_target, prompt, 25, attention_mask=mask)
    assert torch.equal(generate(hf_target, prompt, 25, attention_mask=mask, assistant_model=draft.to_hf()), hf_plain)
    assert torch.equal(generate(hf_target, prompt, 25, attention_mask=mask, prompt_lookup_num_tokens=3), hf_plain)


def test_generate_refuses_what_speculative_decoding_cannot_do(random_gpt2_dirs):
    from transformers import AutoModelForCausalLM

    target = MiniGPT.from_hf(AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[0])).eval())
    other = MiniGPT.from_hf(AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[1])).eval())
    prompt = torch.randint(0, 100, (1, 5), generator=torch.Generator().manual_seed(0))
    cases = [
        (dict(assistant_model=other), "vocabulary of 517 tokens but the model has 300"),
        (dict(assistant_model=target, num_beams=2), "beam search"),
        (dict(assistant_model=target, prompt_lookup_num_tokens=3), "either assistant_model or"),
        (dict(num_assistant_tokens=3), "num_assistant_tokens needs an assistant_model"),
        (dict(prompt_lookup_num_tokens=0), "prompt_lookup_num_tokens must be a positive integer"),
        (dict(assistant_model=target, num_assistant_tokens=0), "num_assistant_tokens must be a positive integer"),
        (dict(assistant_model=target, num_assistant_tokens_schedule="fast"), "schedule must be one of"),
    ]
    for arguments, match in cases:
        with pytest.raises(ValueError, match=match):
            generate(target, prompt, 5, **arguments)
    with pytest.raises(ValueError, match="batch size 1"):
        generate(target, prompt.repeat(2, 1), 5, assistant_model=target)


def test_expected_tokens_per_step_matches_a_simulation_and_its_limits():
    generator = torch.Generator().manual_seed(0)
    for acceptance, k in [(0.3, 1), (0.75, 5), (0.9, 8)]:
        accepted = torch.rand(20000, k, generator=generator) < acceptance  # independent acceptances
        run_lengths = accepted.int().cumprod(dim=1).sum(dim=1)  # drafts kept before the first rejection
        simulated = float((run_lengths + 1).float().mean())  # plus the correction or the bonus
        assert abs(expected_tokens_per_step(acceptance, k) - simulated) < 0.05
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 5.0
    assert expected_tokens_per_step(0.6, 0) == 1.0
    with pytest.raises(ValueError, match="acceptance must be a probability"):
        expected_tokens_per_step(1.5, 3)
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        expected_tokens_per_step(0.5, -1)


def test_predicted_speedup_divides_tokens_by_the_cost_of_a_step():
    assert predicted_speedup(0.75, 5, 0.0, 1.0) == expected_tokens_per_step(0.75, 5)  # free drafts, free checks
    assert abs(predicted_speedup(1.0, 4, 1.0, 1.0) - 5 / 5) < 1e-12  # the target as its own draft: no gain
    assert predicted_speedup(0.0, 4, 0.1, 1.2) < 1  # nothing accepted: pure loss
    with pytest.raises(ValueError, match="draft_cost must be >= 0 and verify_cost > 0"):
        predicted_speedup(0.5, 3, 0.1, 0.0)


@pytest.mark.parametrize("k", range(1, 9))
def test_on_the_bundled_pair_both_drafters_give_the_plain_greedy_tokens(k):
    from course_utils import load_model

    hf_target, tokenizer = load_model("shakespeare-gpt")
    hf_draft, _ = load_model("shakespeare-gpt-draft")
    target, draft = MiniGPT.from_hf(hf_target), MiniGPT.from_hf(hf_draft)
    prompt = tokenizer("KING LEAR.\nBlow, winds,", return_tensors="pt").input_ids
    plain = generate(target, prompt, 60)
    greedy = GenerationSettings(max_new_tokens=60)
    ours, stats = speculative_generate(target, ModelDrafter(draft, greedy, prompt.shape[1] + 60), prompt, k, greedy)
    assert torch.equal(ours, plain)
    assert stats.accepted > 0
    assert torch.equal(generate(target, prompt, 60, assistant_model=draft, num_assistant_tokens=k), plain)
    assert torch.equal(generate(target, prompt, 60, prompt_lookup_num_tokens=k), plain)


def test_statistics_of_several_runs_merge_into_their_sums():
    from course_utils.speculative import SpeculativeStats

    first, second = SpeculativeStats(), SpeculativeStats()
    first.record(2, 1)
    second.record(4, 4)
    second.record(3, 0)
    total = SpeculativeStats()
    total.merge(first)
    total.merge(second)
    assert (total.drafted, total.target_steps, total.accepted) == (9, 3, 5)
    assert total.proposed_at == [3, 3, 2, 1] and total.accepted_at == [2, 1, 1, 1]


def test_speculative_generate_called_directly_checks_as_generate_does():
    """Its own entry once skipped generate's checks: a draft of another vocabulary failed with a
    shape error, token ids out of range with a misleading one."""
    from course_utils import GPTConfig, MiniGPT
    from course_utils.sampling import GenerationSettings
    from course_utils.speculative import ModelDrafter, speculative_generate

    torch.manual_seed(0)
    target = MiniGPT(GPTConfig(vocab_size=300, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    other = MiniGPT(GPTConfig(vocab_size=1000, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    settings = GenerationSettings(max_new_tokens=5)
    with pytest.raises(ValueError, match="assistant_model has a vocabulary of 1000 tokens but the model has 300"):
        speculative_generate(target, ModelDrafter(other, settings, 10), torch.tensor([[5, 6]]), 2, settings)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 299\]"):
        speculative_generate(target, ModelDrafter(target, settings, 10), torch.tensor([[5, 4000]]), 2, settings)
    with pytest.raises(ValueError, match="exceeds the model's context of 32 tokens"):
        speculative_generate(target, ModelDrafter(target, settings, 40), torch.tensor([[5] * 30]), 2, settings)


def test_the_draft_runs_on_draft_threads_and_the_thread_count_is_restored(monkeypatch):
    from course_utils import speculative

    torch.manual_seed(0)
    draft = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    seen = []
    original = speculative.ModelDrafter._propose
    monkeypatch.setattr(speculative.ModelDrafter, "_propose",
                        lambda drafter, *args: seen.append(torch.get_num_threads()) or original(drafter, *args))
    before = torch.get_num_threads()
    drafter = speculative.ModelDrafter(draft, GenerationSettings(max_new_tokens=4), 12)
    drafted, _ = drafter.propose(torch.tensor([[1, 2, 3]]), 4)
    assert drafted.shape == (1, 4) and seen == [speculative.DRAFT_THREADS]
    assert torch.get_num_threads() == before
