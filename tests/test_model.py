import pytest
import torch
from transformers import AutoModelForCausalLM

from course_utils import GPTConfig, MiniGPT
from course_utils.model import causal_mask


def test_causal_mask_is_lower_triangular():
    mask = causal_mask(4)
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, False],
        [True, True, True, True],
    ]


def test_from_hf_matches_transformers_on_random_checkpoints_loaded_by_path(random_gpt2_dirs):
    for folder in random_gpt2_dirs:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        mini = MiniGPT.from_hf(hf_model)
        ids = torch.randint(0, hf_model.config.vocab_size, (3, hf_model.config.n_positions))
        with torch.no_grad():
            expected = hf_model(ids).logits
            got = mini(ids)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-4


def test_to_hf_round_trip_keeps_logits():
    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=100, context_length=16, n_layer=2, n_head=2, n_embd=32)).eval()
    hf_model = mini.to_hf()
    ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        assert (hf_model(ids).logits - mini(ids)).abs().max() < 1e-5
        assert (MiniGPT.from_hf(hf_model)(ids) - mini(ids)).abs().max() < 1e-5


def test_weight_tying_and_parameter_count_formula():
    config = GPTConfig(vocab_size=100, context_length=16, n_layer=3, n_head=2, n_embd=32)
    mini = MiniGPT(config)
    assert mini.lm_head.weight is mini.wte.weight
    V, T, C, L = config.vocab_size, config.context_length, config.n_embd, config.n_layer
    per_block = 12 * C * C + 13 * C  # attention 4C^2+4C, MLP 8C^2+5C, two LayerNorms 4C
    assert mini.num_parameters() == V * C + T * C + L * per_block + 2 * C


def test_explicit_attention_path_equals_fused_path():
    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=12, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (2, 12))
    logits, attentions = mini.forward_with_attention(ids)
    assert len(attentions) == 2 and attentions[0].shape == (2, 2, 12, 12)
    assert torch.allclose(attentions[0].sum(-1), torch.ones(2, 2, 12))
    assert (attentions[0].triu(1) == 0).all()  # no weight on the future
    with torch.no_grad():
        assert (logits - mini(ids)).abs().max() < 1e-5


def test_left_padding_with_attention_mask_matches_unpadded():
    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=12, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * 7])
    with torch.no_grad():
        assert (mini(padded, attention_mask=mask)[:, 3:] - mini(ids)).abs().max() < 1e-5


def test_targets_give_the_cross_entropy_loss():
    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=8, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(0, 50, (2, 8))
    targets = torch.randint(0, 50, (2, 8))
    expected = torch.nn.functional.cross_entropy(mini(ids).view(-1, 50), targets.view(-1))
    assert torch.isclose(mini(ids, targets), expected)


def test_too_long_sequence_names_the_limit():
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="context_length is 8"):
        mini(torch.zeros(1, 9, dtype=torch.long))


def test_token_ids_outside_vocabulary_are_refused():
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 49\]"):
        mini(torch.tensor([[1, 50]]))
    assert mini(torch.tensor([[1, 49]], dtype=torch.int)).shape == (1, 2, 50)  # int32 ids are ids too


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.float32, torch.bool])
def test_ids_of_another_dtype_are_refused_before_their_range_is_checked(dtype):
    """uint8 [[5, 6]] once read "must lie in [0, 4095], got values from 5 to 6" (4095 wraps in uint8)."""
    mini = MiniGPT(GPTConfig(vocab_size=4096, context_length=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=f"token ids of dtype torch.long or torch.int, got {dtype}"):
        mini(torch.tensor([[5, 6]]).to(dtype))


@pytest.mark.parametrize("field,value", [("n_embd", 30), ("n_layer", 0), ("dropout", 1.0)])
def test_bad_config_is_refused(field, value):
    arguments = dict(vocab_size=50, context_length=8, n_layer=1, n_head=4, n_embd=32)
    arguments[field] = value
    with pytest.raises(ValueError, match=field):
        GPTConfig(**arguments)


def test_from_hf_refuses_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2,
                                       activation_function="relu", bos_token_id=0, eos_token_id=0))
    with pytest.raises(ValueError, match="activation_function"):
        MiniGPT.from_hf(model)


def test_multiply_adds_formula_matches_torch_flop_counter_for_one_token():
    from torch.utils.flop_counter import FlopCounterMode

    from course_utils.kv_cache import multiply_adds_per_token

    config = GPTConfig(vocab_size=100, context_length=16, n_layer=3, n_head=2, n_embd=32)
    mini = MiniGPT(config).eval()
    with FlopCounterMode(display=False) as counter:  # the explicit attention path: plain matmuls
        mini.forward_with_attention(torch.zeros(1, 1, dtype=torch.long))
    assert counter.get_total_flops() == 2 * multiply_adds_per_token(config, n_past=0)


def test_kv_cache_bytes_formula_matches_both_caches_exactly():
    from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache, kv_cache_bytes

    config = GPTConfig(vocab_size=40, context_length=24, n_layer=3, n_head=4, n_embd=32)
    mini = MiniGPT(config).eval()
    growing, preallocated = GrowingKVCache(), PreallocatedKVCache(24)
    with torch.no_grad():
        for cache in (growing, preallocated):
            mini(torch.zeros(2, 10, dtype=torch.long), cache=cache)
            mini(torch.zeros(2, 1, dtype=torch.long), cache=cache)
    assert growing.nbytes() == kv_cache_bytes(config, 11, batch=2)
    assert preallocated.nbytes() == kv_cache_bytes(config, 24, batch=2)
    assert kv_cache_bytes(config, 11, batch=2, bytes_per_value=2) * 2 == growing.nbytes()


def test_int8_weights_rounds_each_matrix_row_and_counts_its_bytes():
    from course_utils.kv_cache import int8_weights

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, context_length=16, n_layer=1, n_head=2, n_embd=8)
    model = MiniGPT(config).eval()
    quantized, stored = int8_weights(model)
    assert quantized.lm_head.weight is quantized.wte.weight  # tying survives the copy
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    assert stored == sum(p.numel() + 4 * p.shape[0] for p in matrices) + sum(4 * p.numel() for p in others)
    for original, rounded in zip(model.parameters(), quantized.parameters()):
        if original.dim() == 2:  # at most half a step, max|row| / 127 / 2, from the original
            step = original.abs().amax(dim=1, keepdim=True) / 127
            assert ((rounded - original).abs() <= step / 2 + 1e-7).all() and not torch.equal(rounded, original)
        else:
            assert torch.equal(rounded, original)
    ids = torch.randint(0, 50, (1, 16))
    assert (quantized(ids) - model(ids)).abs().max() < 0.1
