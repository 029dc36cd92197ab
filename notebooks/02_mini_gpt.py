# ---
# jupyter:
#   jupytext:
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
# # Lesson 02 — A mini-GPT, piece by piece
#
# GPT-2 is a short list of simple parts. In this lesson we take `course_utils.MiniGPT` — the
# whole model in one readable file, `course_utils/model.py` — and look at each part on real
# weights:
#
# 1. token and position embeddings;
# 2. masked multi-head self-attention;
# 3. the GELU feed-forward network;
# 4. pre-norm versus post-norm blocks, measured;
# 5. the LM head and weight tying;
# 6. the parameter count, checked against a formula, and GPT-2 124M's tying saving computed;
# 7. loading pretrained weights from `transformers` and **proving** they give the same logits
#    and the same text.
#
# The lesson runs on the bundled `shakespeare-gpt`. Set `COURSE_MODEL=gpt2` (with GPT-2 in
# your Hugging Face cache) and every cell runs unchanged on the real GPT-2.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from course_utils import MiniGPT, generate, load_model
from course_utils.attention import attention_weights
from course_utils.hub import model_name
from course_utils.lesson import check_below, setup
from course_utils.model import MLP, GPTConfig

generator = setup(seed=0)
hf_model, tokenizer = load_model()  # a transformers GPT2LMHeadModel
model = MiniGPT.from_hf(hf_model)  # the same weights in our own code
config = model.config
print(f"model: {model_name()}")
print(config)
print(f"trained with dropout {hf_model.config.resid_pdrop} (transformers' resid_pdrop); from_hf leaves it at 0.0")

# %% [markdown]
# Two dropout numbers for one model, and both are right. The checkpoint was trained with dropout
# 0.1 (lesson 05 explains it), and its `transformers` configuration says so. `from_hf` builds our
# model to run, not to train, so it sets `dropout=0.0`; dropout only acts in training mode
# anyway (lesson 03 shows what happens when you forget `model.eval()`).

# %% [markdown]
# Throughout, B is the batch size, T the sequence length, C the width (`n_embd`), H the number
# of heads and D = C / H the size of one head. The whole forward pass, in words:
#
# - each token id picks a row of the token embedding `wte`, each position a row of the position
#   embedding `wpe`, and their sum, (B, T, C), is the *residual stream*;
# - `n_layer` blocks each read the stream twice and add to it: masked multi-head self-attention
#   lets positions exchange information, then a GELU feed-forward network (the MLP) transforms
#   each position on its own, each of the two reading a LayerNorm-ed copy of the stream;
# - a final LayerNorm and the LM head turn each position's vector into V logits, (B, T, V).
#
# You will write each of these pieces in this lesson's workbook (`exercises/02_mini_gpt.ipynb`);
# here we build them, check each against the library's `MiniGPT`, and see what they do.
#
# ## 1. Embeddings: what and where
#
# A token id picks a row of the token embedding `wte` (V × C); its position picks a row of the
# position embedding `wpe` (context × C). GPT-2 learns both and adds them. Why positions at all?
# Attention weighs tokens by their content, not their place, so without positions and without a
# mask a model sees a *set* of tokens: "the dog bit the man." and "the man bit the dog." would
# look alike. The causal mask changes that, as we measure after this cell.

# %%
ids = tokenizer("Now is the winter of our discontent", return_tensors="pt").input_ids
B, T = ids.shape
token_vectors = model.wte(ids)  # (B, T, C)
position_vectors = model.wpe(torch.arange(T))  # (T, C), broadcast over the batch
x = token_vectors + position_vectors
print(f"ids {tuple(ids.shape)} -> token vectors {tuple(token_vectors.shape)} "
      f"+ position vectors {tuple(position_vectors.shape)} = x {tuple(x.shape)}")

# %% [markdown]
# Two sentences with the same tokens in another order, and the same last token, so that the last
# position asks the same question of both. We run the model three ways: as trained, with the
# position embeddings left out, and with them left out *and* the causal mask replaced by a mask
# that lets every token see every other one. A block takes the mask as an argument (True where
# attending is allowed), so no part of the model is changed.

# %%
def last_logits(ids: torch.Tensor, positions: bool, causal: bool) -> torch.Tensor:
    """Next-token logits (V,) at the last position of (1, T) ids."""
    T = ids.shape[1]
    x = model.wte(ids) + (model.wpe(torch.arange(T)) if positions else 0)
    everything = None if causal else torch.ones(1, 1, T, T, dtype=torch.bool)  # None: causal
    for each_block in model.h:
        x, _ = each_block(x, everything)
    return model.lm_head(model.ln_f(x))[0, -1]


dog_bites = tokenizer("The dog bit the man.", return_tensors="pt").input_ids
man_bites = tokenizer("The man bit the dog.", return_tensors="pt").input_ids
assert sorted(dog_bites[0].tolist()) == sorted(man_bites[0].tolist()) and dog_bites[0, -1] == man_bites[0, -1]
gaps = {}
with torch.no_grad():
    for name, positions, causal in [("as trained", True, True), ("no positions, causal mask", False, True),
                                    ("no positions, no mask", False, False)]:
        gaps[name] = (last_logits(dog_bites, positions, causal) - last_logits(man_bites, positions, causal)).abs().max()
print("largest difference between the two sentences' last-position logits:")
print(f"  as trained:                 {gaps['as trained']:.1f}")
print(f"  no positions, causal mask:  {gaps['no positions, causal mask']:.1f}")
check_below("  no positions, no mask", gaps["no positions, no mask"], 1e-4)
assert gaps["no positions, causal mask"] > 0.5

# %% [markdown]
# Without positions and without the mask the two sentences give the same logits, to float
# rounding: order is invisible. With the causal mask alone they differ, because the mask already
# encodes order: "man" comes after four tokens in one sentence and after one in the other, so
# it attends over different sets, and what a token sees becomes what it passes on. Decoders trained with no position embeddings at
# all ("NoPE") work for this reason ([Haviv et al. 2022](https://arxiv.org/abs/2203.16634), "Transformer Language Models without
# Positional Encodings Still Learn Positional Information"; [Kazemnejad et al. 2023](https://arxiv.org/abs/2305.19466)). Our model was
# trained *with* positions, so leaving them out is not something it is used to; the point is only
# that the information is there. Learned positions still help, and GPT-2 uses them.
#
# What did the model learn in `wpe`? Compare every pair of position vectors by cosine similarity,
# then average it over all pairs the same distance apart.

# %% tags=["readme-figure"]
with torch.no_grad():
    positions = F.normalize(model.wpe.weight, dim=-1)
    similarity = positions @ positions.T  # (context, context)
distances = [1, 2, 5, 10, 20, 50, 100, 200, 400]
by_distance = {d: torch.diagonal(similarity, d).mean().item() for d in distances if d < config.context_length}
print("mean cosine similarity of two position vectors, by distance:")
print("  " + "  ".join(f"{d}: {value:.2f}" for d, value in by_distance.items()))
fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.8))
image = left.imshow(similarity[:64, :64], cmap="RdBu_r", vmin=-1, vmax=1)
left.set_xlabel("position")
left.set_ylabel("position")
left.set_title("Cosine similarity, first 64 positions")
fig.colorbar(image, ax=left)
_ = right.plot(list(by_distance), list(by_distance.values()), "o-")
right.set_xscale("log")
right.set_xlabel("distance between positions")
right.set_ylabel("mean cosine similarity")
right.set_title("Similarity against distance")
plt.tight_layout()
plt.show()
assert by_distance[1] > by_distance[max(by_distance)] + 0.1  # far positions differ, in any model
if model_name() == "shakespeare-gpt":  # what this model learned; GPT-2 learned another shape
    assert abs(by_distance[1] - by_distance[20]) < 0.05

# %% [markdown]
# A common claim is that nearby positions get similar vectors. Look at the numbers before
# believing it: in `shakespeare-gpt` a neighbour is no more alike than a position twenty away.
# What the model learned is coarse: positions far apart differ, and positions within a few dozen
# of each other are about equally alike. Run the lesson with `COURSE_MODEL=gpt2` to see what a
# larger model trained on more text learned instead.
#
# ### Sinusoidal positions: the original Transformer's
#
# GPT-2 learns its position table. The original Transformer ([Vaswani et al. 2017](https://arxiv.org/abs/1706.03762), §3.5) computed
# it instead: position p gets $\sin(p / 10000^{2i/C})$ in dimension 2i and $\cos(p / 10000^{2i/C})$
# in dimension 2i + 1, sine waves from fast to slow. Nothing is learned, and there is a vector for
# every position, so a model is never short of one (whether it can *use* positions it never saw
# in training is another matter, lesson 08). And because each pair of dimensions is a rotation,
# the dot product of two position vectors depends only on their distance:

# %%
def sinusoidal_positions(n_positions: int, width: int) -> torch.Tensor:
    """(n_positions, width): sin(p / 10000^(2i/width)) in even dimensions 2i, cos in odd ones."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)  # one per pair
    table = torch.zeros(n_positions, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


sinusoidal = sinusoidal_positions(2 * config.context_length, config.n_embd)
for distance in (1, 20, 400):
    dot_products = (sinusoidal[:-distance] * sinusoidal[distance:]).sum(dim=-1)  # every pair this far apart
    spread = (dot_products.max() - dot_products.min()).item()
    print(f"distance {distance:>3}: p . (p + {distance}) = {dot_products[0]:.2f} for every p "
          f"(spread over {len(dot_products)} positions: {'below 1e-09' if spread < 1e-9 else f'{spread:.1e}'})")
    assert spread < 1e-9
sinusoidal_by_distance = {d: F.cosine_similarity(sinusoidal[:-d], sinusoidal[d:], dim=-1).mean().item() for d in distances}
print("mean cosine similarity by distance, sinusoidal: "
      + "  ".join(f"{d}: {value:.2f}" for d, value in sinusoidal_by_distance.items()))

# %% [markdown]
# The sinusoidal table's similarity falls smoothly with distance, by construction, where the
# learned one above is coarse. Both work: Vaswani et al. found learned and sinusoidal positions
# "nearly identical" in quality (their Table 3, row E), and GPT-1 and GPT-2 chose to learn them.
# (Note the table is twice our context: it has no end.)
#
# ## 2. Masked multi-head self-attention
#
# One linear layer `c_attn` produces queries, keys and values for all heads at once (3C
# outputs). They are split into H heads of size D, each head attends causally (lesson 01), and
# the heads' outputs are laid side by side and mixed by `c_proj`. Splitting into heads is a
# reshape with a trap: the C channels of each position must be cut into H slices of D, so the
# view is (B, T, H, D) and only then are T and H swapped.

# %%
def split_heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, D): head h holds channels h*D .. (h+1)*D - 1 of every position."""
    # EXERCISE split_heads: Return t (B, T, C) as (B, n_head, T, C // n_head), head h holding channels h*D to (h+1)*D - 1.
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)
    # END EXERCISE


# %% [markdown]
# With `split_heads`, the whole module: the same two linear layers as GPT-2's (so its weights load
# straight into it), and a `forward` that computes the queries, keys and values, attends in every
# head with the causal mask, and mixes the heads. We load the first block's weights into it and
# compare it with `MiniGPT`'s own attention module on the first block's input.

# %%
class CausalSelfAttentionByHand(nn.Module):
    """Masked multi-head self-attention laid out as GPT-2's: ``c_attn`` makes every head's queries,
    keys and values at once (C -> 3C), ``c_proj`` mixes the heads' outputs (C -> C)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        # EXERCISE attention_module: Return the attention output for x (B, T, C): queries, keys and values from c_attn, causal attention in each head, heads mixed by c_proj.
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))  # (B, H, T, D)
        scores = q @ k.transpose(-2, -1) / (C // self.n_head) ** 0.5  # (B, H, T, T)
        hidden_future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        weights = scores.masked_fill(hidden_future, float("-inf")).softmax(dim=-1)
        heads = weights @ v  # (B, H, T, D)
        return self.c_proj(heads.transpose(1, 2).reshape(B, T, C))  # heads side by side, then mixed
        # END EXERCISE


block = model.h[0]
attention_by_hand = CausalSelfAttentionByHand(config)
attention_by_hand.load_state_dict(block.attn.state_dict())  # same names, same shapes: c_attn, c_proj
with torch.no_grad():
    h_in = block.ln_1(x)
    by_hand = attention_by_hand(h_in)
    module_output, _ = block.attn(h_in)
check_below("by hand vs MiniGPT's attention module: largest difference", (by_hand - module_output).abs().max(), 1e-5)

# %% [markdown]
# Each head has its own attention pattern over the same tokens: different heads learn to look
# at different things (lesson 06 explores them).

# %%
H = config.n_head
weights = attention_weights(model, ids)[0]  # layer 0's weights (B, H, T, T), as lesson 06 reads them
tokens = [tokenizer.decode(i) for i in ids[0]]
fig, axes = plt.subplots(1, min(H, 4), figsize=(3.2 * min(H, 4), 3.2))
for head, ax in enumerate(axes):
    ax.imshow(weights[0, head], cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"layer 0, head {head}", xlabel="key (attended to)")
    ax.set_xticks(range(T), tokens, rotation=90)
    ax.set_yticks(range(T), tokens if head == 0 else [])
fig.supylabel("query (attending)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The feed-forward network and GELU
#
# After attention mixes information *across* positions, the MLP transforms each position on its
# own: widen to 4C, apply GELU, project back to C. $\text{GELU}(x) = x\,\Phi(x)$, where $\Phi$ is the
# standard normal CDF; GPT-2 uses a tanh approximation of it,
# $0.5\,x\,\big(1 + \tanh\big(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\big)\big)$. We write it out, check it
# against PyTorch's, and see how close it is to the exact GELU.

# %%
def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, elementwise: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


grid = torch.linspace(-4, 4, 801)
exact = F.gelu(grid)
tanh_form = gelu_tanh(grid)
check_below("gelu_tanh against F.gelu(approximate='tanh')", (tanh_form - F.gelu(grid, approximate="tanh")).abs().max(), 1e-6)
print(f"largest |GELU - tanh approximation| on [-4, 4]: {(exact - tanh_form).abs().max():.1e}")
fig, ax = plt.subplots(figsize=(5, 3.2))
_ = ax.plot(grid, exact, label="GELU (exact)")
_ = ax.plot(grid, tanh_form, "--", label="GELU (tanh, GPT-2)")
_ = ax.plot(grid, F.relu(grid), ":", label="ReLU")
ax.legend()
ax.set(title="GELU is a smooth ReLU that lets small negatives through", xlabel="input x", ylabel="activation(x)")
plt.show()

# %% [markdown]
# Why not plain ReLU? A ReLU unit whose input is negative outputs 0 *and passes no gradient*: if
# it is negative for every input it sees, training can never move it again. It is a **dead
# unit**. GELU's gradient is small for negative inputs but not zero, so such a unit can still
# recover. How many of the bundled model's MLP units are negative on a whole text, and so would be
# dead under ReLU? We feed 1,024 tokens of *Hamlet* through the model and read each block's MLP
# input before the activation:

# %%
# NBVAL_IGNORE_OUTPUT
# (The counts depend on pre-activations near 0, whose sign can differ in the last bit between
# CPUs, so this output is not compared; the assert below carries the claim.)
from course_utils.data import load_corpus  # noqa: E402

hamlet_ids = torch.tensor(tokenizer.encode(load_corpus().validation["hamlet"][:20000], verbose=False))
passages = hamlet_ids[: 2 * 512].view(2, 512)
pre_activations = []
hooks = [b.mlp.c_fc.register_forward_hook(lambda module, inputs, output: pre_activations.append(output))
         for b in model.h]
with torch.no_grad():
    model(passages)
for hook in hooks:
    hook.remove()
print(f"{'block':>5} {'units':>6} {'never positive (dead under ReLU)':>33} {'positive on < 1% of tokens':>27}")
for index, pre in enumerate(pre_activations):
    positive_share = (pre > 0).float().mean(dim=(0, 1))  # per hidden unit
    print(f"{index:>5} {pre.shape[-1]:>6} {int((positive_share == 0).sum()):>33} {int((positive_share < 0.01).sum()):>27}")
# The gradient each activation passes back at block 0's pre-activations:
pre = pre_activations[0].detach().requires_grad_()
relu_gradient = torch.autograd.grad(F.relu(pre).sum(), pre)[0]
gelu_gradient = torch.autograd.grad(F.gelu(pre, approximate="tanh").sum(), pre)[0]
negative = pre.detach() < 0
print(f"block 0, share of negative pre-activations passing a nonzero gradient: ReLU {relu_gradient[negative].ne(0).float().mean():.0%}, "
      f"GELU {gelu_gradient[negative].ne(0).float().mean():.0%}")
assert relu_gradient[negative].eq(0).all() and gelu_gradient[negative].ne(0).all()

# %% [markdown]
# In block 0, every negative input stops ReLU's gradient and none stops GELU's (GELU's gradient
# does round to zero far out, below about -5 in float32: a small help, not a guarantee).
# The counts above say how many
# units of this GELU model would be dead, or nearly so, on this text if the activation were
# swapped for ReLU after training; a model trained with ReLU from the start would have its own
# count. Large learning rates are what usually kill ReLU units, by pushing their biases far
# negative in one step.

# %%
mlp = block.mlp
with torch.no_grad():
    hidden = mlp.gelu(mlp.c_fc(h_in))
    by_hand = mlp.c_proj(hidden)
print(f"MLP: {tuple(h_in.shape)} -> {tuple(hidden.shape)} -> {tuple(by_hand.shape)}")
assert torch.allclose(by_hand, mlp(h_in), atol=1e-6)

# %% [markdown]
# ## 4. Pre-norm versus post-norm
#
# The original Transformer (2017) normalised *after* each residual addition (post-norm): each
# sub-layer read the stream, its result was added to it, and the sum went through a LayerNorm.
# GPT-2 normalises *before* (pre-norm): each sub-layer reads a LayerNorm-ed copy of the stream
# and its result is added to the stream itself, which no LayerNorm touches.
#
# Pre-norm leaves an untouched "residual highway" from the embeddings to the output: each block
# only *adds* to it, and the gradient flows back along it without passing through any
# LayerNorm. That makes deep pre-norm stacks train without the careful learning-rate warm-up
# post-norm needs ([Xiong et al., 2020](https://arxiv.org/abs/2002.04745), "On Layer Normalization in the Transformer
# Architecture"). The price: nothing normalises the highway itself, so its scale drifts as
# blocks add to it — which is why GPT-2 adds one last LayerNorm, `ln_f`, before the head. We
# measure that drift on the trained model: the root-mean-square size of the residual stream
# after the embeddings and after each block, averaged over positions of a real passage.

# %%
passage = tokenizer("HAMLET.\nTo be, or not to be, that is the question:\n"
                    "Whether 'tis nobler in the mind to suffer", return_tensors="pt").input_ids
with torch.no_grad():
    stream = model.wte(passage) + model.wpe(torch.arange(passage.shape[1]))
    rms = [stream.pow(2).mean().sqrt().item()]
    for each_block in model.h:
        stream, _ = each_block(stream)
        rms.append(stream.pow(2).mean().sqrt().item())
    after_ln_f = model.ln_f(stream).pow(2).mean().sqrt().item()
for layer, value in enumerate(rms):
    print(f"{'embeddings' if layer == 0 else f'after block {layer}':>16}: RMS {value:7.3f}")
print(f"{'after ln_f':>16}: RMS {after_ln_f:7.3f}")
fig, ax = plt.subplots(figsize=(5, 3.2))
_ = ax.plot(range(len(rms)), rms, "o-")
ax.set_xlabel("blocks applied")
ax.set_ylabel("RMS of the residual stream")
ax.set_title("Pre-norm: the highway grows; ln_f rescales it")
plt.show()
assert rms[-1] > rms[0]

# %% [markdown]
# Now the block itself, around your attention module and the library's MLP (section 3). Its
# `forward` is the pre-norm rule above: attention first, then the MLP, each reading a normalised
# copy of the stream and adding to it. Loaded with the first block's weights, it must give
# `MiniGPT`'s first block's output.

# %%
class BlockByHand(nn.Module):
    """A pre-norm transformer block: the attention and the MLP, each with its LayerNorm."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttentionByHand(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream x (B, T, C) -> (B, T, C)."""
        # EXERCISE block_forward: Return the block's output for the residual stream x (B, T, C): attention then MLP, pre-norm, each added to the stream.
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
        # END EXERCISE


block_by_hand = BlockByHand(config)
block_by_hand.load_state_dict(block.state_dict())
with torch.no_grad():
    difference = (block_by_hand(x) - block(x)[0]).abs().max()
check_below("BlockByHand vs MiniGPT's first block: largest difference", difference, 1e-5)

# %% [markdown]
# ## 5. The LM head and weight tying
#
# The LM head turns each final vector into V logits, one score per vocabulary token. It is a
# C → V linear map, the same shape as the token embedding read backwards, and GPT-2 uses the
# *same* matrix for both: a token's input vector is also the direction that scores it as output.
# Tying saves parameters (counted in section 6), and [Press & Wolf](https://arxiv.org/abs/1608.05859) (2017, "Using the Output
# Embedding to Improve Language Models") found it also regularises: their tied models reached
# lower perplexity than untied ones of the same size. That second effect is not measured in this
# course; our models are all tied.

# %%
print("lm_head.weight is wte.weight:", model.lm_head.weight is model.wte.weight)
assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
with torch.no_grad():
    logits = model(ids)
print(f"logits {tuple(logits.shape)}: a score for each of {config.vocab_size} tokens at each position")

# %% [markdown]
# That is every piece. The whole model by hand: the two embeddings, a list of your blocks, the
# final LayerNorm and the tied head, with the same names as `MiniGPT`'s so that its trained
# weights load into it. Its `forward` is the forward pass described at the top of the lesson.

# %%
class MiniGPTByHand(nn.Module):
    """GPT-2 from the pieces of this lesson: ids (B, T) -> logits (B, T, V)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.context_length, config.n_embd)
        self.h = nn.ModuleList(BlockByHand(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, V)."""
        # EXERCISE gpt_forward: Return the logits (B, T, V) for ids (B, T): both embeddings, every block in order, the final LayerNorm, the head.
        positions = torch.arange(ids.shape[1], device=ids.device)  # 0, 1, ..., T - 1
        x = self.wte(ids) + self.wpe(positions)
        for each_block in self.h:
            x = each_block(x)
        return self.lm_head(self.ln_f(x))
        # END EXERCISE


gpt_by_hand = MiniGPTByHand(config)
gpt_by_hand.load_state_dict(model.state_dict())
with torch.no_grad():
    difference = (gpt_by_hand(ids) - model(ids)).abs().max()
check_below("MiniGPTByHand vs MiniGPT, logits: largest difference", difference, 1e-4)

# %% [markdown]
# ## 6. Counting parameters
#
# Per block: attention has $C \times 3C$ weights $+ 3C$ biases for q, k, v and $C^2 + C$ for the
# output projection; the MLP has $C \times 4C + 4C$ and $4C \times C + C$; two LayerNorms have
# $2C$ each. That is $12C^2 + 13C$ per block. Add the embeddings ($VC + T_{max}C$) and the final
# LayerNorm ($2C$); with tying the head adds nothing.

# %%
def parameter_count(V: int, T_max: int, C: int, L: int, tied: bool = True) -> int:
    """GPT-2's parameter count from its shape."""
    per_block = 12 * C * C + 13 * C
    head = 0 if tied else V * C
    return V * C + T_max * C + L * per_block + 2 * C + head


formula = parameter_count(config.vocab_size, config.context_length, config.n_embd, config.n_layer)
print(f"formula: {formula:,}   counted: {model.num_parameters():,}")
assert formula == model.num_parameters()

# %% [markdown]
# The same formula for GPT-2 124M, taking the shape from its configuration (`GPT2Config()`'s
# defaults are GPT-2 small) and counting a real instance built on PyTorch's `meta` device, which
# allocates no memory:

# %%
gpt2 = GPT2Config()
with torch.device("meta"):
    gpt2_small = GPT2LMHeadModel(gpt2)
counted = sum(p.numel() for p in gpt2_small.parameters())
tied = parameter_count(gpt2.vocab_size, gpt2.n_positions, gpt2.n_embd, gpt2.n_layer)
untied = parameter_count(gpt2.vocab_size, gpt2.n_positions, gpt2.n_embd, gpt2.n_layer, tied=False)
print(f"GPT-2 small: V={gpt2.vocab_size}, context={gpt2.n_positions}, C={gpt2.n_embd}, L={gpt2.n_layer}")
print(f"counted {counted:,}; formula with tying {tied:,}; without tying {untied:,}")
print(f"weight tying saves {untied - tied:,} parameters ({(untied - tied) / untied:.1%} of the untied model)")
assert counted == tied

# %% [markdown]
# ### The lineage: GPT-1, GPT-2, GPT-3
#
# The same architecture, scaled. Published figures, typed in from the papers:
#
# | model | paper | layers | width C | context | vocabulary | training data | parameters (published) |
# |---|---|---|---|---|---|---|---|
# | GPT-1 | [Radford et al. 2018](https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf), "Improving Language Understanding by Generative Pre-Training", §4.1 | 12 | 768 | 512 | 40,000 BPE merges | BooksCorpus, over 7,000 books | 117M (GPT-2 paper, Table 2) |
# | GPT-2 | [Radford et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf), "Language Models are Unsupervised Multitask Learners", §2.3 and Table 2 | 48 | 1,600 | 1,024 | 50,257 | WebText, 40 GB from 8M web pages | 1,542M |
# | GPT-3 | [Brown et al. 2020](https://arxiv.org/abs/2005.14165), "Language Models are Few-Shot Learners", Table 2.1 and §2.2 | 96 | 12,288 | 2,048 | GPT-2's | 300B tokens of filtered Common Crawl, WebText2, books, Wikipedia | 175.0B |
#
# GPT-1 was post-norm, with no final LayerNorm; GPT-3 alternates dense and locally banded sparse
# attention layers, which changes no weight. Our formula should account for all three. We check it
# twice: against the published count, and against a real model of that shape built on the `meta`
# device (`transformers`' `OpenAIGPTConfig()` defaults are GPT-1, whose vocabulary is the 40,000
# merges plus 478 base symbols).

# %%
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel  # noqa: E402

lineage = {  # name: (transformers model class, config, published parameter count)
    "GPT-1": (OpenAIGPTLMHeadModel, OpenAIGPTConfig(), 117e6),
    "GPT-2 XL": (GPT2LMHeadModel, GPT2Config(n_embd=1600, n_layer=48, n_head=25), 1542e6),
    "GPT-3": (GPT2LMHeadModel, GPT2Config(n_embd=12288, n_layer=96, n_head=96, n_positions=2048), 175.0e9),
}
print(f"{'model':>8} | {'published':>10} | {'formula':>16} | {'off by':>6} | counted on meta")
for name, (model_class, shape, published) in lineage.items():
    formula = parameter_count(shape.vocab_size, shape.n_positions, shape.n_embd, shape.n_layer)
    with torch.device("meta"):
        counted = sum(p.numel() for p in model_class(shape).parameters())
    no_final_norm = 2 * shape.n_embd if model_class is OpenAIGPTLMHeadModel else 0  # post-norm GPT-1
    print(f"{name:>8} | {published / 1e6:>9,.0f}M | {formula:>16,} | {formula / published - 1:>+6.1%} | "
          f"{counted:,}" + (" (+ 2C for the final LayerNorm it lacks)" if no_final_norm else ""))
    assert counted + no_final_norm == formula
    assert abs(formula / published - 1) < 0.03

# %% [markdown]
# The formula lands within about 1% of every published count, and exactly on each real model.
# One published number in that line of papers is off by more: the GPT-2 paper lists its smallest
# model as 117M, GPT-1's count, but the model we counted above has 124M, which is why it is
# usually called "GPT-2 124M". Counting beats copying.

# %% [markdown]
# ## 7. Loading pretrained weights, and proving them equal
#
# `MiniGPT.from_hf` copies every tensor of a `transformers` GPT-2 into our model (GPT-2 stores
# its linear layers transposed, as `Conv1D`). Copying is easy to get subtly wrong — a missed
# transpose, a swapped q and k — so we do not trust it: we compare the logits of the two models
# on the same text, then the text each generates greedily.

# %%
prompt = "KING RICHARD III.\nNow is the winter of our discontent\n"
ids = tokenizer(prompt, return_tensors="pt").input_ids
with torch.no_grad():
    theirs = hf_model(ids).logits
    ours = model(ids)
check_below(f"logits {tuple(ours.shape)}: largest difference", (theirs - ours).abs().max(), 1e-4)

# %%
ours_ids = generate(model, ids, max_new_tokens=40)
theirs_ids = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                               do_sample=False, pad_token_id=tokenizer.eos_token_id)
assert torch.equal(ours_ids, theirs_ids)
print("identical greedy continuations:\n")
print(tokenizer.decode(ours_ids[0]))

# %% [markdown]
# Same weights, same logits to within float rounding, same text: our model *is* GPT-2. How long
# is it? The parts that make it up, docstrings included: the configuration, the mask, the
# attention function, the three modules, the base class it shares with lesson 08's `MiniLlama`,
# and `MiniGPT` itself (lesson 04's KV caches live in their own file, `kv_cache.py`):

# %%
import inspect  # noqa: E402

from course_utils.model import Block, CausalSelfAttention, CourseModel, attend, causal_mask  # noqa: E402

parts = (GPTConfig, causal_mask, attend, CausalSelfAttention, MLP, Block, CourseModel, MiniGPT)
model_lines = {part.__name__: len(inspect.getsource(part).splitlines()) for part in parts}
total_lines = sum(model_lines.values())
# The exact count changes with every edit to model.py; the claim in the text is what is checked.
assert total_lines < 350 and max(model_lines, key=model_lines.get) == "MiniGPT", model_lines
print(f"{', '.join(model_lines)}: fewer than 350 lines in all, the most of them in MiniGPT")

# %% [markdown]
# Under three hundred and fifty lines, the most of them in `MiniGPT` with its `from_hf` and
# `to_hf`; `attend` also carries the sliding windows and ALiBi biases of lesson 08. The forward
# pass of section 1 is the part to read first. With `COURSE_MODEL=gpt2` these cells load
# OpenAI's 124M-parameter weights and pass the same checks.
#
# ## Check your understanding
#
# 1. Using the formula, how many parameters does a model with V=4096, context 512, C=384 and
#    6 layers have? What fraction of them is in the embeddings?
# 2. Why does weight tying save a larger *fraction* of parameters in a small model than in
#    GPT-2 XL?
# 3. `from_hf` transposes four weight matrices per block. Which cell of this lesson would catch a
#    forgotten transpose? Why would a shape error not catch it for `attn.c_proj` (hint: C × C)?
# 4. Position embeddings are learned here. What happens if you feed a sequence longer than
#    `context_length`? Try it with `model(torch.zeros(1, config.context_length + 1, dtype=torch.long))`.
