"""Attention weights equal to transformers' eager attentions, and each head score's rule checked
on hand-built weights whose answer is known."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from course_utils import MiniGPT
from course_utils.attention import (
    attention_weights,
    entropy,
    first_token_score,
    head_scores,
    induction_score,
    mean_distance,
    previous_token_score,
    repeated_random_tokens,
)
from course_utils.attention_explorer import ALL_HEADS


@pytest.fixture(scope="module")
def hf_models(random_gpt2_dirs):
    return [AutoModelForCausalLM.from_pretrained(str(folder)).eval() for folder in random_gpt2_dirs]


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_minigpt_weights_equal_transformers_eager_attentions(hf_models, padded):
    for hf_model in hf_models:
        mini = MiniGPT.from_hf(hf_model)
        ids = torch.randint(0, hf_model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(ids)
        if padded:
            mask[1, :4] = 0
            mask[2, :1] = 0
        ours = attention_weights(mini, ids, mask if padded else None)
        theirs = attention_weights(hf_model, ids, mask if padded else None)
        assert len(ours) == len(theirs) == hf_model.config.n_layer
        for a, b in zip(ours, theirs):
            assert a.shape == (3, hf_model.config.n_head, 11, 11)
            real = mask.bool()[:, None, :, None]  # compare the rows of real queries
            assert ((a - b).abs() * real).max() < 1e-5


def test_a_model_loaded_with_sdpa_is_switched_to_eager_and_back(random_gpt2_dirs):
    model = AutoModelForCausalLM.from_pretrained(str(random_gpt2_dirs[0]), attn_implementation="sdpa").eval()
    ids = torch.randint(0, 300, (1, 6), generator=torch.Generator().manual_seed(1))
    weights = attention_weights(model, ids)
    assert torch.allclose(weights[0].sum(-1), torch.ones(1, 4, 6), atol=1e-5)
    assert model.config._attn_implementation == "sdpa"


def one_hot_pattern(T: int, key_of_query) -> list[torch.Tensor]:
    """One layer, one head, batch 1: query i puts all its weight on key_of_query(i)."""
    weights = torch.zeros(1, 1, T, T)
    for i in range(T):
        weights[0, 0, i, key_of_query(i)] = 1.0
    return [weights]


def test_a_pure_previous_token_head_scores_one():
    weights = one_hot_pattern(8, lambda i: max(i - 1, 0))
    assert previous_token_score(weights).item() == 1.0
    assert first_token_score(weights).item() == pytest.approx(1 / 7)  # only query 1's previous token is 0
    assert mean_distance(weights).item() == pytest.approx(7 / 8)  # query 0 looks at itself: distance 0
    assert entropy(weights).item() == 0.0


def test_a_pure_sink_head_scores_one_on_the_first_token():
    weights = one_hot_pattern(6, lambda i: 0)
    assert first_token_score(weights).item() == 1.0
    assert mean_distance(weights).item() == pytest.approx(sum(range(6)) / 6)


def test_uniform_causal_weights_score_as_the_formulas_say():
    T = 10
    weights = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # query i: 1/(i+1) on 0..i
    scores = head_scores([weights[None, None]])
    queries = range(1, T)
    assert scores["previous_token"].item() == pytest.approx(sum(1 / (i + 1) for i in queries) / (T - 1))
    assert scores["first_token"].item() == pytest.approx(sum(1 / (i + 1) for i in queries) / (T - 1))
    assert scores["mean_distance"].item() == pytest.approx(sum(i / 2 for i in range(T)) / T)
    assert scores["entropy"].item() == pytest.approx(sum(math.log(i + 1) for i in range(T)) / T)


def test_scores_are_one_table_per_layer_and_head():
    weights = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)]
    for table in head_scores(weights).values():
        assert table.shape == (4, 3)


def test_an_induction_pattern_scores_one_and_a_previous_token_pattern_does_not():
    block = 5
    induction = one_hot_pattern(2 * block, lambda i: i - block + 1 if i >= block else 0)
    assert induction_score(induction, block).item() == 1.0
    previous = one_hot_pattern(2 * block, lambda i: max(i - 1, 0))
    assert induction_score(previous, block).item() == 0.0
    with pytest.raises(ValueError, match="needs 12"):
        induction_score(induction, 6)


def test_repeated_random_tokens_repeat_their_block():
    ids = repeated_random_tokens(3, 7, 50, torch.Generator().manual_seed(0), low=10)
    assert ids.shape == (3, 14)
    assert torch.equal(ids[:, :7], ids[:, 7:])
    assert ids.min() >= 10 and ids.max() < 50
    with pytest.raises(ValueError, match="block must be at least 2"):
        repeated_random_tokens(1, 1, 50, torch.Generator())
    with pytest.raises(ValueError, match="low must be in"):
        repeated_random_tokens(1, 4, 50, torch.Generator(), low=50)


def test_bad_weights_are_refused_clearly():
    with pytest.raises(ValueError, match="at least one layer"):
        head_scores([])
    with pytest.raises(ValueError, match=r"\(B, H, T, T\)"):
        head_scores([torch.ones(2, 3, 4)])


def test_repeated_blocks_mark_exactly_the_copyable_positions():
    from course_utils.attention import repeated_block_batch

    ids, copyable = repeated_block_batch(16, 40, 64, torch.Generator().manual_seed(0), shortest=6, longest=12)
    assert ids.shape == (16, 40) and copyable.shape == (16, 39)
    for row in range(16):
        block = int((~copyable[row]).sum())  # positions 0 .. block - 1 are not copyable
        assert 6 <= block <= 12
        assert torch.equal(ids[row, block:], ids[row, :-block])  # periodic with the block's length
        assert copyable[row, block:].all()
    with pytest.raises(ValueError, match="shortest <= longest < length"):
        repeated_block_batch(1, 10, 64, torch.Generator(), shortest=6, longest=12)


def test_a_head_mask_of_ones_changes_nothing_and_zeros_remove_a_heads_output():
    from course_utils import GPTConfig
    from course_utils.attention import heads_scaled

    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=4, n_embd=32)).eval()
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        plain = mini(ids)
        with heads_scaled(mini, torch.ones(2, 4)):
            assert torch.equal(mini(ids), plain)
        mask = torch.ones(2, 4)
        mask[1, 2] = 0.0
        with heads_scaled(mini, mask):
            ablated = mini(ids)
        assert all(block.attn.head_mask is None for block in mini.h)  # restored on leaving the block
        assert torch.equal(mini(ids), plain)
        # by hand: the last layer's attention output without head 2's slice of c_proj's input
        block = mini.h[1]
        x = mini.wte(ids) + mini.wpe(torch.arange(10))
        x, _ = mini.h[0](x)
        q, k, v = block.attn.c_attn(block.ln_1(x)).split(32, dim=2)
        q, k, v = (t.view(2, 10, 4, 8).transpose(1, 2) for t in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        y[:, 2] = 0.0
        x = x + block.attn.c_proj(y.transpose(1, 2).reshape(2, 10, 32))
        x = x + block.mlp(block.ln_2(x))
        by_hand = mini.lm_head(mini.ln_f(x))
    assert (ablated - by_hand).abs().max() < 1e-5
    assert (ablated - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"head_mask must have shape \(n_layer, n_head\) = \(2, 4\)"):
        with heads_scaled(mini, torch.ones(4)):
            pass


def test_ablation_effects_are_the_loss_change_of_each_head():
    from course_utils import GPTConfig
    from course_utils.attention import ablation_effects, heads_scaled

    torch.manual_seed(0)
    mini = MiniGPT(GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=16)).eval()
    windows = torch.randint(0, 50, (3, 12))
    base, effects = ablation_effects(mini, windows)
    with torch.no_grad():
        assert base == pytest.approx(mini(windows[:, :-1], windows[:, 1:]).item(), abs=1e-6)
        mask = torch.ones(2, 2)
        mask[0, 1] = 0
        with heads_scaled(mini, mask):
            assert effects[0, 1].item() == pytest.approx(mini(windows[:, :-1], windows[:, 1:]).item() - base, abs=1e-6)
    assert effects.shape == (2, 2) and (effects != 0).all()
    with pytest.raises(ValueError, match="windows must be"):
        ablation_effects(mini, torch.zeros(5, dtype=torch.long))


def test_the_plots_draw_with_readable_labels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from course_utils.attention import plot_attention, plot_head_grid, plot_score_table, token_labels

    class Spaces:  # a tokenizer stand-in: id i decodes to a space, a newline or a letter
        def decode(self, ids):
            return {0: " a", 1: "\n", 2: "b"}[ids[0]]

    labels = token_labels(Spaces(), torch.tensor([0, 1, 2]))
    assert labels == ["␣a", "⏎", "b"]
    weights = [torch.softmax(torch.randn(1, 2, 3, 3), -1) for _ in range(2)]
    plot_attention(weights[0][0, 1], labels)
    plot_head_grid(weights).savefig(tmp_path / "grid.png")
    plot_score_table(torch.rand(2, 2), "scores")
    with pytest.raises(ValueError, match="T = len"):
        plot_attention(weights[0][0, 1], labels[:2])


@pytest.fixture(scope="module")
def bundled():
    from course_utils import load_model

    hf_model, tokenizer = load_model("shakespeare-gpt")
    return MiniGPT.from_hf(hf_model), tokenizer


def test_a_head_view_is_that_heads_weights_and_scores(bundled):
    from course_utils.attention_explorer import head_view

    model, tokenizer = bundled
    text = "ROMEO.\nBut soft, what light through yonder window breaks?"
    ids = tokenizer(text, return_tensors="pt").input_ids
    weights = attention_weights(model, ids)
    view = head_view(model, tokenizer, text, layer=2, head=5)
    assert torch.equal(view.weights, weights[2][0, 5])
    assert view.scores["previous_token"] == pytest.approx(previous_token_score(weights)[2, 5].item())
    assert len(view.labels) == ids.shape[1] and "⏎" in view.labels
    mean = head_view(model, tokenizer, text, layer=2, head=None)
    assert torch.allclose(mean.weights, weights[2][0].mean(0))
    assert mean.scores["entropy"] == pytest.approx(entropy(weights)[2].mean().item())
    for bad, match in ((dict(layer=6, head=0), "layer must be in"), (dict(layer=0, head=8), "head must be in")):
        with pytest.raises(ValueError, match=match):
            head_view(model, tokenizer, text, **bad)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        head_view(model, tokenizer, "a", layer=0, head=0)


def test_the_heatmap_shades_the_past_and_leaves_the_future_blank(bundled):
    from course_utils.attention_explorer import attention_html, head_view

    model, tokenizer = bundled
    view = head_view(model, tokenizer, "To be, or not to be", layer=0, head=0)
    T = len(view.labels)
    page = attention_html(view)
    assert page.count("<td></td>") == T * (T - 1) // 2
    assert page.count("background:rgba") == T * (T + 1) // 2
    assert f"title='{view.weights[T - 1, 0].item():.3f}'" in page


def test_the_explorer_updates_when_a_control_changes(bundled):
    from course_utils.attention_explorer import AttentionExplorer

    model, tokenizer = bundled
    explorer = AttentionExplorer(model, tokenizer, "To be, or not to be, that is the question")
    first_map, first_scores = explorer.heatmap.value, explorer.scores.value
    explorer.controls["head"].value = 3
    assert explorer.heatmap.value != first_map and explorer.scores.value != first_scores
    second_map = explorer.heatmap.value
    explorer.controls["layer"].value = 4
    assert explorer.heatmap.value != second_map
    explorer.controls["head"].value = ALL_HEADS
    assert torch.allclose(explorer.view.weights, attention_weights(
        model, tokenizer("To be, or not to be, that is the question", return_tensors="pt").input_ids)[4][0].mean(0))
    explorer.controls["text"].value = "HAMLET.\nWords, words, words."
    assert "Words" in explorer.heatmap.value or "␣words" in explorer.heatmap.value


def test_the_explorer_and_the_weights_keep_their_names_in_course_utils_attention():
    import course_utils.adapters
    import course_utils.attention
    import course_utils.attention_explorer

    for name in course_utils.attention.EXPLORER_NAMES:
        assert getattr(course_utils.attention, name) is getattr(course_utils.attention_explorer, name)
    assert course_utils.attention.attention_weights is course_utils.adapters.attention_weights
    with pytest.raises(AttributeError, match="no attribute 'AttentionExplorr'"):
        _ = course_utils.attention.AttentionExplorr


def test_attention_weights_of_a_mini_llama_come_from_its_own_explicit_path():
    """Issue 23's bug: a MiniLlama is a course model, but the old test (``isinstance(model, MiniGPT)``)
    sent it down the transformers branch, which passes ``output_attentions`` to its forward."""
    from course_utils import LlamaConfig, MiniLlama

    torch.manual_seed(0)
    llama = MiniLlama(LlamaConfig(vocab_size=50, context_length=16, n_layer=2, n_head=4, n_kv_heads=2,
                                  n_embd=32)).eval()
    ids = torch.randint(0, 50, (2, 9))
    weights = attention_weights(llama, ids)
    assert len(weights) == 2 and all(w.shape == (2, 4, 9, 9) for w in weights)
    expected = llama.forward_with_attention(ids)[1]
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(weights, expected))
    assert torch.allclose(weights[0].sum(-1), torch.ones(2, 4, 9))
    assert (weights[1].triu(diagonal=1) == 0).all()  # causal


def test_the_copying_model_is_a_plain_adamw_loop_run_by_the_trainer():
    """train_copying_model goes through the Trainer, and takes exactly the steps of the plain loop
    it replaced: AdamW at PyTorch's defaults, a constant rate, no clipping, one training_step each."""
    from course_utils import GPTConfig
    from course_utils.attention import copying_loss, repeated_block_batch, train_copying_model
    from course_utils.train import training_step

    config = GPTConfig(vocab_size=16, context_length=32, n_layer=1, n_head=2, n_embd=16)
    model, history = train_copying_model(config, steps=5, batch=4, eval_every=2, seed=3)
    torch.manual_seed(3)
    by_hand = MiniGPT(config)
    optimizer = torch.optim.AdamW(by_hand.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(3)
    for _ in range(5):
        ids, _ = repeated_block_batch(4, 33, 16, data)
        training_step(by_hand, optimizer, [(ids[:, :-1], ids[:, 1:])], grad_clip=None)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), by_hand.parameters()))
    held_out = repeated_block_batch(4, 33, 16, torch.Generator().manual_seed(4))
    assert history["step"] == [2, 4, 5]
    assert history["copying_loss"][-1] == round(copying_loss(by_hand.eval(), *held_out), 5)
