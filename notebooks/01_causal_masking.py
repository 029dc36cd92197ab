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
# # Lesson 01 — Causal masking
#
# A decoder-only language model such as GPT-2 writes text one token at a time. Each token is
# predicted from the tokens **before** it, never from those after it. This lesson shows the one
# mechanism that enforces that rule — the causal mask — and checks every claim on a real model:
#
# 1. the autoregressive factorisation of a text's probability;
# 2. the mask, built with `torch.triu`, and what it does to attention scores;
# 3. proof that with the mask an output never depends on later tokens, and without it does;
# 4. why training runs all positions in parallel while generation must run step by step.
#
# Everything runs offline on the course's bundled model (`shakespeare-gpt`, or whatever
# `COURSE_MODEL` names).

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from course_utils import MiniGPT, load_model
from course_utils.lesson import check_below, setup
from course_utils.model import causal_mask

generator = setup(seed=0)
hf_model, tokenizer = load_model()
model = MiniGPT.from_hf(hf_model)  # our from-scratch GPT, holding the same weights
print(f"{model.num_parameters():,} parameters, context of {model.config.context_length} tokens")

# %% [markdown]
# ## 1. One text, many next-token predictions
#
# A language model assigns a probability to a whole text $x_1 \dots x_T$ by the chain rule of
# probability, with no approximation at all:
#
# $$p(x_1, \dots, x_T) = \prod_{t=1}^{T} p(x_t \mid x_1, \dots, x_{t-1}).$$
#
# So the model only ever needs to answer one question: *given the tokens so far, what comes
# next?* One forward pass over $T$ tokens returns $T$ answers — the logits at position $t$ are
# the model's guess for token $t+1$. Let us read them for a famous line.

# %%
text = "To be, or not to be, that is the question"
ids = tokenizer(text, return_tensors="pt").input_ids
tokens = [tokenizer.decode(i) for i in ids[0]]
print(len(tokens), "tokens:", tokens)



def token_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t = 1 .. T-1, from one text's logits (T, V) and ids (T,): (T - 1,)."""
    # EXERCISE token_log_probs: Return the log-probability the logits give to each of ids[1:], shape (T - 1,).
    log_probs = F.log_softmax(logits[:-1], dim=-1)  # predictions for tokens 2..T
    return log_probs.gather(1, ids[1:, None]).squeeze(1)
    # END EXERCISE


with torch.no_grad():
    logits = model(ids)  # (batch=1, T, vocab)
per_token = token_log_probs(logits[0], ids[0])
for token, lp in zip(tokens[1:], per_token):
    print(f"p({token!r:>12} | previous tokens) = {lp.exp():.3f}")
print(f"log p(text | first token) = sum of the terms = {per_token.sum():.2f} nats")

# %% [markdown]
# That sum is only the probability of the text *if* the prediction at position $t$ really used
# nothing after position $t$. Otherwise the model could peek at the answer. The causal mask is
# what makes this true.
#
# ## 2. The mask, built with `triu`
#
# In self-attention every position (a *query*) scores every position (a *key*). Query $i$ may
# look at key $j$ only if $j \le i$. The forbidden entries are the strict upper triangle of the
# $T \times T$ score matrix, which `torch.triu(..., diagonal=1)` selects.
#
# A warning about conventions before we build it. This course's mask is True where a query *may
# attend*, the meaning PyTorch's `scaled_dot_product_attention` gives a boolean `attn_mask`
# (checked in the next section). Other code means the opposite: `torch.nn.MultiheadAttention`'s
# boolean masks, and many from-scratch implementations, mark with True the entries to *hide*.
# Before passing a mask to a library, check which one it expects; a flipped mask hides the past
# and shows the future.

# %%
def causal_mask_by_hand(T: int) -> torch.Tensor:
    """(T, T) bool: True where query i may attend to key j, that is where j <= i."""
    # EXERCISE causal_mask: Return the (T, T) bool mask that is True where key j <= query i.
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return ~future
    # END EXERCISE


T = 6
allowed = causal_mask_by_hand(T)
future = ~allowed
print("future (True = must be hidden):")
print(future.int())
assert torch.equal(allowed, causal_mask(T))  # the same mask course_utils uses
print("rows: queries (positions), columns: keys; 1 = may attend")
print(allowed.int())

# %% tags=["readme-figure"]
fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(allowed.int(), cmap="Greens")
ax.set_xticks(range(T), tokens[:T], rotation=45)
ax.set_yticks(range(T), tokens[:T])
ax.set_xlabel("key (attended to)")
ax.set_ylabel("query (attending)")
ax.set_title("Causal mask: green may attend")
plt.show()

# %% [markdown]
# ### Scores before and after masking
#
# Masking happens *before* the softmax: forbidden scores become $-\infty$, so
# $e^{-\infty} = 0$ and they get exactly zero weight, while each row still sums to 1. Here are
# the real attention scores of the model's first layer, first head, for the first six tokens.
#
# The function reaches inside the model, whose parts lesson 02 builds one by one. For now:
# `model.wte` and `model.wpe` are the tables of token and position vectors, `model.h` is the list
# of the model's blocks, and in a block `ln_1` normalises its input and `attn.c_attn` is the one
# matrix that computes every head's queries, keys and values at once.

# %%
def attention_scores(model: MiniGPT, ids: torch.Tensor, layer: int = 0, head: int = 0) -> torch.Tensor:
    """Raw scores q·k/sqrt(d) (T, T) of one head, before any masking."""
    block = model.h[layer]
    with torch.no_grad():
        x = model.wte(ids) + model.wpe(torch.arange(ids.shape[1]))
        for earlier in model.h[:layer]:
            x, _ = earlier(x)
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(model.config.n_embd, dim=2)
    d = model.config.head_size
    q = q[0, :, head * d : (head + 1) * d]
    k = k[0, :, head * d : (head + 1) * d]
    return q @ k.T / math.sqrt(d)


scores = attention_scores(model, ids[:, :T])
masked = scores.masked_fill(future, float("-inf"))
weights = torch.softmax(masked, dim=-1)
print("scores:\n", scores.round(decimals=2))
print("after masking:\n", masked.round(decimals=2))
print("weights (softmax of each row):\n", weights.round(decimals=3))
assert torch.all(weights[future] == 0)
assert torch.allclose(weights.sum(-1), torch.ones(T))

# %% [markdown]
# ### Why softmax subtracts the maximum
#
# Softmax is $e^{s_j} / \sum_k e^{s_k}$, and $e^s$ overflows quickly: float16's largest number is
# 65,504, and $e^{12}$ is already about 163,000. Scores that large are common in big models, so
# every softmax implementation first subtracts the row's maximum, which changes nothing
# mathematically ($e^{s - m} / \sum e^{s_k - m}$ is the same fraction) but keeps every exponent at
# or below $e^0 = 1$. In float16, the formula as written and the shifted one:

# %%
def naive_softmax(scores: torch.Tensor) -> torch.Tensor:
    exponentials = scores.exp()
    return exponentials / exponentials.sum(dim=-1, keepdim=True)


def shifted_softmax(scores: torch.Tensor) -> torch.Tensor:
    return naive_softmax(scores - scores.amax(dim=-1, keepdim=True))


large_scores = torch.tensor([[12.0, 10.0, 8.0, -float("inf")]])  # one row, the last key masked
reference = torch.softmax(large_scores, dim=-1)  # float32
def row(weights: torch.Tensor) -> str:
    return "[" + ", ".join(f"{w:.3f}" for w in weights[0].float().tolist()) + "]"


for name, softmax_fn in (("as written", naive_softmax), ("max subtracted", shifted_softmax)):
    print(f"float16, {name:>14}: {row(softmax_fn(large_scores.half()))}")
print(f"float32, torch.softmax: {row(reference)}")
assert naive_softmax(large_scores.half()).isnan().any()  # inf / inf
assert torch.allclose(shifted_softmax(large_scores.half()).float(), reference, atol=1e-3)
assert torch.allclose(torch.softmax(large_scores.half(), dim=-1).float(), reference, atol=1e-3)

# %% [markdown]
# The formula as written turns $e^{12}$ into infinity and the row into `nan`; shifted, the same
# scores give the right weights, and the masked key still gets exactly 0. `torch.softmax`
# subtracts the maximum for you, in every precision.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
panels = [(scores, "scores q·k/√d"), (masked.clamp(min=scores.min()), "masked (−∞ shown as min)"),
          (weights, "softmax weights")]
for ax, (matrix, title) in zip(axes, panels):
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(T), tokens[:T], rotation=45)
    ax.set_yticks(range(T), tokens[:T])
    ax.set(title=title, xlabel="key (attended to)", ylabel="query (attending)")
    fig.colorbar(image, ax=ax, shrink=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The same thing in PyTorch's fused kernel
#
# Our step-by-step attention must equal what `MiniGPT` runs: PyTorch's
# `scaled_dot_product_attention(..., is_causal=True)`. We check it on random tensors.

# %%
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Scaled dot-product attention, step by step. q, k, v: (..., T, d) -> (..., T, d)."""
    # EXERCISE attention: Return softmax(q k^T / sqrt(d)) v, with the future hidden first when causal.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
    # END EXERCISE


q, k, v = torch.randn(3, 2, 4, 10, 16, generator=generator)
fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
check_below("largest difference from the fused kernel", (attention(q, k, v) - fused).abs().max().item(), 1e-6)
# A boolean attn_mask means "may attend" there too: our mask gives the same result as is_causal.
with_our_mask = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(q.shape[-2]))
check_below("the fused kernel with our mask as attn_mask", (with_our_mask - fused).abs().max().item(), 1e-6)

# %% [markdown]
# ## 3. Proof: the future cannot leak
#
# If the mask works, changing tokens at positions after $t$ cannot change the model's output at
# position $t$. We take our line, replace its last three tokens by others, and compare the
# logits at every position.

# %%
changed = ids.clone()
changed[0, -3:] = torch.randint(0, model.config.vocab_size, (3,), generator=generator)
print("original:", repr(tokenizer.decode(ids[0])))
print("changed: ", repr(tokenizer.decode(changed[0])))
with torch.no_grad():
    difference_per_position = (model(ids) - model(changed)).abs().amax(dim=-1)[0]
first_changed = ids.shape[1] - 3
for position, diff in enumerate(difference_per_position):
    change = "none (below 1e-5)" if diff < 1e-5 else f"{diff:.1f}"
    print(f"position {position:2d} {tokens[position]!r:>12}: largest logit change {change}")
assert difference_per_position[:first_changed].max() < 1e-5  # the past is untouched
assert difference_per_position[first_changed:].min() > 1e-2  # the changed positions do change

# %% [markdown]
# Now the same experiment **without** the mask, on the model's first attention layer: we run our
# `attention` function with `causal=False` on the layer's own queries, keys and values. Earlier
# positions now change too — they have seen the future.

# %%
def first_layer_attention(ids: torch.Tensor, causal: bool) -> torch.Tensor:
    """Output (T, C) of layer 0's attention heads, with or without the causal mask."""
    block, C, H = model.h[0], model.config.n_embd, model.config.n_head
    with torch.no_grad():
        x = block.ln_1(model.wte(ids) + model.wpe(torch.arange(ids.shape[1])))
        q, k, v = (t.view(1, -1, H, C // H).transpose(1, 2) for t in block.attn.c_attn(x).split(C, dim=2))
        return attention(q, k, v, causal=causal).transpose(1, 2).reshape(-1, C)


for causal in (True, False):
    change = (first_layer_attention(ids, causal) - first_layer_attention(changed, causal)).abs().amax(-1)
    if causal:
        check_below(f"causal={causal}: largest change at positions before the edit", change[:first_changed].max(), 1e-5)
    else:
        print(f"causal={causal}: smallest change at positions before the edit = {change[:first_changed].min():.1e}")
        assert change[:first_changed].min() > 1e-4  # every earlier position saw the edit

# %% [markdown]
# ## 4. Training is parallel, generation is sequential
#
# Because of the mask, one forward pass over a text computes the next-token predictions for all
# of its positions at once, each exactly as if the model had seen only its prefix. That is why
# training is cheap: one pass gives $T$ training examples. We check it: the predictions from one
# pass equal those from $T$ separate passes over the prefixes.

# %%
with torch.no_grad():
    one_pass = model(ids)[0]  # (T, vocab), one forward pass
    prefix_passes = torch.stack([model(ids[:, : t + 1])[0, -1] for t in range(ids.shape[1])])
check_below(f"{ids.shape[1]} prefix passes vs one pass: largest difference", (one_pass - prefix_passes).abs().max(), 1e-4)

# %% [markdown]
# Generation cannot do this. To predict token $t+2$ the model needs token $t+1$, which does not
# exist until it has been chosen from the prediction at $t$. So generating $N$ tokens takes $N$
# forward passes, one after another. Lesson 04 (the KV cache) makes each of those passes cheap;
# it cannot remove the loop. Here are ten greedy steps written out by hand:

# %%
sequence = tokenizer("ROMEO.\n", return_tensors="pt").input_ids
with torch.no_grad():
    for _ in range(10):
        next_id = model(sequence)[0, -1].argmax()  # forward pass, then pick
        sequence = torch.cat([sequence, next_id.view(1, 1)], dim=1)  # append, repeat
print(repr(tokenizer.decode(sequence[0])))

# %% [markdown]
# ## Check your understanding
#
# 1. Why must the mask be applied *before* the softmax rather than by zeroing weights after it?
#    What would the rows then sum to?
# 2. The first position can attend only to itself. What does its attention output equal?
# 3. BERT-style encoders use no causal mask. Why can such a model not be used as-is to generate
#    text left to right?
# 4. In section 4, one pass of $T$ tokens gave $T$ predictions. How many forward passes does
#    generating 100 tokens from a 10-token prompt take, without and with a KV cache?
