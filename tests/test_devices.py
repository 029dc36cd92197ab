"""The device plumbing, proven without a GPU (issue 23).

On a GPU a lesson's models and tensors live on ``cuda`` while any tensor created without an
explicit ``device=`` lands on torch's default device. Each test here runs a lesson's key path
with the models on the CPU and torch's default device set to ``meta`` (shapes, no data): a
library tensor created without the model's device then lands on ``meta``, and the first
operation mixing it with the model's tensors fails. So these tests fail exactly where the code
would fail on a GPU for forgetting the device.
"""

from __future__ import annotations

import pytest
import torch

from course_utils import GPTConfig, LlamaConfig, MiniGPT, MiniLlama, generate, load_model, load_tokenizer
from course_utils.attention import ablation_effects, attention_weights, copying_loss, repeated_block_batch
from course_utils.evaluation import bits_per_byte, greedy_agreement
from course_utils.kv_cache import GrowingKVCache, Int8KVCache, SlidingWindowKVCache
from course_utils.measure import cached_pass_seconds
from course_utils.model import causal_mask
from course_utils.playground import distribution_rows, seeded_continuation
from course_utils.sampling import GenerationSettings
from course_utils.train import TrainConfig, Trainer, make_optimizer, training_step


@pytest.fixture
def elsewhere():
    """torch's default device set to ``meta`` for the test's duration (the models stay on the CPU)."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def small_gpt() -> MiniGPT:
    with torch.device("cpu"):
        torch.manual_seed(0)
        return MiniGPT(GPTConfig(vocab_size=64, context_length=32, n_layer=2, n_head=2, n_embd=16)).eval()


def cpu_ids(*shape: int) -> torch.Tensor:
    return torch.randint(0, 64, shape, generator=torch.Generator().manual_seed(1), device="cpu")


def test_the_fixture_really_catches_a_tensor_made_on_the_default_device(elsewhere):
    model = small_gpt()
    with pytest.raises((RuntimeError, NotImplementedError)):
        model(cpu_ids(1, 4)) + torch.zeros(1, 4, 64)  # made without device=: on meta


def test_lesson_01_and_02_masks_and_the_forward_pass(elsewhere):
    assert causal_mask(4, device="cpu").device.type == "cpu"
    model = small_gpt()
    assert model(cpu_ids(2, 5)).device.type == "cpu"
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], device="cpu")
    assert model(cpu_ids(2, 5), attention_mask=mask).device.type == "cpu"
    assert model(cpu_ids(2, 5), cpu_ids(2, 5)).device.type == "cpu"


@pytest.mark.parametrize("arguments", [
    dict(), dict(do_sample=True, top_k=5, top_p=0.9, min_p=0.05, temperature=0.7), dict(num_beams=3),
    dict(repetition_penalty=1.3, frequency_penalty=0.5, presence_penalty=0.5), dict(use_cache=False),
    dict(cache_implementation="growing"), dict(cache_implementation="int8"),
    dict(num_return_sequences=2, do_sample=True),
], ids=str)
def test_lesson_03_and_04_generate(elsewhere, arguments):
    model = small_gpt()
    generator = torch.Generator("cpu").manual_seed(0)
    out = generate(model, cpu_ids(2, 4), 6, eos_token_id=3, generator=generator, **arguments)
    assert out.device.type == "cpu"
    padded = generate(model, cpu_ids(2, 4), 3, attention_mask=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], device="cpu"))
    assert padded.device.type == "cpu"


def test_lesson_03_the_playground(elsewhere):
    tokenizer = load_tokenizer()
    with torch.device("cpu"):
        model = MiniGPT(GPTConfig(vocab_size=len(tokenizer), context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.tensor([[5, 6, 7]], device="cpu")
    settings = GenerationSettings(do_sample=True, top_k=10, max_new_tokens=4)
    rows, kept = distribution_rows(model, tokenizer, ids, settings)
    assert kept >= 1 and rows
    assert isinstance(seeded_continuation(model, tokenizer, ids, settings, seed=3), str)


def test_lesson_04_caches(elsewhere):
    model = small_gpt()
    for cache in (GrowingKVCache(), Int8KVCache(), SlidingWindowKVCache(4)):
        model(cpu_ids(1, 3), cache=cache)
        model(cpu_ids(1, 1), cache=cache)
    assert set(cached_pass_seconds(model, cpu_ids(1, 8), (1, 3), runs=1)) == {1, 3}


def test_lesson_05_training_and_evaluation(elsewhere, tmp_path):
    model = small_gpt()
    config = TrainConfig(model=model.config, batch_size=2, max_steps=2, warmup_steps=1, eval_interval=1,
                         checkpoint_interval=1, precision="float32")
    # The course's optimizer (fused AdamW keeps its state where the weights are). torch 2.10's plain
    # AdamW makes its step counter on the default device, so it cannot run under this fixture.
    optimizer = make_optimizer(model, config)
    loss = training_step(model, optimizer, [(cpu_ids(2, 8), cpu_ids(2, 8))] * 2)
    assert loss.device.type == "cpu" and loss.item() > 0
    trainer = Trainer(config, cpu_ids(200), tmp_path, progress=False, device="cpu", model=model)
    trainer.run()
    assert trainer.step == 2
    tokenizer = load_tokenizer()
    with torch.device("cpu"):
        gpt = MiniGPT(GPTConfig(vocab_size=len(tokenizer), context_length=16, n_layer=1, n_head=2, n_embd=16)).eval()
    assert bits_per_byte(gpt, tokenizer, ["To be, or not to be: that is the question."]) > 0
    assert 0 <= greedy_agreement(gpt, gpt, tokenizer, ["Words, words, words."], 8) <= 1


def test_lesson_06_attention_and_ablation(elsewhere):
    model = small_gpt()
    weights = attention_weights(model, cpu_ids(1, 6))
    assert weights[0].device.type == "cpu"
    base, effects = ablation_effects(model, cpu_ids(3, 9))
    assert effects.shape == (2, 2)
    with torch.device("cpu"):
        ids, copyable = repeated_block_batch(2, 20, 64, torch.Generator().manual_seed(0), shortest=3, longest=6)
    assert copying_loss(model, ids, copyable, head_mask=torch.ones(2, 2, device="cpu")) > 0


@pytest.mark.parametrize("sampling", [False, True])
def test_lesson_07_speculative_decoding(elsewhere, sampling):
    target, draft = small_gpt(), small_gpt()
    generator = torch.Generator("cpu").manual_seed(0)
    out = generate(target, cpu_ids(1, 5), 8, assistant_model=draft, do_sample=sampling, generator=generator)
    assert out.device.type == "cpu"
    assert generate(target, cpu_ids(1, 5), 8, prompt_lookup_num_tokens=3).device.type == "cpu"


def test_lesson_08_mini_llama(elsewhere):
    with torch.device("cpu"):
        torch.manual_seed(0)
        llama = MiniLlama(LlamaConfig(vocab_size=64, context_length=32, n_layer=2, n_head=4, n_kv_heads=2,
                                      n_embd=32, sliding_window=6)).eval()
        alibi = MiniLlama(LlamaConfig(vocab_size=64, context_length=32, n_layer=1, n_head=2, n_embd=16,
                                      position="alibi")).eval()
    for model in (llama, alibi):
        assert generate(model, cpu_ids(2, 4), 5).device.type == "cpu"
        assert attention_weights(model, cpu_ids(1, 6))[0].device.type == "cpu"


def test_load_model_places_the_model_where_asked(monkeypatch):
    hf_model, _ = load_model(device=torch.device("meta"))
    assert next(hf_model.parameters()).device.type == "meta"
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    hf_model, _ = load_model()
    assert next(hf_model.parameters()).device.type == "cpu"
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device must be one of"):
        load_model()


def test_lesson_09_post_training(elsewhere):
    from course_utils.chat import chat_reply
    from course_utils.post_training import add_chat_tokens, add_lora, answer_log_probs, answer_only_batch, dpo_loss

    model = small_gpt()
    inputs, targets = answer_only_batch([([1, 2, 3], [4, 5]), ([6], [7])], pad_token_id=0, device="cpu")
    add_lora(model, rank=2, alpha=4)
    log_probs = answer_log_probs(model, inputs, targets)
    loss, _, _ = dpo_loss(log_probs, log_probs - 1, log_probs.detach(), log_probs.detach())
    assert loss.device.type == "cpu"
    tokenizer = load_tokenizer()
    with torch.device("cpu"):
        chat_model = MiniGPT(GPTConfig(vocab_size=len(tokenizer), context_length=64, n_layer=1, n_head=2,
                                       n_embd=16)).eval()
    add_chat_tokens(tokenizer, chat_model)
    assert isinstance(chat_reply(chat_model, tokenizer, [{"role": "user", "content": "Hail."}], 4), str)
