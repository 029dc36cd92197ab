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
# # Lesson 04 — The KV cache, and generation as fast as the hardware allows
#
# Lesson 03's hand-written loops ran the model on the *whole* sequence so far at every step, to
# use only the logits of its last position. That is wasteful: the keys and values of the earlier
# tokens are the same at every step, because a causal model never lets a token look at what
# comes after it. The **KV cache** keeps them. `generate()` has used one all along (by default,
# `use_cache=True` with the preallocated cache of section 3); this lesson opens it up. We:
#
# 1. count the work each step does with and without a cache;
# 2. build a cached attention step by hand, including the mask for several new tokens;
# 3. compare two ways to store the cache: growing and preallocated;
# 4. check that the cache changes nothing: same tokens, same logits;
# 5. compute what it costs in memory, for our model and for GPT-2 Large, plan a batch to fit a
#    memory budget, and shrink the cache to int8;
# 6. measure the speed-up against generated length, against `transformers`, and across batch
#    sizes, and see where the time goes;
# 7. measure this machine's memory bandwidth and how close our loop gets to its limit;
# 8. build FlashAttention's online softmax, which attends over a whole prompt without ever
#    writing its T × T matrix of scores;
# 9. see what happens at the end of the context window.

# %% [markdown]
# **Exercise workbook.** This is lesson 04 with 4 pieces of code left for you to write: `cached_attention_step`, `shifted_causal_mask`, `cached_generation`, `online_softmax`. Each blank raises `NotImplementedError` with its task: write the body, run its cell, then the check cell below it. A wrong answer shows the smallest input it fails on, what was expected, what came back and what differs. Stuck? `checks.hint("name")` prints a hint, a nudge first; call it again for the next, closer one. Run the workbook top to bottom: it stops at the first blank. The solved lesson is `notebooks/04_kv_cache.ipynb`.
#
# To start one exercise again, copy its blank from `git show HEAD:exercises/04_kv_cache.py`; to reset the whole workbook, run `git checkout exercises/04_kv_cache.ipynb exercises/04_kv_cache.py`.

# %%
import copy
import inspect
import math
import statistics
import time
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from course_utils import MiniGPT, generate, load_model
from course_utils.compat import cache_argument, output_cache
from course_utils.decode import decode_step
from course_utils.kv_cache import GrowingKVCache, PreallocatedKVCache, kv_cache_bytes
from course_utils.lesson import check_below, seeded_generator, setup
from course_utils.measure import (
    bytes_written,
    compiled_step,
    count_flops,
    decode_floor,
    interleaved_step_seconds,
    memory_bandwidth,
    print_breakdowns,
    step_paths_breakdown,
    transformers_generate_exactly,
)
from course_utils.model import GPTConfig, attend, causal_mask
from course_utils.speculative import SPECULATIVE_PROMPTS
from course_utils.timing import interleaved_rates, median_seconds, paired_ratio

generator = setup(seed=0)
torch.set_grad_enabled(False)  # this lesson only runs models: no gradients anywhere
hf_model, tokenizer = load_model()
model = MiniGPT.from_hf(hf_model)
config = model.config
H, D, C = config.n_head, config.head_size, config.n_embd
print(config)


def encode(text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt").input_ids


# %%
from course_utils import checks

# %% [markdown]
# ## 1. The redundancy, counted
#
# Without a cache, the step that predicts token T+1 runs all T tokens through every layer: T
# rows of every projection and MLP, and T × T attention scores per head. With a cache it runs
# one token: one row of each matrix product, and one query against T keys.
#
# We do not estimate this; we count it. `count_flops` runs a call under torch's
# `FlopCounterMode`, which records the floating-point operations of every matrix product
# (2 per multiply-add), split into the weight matrix products ("linear") and attention itself.
# The cached step uses two things sections 2 and 3 build: a `PreallocatedKVCache`, which stores
# every layer's keys and values, and `model(ids, cache=cache)`, which runs `ids` as the tokens
# after those already in the cache and adds their keys and values to it.

# %%
# 512 tokens of text to work with: the model's own Shakespeare, sampled.
hamlet = encode("HAMLET.\n")
text_ids = generate(model, hamlet, config.context_length - hamlet.shape[1], do_sample=True, generator=generator)
print(f"{'T':>4} | {'no cache: linear':>16} {'attention':>10} | {'cache: linear':>14} {'attention':>10} | ratio")
step_flops, cached_attention = {}, {}
for T in (8, 64, 256, 512):
    ids = text_ids[:, :T]
    without = count_flops(partial(model, ids))  # the whole sequence again
    cache = PreallocatedKVCache(T)
    model(ids[:, :-1], cache=cache)  # the first T-1 tokens are already cached...
    with_cache = count_flops(partial(model, ids[:, -1:], cache=cache))  # ...so the step runs one token
    step_flops[T] = (sum(without.values()), sum(with_cache.values()))
    cached_attention[T] = with_cache["attention"]
    print(f"{T:>4} | {without['linear'] / 1e6:>14.1f} M {without['attention'] / 1e6:>8.1f} M | "
          f"{with_cache['linear'] / 1e6:>12.2f} M {with_cache['attention'] / 1e6:>8.2f} M | "
          f"{step_flops[T][0] / step_flops[T][1]:>5.0f}x")

# %% [markdown]
# With the cache the linear work per step is constant, and the attention work still grows by one
# key per step; without it the linear work grows with T and attention with T². The ratio is
# roughly T. Be exact about what became linear. Over a whole generation of N tokens, the
# projections and the MLP cost N² work without the cache and N with it: that part turns from
# quadratic into linear. Attention costs N³ without the cache and still N² with it, because
# every new token must read every cached key. The cache removes one power of N from each, not
# all the growth. Attention stays a small share here because a key costs 2C multiply-adds
# against 12C² for a token's weights, so it catches up only at a context of about 6C tokens
# (1,536 for this model). Past that, attention dominates each step, which is why long-context
# models work so hard on attention itself.
#
# The counted numbers match a formula we can write down: per layer, 12 C² multiply-adds for the
# projections and MLP plus 2 (n_past + 1) C for attention, and C × V for the LM head
# (`multiply_adds_per_token` in `course_utils.kv_cache`).

# %%
from course_utils.kv_cache import multiply_adds_per_token  # noqa: E402

for T, (_, cached) in step_flops.items():
    assert cached == 2 * multiply_adds_per_token(config, n_past=T - 1)
    assert cached_attention[T] == 2 * 2 * T * C * config.n_layer  # one query against T keys, per layer
print(f"cached attention per step: {cached_attention[8] / 1e6:.2f} M FLOPs at T=8, "
      f"{cached_attention[512] / 1e6:.2f} M at T=512: still growing with the context")
total_without = sum(2 * multiply_adds_per_token(config, n_past=t) * (t + 1) for t in range(512))
total_with = sum(2 * multiply_adds_per_token(config, n_past=t) for t in range(512))
print("the counted cached steps equal the formula")
print(f"generating 512 tokens: about {total_without / 1e9:.0f} GFLOP without a cache, "
      f"{total_with / 1e9:.1f} GFLOP with one")

# %% [markdown]
# (The no-cache total is an estimate: it charges step t the cost of t+1 tokens at the last
# token's attention cost, an upper bound; the table above is the exact count per step.)
#
# ## 2. A cached attention step, by hand
#
# Take the first layer. Without a cache, attention over T tokens computes queries, keys and
# values for all of them, then lets each query attend to its past.

# %%
block = model.h[0]


def first_layer_input(ids: torch.Tensor) -> torch.Tensor:
    """(1, T) ids -> (1, T, C): token plus position embeddings, through the first layer's LayerNorm."""
    return block.ln_1(model.wte(ids) + model.wpe(torch.arange(ids.shape[1])))


T = 12
ids = text_ids[:, :T]
x = first_layer_input(ids)


def heads(t: torch.Tensor) -> torch.Tensor:
    """(1, T, C) -> (1, H, T, D): each head gets its own D-dimensional slice."""
    return t.view(1, -1, H, D).transpose(1, 2)


q, k, v = (heads(t) for t in block.attn.c_attn(x).split(C, dim=2))
full = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (1, H, T, D)

# %% [markdown]
# With a cache, the keys and values of the first T−1 tokens are stored. The new token alone goes
# through the projection; its key and value are appended; its query attends to **all** the keys.
# It needs no mask: every key in the cache is in its past.

# %%
def cached_step_by_hand(q_new: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor,
                        cached_k: torch.Tensor, cached_v: torch.Tensor) -> torch.Tensor:
    """One new token's attention (B, H, 1, D): its query, key and value (B, H, 1, D) and the
    cached keys and values (B, H, T_past, D)."""
    # EXERCISE cached_attention_step: Return the new token's attention output (B, H, 1, D): append its key and value to the cached ones, then attend with its query over all of them.
    raise NotImplementedError("Return the new token's attention output (B, H, 1, D): append its key and value to the cached ones, then attend with its query over all of them.")

# %%
checks.cached_attention_step(cached_step_by_hand)

# %%
cached_k, cached_v = k[:, :, :-1], v[:, :, :-1]  # what the cache holds after T-1 tokens
q_new, k_new, v_new = (heads(t) for t in block.attn.c_attn(x[:, -1:]).split(C, dim=2))  # one token
step = cached_step_by_hand(q_new, k_new, v_new, cached_k, cached_v)
check_below("cached step vs last row of the full computation: max difference", (step - full[:, :, -1:]).abs().max(), 1e-6)


# %% [markdown]
# Several new tokens at once (the prompt after a cached prefix, or a draft model's guesses in
# speculative decoding) need a mask again: new query i may see all the cached keys and the new keys up to
# itself. It is the causal mask shifted right by the number of cached positions.

# %%
def shifted_mask_by_hand(n_new: int, n_past: int) -> torch.Tensor:
    """(n_new, n_past + n_new) bool: True where new query i may attend to key j, j <= n_past + i."""
    # EXERCISE shifted_causal_mask: Return the (n_new, n_past + n_new) bool mask, True where new query i may see key j, that is j <= n_past + i.
    raise NotImplementedError('Return the (n_new, n_past + n_new) bool mask, True where new query i may see key j, that is j <= n_past + i.')


# %%
checks.shifted_causal_mask(shifted_mask_by_hand)

# %%
n_past, n_new = T - 3, 3
mask = shifted_mask_by_hand(n_new, n_past)  # (3, 12): True where query i may attend to key j
assert torch.equal(mask, causal_mask(n_new, n_past=n_past))  # the library's mask
print(mask.int())
q_chunk = q[:, :, n_past:]  # the three new queries
chunk = F.scaled_dot_product_attention(q_chunk, k, v, attn_mask=mask)
unmasked = F.scaled_dot_product_attention(q_chunk, k, v)
check_below("with the mask:    max difference", (chunk - full[:, :, n_past:]).abs().max(), 1e-6)
print(f"without the mask: max difference {(unmasked - full[:, :, n_past:]).abs().max().item():.1f} "
      "(the first two new tokens see their future)")
assert not torch.allclose(unmasked, full[:, :, n_past:], atol=1e-3)

# %% [markdown]
# `MiniGPT` does this in every layer when it is given a cache: the first call (the **prefill**)
# runs the prompt and fills the cache; each later call passes only the new tokens. Positions
# continue from the number of cached tokens.

# %%
prompt = encode("ROMEO.\n")
cache = PreallocatedKVCache(max_length=prompt.shape[1] + 3)
logits = model(prompt, cache=cache)  # prefill: (1, T_prompt, V)
tokens = prompt
for _ in range(3):
    next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
    tokens = torch.cat([tokens, next_token], dim=1)
    logits = model(next_token, cache=cache)  # one token in, (1, 1, V) out
    print(f"cache holds {len(cache)} positions; generated so far: {tokenizer.decode(tokens[0, prompt.shape[1]:])!r}")

# %% [markdown]
# ## 3. Growing or preallocated?
#
# There are two natural ways to store the cache, and `course_utils.kv_cache` has both:
#
# - **growing** (`GrowingKVCache`): concatenate the new keys and values onto the old ones. Simple,
#   and it holds only what is used — but every step allocates new tensors and copies the whole
#   cache into them, so copying grows with the length.
# - **preallocated** (`PreallocatedKVCache`): allocate buffers for the longest sequence once, write
#   each step's keys and values in place, and hand attention a view of the filled part. No
#   copies of the past, but memory for the full length from the start. `transformers` calls these
#   *dynamic* and *static* caches.
#
# Here is the preallocated one's whole `extend`, the method each layer calls:

# %%
print(inspect.getsource(PreallocatedKVCache.extend))

# %% [markdown]
# The difference is visible in where the keys live: the growing cache's tensor moves to new
# memory every step, the preallocated one's never does. We keep every step's tensor alive while
# we look: once a tensor is freed, the allocator may hand its memory to the next one, and a
# reused address would look like "did not move".

# %%
for cache in (GrowingKVCache(), PreallocatedKVCache(16)):
    layer0_keys = []
    model(prompt, cache=cache)
    for token in text_ids[0, :4]:
        model(token.view(1, 1), cache=cache)
        layer0_keys.append(cache.keys[0])
    addresses = {keys.data_ptr() for keys in layer0_keys}
    print(f"{type(cache).__name__:>20}: layer-0 keys at {len(addresses)} different address(es) in 4 steps")

# %% [markdown]
# `generate(use_cache=True)` (the default, as in `transformers`) uses the preallocated form,
# sized to prompt + `max_new_tokens`, because it never copies; `cache_implementation="growing"`
# picks the other. Whether that makes it faster is measured in section 6 (and by
# `python -m course_utils bench generation`): on models this small the difference is small, and
# section 6 prints its size.
#
# ## 4. The cache changes nothing
#
# A cache is an optimisation, so it must not change a single token. First the cached loop itself,
# for greedy decoding: run the prompt once, with a cache that keeps every layer's keys and values;
# after that, each step runs the model on the newest token alone, and the cache supplies the
# past. Write it; it must give exactly the tokens of greedy decoding without a cache.

# %%
def cached_greedy_by_hand(model: MiniGPT, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding through a KV cache: prompt (B, T) -> (B, T + max_new_tokens)."""
    # EXERCISE cached_generation: Return prompt (B, T) extended by max_new_tokens greedy tokens, the prompt run once through a GrowingKVCache and then only each new token.
    raise NotImplementedError('Return prompt (B, T) extended by max_new_tokens greedy tokens, the prompt run once through a GrowingKVCache and then only each new token.')


# %%
checks.cached_generation(cached_greedy_by_hand)

# %%
prompt = encode("JULIET.\nO Romeo, Romeo!")
assert torch.equal(cached_greedy_by_hand(model, prompt, 60), generate(model, prompt, 60, use_cache=False))
print("cached_greedy_by_hand == greedy without a cache, 60 tokens")

# %% [markdown]
# The library's `generate` does the same for every kind of decoding. We check greedy decoding,
# seeded sampling and beam search (where the cache rows are reordered as beams swap), with both
# cache forms, against no cache at all.

# %%
cases = {
    "greedy": dict(),
    "seeded sampling": dict(do_sample=True, temperature=0.9, top_p=0.95),
    "beam search": dict(num_beams=4, num_return_sequences=2),
}
for name, arguments in cases.items():
    outputs = [
        generate(model, prompt, 60, use_cache=use_cache, cache_implementation=implementation,
                 generator=seeded_generator(1), **arguments)
        for use_cache, implementation in ((False, "preallocated"), (True, "preallocated"), (True, "growing"))
    ]
    assert all(torch.equal(outputs[0], other) for other in outputs[1:])
    print(f"{name:>16}: identical tokens without a cache, with a preallocated and with a growing one")

# %% [markdown]
# And the logits themselves: a full forward pass over 300 tokens against the same tokens fed one
# at a time through the cache.

# %%
def token_by_token(model: MiniGPT, ids: torch.Tensor, cache) -> torch.Tensor:
    """Logits (1, T, V) of (1, T) ids run one token at a time through ``cache``."""
    return torch.cat([model(ids[:, t : t + 1], cache=cache) for t in range(ids.shape[1])], dim=1)


def cache_vs_full(model: MiniGPT, ids: torch.Tensor) -> float:
    """Largest difference between the logits of one full pass and of a token-by-token cached run."""
    return (token_by_token(model, ids, PreallocatedKVCache(ids.shape[1])) - model(ids)).abs().max().item()


ids = text_ids[:, :300]
in_float32 = cache_vs_full(model, ids)
in_float64 = cache_vs_full(copy.deepcopy(model).double(), ids)
ours_vs_transformers = (model(ids) - hf_model(ids).logits).abs().max().item()
print(f"logits up to {model(ids).abs().max().item():.0f} in size")
check_below("largest logit difference, cached vs full, float64", in_float64, 1e-12)
check_below("largest logit difference, cached vs full, float32", in_float32, 1e-4)
check_below("for scale: our full pass vs transformers' full pass, float32", ours_vs_transformers, 1e-4)

# %% [markdown]
# In float64 the two computations agree to far below 1e-12: the cache computes exactly the same
# function. In float32 they differ around the fifth decimal (the exact digits change from one CPU
# to another, which is why the lesson prints bounds rather than digits), because one row
# through a matrix multiply is summed in a different order than 300 rows at once; that is the
# same size as the difference between two correct implementations (ours and `transformers`') of
# the same full pass, and far too small to change which token wins, as the identical tokens above
# show.
#
# ## 5. What the cache costs in memory
#
# Each layer keeps a key and a value vector of H heads × D dimensions per position, so for a
# batch of B sequences of T positions:
#
# $$\text{bytes} = 2 \cdot \text{layers} \cdot B \cdot T \cdot H \cdot D \cdot \text{bytes per value}$$
#
# `kv_cache_bytes` is that formula. We write it out, then check it against the bytes
# the cache tensors actually hold, for both forms (the preallocated one holds its full
# `max_length` from the start) and for `transformers`' own cache on the same model.

# %%
def kv_bytes_by_hand(n_layer: int, batch: int, seq_len: int, n_head: int, head_size: int, bytes_per_value: int) -> int:
    """Bytes of the keys and values a cache holds for ``batch`` sequences of ``seq_len`` positions."""
    return 2 * n_layer * batch * seq_len * n_head * head_size * bytes_per_value


assert kv_bytes_by_hand(config.n_layer, 3, 100, config.n_head, config.head_size, 4) == kv_cache_bytes(config, 100, 3)

# %%
batch, T = 3, 100
batch_ids = text_ids[:, :T].repeat(batch, 1)
growing, preallocated = GrowingKVCache(), PreallocatedKVCache(max_length=config.context_length)
model(batch_ids, cache=growing)
model(batch_ids, cache=preallocated)
past = output_cache(hf_model(batch_ids, use_cache=True))  # transformers' Cache (5.24 renamed the field)
hf_bytes = sum(t.numel() * t.element_size() for layer in past.layers for t in (layer.keys, layer.values))
rows = [
    ("growing, 100 positions", growing.nbytes(), kv_cache_bytes(config, T, batch)),
    ("preallocated, 512 positions", preallocated.nbytes(), kv_cache_bytes(config, config.context_length, batch)),
    ("transformers, 100 positions", hf_bytes, kv_cache_bytes(config, T, batch)),
]
for name, measured, formula in rows:
    print(f"{name:>28}: measured {measured:>10,} bytes, formula {formula:>10,} bytes")
    assert measured == formula

# %% [markdown]
# For our small model at its full context of 512 tokens this is small next to the weights. For a
# bigger model it is not. GPT-2 Large's configuration (from its `config.json` on the Hugging Face
# hub: 36 layers, 20 heads, 1280 dimensions, 1024 positions) gives, at its full context:

# %%
gpt2_large = GPTConfig(vocab_size=50257, context_length=1024, n_layer=36, n_head=20, n_embd=1280)
with torch.device("meta"):  # shapes only: counts the parameters without allocating 3 GB
    n_params = MiniGPT(gpt2_large).num_parameters()
print(f"GPT-2 Large: {n_params:,} parameters")
for precision, size in (("float32", 4), ("float16", 2)):
    print(f"GPT-2 Large, 1024 tokens, {precision}: {kv_cache_bytes(gpt2_large, 1024, 1, size) / 1e6:.0f} MB "
          f"per sequence (weights: {n_params * size / 1e9:.2f} GB)")
print(f"our model, 512 tokens, float32: {kv_cache_bytes(config, 512) / 1e6:.1f} MB per sequence "
      f"(weights: {model.num_parameters() * 4 / 1e6:.1f} MB)")

# %% [markdown]
# In half precision that is the 189 MB usually quoted for GPT-2 Large; in float32 twice as much.
# The cache grows with the batch and the length, the weights do not: serving 16 sequences of
# 1024 tokens with GPT-2 Large in float16 needs 16 × 189 MB ≈ 3 GB of cache, more than the 1.5 GB
# of weights. That is why long contexts and large batches are limited by cache memory.
#
# ### Planning memory: how many sequences fit?
#
# Before serving a model the question is practical: with M bytes, how many sequences of T tokens
# can run at once? The weights are paid once and the cache once per sequence, so
#
# $$B_{\max} = \left\lfloor \frac{M - \text{parameters} \cdot \text{bytes per value}}{\text{cache bytes of one sequence of } T \text{ tokens}} \right\rfloor .$$
#
# One generation step also needs activations, about B × (4C + V) values that live only for the
# step: small next to these for short batches, so we leave them out, and a real plan keeps a
# margin for them (and for the framework's own memory).

# %%
def largest_batch(config: GPTConfig, n_params: int, context: int, memory_bytes: float, bytes_per_value: int) -> int:
    """Sequences of ``context`` tokens whose KV cache fits in ``memory_bytes`` next to the weights."""
    free = memory_bytes - n_params * bytes_per_value
    return max(0, int(free // kv_cache_bytes(config, context, 1, bytes_per_value)))


print("GPT-2 Large in float16: largest batch")
print(f"{'context':>8} | {'8 GB':>5} | {'24 GB':>5}")
for context in (256, 512, 1024):
    fits = [largest_batch(gpt2_large, n_params, context, gigabytes * 1e9, 2) for gigabytes in (8, 24)]
    print(f"{context:>8} | {fits[0]:>5} | {fits[1]:>5}")

batches = np.arange(0, 161)
fig, ax = plt.subplots(figsize=(6, 3.6))
for context in (256, 1024):
    total = n_params * 2 + batches * kv_cache_bytes(gpt2_large, context, 1, 2)
    _ = ax.plot(batches, total / 1e9, label=f"weights + cache, {context} tokens")
for gigabytes in (8, 24):
    _ = ax.axhline(gigabytes, color="grey", linestyle=":")
    _ = ax.text(2, gigabytes + 0.4, f"{gigabytes} GB", color="grey")
ax.set_xlabel("batch (sequences at once)")
ax.set_ylabel("GB")
ax.set_title("GPT-2 Large, float16: the cache soon outweighs the weights")
ax.legend()
plt.show()

# %% [markdown]
# A formula is a claim; check it against tensors. For our model we give ourselves a budget of
# 64 MB, allocate the real weights and a real preallocated cache for the largest batch the formula
# allows, and count their bytes, then do the same with one sequence more. For GPT-2 Large we
# build the same on the `meta` device, which gives every tensor its shape and dtype but no memory,
# so its bytes can be counted without 3 GB.


# %%
def weights_and_cache_bytes(model: MiniGPT, batch: int, context: int) -> int:
    """Bytes of ``model``'s parameters plus a preallocated cache of ``batch`` x ``context`` positions,
    as allocated by the cache itself."""
    cache = PreallocatedKVCache(context)
    step = torch.zeros(batch, model.config.n_head, 1, model.config.head_size, dtype=model.wte.weight.dtype)
    for layer in range(model.config.n_layer):
        cache.extend(layer, step, step)  # the first write allocates the layer's buffers
    return sum(p.numel() * p.element_size() for p in model.parameters()) + cache.nbytes()


budget = 64e6
ours_fit = largest_batch(config, model.num_parameters(), config.context_length, budget, 4)
measured = [weights_and_cache_bytes(model, b, config.context_length) for b in (ours_fit, ours_fit + 1)]
print(f"our model, float32, 512 tokens, 64 MB: formula says {ours_fit} sequences; "
      f"measured {measured[0] / 1e6:.1f} MB for {ours_fit}, {measured[1] / 1e6:.1f} MB for {ours_fit + 1}")
assert measured[0] <= budget < measured[1]
with torch.device("meta"):
    large_half = MiniGPT(gpt2_large).half()
    large_fit = largest_batch(gpt2_large, n_params, 1024, 24e9, 2)
    measured = [weights_and_cache_bytes(large_half, b, 1024) for b in (large_fit, large_fit + 1)]
print(f"GPT-2 Large, float16, 1024 tokens, 24 GB: formula says {large_fit} sequences; "
      f"measured on meta tensors {measured[0] / 1e9:.2f} GB for {large_fit}, {measured[1] / 1e9:.2f} GB for {large_fit + 1}")
assert measured[0] <= 24e9 < measured[1]

# %% [markdown]
# ### When `generate()` runs out of memory
#
# Ask for more than fits and the allocation fails: PyTorch raises an out-of-memory error
# (`torch.OutOfMemoryError` on a GPU, a `RuntimeError` from its CPU allocator), often after
# minutes of work, and on a laptop the operating system may swap or kill the process first. We do
# not trigger one here; the formula says in advance what would happen, and what to do instead.
# Say 500 requests, each a 200-token prompt and up to 824 new tokens, for GPT-2 Large in float16
# on a 24 GB GPU. Two remedies: a smaller batch, taken in turns, and a cache sized to what a
# request needs (prompt + `max_new_tokens`, which is what `generate` allocates) rather than the
# whole context.

# %%
requests, prompt_tokens, max_new = 500, 200, 824
at_once = n_params * 2 + kv_cache_bytes(gpt2_large, prompt_tokens + max_new, requests, 2)
print(f"all {requests} at once: {at_once / 1e9:.0f} GB needed, 24 GB available")
batch_size = largest_batch(gpt2_large, n_params, prompt_tokens + max_new, 24e9, 2)
turns = -(-requests // batch_size)  # ceiling division
print(f"in batches of {batch_size}: {turns} turns, each {(n_params * 2 + kv_cache_bytes(gpt2_large, prompt_tokens + max_new, batch_size, 2)) / 1e9:.1f} GB")
shorter = largest_batch(gpt2_large, n_params, prompt_tokens + 100, 24e9, 2)
print(f"with max_new_tokens=100 instead, a cache of {prompt_tokens + 100} positions per request: batches of {shorter}")
assert at_once > 24e9 and batch_size * turns >= requests and shorter > 3 * batch_size

# %% [markdown]
# All at once needs several times the memory there is. In batches of the largest size that fits,
# the same work runs in a few turns. And a cache sized to the request, not to the full context,
# fits several times more sequences per batch when the answers are short. Serving systems do both
# continuously, with a cache allocated in small blocks as each sequence grows (see "What serving
# systems add", below).

# %% [markdown]
# ### Smaller caches: int8 keys and values
#
# If the cache is what limits the batch, store it in fewer bits. `Int8KVCache` rounds each head's
# key and value vector at each position to int8 with its own scale, s = max|x| / 127, so every
# value is off by at most s/2: D bytes plus a 4-byte scale per head and position, instead of 4D.
# Attention reads the values back in float32. The questions are what that saves and what it
# costs. We run the same 300 tokens through the model token by token with the float cache and with
# the int8 one, and compare the logits at every position.

# %%
from course_utils.kv_cache import Int8KVCache  # noqa: E402

ids = text_ids[:, :300]
stepwise, cache_bytes = {}, {}
for name, cache in (("float32", GrowingKVCache()), ("int8", Int8KVCache())):
    stepwise[name] = token_by_token(model, ids, cache)
    cache_bytes[name] = cache.nbytes()
error = (stepwise["int8"] - stepwise["float32"]).abs()
log_p, log_q = stepwise["float32"].log_softmax(-1), stepwise["int8"].log_softmax(-1)
kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
disagreement = (stepwise["int8"].argmax(-1) != stepwise["float32"].argmax(-1)).float().mean()
print(f"cache for 300 tokens: float32 {cache_bytes['float32']:,} bytes, int8 {cache_bytes['int8']:,} bytes "
      f"({cache_bytes['int8'] / cache_bytes['float32']:.1%})")
assert cache_bytes["int8"] == cache_bytes["float32"] * (D + 4) // (4 * D)
check_below("largest logit error (logits up to about 18)", error.max(), 0.2)
check_below("mean logit error", error.mean(), 0.02)
check_below("mean KL divergence of the next-token distributions, nats", kl, 1e-3)
check_below("positions where the most likely token differs", disagreement, 0.01)

# %% [markdown]
# A little over a quarter of the memory, so three and a half times as many sequences in the same
# cache budget, for logits that move by a few hundredths and a most likely token that stays the
# same at practically every position.
# Free-running generation is a harsher test: once one token differs, everything after it
# differs. Five prompts, 200 greedy tokens each, float cache against int8 (which prompt diverges,
# if any, depends on near-ties and can change from one CPU to another, so this cell's output is
# not compared):

# %%
# NBVAL_IGNORE_OUTPUT
def greedy_agreement_by_prompt(first, second, n: int = 200) -> int:
    """For five prompts, where two ways of generating n greedy tokens, ``way(prompt) -> (1, T + n)``,
    first differ (printed); returns how many prompts they agree on for all n tokens."""
    identical = 0
    for text in SPECULATIVE_PROMPTS:
        prompt = encode(text)
        runs = [way(prompt)[0, prompt.shape[1]:] for way in (first, second)]
        differs = (runs[0] != runs[1]).nonzero()
        identical += len(differs) == 0
        print(f"{text.splitlines()[0]:>12} " + (f"identical for {n} tokens" if len(differs) == 0 else
                                             f"first differs at token {differs[0].item()}"))
    return identical


identical = greedy_agreement_by_prompt(lambda prompt: generate(model, prompt, 200, cache_implementation="growing"),
                                       lambda prompt: generate(model, prompt, 200, cache_implementation="int8"))
assert identical >= 3

# %% [markdown]
# ### Smaller weights: int8 weight quantisation
#
# At batch 1 the weights, not the cache, are most of the bytes each step reads (section 7). The
# same rounding applies to them: each row of every weight matrix (and of the embeddings) to int8
# with its own scale, `course_utils.kv_cache.int8_weights`. Here the rounding is simulated: the
# weights are rounded and read back as float32, so what we measure is the error the rounding
# alone causes. A real int8 kernel (PyTorch's torchao library, bitsandbytes, llama.cpp) would
# also read a quarter of the bytes, and often compute in int8. (PyTorch's older
# `torch.ao.quantization` is deprecated, its removal planned, and its documentation sends you to
# torchao.)

# %%
# NBVAL_IGNORE_OUTPUT
# (Where greedy text first differs depends on near ties, which float noise decides differently on
# different CPUs; the bounds printed before it hold everywhere, and are asserted.)
from course_utils.kv_cache import int8_weights  # noqa: E402

quantized_model, int8_bytes = int8_weights(model)
float32_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(f"weights: float32 {float32_bytes / 1e6:.1f} MB, int8 {int8_bytes / 1e6:.1f} MB ({int8_bytes / float32_bytes:.1%})")
full_logits, rounded_logits = model(text_ids), quantized_model(text_ids)
weight_error = (rounded_logits - full_logits).abs()
check_below("largest logit error, int8 weights", weight_error.max(), 0.5)
check_below("mean logit error, int8 weights", weight_error.mean(), 0.05)
check_below("positions where the most likely token differs", (rounded_logits.argmax(-1) != full_logits.argmax(-1)).float().mean(), 0.02)
_ = greedy_agreement_by_prompt(lambda prompt: generate(model, prompt, 200),
                               lambda prompt: generate(quantized_model, prompt, 200))
assert int8_bytes < 0.3 * float32_bytes

# %% [markdown]
# A quarter of the bytes (plus a scale per row), logits that move by about a hundredth on average,
# and the most likely token unchanged at all but a few positions (asserted: under 2%). Greedy
# text is a harsher test: one near tie that tips the other way sends it down another path, and
# from there the two texts have nothing in common, so where they first differ (printed) says
# more about near ties than about quality. Schemes that go below 8 bits (GPTQ, AWQ: 4 bits) keep
# a scale per small group of weights instead of per row.
#
# **What serving systems add.** Production servers treat the cache as the scarce resource it is.
# vLLM ([Kwon et al. 2023](https://arxiv.org/abs/2309.06180), "Efficient Memory Management for Large Language Model Serving with
# PagedAttention") stores it in fixed-size blocks of a few tokens, allocated as a sequence grows
# and found through a per-sequence block table, as an operating system pages memory. No
# sequence reserves `max_length` positions up front, as our preallocated cache does; at most one
# part-filled block per sequence is wasted; and sequences that share a prompt share its blocks,
# which beam search and parallel sampling exploit. With continuous batching ([Yu et al. 2022](https://www.usenix.org/conference/osdi22/presentation/yu),
# "Orca") a finished sequence leaves the batch and a new one takes its place at the next step.
# Servers also quantise the cache as we just did, to int8 or 8-bit floats, for the same reason.
#
# ## 6. Speed
#
# ### Tokens per second against generated length
#
# We time every step of greedy generation up to the full context, for our `generate` with each
# cache form and without one, and for `transformers`' `generate()` on the same weights (with its
# own cache, held to exactly as many tokens by `transformers_generate_exactly`, so that an
# end-of-text token cannot cut it short). The measuring tools are in `course_utils.measure`.
# `StepTimer` is a stopping criterion that never stops: both loops call it once per generated
# token, so it records when each token was ready. `interleaved_step_seconds` applies the course's
# timing rule (`course_utils.timing`): a discarded warm-up round, then three rounds in which every
# way runs in turn, so that a busy spell of the machine hits them all alike; we keep the median
# time of every step.

# %%
prompt = encode("ROMEO.\n")
new_tokens = config.context_length - prompt.shape[1]


ways = {
    "ours, preallocated cache": lambda timer, n: generate(model, prompt, n, stopping_criteria=[timer]),
    "ours, growing cache": lambda timer, n: generate(
        model, prompt, n, cache_implementation="growing", stopping_criteria=[timer]),
    "ours, no cache": lambda timer, n: generate(model, prompt, n, use_cache=False, stopping_criteria=[timer]),
    "transformers generate()": lambda timer, n: transformers_generate_exactly(
        hf_model, prompt, n, stopping_criteria=[timer]),
}
step_rounds = interleaved_step_seconds(ways, new_tokens, runs=3)  # every way generates every token, or it raises
step_seconds = {name: np.median(np.array(rounds), axis=0) for name, rounds in step_rounds.items()}
tokens_per_second = {name: np.arange(1, new_tokens + 1) / np.cumsum(s) for name, s in step_seconds.items()}

# %% tags=["readme-figure"]
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
for name, seconds in step_seconds.items():
    _ = left.plot(np.arange(1, new_tokens + 1), seconds * 1e3, label=name)
    _ = right.plot(np.arange(1, new_tokens + 1), tokens_per_second[name], label=name)
left.set(xlabel="generated token", ylabel="ms for this token", yscale="log", title="time per step")
right.set(xlabel="tokens generated", ylabel="tokens per second so far", title="throughput against length")
right.legend()
plt.tight_layout()
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
print(f"{'tokens generated':>26}" + "".join(f"{n:>9}" for n in (32, 128, 256, new_tokens)))
for name, rates in tokens_per_second.items():
    print(f"{name:>26}" + "".join(f"{rates[n - 1]:>9.0f}" for n in (32, 128, 256, new_tokens)))
full = {name: rates[-1] for name, rates in tokens_per_second.items()}
print(f"at {new_tokens} tokens: cache {full['ours, preallocated cache'] / full['ours, no cache']:.1f}x faster than no "
      f"cache; preallocated {full['ours, preallocated cache'] / full['ours, growing cache']:.2f}x the growing cache; "
      f"ours {full['ours, preallocated cache'] / full['transformers generate()']:.2f}x transformers")

# %% [markdown]
# Without the cache each step costs more than the one before (it reruns a longer sequence), so
# throughput keeps falling; with it, steps cost almost the same from first to last. The
# preallocated cache against the growing one is printed above: a copy of a few megabytes per step
# is cheap next to the model, so the difference is small, and on a busy machine it can come out
# either way from one run to the next.
#
# On the machine that stored these outputs our loop was also faster than `transformers`'
# `generate()` (the last ratio printed above). That is not asserted: it compares two libraries'
# code, which runs differently from CPU to CPU and from one `transformers` release to the next.
# Where does a difference between them come from? A step is the model's forward pass plus the
# loop around it (choosing the token, stopping checks, bookkeeping), and either could differ. So we time, in the same rounds, each model's forward passes alone (with
# its own cache, choosing tokens by argmax and nothing else) and its `generate()`, and take the
# difference round by round:

# %%
# NBVAL_IGNORE_OUTPUT
def forward_loop(step, n: int) -> None:
    """n cached single-token steps after the prompt's prefill, choosing each token by argmax, with
    nothing else: ``step(ids, cache) -> (logits (1, T, V), cache)``, ``cache`` None at the prefill."""
    logits, cache = step(prompt, None)
    for _ in range(n - 1):
        logits, cache = step(logits[:, -1:].argmax(dim=-1), cache)


def our_step(ids, cache):
    cache = cache if cache is not None else PreallocatedKVCache(prompt.shape[1] + steps_timed)
    return model(ids, cache=cache), cache


def their_step(ids, cache):
    output = hf_model(ids, use_cache=True, **({} if cache is None else cache_argument(hf_model, cache)))
    return output.logits, output_cache(output)


steps_timed = 200
loop_ways = {  # the four, interleaved in rounds, so that each round's pair shares the machine's state
    "ours: forward alone": lambda: forward_loop(our_step, steps_timed),
    "ours: generate()": lambda: generate(model, prompt, steps_timed),
    "transformers: forward alone": lambda: forward_loop(their_step, steps_timed),
    "transformers: generate()": lambda: transformers_generate_exactly(hf_model, prompt, steps_timed),
}
loop_rates = interleaved_rates(loop_ways, steps_timed, runs=5)
print(f"{'per token, ms (median of 5 rounds)':>34} {'forward alone':>14} {'generate()':>11} {'the loop adds':>14}")
loop_adds = {}
for who in ("ours", "transformers"):
    forward, whole = ([1e3 / rate for rate in loop_rates[f"{who}: {part}"]] for part in ("forward alone", "generate()"))
    loop_adds[who] = statistics.median(w - f for w, f in zip(whole, forward))
    print(f"{who:>34} {statistics.median(forward):>14.2f} {statistics.median(whole):>11.2f} {loop_adds[who]:>14.2f}")

# %% [markdown]
# The table splits the difference in two: what each model's forward pass costs, with its own
# cache (`transformers`' builds an attention mask and updates a general-purpose cache object in
# every call), and what each `generate()` adds around it (`transformers` runs its logits
# processors and stopping criteria, and updates its model inputs, at every step). Read which part
# holds the difference on your machine; neither is asserted, since both are timings. A loop that
# adds a few hundredths of a millisecond, or even a slightly negative amount, adds nothing this
# machine can measure: two timings of the same work differ by that much from round to round.

# %%
# NBVAL_IGNORE_OUTPUT
round_rates = {name: [new_tokens / sum(seconds) for seconds in rounds] for name, rounds in step_rounds.items()}
cache_gain = paired_ratio(round_rates["ours, preallocated cache"], round_rates["ours, no cache"])
print(f"{new_tokens} tokens: the cache {cache_gain:.1f}x faster than none (median of the rounds' ratios)")
assert cache_gain > 2  # the cache pays, by a wide margin, on any machine, busy or not

# %% [markdown]
# ### Batch size
#
# Each step reads all the weights once whatever the batch, so generating for several sequences at
# once should cost little more per step than for one. We generate 64 tokens for batches of 1 to
# 64 copies of the prompt (median of three runs after a warm-up).

# %%
batch_sizes = [1, 4, 16, 64]
batch_rates, step_ms = [], []
for batch in batch_sizes:
    batch_prompt = prompt.repeat(batch, 1)
    seconds = median_seconds(partial(generate, model, batch_prompt, 64), runs=3)
    batch_rates.append(batch * 64 / seconds)
    step_ms.append(seconds / 64 * 1e3)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
_ = left.plot(batch_sizes, batch_rates, "o-")
left.set(xscale="log", xlabel="batch size", ylabel="generated tokens per second", title="throughput")
_ = right.plot(batch_sizes, step_ms, "o-")
right.set(xscale="log", xlabel="batch size", ylabel="ms per step", title="time per step")
plt.tight_layout()
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
for batch, rate, ms in zip(batch_sizes, batch_rates, step_ms):
    print(f"batch {batch:>2}: {rate:>7.0f} tokens/s, {ms:.2f} ms per step")

# %% [markdown]
# Throughput climbs with the batch while the time per step grows far more slowly: at batch 1 a
# step does too little work to keep the machine busy. That is why servers batch requests.
#
# ### Where the time goes
#
# The profiler records every torch operation of 100 cached steps. We compare the time spent
# inside operations with the wall time: the rest is Python and dispatch overhead between them.
# (The two log lines it prints on stderr are the profiler starting and stopping.)

# %%
# NBVAL_IGNORE_OUTPUT
generate(model, prompt, 100)  # warm-up
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
    started = time.perf_counter()
    generate(model, prompt, 100)
    wall = time.perf_counter() - started
events = profiler.key_averages()
print(events.table(sort_by="self_cpu_time_total", row_limit=10))
self_seconds = {event.key: event.self_cpu_time_total / 1e6 for event in events}
matmul = sum(seconds for key, seconds in self_seconds.items() if key in ("aten::addmm", "aten::mm"))
in_ops = sum(self_seconds.values())
print(f"per step: {wall / 100 * 1e3:.2f} ms wall (profiled), {in_ops / 100 * 1e3:.2f} ms inside torch operations, "
      f"{matmul / 100 * 1e3:.2f} ms of them in matrix multiplies")

# %% [markdown]
# Matrix multiplies are the real work; the many small operations around them (layer norms, GELU,
# views, the cache writes, the `argmax`) and the Python between them take a large share of each
# step at batch 1. (The profiler itself adds overhead, so the wall time here is higher than in the
# benchmark.)
#
# ## 7. The limit: memory bandwidth
#
# At batch 1 each step must read every weight once and the cache once. Reading memory has a
# speed limit, the machine's **memory bandwidth**. We measure it with a large copy (512 MB, far
# larger than the CPU caches: every byte read and written once), and from it the fastest any
# batch-1 loop could possibly go: bandwidth ÷ bytes per token.

# %%
# NBVAL_IGNORE_OUTPUT
bandwidth = memory_bandwidth(megabytes=512)


def bytes_per_token(model: MiniGPT) -> tuple[int, float]:
    """Bytes a batch-1 step reads: all the weights (the tied matrix once), and the cache, averaged
    over a generation from our prompt to the full context."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    lengths = range(prompt.shape[1], model.config.context_length)
    return weights, float(np.mean([kv_cache_bytes(model.config, t) for t in lengths]))


weight_bytes, mean_cache_bytes = bytes_per_token(model)
ceiling = bandwidth * 1e9 / (weight_bytes + mean_cache_bytes)
ours = full["ours, preallocated cache"]
print(f"memory bandwidth (512 MB copy, median of 5): {bandwidth:.1f} GB/s")
print(f"bytes read per token: {weight_bytes / 1e6:.1f} MB of weights + {mean_cache_bytes / 1e6:.1f} MB of cache "
      f"on average = {(weight_bytes + mean_cache_bytes) / 1e6:.1f} MB")
print(f"bandwidth-bound ceiling: {ceiling:.0f} tokens/s; our loop: {ours:.0f} tokens/s = {ours / ceiling:.0%} of it")
print(f"per token: {1e3 / ours:.2f} ms taken, {1e3 / ceiling:.2f} ms needed to move the bytes")
print(f"batch 64 reaches {batch_rates[-1]:.0f} tokens/s = {batch_rates[-1] / ceiling:.1f}x the batch-1 ceiling")

# %% [markdown]
# Where does the rest of the time go, the difference between the time a token takes and the time
# its bytes need? The profile above splits a step three ways, and each part is a different kind
# of loss:
#
# - **The matrix multiplies themselves.** Set the profile's matrix-multiply time per step beside
#   the time needed to move all of a step's bytes, printed just above. On the machine that stored
#   these outputs the products alone took more than twice as long, though they read little more
#   than the weights: they stream the weights at less than half the bandwidth the copy reached.
#   A batch-1 product multiplies one row by a matrix of a few hundred kilobytes to a few
#   megabytes, too short a job to run at the speed of one long copy. This part is inside the
#   kernels, so fusing the small operations or compiling the step would not remove it; only a
#   faster matrix-vector kernel would.
# - **The other operations** (attention, layer norms, GELU, views, the cache writes, the
#   `argmax`): the profile's time inside torch operations minus its matrix multiplies.
# - **What runs between operations**, Python and dispatch: the profile's wall time minus its time
#   inside operations. Fusing and compiling attack these last two.
#
# So the gap is not only per-step overhead, and the model's size alone does not say how close a
# model gets to its ceiling. Overhead per operation hardly depends on the size while the bytes
# do, which pushes a smaller model away from its ceiling; but a smaller model's weights can stay
# in the CPU's own caches, faster than the main memory the ceiling assumes, which pulls it
# closer. The draft model made for speculative decoding (2 layers × 128, a sixth of the bytes)
# shows which wins on this machine:

# %%
# NBVAL_IGNORE_OUTPUT
draft = MiniGPT.from_hf(load_model("shakespeare-gpt-draft")[0])
pair_rates = interleaved_rates({"target": partial(generate, model, prompt, new_tokens),
                                "draft": partial(generate, draft, prompt, new_tokens)}, new_tokens, runs=3)
draft_rate, target_rate = (statistics.median(pair_rates[name]) for name in ("draft", "target"))
draft_ceiling = bandwidth * 1e9 / sum(bytes_per_token(draft))
print(f"draft: {sum(bytes_per_token(draft)) / 1e6:.1f} MB per token, ceiling {draft_ceiling:.0f} tokens/s, "
      f"our loop {draft_rate:.0f} tokens/s = {draft_rate / draft_ceiling:.0%} of it")
print(f"target, timed in the same rounds: {target_rate:.0f} tokens/s = {target_rate / ceiling:.0%} of its ceiling")
draft_speedup = paired_ratio(pair_rates["draft"], pair_rates["target"])
print(f"the draft generates {draft_speedup:.1f}x as many tokens per second as the target")
assert draft_speedup > 1.5  # fewer bytes and operations per token: faster by a wide margin, on any CPU

# %% [markdown]
# The draft is faster, by far more than the margin asserted (1.5 times the target's rate, each
# round's two runs compared with each other, so a busy spell slows both). Which of the two lands
# closer to its ceiling depends on the CPU, so compare the two fractions on yours. They move
# between runs on the same machine too: the bandwidth is measured afresh each time, and on a
# cloud server it changes with what the other users of its hardware do. These
# outputs come from a 2-core cloud server (an AMD EPYC), where the same copy measured from about
# 37 to 68 GB/s on one day, so read the fractions as rough. Either way the ceiling is a bound, not
# a forecast. Batching "breaks" the batch-1 ceiling because one read of the weights serves every
# sequence in the batch. (Our 24 MB of weights can partly stay in the CPU's own caches between
# steps, which are faster than main memory, so this ceiling is a guide rather than a wall.)
#
# ### The same step without the modules
#
# The profile showed dozens of small operations around each matrix product, and Python between
# them. Most exist because `MiniGPT.forward` is written to teach and to serve every case:
# training, padding, attention maps, head ablation, any cache. One new token per row with no
# padding needs none of the checks, masks, position tensors, dropout modules or head reshapes.
# `course_utils.decode.decode_step` runs exactly that step straight from the model's weights,
# calling the same kernels on tensors of the same shapes. `generate` takes it by itself whenever
# it applies (the profile above was of that path), and goes through the modules otherwise: a
# hook, a padded batch, lesson 06's head mask, a LoRA layer (lesson 09). Lesson 07's speculative
# decoding feeds a few tokens at once into a filled cache; those take the same path, keeping the
# causal mask among them and the modules' head reshapes.
#
# A faster path must be the same model. Here it gives the very same logits, bit for bit:

# %%
context = torch.randint(0, config.vocab_size, (1, 300), generator=seeded_generator(1))
token = context[:, -1:]
through_modules, straight = PreallocatedKVCache(301), PreallocatedKVCache(301)
model(context[:, :-1], cache=through_modules)
model(context[:, :-1], cache=straight)
assert torch.equal(decode_step(model, token, straight), model(token, cache=through_modules))
print("decode_step's logits equal the modules' bit for bit, after 299 cached tokens")

# %% [markdown]
# What did it remove? The same profile as above, grouped by kind of operation, for one step
# after those 300 tokens through the modules (before) and as `generate` takes it (after), on the
# target and on the draft (`step_paths_breakdown`; microseconds per step, the
# profiler's own overhead included). Each of the four profiles prints its two log lines on stderr.

# %%
# NBVAL_IGNORE_OUTPUT
paths = {name: step_paths_breakdown(m, context) for name, m in (("target", model), ("draft", draft))}
print_breakdowns({f"{name} {path}": paths[name][path] for name in paths for path in ("modules", "step")}, width=15)

# %% [markdown]
# Read it group by group. The matrix products and attention are the same kernels on both paths:
# their rows differ by the machine's noise, and by `F.linear`'s own dispatch on the modules' path
# (counted as a product). What `decode_step` removed is in the other rows: views and indexing
# (the head reshapes, the position tensors, `F.linear`'s transposes of each weight), copies, the
# comparisons of the modules' checks of their input (the same operations sampling uses, so
# counted there), and the Python between operations. The profiler adds a little to every
# operation it records, and that last row is the wall time minus the operations' total, so it
# reads low, zero where the profiler's overhead exceeds it.

# %% [markdown]
# Now the step three ways, interleaved: through the modules, as `generate` takes it, and the
# floor of its arithmetic, the **bare GEMVs**: one vector times each weight matrix, back to back,
# with nothing between them but a Python loop. A product of one row runs on a single core in the
# matrix library torch calls, however many threads torch has, so we also time the same products
# each split by its output rows into one part per thread (`split_gemv`: one batched product whose
# parts run side by side). Beside them, the time to read every weight once at the copy speed
# measured above.

# %%
# NBVAL_IGNORE_OUTPUT
floors = {name: decode_floor(m, context, bandwidth=bandwidth) for name, m in (("target", model), ("draft", draft))}
print(f"{'':>8} {'modules ms':>11} {'step ms':>8} {'GEMVs ms':>9} {'split ms':>9} {'copy ms':>8} {'step/GEMVs':>11} "
      f"{'step/split':>11} {'modules/step':>13}")
for name, floor in floors.items():
    print(f"{name:>8} {floor.module_step * 1e3:11.3f} {floor.step * 1e3:8.3f} {floor.gemvs * 1e3:9.3f} "
          f"{floor.split_gemvs * 1e3:9.3f} {floor.copy * 1e3:8.3f} {floor.step_over_gemvs:10.2f}x "
          f"{floor.step_over_split_gemvs:10.2f}x {floor.module_step / floor.step:12.2f}x")

# %% [markdown]
# Read the ratios on your machine. Removing the modules' bookkeeping matters most for the small
# draft, where the matrix products are short and the fixed cost of each operation is a large
# share of the step. What remains above the GEMVs is work a step cannot skip but the floor does
# not count: attention over the cached tokens (one fused kernel per layer, with a fixed cost of
# its own), the layer norms, the cache writes, and a few microseconds of Python and dispatch for
# each of the thirty-odd operations left. Lesson 07 shows why this matters: the cheaper a draft
# step is next to a target step, the more speculative decoding gains.
#
# The split column is a lower floor. Where it is faster than the GEMVs, each whole product leaves
# a core idle, and so does every step built from whole products, `transformers`' included: a step
# at its GEMVs would still be above what the machine can do. On one thread there is nothing to
# split; and a step that split its products would be a different kernel call from the modules',
# so `generate` keeps them whole, the modules' own calls.
#
# ### What `torch.compile` buys
#
# The usual answer to "too many small operations" is a compiler: `torch.compile` traces the step
# into one graph and generates fused code for it (on a CPU, C++ built by the machine's own
# compiler). We compile the draft's step, which has the most overhead to remove, and time it
# against the eager one. Where torch cannot compile (no C++ compiler, an unsupported platform),
# the cell says why instead.

# %%
# NBVAL_IGNORE_OUTPUT
try:
    compiled = compiled_step(draft, context)
    print(f"compiling took {compiled.compile_seconds:.0f} s; one draft step: eager {compiled.eager * 1e3:.3f} ms, "
          f"compiled {compiled.compiled * 1e3:.3f} ms ({compiled.eager / compiled.compiled:.2f}x)")
    print(f"largest difference between their logits: {compiled.largest_difference:.1e}")
except RuntimeError as error:
    print(error)

# %% [markdown]
# Two things to weigh. Speed: on the 2-core servers this course is tested on, the compiled step
# was no faster than the eager one, because what is left after `decode_step` is mostly kernels
# the compiler calls anyway (the matrix products, attention) and the compiled code has a fixed
# cost per call of its own (checking that the inputs still match the graph). Sameness: the
# compiler fuses and reorders arithmetic, so its logits differ from the eager ones in the last
# bits. That is harmless for sampling, but it is why `generate` does not compile: the course
# promises the same tokens on every path, and a difference in the last bit can flip a near-tie
# in greedy decoding. Your CPU may tell a different story about speed: the cell above is the
# measurement.
#
# ## 8. Attention without the T × T matrix: the online softmax
#
# The cache answers the cost of generating one token at a time. Running a whole prompt at once
# (the prefill, and every step of training in lesson 05) has a memory problem of its own.
# Attention written out, as in lesson 01, first computes the score of every query against every
# key, a (B, H, T, T) matrix, then masks it into another and takes its softmax into a third,
# and only then multiplies by the values. Each of these matrices is written to memory and read
# back, in every layer, and each grows with T²: at 32,768 tokens one of them is 4 GiB per head
# in float32.
#
# FlashAttention ([Dao et al. 2022](https://arxiv.org/abs/2205.14135), "FlashAttention: Fast and Memory-Efficient Exact Attention
# with IO-Awareness") never writes it. It takes the keys a block at a time and keeps, for each
# query, three running quantities: the largest score seen so far $m$, the sum $\ell$ of
# $e^{s - m}$ over the scores seen so far, and the output so far, the values weighted by the same
# $e^{s - m}$. Lesson 01 subtracted a row's maximum before exponentiating, so that nothing
# overflows; here the maximum is not known until the last block, so each block may raise it, and
# when it rises from $m$ to $m'$ everything summed so far was measured against the old one:
# multiplying $\ell$ and the output by $e^{m - m'}$ puts them on the new footing. After the last
# block, output ÷ $\ell$ is exactly the softmax-weighted sum. This one-pass softmax with a running
# maximum is [Milakov & Gimelshein's](https://arxiv.org/abs/1805.02867) (2018, "Online normalizer calculation for softmax");
# FlashAttention applies it to attention inside one GPU kernel, so the blocks never leave the
# chip's fast memory.
#
# Here it is with the keys in blocks of `block_size`. At most (B, H, T, `block_size`) scores
# exist at once, against (B, H, T, T) written out.

# %%
def online_softmax_attention_by_hand(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                     block_size: int) -> torch.Tensor:
    """Causal attention (B, H, T, D) of q, k, v (B, H, T, D), taking the keys block_size at a
    time with a running maximum and sum, so that no more than (B, H, T, block_size) scores exist."""
    # EXERCISE online_softmax: Return causal attention (B, H, T, D), taking the keys block_size at a time: keep each query's running max score, running sum of exponentials and running output, rescaled whenever the max rises; never hold more than (B, H, T, block_size) scores.
    raise NotImplementedError("Return causal attention (B, H, T, D), taking the keys block_size at a time: keep each query's running max score, running sum of exponentials and running output, rescaled whenever the max rises; never hold more than (B, H, T, block_size) scores.")


# %%
checks.online_softmax(online_softmax_attention_by_hand)

# %% [markdown]
# Key 0 is in every query's past, so the first block gives every row a finite maximum, and a
# later block that lies wholly in a query's future adds $e^{-\infty} = 0$ to it. We run the real
# first layer over 512 tokens of the play and compare with attention written out (`attend` with
# its weights, the explicit path) and with PyTorch's `scaled_dot_product_attention`:

# %%
long_ids = text_ids[:, :config.context_length]
q_long, k_long, v_long = (heads(t) for t in block.attn.c_attn(first_layer_input(long_ids)).split(C, dim=2))
block_size = 64
tiled = online_softmax_attention_by_hand(q_long, k_long, v_long, block_size)
written_out, _ = attend(q_long, k_long, v_long, return_attention=True)
fused = F.scaled_dot_product_attention(q_long, k_long, v_long, is_causal=True)
check_below("online softmax vs attention written out: max difference", (tiled - written_out).abs().max(), 1e-5)
check_below("online softmax vs scaled_dot_product_attention: max difference", (tiled - fused).abs().max(), 1e-5)

# %% [markdown]
# Equal. Now the memory. `bytes_written` watches every torch operation as it runs and adds up
# the new tensors each one writes (views and in-place updates write nothing new); we count the
# three ways at 512 tokens and, on random queries, keys and values of the same shape, at 2,048:

# %%
def attention_ways(q, k, v) -> dict:
    return {
        "written out": lambda: attend(q, k, v, return_attention=True),
        f"online softmax, blocks of {block_size}": lambda: online_softmax_attention_by_hand(q, k, v, block_size),
        "scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }


long_random = [torch.randn(1, H, 2048, D, generator=generator) for _ in range(3)]
print(f"{'':>34}{'T':>6}{'largest tensor':>24}{'MB':>8}{'all tensors, MB':>17}")
written = {}
for T_counted, (q_, k_, v_) in ((512, (q_long, k_long, v_long)), (2048, long_random)):
    for name, run in attention_ways(q_, k_, v_).items():
        counted = written[name, T_counted] = bytes_written(run)
        print(f"{name:>34}{T_counted:>6}{str(counted.largest_shape):>24}{counted.largest / 1e6:>8.1f}"
              f"{counted.total / 1e6:>17.1f}")
for T_counted in (512, 2048):
    scores_bytes = H * T_counted * T_counted * 4  # one (1, H, T, T) float32 matrix
    assert written["written out", T_counted].largest >= scores_bytes  # the T x T matrix, written
    assert written[f"online softmax, blocks of {block_size}", T_counted].largest <= H * T_counted * block_size * 4
    assert written["scaled_dot_product_attention", T_counted].largest < scores_bytes / 8

# %% [markdown]
# Written out, attention writes several T × T matrices (scores, masked scores, weights), and
# quadrupling T multiplies what it writes by about sixteen. The online softmax's largest tensor
# is one block of scores, T × 64 per head, so it grows only in step with T (asserted: no tensor
# larger than (1, H, T, 64)). Yet in all it writes *more* than attention written out (the last
# column): every line of the loop is a separate PyTorch operation that writes its own tensor,
# scores, masked scores, exponentials, rescaled sums, for every block. What our version shows is
# the algorithm, that the T × T matrix is never needed whole. What FlashAttention gains on a GPU
# comes from doing all of a block's lines inside one kernel, where the tile stays in the chip's
# fast on-chip memory and only the output goes out to main memory.
#
# PyTorch's CPU `scaled_dot_product_attention` is such a kernel: the dispatch mode sees one
# operation that writes only the output and one number per query (the log of the softmax's sum,
# kept for a backward pass); its tiles live inside the kernel and are never tensors (asserted: its
# largest tensor is under an eighth of one T × T matrix). That is why lesson 05's fused attention
# is faster than attention written out.
#
# Two more things the real kernel does. It tiles the queries too, so that a tile is block × block,
# and it skips the tiles that lie wholly above the causal diagonal, about half the work. And its
# backward pass recomputes the tiles from the saved maximum and sum instead of storing the T × T
# weights, which is what lets training run on long contexts.

# %% [markdown]
# ## 9. The end of the context window
#
# The model has learned position embeddings for 512 positions and no more. `generate` refuses a
# request that would go past them, before doing any work:

# %%
long_prompt = text_ids[:, :500]
try:
    generate(model, long_prompt, max_new_tokens=30)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# `transformers` warns, then fails inside the model when it looks up position 512:

# %%
try:
    hf_model.generate(long_prompt, attention_mask=torch.ones_like(long_prompt), max_new_tokens=30, do_sample=False,
                      pad_token_id=tokenizer.eos_token_id)
except IndexError as error:
    print("IndexError:", error)

# %% [markdown]
# To keep writing past the window, one has to drop the oldest tokens and carry on with the last
# ones (a *sliding window*). With learned absolute positions the cache cannot simply slide with
# it: every cached key was computed at its old position. Here is the same token's key in the first
# layer, computed once at position 50 and once at position 49 (the window moved by one):

# %%
def first_layer_keys(ids: torch.Tensor) -> torch.Tensor:
    return block.attn.c_attn(first_layer_input(ids)).split(C, dim=2)[1]  # (1, T, C)


at_50 = first_layer_keys(text_ids[:, :100])[0, 50]
at_49 = first_layer_keys(text_ids[:, 1:101])[0, 49]  # the same token, one position earlier
print(f"same token, positions 50 and 49: max key difference {(at_50 - at_49).abs().max().item():.2f} "
      f"(typical key size {at_50.abs().mean().item():.2f})")
assert not torch.allclose(at_50, at_49, atol=1e-2)

# %% [markdown]
# So a sliding window means recomputing the cache for the kept tokens (a new prefill) each time
# the window moves, for example by half a window at a time so that the cost is paid rarely.
#
# ## Check your understanding
#
# 1. Without a cache, generating N tokens costs work proportional to what power of N? With one?
#    Which rows of the table in section 1 show it?
# 2. Why does a single new token need no attention mask when attending to the cache, while three
#    new tokens do? Which entries of the printed mask stop them seeing their future?
# 3. GPT-2 Large serves 8 users with 1024-token contexts in float16. How much cache memory is
#    that? Check your answer with `kv_cache_bytes`.
# 4. The preallocated cache never copies. What does it give up in exchange, and when would a
#    growing cache be the better choice?
# 5. At batch 1 our loop does not reach the bandwidth ceiling. Name two things that would bring
#    it closer, and explain why a batch of 64 can exceed it.
# 6. Why can a cache not simply slide along with the window in a model with learned absolute
#    position embeddings?
# 7. The online softmax keeps a running maximum m. Show that leaving it out (summing $e^{s}$
#    directly) gives the same answer in exact arithmetic, and find a score at which float32 turns
#    it into `nan`. Then: with blocks of 64, how many scores does our version hold at once for one
#    head at T = 32,768, against attention written out?
