# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from course_utils import MiniGPT, generate, load_model
from course_utils.hub import model_name
from course_utils.lesson import check_below, setup

generator = setup(seed=0)
hf_model, tokenizer = load_model()  # a transformers GPT2LMHeadModel
model = MiniGPT.from_hf(hf_model)  # the same weights in our own code
config = model.config
print(f"model: {model_name()}")
print(config)

# %% [markdown]
# Throughout, B is the batch size, T the sequence length, C the width (`n_embd`), H the number
# of heads and D = C / H the size of one head. The whole forward pass is:
#
# ```
# x = wte(tokens) + wpe(positions)             # (B, T, C)
# for block in h:                              # n_layer times
#     x = x + attn(ln_1(x))                    # masked multi-head self-attention
#     x = x + mlp(ln_2(x))                     # GELU feed-forward
# logits = lm_head(ln_f(x))                    # (B, T, V)
# ```
#
# ## 1. Embeddings: what and where
#
# A token id picks a row of the token embedding `wte` (V × C); its position picks a row of the
# position embedding `wpe` (context × C). GPT-2 learns both and adds them. Without positions,
# attention would see a *set* of tokens: "dog bites man" and "man bites dog" would look alike.

# %%
ids = tokenizer("Now is the winter of our discontent", return_tensors="pt").input_ids
B, T = ids.shape
token_vectors = model.wte(ids)  # (B, T, C)
position_vectors = model.wpe(torch.arange(T))  # (T, C), broadcast over the batch
x = token_vectors + position_vectors
print(f"ids {tuple(ids.shape)} -> token vectors {tuple(token_vectors.shape)} "
      f"+ position vectors {tuple(position_vectors.shape)} = x {tuple(x.shape)}")

# %%
with torch.no_grad():
    positions = F.normalize(model.wpe.weight[:64], dim=-1)
    similarity = positions @ positions.T
fig, ax = plt.subplots(figsize=(4.5, 4))
image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xlabel("position")
ax.set_ylabel("position")
ax.set_title("Cosine similarity of learned position embeddings")
fig.colorbar(image, ax=ax)
plt.show()

# %% [markdown]
# Nearby positions have similar learned vectors: the model discovered a notion of distance on
# its own.
#
# ## 2. Masked multi-head self-attention
#
# One linear layer `c_attn` produces queries, keys and values for all heads at once (3C
# outputs). They are split into H heads of size D, each head attends causally (lesson 01), and
# the heads' outputs are laid side by side and mixed by `c_proj`. Here is that computation
# written out for the first block, checked against the module's own output.

# %%
block = model.h[0]
H, D, C = config.n_head, config.head_size, config.n_embd
with torch.no_grad():
    h_in = block.ln_1(x)
    q, k, v = block.attn.c_attn(h_in).split(C, dim=2)  # each (B, T, C)
    q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    scores = q @ k.transpose(-2, -1) / D**0.5  # (B, H, T, T)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    heads = weights @ v  # (B, H, T, D)
    by_hand = block.attn.c_proj(heads.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
    module_output, _ = block.attn(h_in)
print(f"q, k, v per head: {tuple(q.shape)}; attention weights: {tuple(weights.shape)}")
check_below("by hand vs MiniGPT's attention module: largest difference", (by_hand - module_output).abs().max(), 1e-6)

# %% [markdown]
# Each head has its own attention pattern over the same tokens: different heads learn to look
# at different things (lesson 06 explores them).

# %%
tokens = [tokenizer.decode(i) for i in ids[0]]
fig, axes = plt.subplots(1, min(H, 4), figsize=(3.2 * min(H, 4), 3.2))
for head, ax in enumerate(axes):
    ax.imshow(weights[0, head], cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"layer 0, head {head}")
    ax.set_xticks(range(T), tokens, rotation=90)
    ax.set_yticks(range(T), tokens if head == 0 else [])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The feed-forward network and GELU
#
# After attention mixes information *across* positions, the MLP transforms each position on its
# own: widen to 4C, apply GELU, project back to C. GELU(x) = x·Φ(x), where Φ is the standard
# normal CDF; GPT-2 uses a tanh approximation of it. How close is the approximation?

# %%
grid = torch.linspace(-4, 4, 801)
exact = F.gelu(grid)
tanh_form = F.gelu(grid, approximate="tanh")
print(f"largest |GELU - tanh approximation| on [-4, 4]: {(exact - tanh_form).abs().max():.1e}")
fig, ax = plt.subplots(figsize=(5, 3.2))
_ = ax.plot(grid, exact, label="GELU (exact)")
_ = ax.plot(grid, tanh_form, "--", label="GELU (tanh, GPT-2)")
_ = ax.plot(grid, F.relu(grid), ":", label="ReLU")
ax.legend()
ax.set_title("GELU is a smooth ReLU that lets small negatives through")
plt.show()

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
# The original Transformer normalised *after* each residual addition (post-norm):
#
# ```
# x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))        # post-norm (2017)
# x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))        # pre-norm (GPT-2)
# ```
#
# Pre-norm leaves an untouched "residual highway" from the embeddings to the output: each block
# only *adds* to it, and the gradient flows back along it without passing through any
# LayerNorm. That makes deep pre-norm stacks train without the careful learning-rate warm-up
# post-norm needs (Xiong et al., 2020, "On Layer Normalization in the Transformer
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
# ## 5. The LM head and weight tying
#
# The LM head turns each final vector into V logits, one score per vocabulary token. It is a
# C → V linear map, the same shape as the token embedding read backwards, and GPT-2 uses the
# *same* matrix for both: a token's input vector is also the direction that scores it as output.

# %%
print("lm_head.weight is wte.weight:", model.lm_head.weight is model.wte.weight)
assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
with torch.no_grad():
    logits = model(ids)
print(f"logits {tuple(logits.shape)}: a score for each of {config.vocab_size} tokens at each position")

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
# Same weights, same logits to within float rounding, same text: our forty-line model *is*
# GPT-2. With `COURSE_MODEL=gpt2` these cells load OpenAI's 124M-parameter weights and pass the
# same checks.
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
