import math

import pytest
import torch

from course_utils import GPTConfig, MiniGPT
from course_utils.evaluation import sliding_windows, token_nll


@pytest.mark.parametrize("n_tokens,context", [(5, 8), (8, 8), (9, 8), (100, 8), (101, 7), (1000, 64)])
def test_sliding_windows_score_each_position_once_with_half_a_context(n_tokens, context):
    scored = []
    for index, (start, end, first_scored) in enumerate(sliding_windows(n_tokens, context)):
        assert end - start <= context
        positions = list(range(first_scored, end))
        scored.extend(positions)
        if index > 0:
            assert all(p - start >= context // 2 for p in positions)
    assert scored == list(range(1, n_tokens))


def test_token_nll_equals_full_context_loss_when_the_text_fits():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=40, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 40, (20,)).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    assert torch.allclose(token_nll(model, ids, 32).float(), expected, atol=1e-5)


def test_a_uniform_model_scores_log2_vocab_bits_per_token():
    model = MiniGPT(GPTConfig(vocab_size=64, context_length=8, n_layer=1, n_head=1, n_embd=8)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()  # all logits 0: a uniform distribution
    nll = token_nll(model, list(range(30)), 8)
    assert torch.allclose(nll, torch.full_like(nll, math.log(64)))


def test_bits_per_byte_blocks_add_up_to_bits_per_byte():
    from course_utils import load_tokenizer
    from course_utils.evaluation import bits_per_byte, bits_per_byte_blocks

    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=4096, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 3
    bits, sizes = bits_per_byte_blocks(model, tokenizer, text, blocks=5)
    assert bits.shape == sizes.shape == (5,) and sizes.sum() == len(text.encode("utf-8"))
    assert float((bits * sizes).sum() / sizes.sum()) == pytest.approx(bits_per_byte(model, tokenizer, [text]), rel=1e-9)
    with pytest.raises(ValueError, match="blocks must be between 1 and"):
        bits_per_byte_blocks(model, tokenizer, "To be", blocks=100)
