# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 08 — From GPT-2 to Llama: RoPE, ALiBi, RMSNorm, SwiGLU, grouped-query and sliding-window attention
#
# The model we built in lesson 02 is GPT-2 (2019). The open models you will use today, Llama,
# Mistral, Gemma, Qwen, are the same decoder-only transformer with a handful of parts swapped.
# Each swap has a reason you can measure on a laptop, and that is what this lesson does:
#
# 1. **RoPE**: positions as rotations, so that attention scores depend only on distance;
# 2. **ALiBi**: positions as a penalty on distance, and what happens past the training length;
# 3. **RMSNorm and SwiGLU**: a cheaper norm and a gated MLP, at the same parameter count;
# 4. **grouped-query and multi-query attention**: a smaller KV cache, measured;
# 5. **sliding-window attention**: a cache that stops growing;
# 6. the whole Llama-style model, equal to `transformers`' `LlamaForCausalLM`;
# 7. GPT-2 style against Llama style, trained for the same time;
# 8. a table of today's models with the figures this lesson computes.
#
# The model is `course_utils.MiniLlama`, in one file (`course_utils/llama.py`) beside `MiniGPT`.
# It shares attention, the KV caches, `generate` and the `Trainer` with `MiniGPT`: only the parts
# that differ are new.

# %% [markdown]
# **Exercise workbook.** This is lesson 08 with 4 pieces of code left for you to write: `apply_rope`, `rms_norm`, `swiglu`, `repeat_kv`. Each blank raises `NotImplementedError` with its task: write the body, run its cell, then the check cell below it. A wrong answer shows the smallest input it fails on, what was expected, what came back and what differs. Stuck? `checks.hint("name")` prints a hint, a nudge first; call it again for the next, closer one. Run the workbook top to bottom: it stops at the first blank. The solved lesson is `notebooks/08_modern_decoders.ipynb`.
#
# To start one exercise again, copy its blank from `git show HEAD:exercises/08_modern_decoders.py`; to reset the whole workbook, run `git checkout exercises/08_modern_decoders.ipynb exercises/08_modern_decoders.py`.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_utils import LlamaConfig, MiniGPT, MiniLlama, generate
from course_utils.data import load_corpus
from course_utils.evaluation import bits_per_byte
from course_utils.hub import load_tokenizer
from course_utils.kv_cache import GrowingKVCache, SlidingWindowKVCache, kv_cache_bytes
from course_utils.lesson import check_below, setup
from course_utils.llama import (
    RMSNorm,
    SwiGLU,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    equal_parameter_llama,
    parameter_count,
    rope_cos_sin,
    swiglu_hidden_size,
)
from course_utils.model import MLP, GPTConfig, causal_mask
from course_utils.train import TrainConfig, Trainer, encode_plays, train_side_by_side

generator = setup(seed=0)
tokenizer = load_tokenizer("shakespeare-gpt")  # the bundled models' BPE tokenizer, 4096 tokens
corpus = load_corpus()
train_tokens = encode_plays(tokenizer.backend_tokenizer, corpus.train)
excerpt = corpus.validation["hamlet"][:30_000]  # validation text for the small models trained here
runs = Path(tempfile.mkdtemp(prefix="lesson08-"))  # checkpoints of this lesson's runs
print(f"{len(train_tokens):,} training tokens; a validation excerpt of {len(excerpt):,} characters of Hamlet")

# %%
from course_utils import checks

# %% [markdown]
# ## 1. RoPE: positions as rotations
#
# GPT-2 adds a learned vector for each position to each token's embedding. Its attention score
# between a query at position m and a key at position n then mixes "what" and "where" in ways
# the model has to untangle, and a position it never trained on has no vector at all.
#
# Rotary position embeddings ([Su et al. 2021](https://arxiv.org/abs/2104.09864), "RoFormer") leave the embeddings alone and instead
# *rotate* each query and key by an angle proportional to its position. Take a head's vector of
# $D$ numbers as $D/2$ pairs; pair $i$ turns by $m \theta_i$ at position $m$, with
# $\theta_i = 10000^{-2i/D}$ for $i = 0, \dots, D/2 - 1$: the first pairs spin fast, the last ones barely
# move. Written with complex numbers, pair $i$ is $z_i = x_i + j\,x_{i+D/2}$ and the rotation is
# $z_i \, e^{j m \theta_i}$.
#
# The point: for a query rotated by angle a and a key rotated by angle b, their dot product
# depends only on a - b. So the score depends on m - n, the distance, and not on where the pair
# sits. We rotate by hand in float64 and check.

# %%
HEAD_SIZE = 64


def rope_by_hand(x: torch.Tensor, position: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotate a head vector x (D,) to ``position``: pair (x_i, x_{i+D/2}) as a complex number."""
    half = x.shape[-1] // 2
    frequencies = theta ** (-2 * torch.arange(half, dtype=torch.float64) / x.shape[-1])
    pairs = torch.complex(x[:half], x[half:]) * torch.polar(torch.ones(half, dtype=torch.float64),
                                                            position * frequencies)
    return torch.cat([pairs.real, pairs.imag])


q, k = torch.randn(HEAD_SIZE, dtype=torch.float64), torch.randn(HEAD_SIZE, dtype=torch.float64)
print("distance m - n = 3:")
scores_at_3 = []
for m, n in [(3, 0), (10, 7), (100, 97), (1000, 997)]:
    score = float(rope_by_hand(q, m) @ rope_by_hand(k, n))
    scores_at_3.append(score)
    print(f"  q at {m:4d}, k at {n:4d}: score {score:.4f}")
check_below("largest difference between those four scores", max(scores_at_3) - min(scores_at_3), 1e-9)
print(f"q at 0, k at 3 (distance -3): score {float(rope_by_hand(q, 0) @ rope_by_hand(k, 3)):.4f}")
check_below("a rotation keeps a vector's length (change in norm)", abs(rope_by_hand(q, 77).norm() - q.norm()), 1e-9)

# %% [markdown]
# Four very different places, one distance, one score; the opposite distance gives a different
# score, so the model can still tell before from after.
#
# A model rotates whole batches of heads (B, H, T, D) at once, with cosines and sines instead of
# complex numbers. `rope_cos_sin(positions, D)` gives them, (B, T, D): the angle of pair i sits at
# both i and i + D/2, because Llama checkpoints in the Hugging Face format pair dimension i with
# dimension i + D/2 (the "rotate half" layout), as our complex numbers did. Meta's own reference
# code pairs neighbours instead, (2i, 2i + 1), also through complex numbers; the script that
# converts its checkpoints to the Hugging Face format permutes the rows of the query and key
# weights, so that the rotate-half form gives the same attention scores. Rotating a pair (a, b) by
# an angle gives (a cos - b sin, a sin + b cos). Write the rotation for whole batches; it must
# equal our rotation by hand, the library's `apply_rope`, and `transformers`' own rotary
# functions, or a Llama checkpoint loaded into `MiniLlama` would compute different scores.

# %%
def apply_rope_by_hand(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+D/2}) of x (B, H, T, D) by its angle; cos, sin: (B, T, D)."""
    # EXERCISE apply_rope: Return x (B, H, T, D) with each pair (x_i, x_{i+D/2}) rotated by its position's angle, given cos and sin (B, T, D).
    raise NotImplementedError("Return x (B, H, T, D) with each pair (x_i, x_{i+D/2}) rotated by its position's angle, given cos and sin (B, T, D).")


# %%
checks.apply_rope(apply_rope_by_hand)

# %%
from transformers import LlamaConfig as HFLlamaConfig  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb  # noqa: E402

positions = torch.arange(0, 40).unsqueeze(0)  # (B=1, T=40)
heads = torch.randn(1, 2, 40, HEAD_SIZE)  # (B, H, T, D)
cos, sin = rope_cos_sin(positions, HEAD_SIZE)
ours = apply_rope_by_hand(heads, cos, sin)
by_hand = torch.stack([torch.stack([rope_by_hand(heads[0, h, t].double(), t) for t in range(40)]) for h in range(2)])
check_below("apply_rope_by_hand against the rotation by hand", (ours[0].double() - by_hand).abs().max(), 1e-5)
check_below("apply_rope_by_hand against the library's apply_rope", (ours - apply_rope(heads, cos, sin)).abs().max(), 1e-6)

hf_config = HFLlamaConfig(hidden_size=2 * HEAD_SIZE, num_attention_heads=2,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
hf_cos, hf_sin = LlamaRotaryEmbedding(hf_config)(heads, positions)
hf_rotated, _ = apply_rotary_pos_emb(heads, heads, hf_cos, hf_sin)
check_below("apply_rope against transformers' apply_rotary_pos_emb", (ours - hf_rotated).abs().max(), 1e-5)

# %% [markdown]
# What does the model get from this? Take a query with random entries (mean 0, variance 1) and
# score it against *itself* moved d positions away. Each pair contributes its squared length
# times $\cos(d\,\theta_i)$, so on average $q_d \cdot q_0 = 2 \sum_{i=0}^{D/2-1} \cos(d\,\theta_i)$: the
# full $D$ at distance 0, then smaller and smaller swings (RoFormer's "long-term decay"): far apart,
# the same content lines up less. We check the formula against 4,000 random vectors and draw it.

# %%
frequencies = 10000.0 ** (-2 * torch.arange(HEAD_SIZE // 2, dtype=torch.float64) / HEAD_SIZE)
distances = torch.arange(0, 1000)
expected = 2 * torch.cos(distances[:, None].double() * frequencies).sum(-1)
vectors = torch.randn(4000, 1, 1, HEAD_SIZE, generator=generator)  # (B, H, T=1, D)
for d in (0, 10, 100, 500):
    cos_d, sin_d = rope_cos_sin(torch.tensor([[d]]), HEAD_SIZE)
    sampled = float((apply_rope(vectors, cos_d, sin_d) * vectors).sum(-1).mean())
    print(f"distance {d:3d}: formula {float(expected[d]):5.1f}; mean of 4,000 random vectors within 2 of it")
    assert abs(sampled - float(expected[d])) < 2.0  # the sample mean's spread is about 0.2
fig, ax = plt.subplots(figsize=(8, 3))
_ = ax.plot(distances, expected)
ax.set(xlabel="distance d", ylabel="mean of q_d . q_0", title=f"RoPE, head size {HEAD_SIZE}: a query against itself, moved apart")
plt.show()
assert float(expected[0]) == HEAD_SIZE and expected[200:].abs().max() < HEAD_SIZE / 2

# %% [markdown]
# ## 2. ALiBi, and what happens past the training length
#
# ALiBi ([Press et al. 2022](https://arxiv.org/abs/2108.12409), "Train Short, Test Long") adds no position to tokens at all. It
# subtracts from each attention score a penalty proportional to the distance, a different slope
# per head: $\text{score}(m, n) - s_h (m - n)$. With $H$ heads the slopes $s_h$ are the geometric
# sequence $2^{-8/H}, 2^{-16/H}, \dots, 2^{-8}$: some heads see far, some only their neighbours.

# %%
slopes = alibi_slopes(8)
print("slopes of 8 heads:", [f"1/{round(1 / s)}" for s in slopes.tolist()])
bias = alibi_bias(slopes, T=5, T_all=5)  # (H, T, T): 5 queries over 5 keys
for head in (0, 7):
    print(f"head {head} penalties (row = query, column = key; the future is masked anyway):")
    print(bias[head].tril() + 0.0)  # + 0.0 turns -0.0 into 0.0

# %% [markdown]
# Press et al. chose the name "Train Short, Test Long" for a reason: a model should keep working
# on inputs longer than any it trained on. Let us test that claim on all three ways of giving
# positions. Three small models of the same size (2 layers, 128 wide): GPT-2's learned
# positions, RoPE and ALiBi (the two Llama-style ones get the SwiGLU width that equals the
# parameter count). Each trains for 300 steps on sequences of **32 tokens**, then reads the
# validation excerpt in windows of 32, 64, 128 and 256 tokens. The learned model's table has rows
# for 256 positions, but rows past 32 were never trained: they keep their random initial values.

# %%
TRAIN_LENGTH = 32
LENGTHS = [TRAIN_LENGTH, 2 * TRAIN_LENGTH, 4 * TRAIN_LENGTH, 8 * TRAIN_LENGTH]
small_gpt = GPTConfig(vocab_size=4096, context_length=LENGTHS[-1], n_layer=2, n_head=4, n_embd=128)
position_kinds = {
    "learned (GPT-2)": small_gpt,
    "RoPE": equal_parameter_llama(small_gpt),
    "ALiBi": equal_parameter_llama(small_gpt, position="alibi"),
}
for name, config in position_kinds.items():
    print(f"{name:16s} {parameter_count(config):,} parameters")

# %%
# NBVAL_IGNORE_OUTPUT
extrapolation = {}
for name, config in position_kinds.items():
    short = TrainConfig(model=config, batch_size=32, sequence_length=TRAIN_LENGTH, max_steps=300, warmup_steps=30,
                        learning_rate=2e-3, min_lr=2e-4, precision="float32")
    trainer = Trainer(short, train_tokens, runs / name, progress=False)
    trainer.run()
    model = trainer.model.eval()
    extrapolation[name] = [bits_per_byte(model, tokenizer, [excerpt], context=length) for length in LENGTHS]
    print(f"{name:16s}", "  ".join(f"{length:3d} tokens: {bpb:.3f}" for length, bpb in zip(LENGTHS, extrapolation[name])))
growth = {name: scores[-1] - scores[0] for name, scores in extrapolation.items()}
print("bits per byte at 8x minus at 1x:", {name: round(value, 3) for name, value in growth.items()})
assert growth["ALiBi"] < 0.02  # flat
assert growth["RoPE"] > 0.04 and growth["learned (GPT-2)"] > 0.02  # both get worse
assert extrapolation["ALiBi"][-1] < min(extrapolation["RoPE"][-1], extrapolation["learned (GPT-2)"][-1]) - 0.02
assert all(scores[-1] > scores[0] - 0.02 for scores in extrapolation.values())  # nobody gains much
assert extrapolation["ALiBi"][0] > min(extrapolation["RoPE"][0], extrapolation["learned (GPT-2)"][0]) - 0.01

# %% tags=["readme-figure"]
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(7, 4))
for name, scores in extrapolation.items():
    _ = ax.plot([length / TRAIN_LENGTH for length in LENGTHS], scores, "o-", label=name)
ax.set(xscale="log", xticks=[1, 2, 4, 8], xticklabels=["1x", "2x", "4x", "8x"],
       xlabel=f"window read, in multiples of the training length ({TRAIN_LENGTH} tokens)",
       ylabel="bits per byte (Hamlet excerpt)", title="Reading past the training length")
ax.minorticks_off()
ax.legend()
plt.show()

# %% [markdown]
# What we see (the asserts above check it on every run):
#
# - **ALiBi stays flat**: at 8× the training length it scores what it scored at 1×. Its penalty
#   for a distance of 200 is the same rule as for 20, only larger, so nothing it meets is new.
# - **RoPE gets worse** the further it reads: rotations by angles it never saw during training
#   produce scores it never learned to read. This is why long-context Llamas *change* RoPE
#   before training on longer text (position interpolation, NTK and YaRN scaling, a larger
#   theta: Llama 3 uses 500,000 instead of 10,000) rather than relying on it to extrapolate.
# - **Learned positions get worse too**: the untrained rows are small random vectors, noise added
#   to every token past position 32.
# - **Nobody gains from the longer windows.** In Press et al.'s experiments ALiBi *improves* with
#   longer inputs. Our models are tiny and trained for a minute on 32-token pieces: they learned
#   to use only a short history, so more history does not help them. "Does not break" is what
#   ALiBi gives here, and on this scale that is all.
#
# At 1× ALiBi did not come out ahead here. That is one 300-step run of each method, and a small
# difference in one run is not evidence that ALiBi costs anything at the training length.
# Press et al. report that at the training length ALiBi matched or beat sinusoidal positions.
# Llama-family models chose RoPE all the same. `transformers` has no ALiBi Llama (BLOOM and MPT
# used ALiBi), so `MiniLlama.to_hf()` refuses an ALiBi model.

# %% [markdown]
# ## 3. RMSNorm and SwiGLU
#
# **RMSNorm** ([Zhang and Sennrich 2019](https://arxiv.org/abs/1910.07467)) is LayerNorm without the mean: it does not subtract the
# vector's mean, it only divides the vector by its root-mean-square (with a small eps added to the
# mean square, for safety), then multiplies by a learned weight, one per channel, with no bias. It
# skips one reduction; the authors found the re-centring did not matter. Write it; the library's
# `RMSNorm` is the reference.

# %%
class RMSNormByHand(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a learned weight (no bias)."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., size) -> the same shape."""
        # EXERCISE rms_norm: Return x (..., size) divided by its root-mean-square over the last dimension (eps added to the mean square), times the weight.
        raise NotImplementedError('Return x (..., size) divided by its root-mean-square over the last dimension (eps added to the mean square), times the weight.')


# %%
checks.rms_norm(RMSNormByHand)

# %%
C = 256
x = torch.randn(4, 10, C) * 3 + 1
rms_norm = RMSNorm(C, eps=1e-5)
rms_norm_by_hand = RMSNormByHand(C, eps=1e-5)
with torch.no_grad():
    rms_norm.weight.uniform_(0.5, 1.5)  # a trained-looking weight, loaded into both
    rms_norm_by_hand.load_state_dict(rms_norm.state_dict())
    check_below("RMSNormByHand against the library's RMSNorm", (rms_norm_by_hand(x) - rms_norm(x)).abs().max(), 1e-5)
    rms_norm.weight.fill_(1.0)

# %% [markdown]
# On an input whose mean is already zero, with LayerNorm's weight 1 and bias 0, the two are the
# same function:

# %%
layer_norm = nn.LayerNorm(C)
centred = x - x.mean(-1, keepdim=True)
with torch.no_grad():
    check_below("RMSNorm = LayerNorm on inputs with zero mean", (rms_norm(centred) - layer_norm(centred)).abs().max(), 1e-5)
    print(f"on the raw input (mean about 1) they differ by up to {(rms_norm(x) - layer_norm(x)).abs().max():.2f}")
print(f"parameters: LayerNorm {sum(p.numel() for p in layer_norm.parameters())} (2C), "
      f"RMSNorm {sum(p.numel() for p in rms_norm.parameters())} (C)")

# %% [markdown]
# **SwiGLU** ([Shazeer 2020](https://arxiv.org/abs/2002.05202), "GLU Variants Improve Transformer") replaces the MLP's
# up-GELU-down with a gate. Two projections take x up to the hidden width, `gate_proj` and
# `up_proj`; the gate goes through SiLU (x times its sigmoid) and then multiplies the other
# elementwise, so it decides, channel by channel, how much of the up-projection passes; `down_proj`
# brings the product back to C. Write it; the library's `SwiGLU` is the reference.

# %%
class SwiGLUByHand(nn.Module):
    """The gated feed-forward network of Llama: C -> hidden width (twice) -> C, no biases."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        # EXERCISE swiglu: Return the gated feed-forward output for x (B, T, C): the SiLU of gate_proj's output gates up_proj's, and down_proj maps back.
        raise NotImplementedError("Return the gated feed-forward output for x (B, T, C): the SiLU of gate_proj's output gates up_proj's, and down_proj maps back.")


# %%
checks.swiglu(SwiGLUByHand)

# %%
swiglu = SwiGLU(LlamaConfig(n_embd=C))
swiglu_by_hand = SwiGLUByHand(LlamaConfig(n_embd=C))
swiglu_by_hand.load_state_dict(swiglu.state_dict())
with torch.no_grad():
    check_below("SwiGLUByHand against the library's SwiGLU", (swiglu_by_hand(x) - swiglu(x)).abs().max(), 1e-5)

# %% [markdown]
# That is three matrices instead of two, so to keep the parameter count, the hidden width F
# shrinks from 4C to 2/3 × 4C, rounded up to a convenient multiple (Llama rounds to 256: 4096
# wide gives 11008). We check both counts against the modules themselves.

# %%
gelu_mlp = MLP(GPTConfig(n_embd=C))
F = swiglu_hidden_size(C)
print(f"GELU MLP:  2 x C x 4C + 4C + C biases = {2 * C * 4 * C + 4 * C + C:,}; "
      f"the module has {sum(p.numel() for p in gelu_mlp.parameters()):,}")
print(f"SwiGLU:    F = 2/3 x 4C = {8 * C / 3:.1f} -> {F} (a multiple of 32); 3 x C x F = {3 * C * F:,}; "
      f"the module has {sum(p.numel() for p in swiglu.parameters()):,}")
print(f"Llama 7B:  C = 4096 gives F = {swiglu_hidden_size(4096, multiple_of=256)}")
assert sum(p.numel() for p in gelu_mlp.parameters()) == 2 * C * 4 * C + 5 * C
assert sum(p.numel() for p in swiglu.parameters()) == 3 * C * F
assert swiglu_hidden_size(4096, multiple_of=256) == 11008

# %% [markdown]
# The same bookkeeping for whole models is `course_utils.llama.parameter_count`, a formula
# (stated in its docstring) that needs only a configuration. We check it against models we
# build; section 4 then uses it on configurations far too large to build here.

# %%
configurations = {
    "MiniGPT, 6 x 256": GPTConfig(vocab_size=4096, context_length=512, n_layer=6, n_head=8, n_embd=256),
    "MiniLlama, 6 x 256": LlamaConfig(vocab_size=4096, context_length=512, n_layer=6, n_head=8, n_embd=256),
    "MiniLlama, 2 key/value heads": LlamaConfig(vocab_size=4096, n_layer=6, n_head=8, n_kv_heads=2, n_embd=256),
    "MiniLlama, tied head": LlamaConfig(vocab_size=4096, n_layer=6, n_head=8, n_embd=256, tie_word_embeddings=True),
}
for name, config in configurations.items():
    built = (MiniLlama(config) if isinstance(config, LlamaConfig) else MiniGPT(config)).num_parameters()
    print(f"{name:30s} formula {parameter_count(config):>10,}  built {built:>10,}")
    assert parameter_count(config) == built

# %% [markdown]
# ## 4. Grouped-query and multi-query attention: a smaller KV cache
#
# Lesson 04 showed that the KV cache, not the weights, is what fills memory when contexts are
# long or batches are large: 2 (keys and values) × layers × positions × heads × head size values.
# Multi-query attention ([Shazeer 2019](https://arxiv.org/abs/1911.02150)) keeps all the query heads but only **one** key/value
# head, shared by all; grouped-query attention ([Ainslie et al. 2023](https://arxiv.org/abs/2305.13245)) keeps K of them, each shared
# by a group of H / K query heads. The cache shrinks by H / K:
#
# $$\text{bytes per token} = 2 \times \text{layers} \times \text{key/value heads} \times \text{head size} \times \text{bytes per value}.$$
#
# Inside attention, nothing else changes: each key/value head is repeated for the query heads of
# its group, and attention runs as before. Query head h reads key/value head h // (H / K), so
# the repeats of one head must sit next to each other. Write that repeat, then use it to compute a
# grouped-query attention layer of `MiniLlama` (8 query heads, 2 key/value heads) by hand.

# %%
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, K, T, D) -> (B, K * n_rep, T, D): each key/value head n_rep times, repeats side by side."""
    # EXERCISE repeat_kv: Return x (B, K, T, D) with each key/value head repeated n_rep times, repeats side by side: (B, K * n_rep, T, D).
    raise NotImplementedError('Return x (B, K, T, D) with each key/value head repeated n_rep times, repeats side by side: (B, K * n_rep, T, D).')


# %%
checks.repeat_kv(repeat_kv)

# %%
grouped = MiniLlama(LlamaConfig(vocab_size=4096, n_layer=1, n_head=8, n_kv_heads=2, n_embd=256)).eval()
gqa_layer = grouped.layers[0].self_attn
stream = torch.randn(1, 12, 256, generator=generator)  # (B, T, C)
batch, length, width = stream.shape
head_size = grouped.config.head_size
rope = rope_cos_sin(torch.arange(length)[None], head_size)
with torch.no_grad():
    queries = apply_rope(gqa_layer.q_proj(stream).view(batch, length, 8, head_size).transpose(1, 2), *rope)
    keys = apply_rope(gqa_layer.k_proj(stream).view(batch, length, 2, head_size).transpose(1, 2), *rope)
    values = gqa_layer.v_proj(stream).view(batch, length, 2, head_size).transpose(1, 2)
    heads_out = nn.functional.scaled_dot_product_attention(queries, repeat_kv(keys, 4), repeat_kv(values, 4),
                                                           is_causal=True)
    gqa_by_hand = gqa_layer.o_proj(heads_out.transpose(1, 2).reshape(batch, length, width))
    gqa_module, _ = gqa_layer(stream, rope)
print(f"queries {tuple(queries.shape)}, keys and values {tuple(keys.shape)}, "
      f"repeated {tuple(repeat_kv(keys, 4).shape)}")
check_below("grouped-query attention by hand against MiniLlama's layer", (gqa_by_hand - gqa_module).abs().max(), 1e-5)

# %% [markdown]
# The cache holds the K heads before the repeat: that is the saving. We run a 100-token prompt
# through three `MiniLlama`s that differ only in `n_kv_heads` and weigh the cache tensors they
# fill.

# %%
prompt = torch.randint(0, 4096, (1, 100), generator=generator)
print(f"{'attention':26s}{'cache (float32)':>16s}{'per token':>12s}{'formula':>10s}")
for kv_heads, kind in [(8, "multi-head (8 of 8)"), (2, "grouped-query (2 of 8)"), (1, "multi-query (1 of 8)")]:
    config = LlamaConfig(vocab_size=4096, n_layer=6, n_head=8, n_kv_heads=kv_heads, n_embd=256)
    cache = GrowingKVCache()
    with torch.no_grad():
        MiniLlama(config).eval()(prompt, cache=cache)
    print(f"{kind:26s}{cache.nbytes():>16,}{cache.nbytes() // 100:>12,}{kv_cache_bytes(config, 1):>10,}")
    assert cache.nbytes() == kv_cache_bytes(config, 100) and cache.keys[0].shape[1] == kv_heads

# %% [markdown]
# The same formula on published models, in 16-bit values (2 bytes, how they are served). Their
# configurations are typed in from the papers and the released configuration files:
#
# - GPT-2 Large: [Radford et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf), Table 2 (36 layers, 1280 wide), and the released
#   `config.json` (20 heads, 1024 positions, 50,257 tokens).
# - Llama 2 7B and 70B: [Touvron et al. 2023](https://arxiv.org/abs/2307.09288), "Llama 2", Table 1 (4k context; grouped-query
#   attention in 70B), and the released `params.json`/`config.json` (7B: 32 layers, 4096 wide,
#   32 heads, MLP 11008; 70B: 80 layers, 8192 wide, 64 heads, 8 key/value heads, MLP 28672;
#   32,000 tokens).
# - Llama 3 8B: [Llama Team, AI @ Meta 2024](https://arxiv.org/abs/2407.21783), "The Llama 3 Herd of Models", Table 3 (32 layers, 4096
#   wide, MLP 14,336, 32 heads, 8 key/value heads, RoPE theta 500,000), 8,192-token context and
#   128,256 tokens in the released `config.json`.
# - Mistral 7B: [Jiang et al. 2023](https://arxiv.org/abs/2310.06825), Table 1 (dim 4096, 32 layers, head_dim 128, hidden_dim 14336,
#   32 heads, 8 key/value heads, window 4096, context 8192, vocabulary 32,000).
# - Gemma 2B: [Gemma Team 2024](https://arxiv.org/abs/2403.08295), Table 1 (d_model 2048, 18 layers, feed-forward 32,768 = gate +
#   up of 16,384 each, 8 heads, 1 key/value head, head size 256, vocabulary 256,128, tied
#   embeddings), 8,192-token context. Its GeGLU has SwiGLU's parameter count.
#
# Each row's parameters come from `parameter_count`, checked against the published size: Gemma's
# paper gives its exact counts (Table 2: 524,550,144 embedding and 1,981,884,416 other
# parameters), the others the sizes on their model pages.

# %%
published = {
    "GPT-2 Large": GPTConfig(vocab_size=50257, context_length=1024, n_layer=36, n_head=20, n_embd=1280),
    "Llama 2 7B": LlamaConfig(vocab_size=32000, context_length=4096, n_layer=32, n_head=32, n_embd=4096,
                              intermediate_size=11008),
    "Llama 2 70B": LlamaConfig(vocab_size=32000, context_length=4096, n_layer=80, n_head=64, n_kv_heads=8,
                               n_embd=8192, intermediate_size=28672),
    "Llama 3 8B": LlamaConfig(vocab_size=128256, context_length=8192, n_layer=32, n_head=32, n_kv_heads=8,
                              n_embd=4096, intermediate_size=14336, rope_theta=500000.0),
    "Mistral 7B": LlamaConfig(vocab_size=32000, context_length=8192, n_layer=32, n_head=32, n_kv_heads=8,
                              n_embd=4096, intermediate_size=14336, sliding_window=4096),
    "Gemma 2B": LlamaConfig(vocab_size=256128, context_length=8192, n_layer=18, n_head=8, n_kv_heads=1,
                            n_embd=2048, intermediate_size=16384, tie_word_embeddings=True),
}
published_sizes = {"GPT-2 Large": 774e6, "Llama 2 7B": 6.74e9, "Llama 2 70B": 69.0e9, "Llama 3 8B": 8.03e9,
                   "Mistral 7B": 7.24e9, "Gemma 2B": 2.51e9}
gemma = published["Gemma 2B"]
assert gemma.vocab_size * gemma.n_embd == 524_550_144
assert parameter_count(gemma) - gemma.vocab_size * gemma.n_embd == 1_981_884_416

print(f"{'model':13s}{'parameters':>16s}{'attention':>12s}{'KV per token':>14s}{'KV at full context':>22s}")
for name, config in published.items():
    n_params = parameter_count(config)
    assert abs(n_params / published_sizes[name] - 1) < 0.005, name  # the published size, to 3 figures
    kv_heads = getattr(config, "n_kv_heads", config.n_head)
    kind = "MHA" if kv_heads == config.n_head else ("MQA" if kv_heads == 1 else f"GQA {config.n_head}/{kv_heads}")
    per_token = kv_cache_bytes(config, 1, bytes_per_value=2)
    full = kv_cache_bytes(config, config.context_length, bytes_per_value=2)
    print(f"{name:13s}{n_params:>16,}{kind:>12s}{per_token / 1024:>10,.0f} KiB"
          f"{full / 2**30:>10.2f} GiB at {config.context_length:,}")

# %% [markdown]
# Llama 2 7B keeps half a mebibyte per token; Llama 3 8B, nearly the same size, a quarter of that,
# thanks to 8 key/value heads instead of 32, and so can serve twice the context in half the
# memory. Llama 2 70B, ten times larger than 7B, needs *less* cache per token than it. Gemma 2B's
# cache is 28 times smaller per token than Llama 2 7B's, for two reasons. Its single key/value
# head of size 256 stores 256 numbers per layer for the keys (and as many for the values), against
# Llama 2 7B's 32 heads × 128 = 4096: 16 times fewer. And it has 18 layers against 32: 1.78 times
# fewer. 16 × 1.78 ≈ 28. (The quality cost of sharing heads is small when the model is trained
# that way, Ainslie et al. report; that is not something a laptop can check.)

# %% [markdown]
# ## 5. Sliding-window attention: a cache that stops growing
#
# Mistral 7B lets each token attend to only the last W = 4096 tokens. Information still travels
# further, W - 1 = 4095 positions per layer, since the window's W keys include the token's own
# position (after 32 layers, up to 32 × 4095 = 131,040 positions back), but the cost of
# attention per token is fixed, and the cache only ever needs the last W - 1 positions: a
# "rolling buffer". The mask is the causal mask with a band cut off (`causal_mask(T, window=W)`):

# %%
for name, mask in [("causal", causal_mask(8)), ("causal, window 3", causal_mask(8, window=3))]:
    print(f"{name} (row = query, 1 = may attend):")
    print("\n".join("  " + " ".join(str(int(v)) for v in row) for row in mask.int()))

# %% [markdown]
# `SlidingWindowKVCache` keeps only the window. We decode 300 tokens one at a time with a
# windowed `MiniLlama` (W = 32) twice, with the cache that keeps everything and with the rolling
# one, and weigh both caches at each step. The logits must be the same: what the window hides is
# never looked at.

# %%
WINDOW = 32
windowed = MiniLlama(LlamaConfig(vocab_size=4096, context_length=512, n_layer=2, n_head=4, n_kv_heads=2, n_embd=128,
                                 sliding_window=WINDOW)).eval()
tokens = torch.randint(0, 4096, (1, 300), generator=generator)
everything, rolling = GrowingKVCache(), SlidingWindowKVCache(WINDOW)
sizes = {"keeps everything": [], "rolling window": []}
largest_gap = 0.0
with torch.no_grad():
    for i in range(300):
        full_logits = windowed(tokens[:, i : i + 1], cache=everything)
        window_logits = windowed(tokens[:, i : i + 1], cache=rolling)
        largest_gap = max(largest_gap, float((full_logits - window_logits).abs().max()))
        sizes["keeps everything"].append(everything.nbytes())
        sizes["rolling window"].append(rolling.nbytes())
    no_cache = windowed(tokens)[:, -1]
check_below("logits, rolling window against the full cache", largest_gap, 1e-4)
check_below("last logits, rolling window against no cache at all", (window_logits[:, -1] - no_cache).abs().max(), 1e-4)
print(f"after 300 tokens: full cache {sizes['keeps everything'][-1]:,} bytes, rolling {sizes['rolling window'][-1]:,} "
      f"bytes = kv_cache_bytes: {kv_cache_bytes(windowed.config, 300):,}")
assert sizes["rolling window"][WINDOW:] == [sizes["rolling window"][WINDOW]] * (300 - WINDOW)  # flat
assert sizes["rolling window"][-1] == kv_cache_bytes(windowed.config, 300)

fig, ax = plt.subplots(figsize=(7, 3))
for name, values in sizes.items():
    _ = ax.plot(range(1, 301), [v / 1024 for v in values], label=name)
ax.set(xlabel="tokens decoded", ylabel="KV cache (KiB)", title=f"Sliding window W = {WINDOW}")
ax.legend()
plt.show()

# %% [markdown]
# ## 6. The whole model, against `transformers`
#
# Put the pieces together and the result must be Llama, exactly: a random `LlamaForCausalLM`
# with grouped-query attention, loaded into `MiniLlama` with `from_hf`, must give the same logits,
# the same greedy text as `transformers`' `generate()`, and the same tokens with the cache on and
# off. (The weights are drawn larger than at initialisation, so the logits are far from flat and
# agreeing means something.)

# %%
from transformers import LlamaForCausalLM  # noqa: E402

torch.manual_seed(0)
hf_llama = LlamaForCausalLM(HFLlamaConfig(
    vocab_size=500, hidden_size=128, intermediate_size=344, num_hidden_layers=3, num_attention_heads=8,
    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    bos_token_id=None, eos_token_id=None, pad_token_id=None,
)).eval()
with torch.no_grad():
    for parameter in hf_llama.parameters():
        if parameter.dim() == 2:
            parameter.normal_(0.0, 0.08)
mini = MiniLlama.from_hf(hf_llama)
ids = torch.randint(0, 500, (2, 64), generator=generator)
with torch.no_grad():
    reference = hf_llama(ids).logits
    check_below("logits, MiniLlama against LlamaForCausalLM", (mini(ids) - reference).abs().max(), 1e-4)
print(f"logits spread over [{reference.min():.0f}, {reference.max():.0f}]: far from flat")
assert reference.abs().max() > 2

start = ids[:1, :8]
hf_text = hf_llama.generate(start, max_new_tokens=40, do_sample=False)
ours_cached = generate(mini, start, max_new_tokens=40, do_sample=False, use_cache=True)
ours_uncached = generate(mini, start, max_new_tokens=40, do_sample=False, use_cache=False)
print("greedy tokens:", ours_cached[0, 8:20].tolist(), "...")
assert torch.equal(ours_cached, hf_text) and torch.equal(ours_uncached, hf_text)
print("40 greedy tokens equal to transformers' generate(), with the cache and without")

# %% [markdown]
# ## 7. GPT-2 style against Llama style, for the same time
#
# Does it all buy anything? A fair race: the same parameter count (`equal_parameter_llama` gives
# the Llama-style model the GPT's width, depth, heads and tied head, and a SwiGLU width that makes
# up for the parameters it drops), the same data, the same recipe, and the **same training
# time**, not the same steps, since their steps cost differently.
#
# Training one and then the other would compare two different moments of a machine whose speed
# drifts. `train_side_by_side` takes one step at a time, always of the run that has trained for
# less time, so both meet the same conditions. Here the race goes on until the slower of the two
# has taken 150 steps (`steps=150`), the faster taking more in the same time: seconds each (the
# table below prints how many), longer on a slower machine, but the same 150 steps or more on any,
# so what they reach does not depend on how fast your machine is. It is a sketch.
# The full race (25 minutes each, a larger pair) is a command, and its result is in the README:
#
# ```bash
# python -m course_utils.train --preset compare-gpt --threads 1 &
# python -m course_utils.train --preset compare-llama --threads 1
# ```

# %%
race_gpt = GPTConfig(vocab_size=4096, context_length=128, n_layer=2, n_head=4, n_embd=128)
race = {"GPT-2 style": race_gpt, "Llama style": equal_parameter_llama(race_gpt)}
for name, config in race.items():
    print(f"{name:12s} {parameter_count(config):,} parameters")

# %%
# NBVAL_IGNORE_OUTPUT
racers = {name: Trainer(TrainConfig(model=config, batch_size=8, max_steps=300, warmup_steps=20,
                                    learning_rate=2e-3, min_lr=2e-4, precision="float32"),
                        train_tokens, runs / f"race-{name}", progress=False)
          for name, config in race.items()}
untrained_bpb = {name: bits_per_byte(trainer.model.eval(), tokenizer, [excerpt]) for name, trainer in racers.items()}
train_side_by_side(list(racers.values()), steps=150)  # equal time, until each has taken 150 steps
print(f"{'':12s}{'seconds':>9s}{'steps':>7s}{'ms/step':>9s}{'bits per byte':>15s}{'untrained':>11s}")
race_bpb = {}
for name, trainer in racers.items():
    race_bpb[name] = bits_per_byte(trainer.model.eval(), tokenizer, [excerpt])
    print(f"{name:12s}{trainer.elapsed:>9.1f}{trainer.step:>7d}{1000 * trainer.elapsed / trainer.step:>9.1f}"
          f"{race_bpb[name]:>15.3f}{untrained_bpb[name]:>11.3f}")
times = [trainer.elapsed for trainer in racers.values()]
slowest_step = max(trainer.elapsed / trainer.step for trainer in racers.values())
assert max(times) - min(times) < 2 * slowest_step  # equal time, to within a step
assert all(race_bpb[name] < min(3.2, untrained_bpb[name] - 0.5) for name in race)  # both learned, in 150 steps

# %% [markdown]
# Both learned (asserted: under 3.2 bits per byte, and half a bit or more below the same model
# untrained). The margin is wide, and it holds on any machine, since the steps taken, not the
# seconds, decide what a model learns. A race this short is a sketch, not a verdict: the README's 25-minute race is the measurement to read, and this cell is the same
# experiment, small. Note what it does not test: both models
# here have as many key/value heads as query heads, so the race says nothing about what
# grouped-query attention costs in quality. Sections 4 and 5 measured what it saves (the cache
# shrinks by n_head / n_kv_heads); its cost in quality is not measured in this course. The Llama 2
# paper's ablation (appendix A.2.1, with 30B-parameter models) found grouped-query attention
# close to multi-head attention on most of its benchmarks.

# %% [markdown]
# ## 8. The models, side by side
#
# The families the models you will meet belong to, what each changed, and this lesson's figures
# for those we configured above (parameters by formula, KV cache per token in 16-bit values).

# %%
key_ideas = {
    "GPT-2 Large": ("2019", "learned", "LayerNorm", "GELU 4x", "multi-head"),
    "Llama 2 7B": ("2023", "RoPE", "RMSNorm", "SwiGLU", "multi-head"),
    "Llama 2 70B": ("2023", "RoPE", "RMSNorm", "SwiGLU", "grouped-query (8)"),
    "Llama 3 8B": ("2024", "RoPE, theta 500k", "RMSNorm", "SwiGLU", "grouped-query (8)"),
    "Mistral 7B": ("2023", "RoPE", "RMSNorm", "SwiGLU", "grouped-query (8), window 4096"),
    "Gemma 2B": ("2024", "RoPE", "RMSNorm", "GeGLU", "multi-query"),
}
print(f"{'model':13s}{'year':6s}{'positions':18s}{'norm':11s}{'MLP':9s}{'attention':32s}{'params':>8s}{'KV/token':>10s}")
for name, (year, positions_kind, norm, mlp, attention) in key_ideas.items():
    config = published[name]
    print(f"{name:13s}{year:6s}{positions_kind:18s}{norm:11s}{mlp:9s}{attention:32s}"
          f"{parameter_count(config) / 1e9:>7.2f}B{kv_cache_bytes(config, 1, bytes_per_value=2) / 1024:>6.0f} KiB")

# %% [markdown]
# ### Mixture of experts: Mixtral 8x7B
#
# Mixtral ([Jiang et al. 2024](https://arxiv.org/abs/2401.04088), "Mixtral of Experts") keeps Mistral 7B's sizes but gives every block
# 8 MLPs, the *experts*, each a SwiGLU of Mistral's size, and a small *router* (a C × 8 matrix)
# that sends each token to the 2 experts it scores highest and mixes their outputs. So a token
# uses only a quarter of the MLP weights: the paper gives 47B parameters in all and 13B *active*
# per token. Attention has Mistral's heads and sizes, so each token's keys and values take as
# much memory as in Mistral 7B. But Mixtral drops the sliding window (the paper: "a fully dense
# context length of 32k tokens"), so its cache is not capped by a window. At 32,768 tokens in
# 16-bit values, batch 1, it holds 4 GiB (32 layers × 8 key/value heads × 128 numbers × 2, for
# keys and values, × 2 bytes × 32,768 tokens), where Mistral 7B's stops at the 0.50 GiB of the
# table in section 4. Our formula, with the experts added:

# %%
mixtral = LlamaConfig(vocab_size=32000, context_length=32768, n_layer=32, n_head=32, n_kv_heads=8, n_embd=4096,
                      intermediate_size=14336)  # Jiang et al. 2024, Table 1: Mistral 7B's shape, 8 experts, top 2
experts, routed = 8, 2
expert_size = 3 * mixtral.n_embd * mixtral.intermediate_size  # one SwiGLU MLP
router_size = mixtral.n_embd * experts
one_expert = parameter_count(mixtral)  # the dense model: one MLP per block
total = one_expert + mixtral.n_layer * ((experts - 1) * expert_size + router_size)
active = one_expert + mixtral.n_layer * ((routed - 1) * expert_size + router_size)
mistral_kv = kv_cache_bytes(published["Mistral 7B"], 1, bytes_per_value=2)
print(f"Mixtral 8x7B: {total / 1e9:.1f}B parameters in all, {active / 1e9:.1f}B active per token "
      f"({active / total:.0%}); KV cache {kv_cache_bytes(mixtral, 1, bytes_per_value=2) / 1024:.0f} KiB per token, "
      f"Mistral 7B's {mistral_kv / 1024:.0f} KiB")
print(f"forward FLOPs per token, about 2 x active parameters: {2 * active / 1e9:.0f} GFLOP "
      f"(a dense model of all {total / 1e9:.0f}B: {2 * total / 1e9:.0f} GFLOP)")
assert round(total / 1e9) == 47 and round(active / 1e9) == 13  # the paper's 47B and 13B
assert kv_cache_bytes(mixtral, 1, bytes_per_value=2) == mistral_kv

# %% [markdown]
# A mixture of experts decouples what a model *knows* (all 47B parameters must sit in memory) from
# what each token *costs* (13B parameters' worth of compute), and leaves the cache per token
# alone. Memory, not compute, is then the price: Mixtral needs the memory of a 47B model to run at
# the speed of a 13B one.
#
# ### Other families, and choosing one
#
# Each of these changed something our two models do not cover, so they get words rather than a
# configuration here:
#
# - **PaLM** ([Chowdhery et al. 2022](https://arxiv.org/abs/2204.02311)): 540B parameters trained on 780B tokens; SwiGLU, RoPE,
#   multi-query attention, no biases, and attention and MLP computed in parallel from the same
#   input.
# - **Falcon** ([Almazrouei et al. 2023](https://arxiv.org/abs/2311.16867)): trained mostly on RefinedWeb ([Penedo et al. 2023](https://arxiv.org/abs/2306.01116)), web
#   text filtered and deduplicated hard enough that, the authors found, web data alone could
#   match curated mixtures. The lesson there is about data quality, not architecture (Falcon-40B:
#   1T tokens; multi-query attention, with a few key/value groups in the 40B, and parallel blocks
#   as in PaLM).
# - **Phi** ([Gunasekar et al. 2023](https://arxiv.org/abs/2306.11644), "Textbooks Are All You Need"): phi-1, 1.3B parameters trained
#   on about 7B tokens of "textbook-quality" web text and synthetic textbooks and exercises, reached
#   50.6% on the HumanEval coding benchmark, ahead of far larger models trained on more but
#   rougher text.
# - **Mistral 7B against Llama 2 13B**: [Jiang et al. 2023](https://arxiv.org/abs/2310.06825) report Mistral 7B ahead of Llama 2 13B
#   on every benchmark they evaluated, with half the parameters: data and training matter as
#   much as size.
# - **Qwen** (the Llama recipe with biases on the query, key and value projections, grouped-query
#   attention, a large vocabulary), **BLOOM** and **MPT** (ALiBi).
#
# Choosing a base model for a task starts from the budget: the weights (2 bytes per parameter
# in 16 bits, 1 in int8) and the KV cache for the context and batch you need must fit in memory,
# and both are formulas you now have. Then the task: the context length it needs, the languages
# and domains in the model's training data, its license, and above all how it does on *your*
# task, measured on a few hundred of your own examples rather than read off a leaderboard. What
# fits, in float16, with a 4,096-token context (GPT-2 Large: its whole 1,024) and batch 1:

# %%
print(f"{'model':13s}{'weights':>9s}{'+ cache':>9s}{'16 GB':>7s}{'24 GB':>7s}{'80 GB':>7s}")
fits_in = {}
for name, config in {**published, "Mixtral 8x7B": mixtral}.items():
    weights = (total if name == "Mixtral 8x7B" else parameter_count(config)) * 2
    needed = weights + kv_cache_bytes(config, min(4096, config.context_length), bytes_per_value=2)
    fits_in[name] = [needed <= gigabytes * 1e9 for gigabytes in (16, 24, 80)]
    print(f"{name:13s}{weights / 1e9:>8.1f}G{needed / 1e9:>8.1f}G" + "".join(f"{'yes' if ok else 'no':>7s}"
                                                                          for ok in fits_in[name]))
assert fits_in["Mistral 7B"] == [True, True, True] and fits_in["Llama 2 70B"] == [False, False, False]
assert fits_in["Mixtral 8x7B"][:2] == [False, False]

# %% [markdown]
# ## Check your understanding
#
# 1. RoPE rotates queries and keys but not values. Why would rotating the values break what
#    section 1 showed, and what would the output then depend on?
# 2. In section 2 ALiBi stayed flat past the training length but did not improve. What would
#    you change in the experiment to give longer windows a chance to help?
# 3. A model has 32 query heads and 8 key/value heads. How many times smaller is its cache than
#    with 32 key/value heads, and how many times fewer parameters do its key and value
#    projections have? Check with `parameter_count`.
# 4. Mistral 7B's window is 4096 and its context 8192. After 32 layers, how far back can
#    information reach? Why is the cache still capped at the window?
# 5. SwiGLU at equal parameters has $F = \frac{2}{3} \times 4C$. Why does the rounding of F to a multiple of 256
#    matter more for a GPU than for the formula?
# 6. The equal-time race could have been an equal-steps race. Which architecture would that
#    favour, and why is equal time the question a practitioner asks?
