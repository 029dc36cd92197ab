"""MiniLlama against transformers' LlamaForCausalLM and MistralForCausalLM, random checkpoints of
several shapes: logits, greedy text, caches, RoPE and ALiBi."""

import math

import pytest
import torch

from course_utils import LlamaConfig, MiniLlama, generate
from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache, SlidingWindowKVCache, kv_cache_bytes
from course_utils.llama import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    config_from_dict,
    equal_parameter_llama,
    parameter_count,
    rope_cos_sin,
    swiglu_hidden_size,
)
from course_utils.model import GPTConfig, MiniGPT, causal_mask
from course_utils.train import TrainConfig, Trainer

SHAPES = {  # (n_head, n_kv_heads): multi-head, grouped-query, multi-query
    "mha": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2),
    "gqa": dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, num_hidden_layers=3),
    "mqa": dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=1, num_hidden_layers=2),
    "tied": dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1,
                 tie_word_embeddings=True),
}


def random_hf(kind: str = "llama", seed: int = 0, sliding_window: int | None = None, **shape):
    """A random transformers Llama (or Mistral) with weights larger than at init, so that the
    logits are far from flat and a comparison means something."""
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    arguments = dict(vocab_size=211, max_position_embeddings=96, intermediate_size=3 * shape["hidden_size"],
                     rope_parameters={"rope_type": "default", "rope_theta": 500.0}, rms_norm_eps=1e-5,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None) | shape
    if kind == "mistral":
        model = MistralForCausalLM(MistralConfig(sliding_window=sliding_window, **arguments))
    else:
        model = LlamaForCausalLM(HFLlamaConfig(**arguments))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.endswith("norm.weight"):
                param.normal_(0, 0.08)
            else:
                param.uniform_(0.5, 1.5)
    return model.eval()


def ids(batch: int = 2, length: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 211, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_logits_equal_transformers_llama(shape):
    hf = random_hf(**SHAPES[shape])
    mini = MiniLlama.from_hf(hf)
    assert mini.config.n_kv_heads == SHAPES[shape]["num_key_value_heads"]
    tokens = ids()
    with torch.no_grad():
        expected, got = hf(tokens).logits, mini(tokens)
    assert expected.abs().max() > 1  # not flat
    assert (got - expected).abs().max() < 1e-4


def test_sliding_window_logits_equal_transformers_mistral():
    hf = random_hf("mistral", sliding_window=7, **SHAPES["gqa"])
    mini = MiniLlama.from_hf(hf)
    assert mini.config.sliding_window == 7
    tokens = ids(length=50)
    with torch.no_grad():
        expected, got = hf(tokens).logits, mini(tokens)
        without_window = MiniLlama.from_hf(random_hf(**SHAPES["gqa"]))(tokens)
    assert (got - expected).abs().max() < 1e-4
    assert (got[:, 7:] - without_window[:, 7:]).abs().max() > 1e-2  # the window matters past 7 tokens
    assert (got[:, :7] - without_window[:, :7]).abs().max() < 1e-4  # and not before


def test_to_hf_gives_back_the_same_model():
    for hf in (random_hf(**SHAPES["gqa"]), random_hf("mistral", sliding_window=5, **SHAPES["mqa"])):
        back = MiniLlama.from_hf(hf).to_hf()
        assert type(back) is type(hf)
        tokens = ids()
        with torch.no_grad():
            assert torch.equal(back(tokens).logits, hf(tokens).logits)


def test_greedy_equals_transformers_generate():
    hf = random_hf(**SHAPES["gqa"])
    mini = MiniLlama.from_hf(hf)
    prompt = ids(batch=1, length=12)
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, min_new_tokens=30,
                           do_sample=False, pad_token_id=0)
    assert torch.equal(generate(mini, prompt, 30), expected)


def test_left_padded_batch_equals_each_row_alone():
    mini = MiniLlama.from_hf(random_hf(**SHAPES["gqa"]))
    short, long = ids(1, 6, seed=2), ids(1, 10, seed=3)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :4] = 0
    together = generate(mini, batch, 8, attention_mask=mask)
    assert torch.equal(together[0, 4:], generate(mini, short, 8)[0])
    assert torch.equal(together[1], generate(mini, long, 8)[0])


@pytest.mark.parametrize("window", [None, 6])
@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_cache_on_and_off_give_equal_tokens_and_logits(position, window):
    torch.manual_seed(0)
    mini = MiniLlama(LlamaConfig(vocab_size=211, context_length=64, n_layer=2, n_head=4, n_kv_heads=2, n_embd=32,
                                 position=position, sliding_window=window)).eval()
    prompt = ids(batch=1, length=9)
    assert torch.equal(generate(mini, prompt, 25, use_cache=True), generate(mini, prompt, 25, use_cache=False))
    caches = [GrowingKVCache(), PreallocatedKVCache(40)] + ([SlidingWindowKVCache(window)] if window else [])
    tokens = ids(batch=1, length=40, seed=5)
    with torch.no_grad():
        full = mini(tokens)
        for cache in caches:
            steps = [mini(tokens[:, :9], cache=cache)] + [mini(tokens[:, i:i + 1], cache=cache) for i in range(9, 40)]
            assert (torch.cat(steps, 1) - full).abs().max() < 1e-5, type(cache).__name__


def test_the_cache_holds_kv_heads_and_a_window_stops_growing():
    mini = MiniLlama(LlamaConfig(vocab_size=211, context_length=64, n_layer=2, n_head=8, n_kv_heads=2, n_embd=64,
                                 sliding_window=8)).eval()
    grows, windowed = GrowingKVCache(), SlidingWindowKVCache(8)
    tokens = ids(batch=1, length=40)
    sizes = []
    with torch.no_grad():
        for i in range(40):
            mini(tokens[:, i:i + 1], cache=grows)
            mini(tokens[:, i:i + 1], cache=windowed)
            sizes.append(windowed.nbytes())
    head_size, layers = 8, 2
    assert grows.keys[0].shape == (1, 2, 40, head_size)  # 2 key/value heads, not 8
    assert grows.nbytes() == 2 * layers * 40 * 2 * head_size * 4
    assert len(windowed) == 40 and windowed.keys[0].shape[2] == 7
    assert sizes[6:] == [sizes[6]] * 34  # flat once the window is full


def test_rope_scores_depend_only_on_the_distance():
    torch.manual_seed(0)
    q, k = torch.randn(64), torch.randn(64)

    def rotated(x, position):
        cos, sin = rope_cos_sin(torch.tensor([[position]]), 64)
        return apply_rope(x.view(1, 1, 1, 64), cos, sin).flatten()

    for distance in (0, 3, 17):
        scores = [rotated(q, m + distance) @ rotated(k, m) for m in (0, 5, 40, 300)]
        assert max(scores) - min(scores) < 1e-4 * max(1.0, abs(scores[0]))
    assert abs(rotated(q, 3) @ rotated(k, 0) - rotated(q, 0) @ rotated(k, 3)) > 1e-3  # sign matters
    assert torch.allclose(rotated(q, 7).norm(), q.norm())  # a rotation keeps lengths


def test_rope_equals_transformers_rotary_functions():
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = HFLlamaConfig(hidden_size=64, num_attention_heads=2, rope_parameters={"rope_type": "default",
                                                                                   "rope_theta": 10000.0})
    q, k = torch.randn(2, 2, 10, 32), torch.randn(2, 2, 10, 32)
    positions = torch.arange(3, 13).expand(2, 10)
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(q, positions)
    cos, sin = rope_cos_sin(positions, 32)
    assert torch.allclose(cos, hf_cos) and torch.allclose(sin, hf_sin)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    assert torch.allclose(apply_rope(q, cos, sin), hf_q, atol=1e-6)
    assert torch.allclose(apply_rope(k, cos, sin), hf_k, atol=1e-6)


def test_alibi_slopes_and_bias_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -i for i in range(1, 9)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0 ** (-2 * i) for i in range(1, 5)]))
    twelve = alibi_slopes(12)  # 8 of the power-of-two sequence, then 4 from the one for 16 heads
    assert torch.allclose(twelve[:8], alibi_slopes(8))
    assert torch.allclose(twelve[8:], alibi_slopes(16)[0::2][:4])
    bias = alibi_bias(alibi_slopes(2), T=3, T_all=5)  # 3 new queries after 2 cached keys
    assert bias.shape == (2, 3, 5)
    # head 0 (slope 2^-4), query 0 of the new ones sits at key position 2: distances 2, 1, 0, -1, -2
    assert bias[0, 0].tolist() == [-0.125, -0.0625, 0.0, 0.0625, 0.125]


def test_sliding_window_mask_is_mistrals_rule():
    mask = causal_mask(6, window=3)
    for i in range(6):
        assert mask[i].nonzero().flatten().tolist() == list(range(max(0, i - 2), i + 1))
    with pytest.raises(ValueError, match="window"):
        causal_mask(4, window=0)


def test_swiglu_width_matches_a_gelu_mlp():
    for C in (64, 256, 4096):
        width = swiglu_hidden_size(C)
        assert width % 32 == 0 and width - 32 < 8 * C / 3 <= width  # 3 C F = 8 C^2, rounded up
    assert swiglu_hidden_size(4096, multiple_of=256) == 11008  # Llama 1/2 7B


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="n_kv_heads"):
        LlamaConfig(n_head=8, n_kv_heads=3)
    with pytest.raises(ValueError, match="position must be one of"):
        LlamaConfig(position="learned")
    with pytest.raises(ValueError, match="sliding_window"):
        LlamaConfig(sliding_window=0)
    with pytest.raises(ValueError, match="Llama or Mistral"):
        from transformers import GPT2Config, GPT2LMHeadModel

        MiniLlama.from_hf(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)))
    with pytest.raises(ValueError, match="RoPE"):
        MiniLlama(LlamaConfig(position="alibi", n_embd=32, n_head=2, n_layer=1)).to_hf()


def test_the_trainer_trains_a_minillama(tmp_path):
    config = TrainConfig(model=dict(vocab_size=64, context_length=16, n_layer=1, n_head=4, n_kv_heads=2, n_embd=32),
                         batch_size=8, max_steps=60, warmup_steps=5, eval_interval=30, checkpoint_interval=30,
                         precision="float32", learning_rate=3e-3)
    assert isinstance(config.model, LlamaConfig)
    tokens = torch.arange(64).repeat(40)  # 0 1 2 ... 63 0 1 ...: the next token is always known
    trainer = Trainer(config, tokens, tmp_path / "run", progress=False)
    assert isinstance(trainer.model, MiniLlama)
    trainer.run()
    batch = tokens[:16].unsqueeze(0)
    with torch.no_grad():
        loss = trainer.model.eval()(batch, targets=tokens[1:17].unsqueeze(0)).item()
    assert loss < 0.5 * math.log(64)


@pytest.mark.parametrize("config", [
    GPTConfig(vocab_size=100, context_length=16, n_layer=2, n_head=2, n_embd=32),
    LlamaConfig(vocab_size=100, context_length=16, n_layer=2, n_head=4, n_embd=32),
    LlamaConfig(vocab_size=100, context_length=16, n_layer=3, n_head=4, n_kv_heads=1, n_embd=32, intermediate_size=50),
    LlamaConfig(vocab_size=100, context_length=16, n_layer=1, n_head=4, n_kv_heads=2, n_embd=32,
                tie_word_embeddings=True),
])
def test_parameter_count_formula_equals_the_built_model(config):
    model = config.build()
    assert type(model) is (MiniGPT if isinstance(config, GPTConfig) else MiniLlama) and model.config is config
    assert parameter_count(config) == config.parameter_count() == model.num_parameters()


def test_each_configuration_says_how_it_is_described_and_comes_back_from_its_dict():
    from dataclasses import asdict

    gpt = GPTConfig(vocab_size=100, context_length=16, n_layer=2, n_head=2, n_embd=32)
    llama = LlamaConfig(vocab_size=100, context_length=16, n_layer=2, n_head=4, n_kv_heads=2, n_embd=32,
                        position="alibi", intermediate_size=40)
    assert gpt.description == "GPT-2 architecture"
    assert llama.description == ("Llama-style (RMSNorm, ALiBi, SwiGLU of width 40, 2 key/value heads, no biases)")
    assert (gpt.n_kv_heads, gpt.sliding_window) == (2, None)
    assert config_from_dict(asdict(gpt)) == gpt and config_from_dict(asdict(llama)) == llama
    assert config_from_dict(dict(n_layer=3)) == GPTConfig(n_layer=3)  # only shared fields: GPT-2
    for only_llama in ("tie_word_embeddings", "rms_norm_eps", "n_kv_heads"):  # any Llama field picks Llama
        assert type(config_from_dict({only_llama: asdict(llama)[only_llama]})) is LlamaConfig
    with pytest.raises(ValueError, match=r"no model configuration has all of the fields \['layer_norm_epsilon', "
                                         r"'rope_theta'\]"):
        config_from_dict(dict(layer_norm_epsilon=1e-5, rope_theta=1e4))


@pytest.mark.parametrize("changes", [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1, "tie_word_embeddings": False}])
def test_equal_parameter_llama_matches_the_gpt_within_one_swiglu_unit(changes):
    gpt = GPTConfig(vocab_size=300, context_length=64, n_layer=3, n_head=4, n_embd=48)
    llama = equal_parameter_llama(gpt, **changes)
    assert (llama.n_layer, llama.n_head, llama.n_embd, llama.context_length) == (3, 4, 48, 64)
    for name, value in changes.items():
        assert getattr(llama, name) == value
    assert abs(parameter_count(llama) - parameter_count(gpt)) <= 3 * 48 * 3 / 2
    with pytest.raises(ValueError, match="no SwiGLU width"):
        # an untied head alone adds more than the whole GPT's blocks
        equal_parameter_llama(GPTConfig(vocab_size=3000, context_length=4, n_layer=1, n_head=4, n_embd=48),
                              tie_word_embeddings=False)


def test_kv_cache_bytes_counts_kv_heads_and_the_window():
    config = LlamaConfig(vocab_size=211, context_length=64, n_layer=2, n_head=8, n_kv_heads=2, n_embd=64)
    windowed = LlamaConfig(vocab_size=211, context_length=64, n_layer=2, n_head=8, n_kv_heads=2, n_embd=64,
                           sliding_window=8)
    tokens = ids(batch=3, length=20)
    for cfg, cache in ((config, GrowingKVCache()), (windowed, SlidingWindowKVCache(8))):
        with torch.no_grad():
            MiniLlama(cfg).eval()(tokens, cache=cache)
        assert cache.nbytes() == kv_cache_bytes(cfg, 20, batch=3)
    assert kv_cache_bytes(windowed, 20) == kv_cache_bytes(windowed, 7) < kv_cache_bytes(config, 20)
