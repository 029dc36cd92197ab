"""decode_step is the same model as MiniGPT.forward: equal logits bit for bit, step after step,
and generate gives the same tokens with it as without it, in every decoding mode."""

from __future__ import annotations

import pytest
import torch

from course_utils import GPTConfig, LlamaConfig, MiniGPT, MiniLlama, decode, generate
from course_utils.decode import DecodeStep, decode_step, takes_fast_step
from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache


def small_gpt(seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=97, context_length=64, n_layer=3, n_head=4, n_embd=32)).eval()


def model_and_two_caches_after_a_prompt(batch: int) -> tuple[MiniGPT, PreallocatedKVCache, PreallocatedKVCache]:
    """small_gpt and two caches of 20 positions that each hold the same 7-token prompt: one for
    decode_step, one for the module path."""
    model = small_gpt()
    prompt = torch.randint(0, 97, (batch, 7), generator=torch.Generator().manual_seed(1))
    fast, slow = PreallocatedKVCache(20), PreallocatedKVCache(20)
    with torch.no_grad():
        model(prompt, cache=fast)
        model(prompt, cache=slow)
    return model, fast, slow


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("chunk", [2, 5])
def test_a_chunk_of_new_tokens_equals_the_module_path_bit_for_bit(batch, chunk):
    """Speculative decoding's verification: a chunk after the cached prompt, then one token after it."""
    model, fast, slow = model_and_two_caches_after_a_prompt(batch)
    with torch.no_grad():
        for size in (chunk, 1, chunk):
            tokens = torch.randint(0, 97, (batch, size), generator=torch.Generator().manual_seed(size))
            assert takes_fast_step(model, tokens, None, fast)
            expected = model(tokens, cache=slow)
            got = decode_step(model, tokens, fast)
            assert got.shape == expected.shape == (batch, size, 97)
            assert torch.equal(got, expected), f"a chunk of {size}: logits differ"
    assert len(fast) == len(slow) == 7 + 2 * chunk + 1
    for layer in range(3):
        assert torch.equal(fast.keys[layer][:, :, :len(fast)], slow.keys[layer][:, :, :len(slow)])


def test_decode_step_refuses_to_pass_the_context_length_as_the_model_does():
    model = small_gpt()  # context_length 64
    cache = PreallocatedKVCache(80)
    with torch.no_grad():
        model(torch.zeros(1, 62, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="input_ids has 65 tokens .* context_length is 64"):
            decode_step(model, torch.zeros(1, 3, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="input_ids has 65 tokens .* context_length is 64"):
            model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_step_equals_the_module_path_bit_for_bit(batch):
    model, fast, slow = model_and_two_caches_after_a_prompt(batch)
    with torch.no_grad():
        tokens = torch.randint(0, 97, (batch, 10), generator=torch.Generator().manual_seed(2))
        for step in range(10):
            token = tokens[:, step : step + 1]
            assert takes_fast_step(model, token, None, fast)
            expected = model(token, cache=slow)
            got = decode_step(model, token, fast)
            assert got.shape == expected.shape == (batch, 1, 97)
            assert torch.equal(got, expected), f"step {step}: logits differ"
    assert len(fast) == len(slow) == 17
    for layer in range(3):
        assert torch.equal(fast.keys[layer][:, :, :17], slow.keys[layer][:, :, :17])
        assert torch.equal(fast.values[layer][:, :, :17], slow.values[layer][:, :, :17])


def test_decode_step_on_the_bundled_models():
    from course_utils.hub import load_model

    for name in ("shakespeare-gpt", "shakespeare-gpt-draft"):
        hf_model, tokenizer = load_model(name)
        model = MiniGPT.from_hf(hf_model)
        ids = tokenizer("KING HENRY.\nOnce more unto the breach", return_tensors="pt").input_ids
        fast, slow = PreallocatedKVCache(ids.shape[1] + 1), PreallocatedKVCache(ids.shape[1] + 1)
        with torch.no_grad():
            model(ids[:, :-1], cache=fast)
            model(ids[:, :-1], cache=slow)
            assert torch.equal(decode_step(model, ids[:, -1:], fast), model(ids[:, -1:], cache=slow)), name


def generations(model, prompt, **arguments):
    runs = []
    for _ in range(2):
        runs.append(generate(model, prompt, 12, generator=torch.Generator().manual_seed(3), **arguments))
    assert torch.equal(runs[0], runs[1])
    return runs[0]


def count_fast_steps(monkeypatch) -> list[int]:
    """Make every DecodeStep call append the address of its model's LM head weight to the list returned."""
    calls: list[int] = []
    original = DecodeStep.__call__

    def counted(step: DecodeStep, *args):
        calls.append(step.lm_head_t.data_ptr())
        return original(step, *args)

    monkeypatch.setattr(DecodeStep, "__call__", counted)
    return calls


MODES = [dict(), dict(do_sample=True, temperature=1.3, top_k=20), dict(do_sample=True, top_p=0.9),
         dict(num_beams=3), dict(num_beams=2, num_return_sequences=2), dict(repetition_penalty=1.5),
         dict(do_sample=True, num_return_sequences=3)]


@pytest.mark.parametrize("arguments", MODES, ids=lambda arguments: ",".join(arguments) or "greedy")
@pytest.mark.parametrize("batch", [1, 2])
def test_generate_gives_the_same_tokens_with_and_without_the_fast_step(arguments, batch, monkeypatch):
    model = small_gpt()
    prompt = torch.randint(0, 97, (batch, 5), generator=torch.Generator().manual_seed(4))
    calls = count_fast_steps(monkeypatch)
    with_fast = generations(model, prompt, **arguments)
    assert len(calls) == 2 * 11  # every step after the prefill, in both runs
    monkeypatch.setattr(decode, "takes_fast_step", lambda *args: False)
    assert torch.equal(generations(model, prompt, **arguments), with_fast)


@pytest.mark.parametrize("arguments", [dict(), dict(do_sample=True), dict(num_assistant_tokens_schedule="heuristic")],
                         ids=["greedy", "sampling", "heuristic"])
def test_speculative_decoding_gives_the_same_tokens_with_and_without_the_fast_step(arguments, monkeypatch):
    target, draft = small_gpt(0), small_gpt(1)
    prompt = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(5))
    calls = count_fast_steps(monkeypatch)
    with_fast = generations(target, prompt, assistant_model=draft, **arguments)
    assert draft.lm_head.weight.data_ptr() in calls  # the draft's steps took the fast path
    monkeypatch.setattr(decode, "takes_fast_step", lambda *args: False)
    assert torch.equal(generations(target, prompt, assistant_model=draft, **arguments), with_fast)


def test_a_padded_batch_and_everything_decode_step_does_not_do_take_the_module_path():
    model = small_gpt()
    token = torch.tensor([[5]])
    cache = PreallocatedKVCache(10)
    with torch.no_grad():
        model(torch.tensor([[1, 2]]), cache=cache)
    assert takes_fast_step(model, token, None, cache)
    assert not takes_fast_step(model, token, torch.ones(1, 3, dtype=torch.long), cache)  # a mask: maybe padding
    assert not takes_fast_step(model, token, None, PreallocatedKVCache(10))  # nothing cached yet: the prefill
    assert not takes_fast_step(model, token, None, GrowingKVCache())
    assert not takes_fast_step(model.train(), token, None, cache)  # dropout would act
    model.eval()
    model.h[1].attn.head_mask = torch.tensor([1.0, 0.0, 1.0, 1.0])  # lesson 06's ablation
    assert not takes_fast_step(model, token, None, cache)
    model.h[1].attn.head_mask = None
    handle = model.h[0].mlp.register_forward_hook(lambda module, inputs, output: output * 0)
    assert not takes_fast_step(model, token, None, cache)  # a hook must see (and may change) the step
    handle.remove()
    torch.manual_seed(0)
    llama = MiniLlama(LlamaConfig(vocab_size=97, context_length=64, n_layer=1, n_head=2, n_kv_heads=1, n_embd=16))
    assert not takes_fast_step(llama.eval(), token, None, cache)


def test_a_hook_still_changes_what_generate_writes():
    """Lessons hook modules to read or change activations: generate must run them, every step."""
    model = small_gpt()
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    plain = generate(model, prompt, 8)
    steps = []
    handle = model.h[2].register_forward_hook(lambda module, inputs, output: steps.append(1))
    assert torch.equal(generate(model, prompt, 8), plain)
    assert len(steps) == 8  # the prefill and 7 cached steps, each through the hooked block
    handle.remove()


def test_a_model_with_lora_layers_takes_the_module_path_and_gives_its_tokens():
    """Lesson 09 wraps projections in LoRALinear: decode_step reads plain weights, so such a model
    must go through its modules (it once raised AttributeError: 'LoRALinear' has no 'weight')."""
    from course_utils.post_training import add_lora

    model = small_gpt()
    add_lora(model, rank=2, alpha=4.0)
    for module in model.modules():  # a trained adapter: B no longer zero, so LoRA changes the output
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B, std=0.5)
    model.eval()
    token, cache = torch.tensor([[5]]), PreallocatedKVCache(10)
    with torch.no_grad():
        model(torch.tensor([[1, 2]]), cache=cache)
    assert not takes_fast_step(model, token, None, cache)
    prompt = torch.tensor([[3, 1, 4]])
    with torch.no_grad():
        expected = model(prompt).argmax(-1)[:, -1]
    assert generate(model, prompt, 1)[0, -1] == expected[0]
    generate(model, prompt, 6)  # runs through the cached steps without error
