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
# # Lesson 06 — Seeing attention, finding what heads do, and testing the claim
#
# Every attention head computes, for each token, a set of weights over the tokens before it.
# Those weights are easy to draw, and pictures of them are everywhere, with claims that heads
# "specialise": this one looks at the previous word, that one copies. In this lesson we look, and
# then we check:
#
# 1. compute one head's weights by hand and prove them equal to `MiniGPT`'s and `transformers'`;
# 2. draw them: a heatmap with readable tokens, and every head of the model at once;
# 3. measure what each head does with five scores, and sort the heads by stated rules;
# 4. look for induction heads, the heads that copy; find none in our model, then grow one in a
#    minute of training and watch it appear suddenly;
# 5. remove heads one at a time and measure what each is worth;
# 6. see what attention maps cannot tell you;
# 7. explore any head on any text with a widget.
#
# All of it lives in `course_utils.attention`, which works on a `MiniGPT` and on `transformers`
# models alike.

# %% [markdown]
# **Exercise workbook.** This is lesson 06 with 4 pieces of code left for you to write: `previous_token_score`, `mean_distance`, `attention_entropy`, `induction_score`. Each blank raises `NotImplementedError` with its task: write the body, run its cell, then the check cell below it. A wrong answer shows the smallest input it fails on, what was expected, what came back and what differs. Stuck? `checks.hint("name")` prints a hint, a nudge first; call it again for the next, closer one. Run the workbook top to bottom: it stops at the first blank. The solved lesson is `notebooks/06_attention.ipynb`.
#
# To start one exercise again, copy its blank from `git show HEAD:exercises/06_attention.py`; to reset the whole workbook, run `git checkout exercises/06_attention.ipynb exercises/06_attention.py`.

# %%
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from course_utils import MiniGPT, load_model
from course_utils.attention import (
    ablation_effects,
    attention_weights,
    copying_loss,
    entropy,
    head_scores,
    induction_score,
    mean_distance,
    plot_attention,
    plot_head_grid,
    plot_score_table,
    previous_token_score,
    repeated_block_batch,
    repeated_random_tokens,
    token_labels,
    train_copying_model,
)
from course_utils.attention_explorer import ALL_HEADS, AttentionExplorer
from course_utils.data import load_corpus
from course_utils.hub import model_name
from course_utils.lesson import check_below, seeded_generator, setup
from course_utils.model import GPTConfig

generator = setup(seed=0)
hf_model, tokenizer = load_model()
model = MiniGPT.from_hf(hf_model)
config = model.config
L, H, D = config.n_layer, config.n_head, config.head_size
print(f"model: {model_name()}, {L} layers x {H} heads")

# %%
from course_utils import checks

# %% [markdown]
# ## 1. One head's weights, by hand
#
# A head projects each token's vector to a query q and a key k (D numbers each). The score of
# query $i$ for key $j$ is $q_i \cdot k_j / \sqrt{D}$; keys after $i$ are masked to $-\infty$; a softmax over each row turns
# scores into weights that sum to 1. Here is head 0 of the first layer, computed from the model's
# own matrices, and compared with the weights `MiniGPT.forward_with_attention` returns and with
# those of `transformers`, asked with `output_attentions=True` (which needs its "eager" attention
# path; `attention_weights` switches to it for the call).

# %%
line = "ROMEO.\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
ids = tokenizer(line, return_tensors="pt").input_ids  # (1, T)
T = ids.shape[1]
block = model.h[0]
with torch.no_grad():
    x = block.ln_1(model.wte(ids) + model.wpe(torch.arange(T)))  # the first layer's input, (1, T, C)
    q, k, _ = block.attn.c_attn(x).split(config.n_embd, dim=2)
    q, k = q[..., :D], k[..., :D]  # head 0 is the first D dimensions: (1, T, D)
    scores = q @ k.transpose(-2, -1) / D**0.5  # (1, T, T)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    by_hand = scores.masked_fill(future, float("-inf")).softmax(dim=-1)[0]  # (T, T)
ours = attention_weights(model, ids)  # a list of L tensors (1, H, T, T)
theirs = attention_weights(hf_model, ids)
print(f"{len(ours)} layers of weights, each {tuple(ours[0].shape)}")
check_below("by hand vs MiniGPT, layer 0 head 0: largest difference", (by_hand - ours[0][0, 0]).abs().max(), 1e-5)
check_below("MiniGPT vs transformers, every layer and head: largest difference",
            max((a - b).abs().max() for a, b in zip(ours, theirs)), 1e-5)

# %% [markdown]
# ## 2. Looking
#
# A heatmap puts queries down the side and keys along the top; row i is where token i looks. The
# upper triangle is empty: the causal mask. Token labels show spaces as `␣` and line breaks as `⏎`,
# so that every token can be read.

# %%
labels = token_labels(tokenizer, ids[0])
fig, ax = plt.subplots(figsize=(9, 8))
plot_attention(ours[3][0, 5], labels, ax, title="layer 3, head 5")
plt.tight_layout()
plt.show()

# %% [markdown]
# And every head at once, one small map each, layers down and heads across:

# %%
plot_head_grid(ours, figure_width=12)
plt.show()

# %% [markdown]
# Some maps spread their weight widely, others put it on a few recent tokens. It is tempting to
# read a pattern by layer into the grid; pictures invite such stories, and numbers test them.
#
# ## 3. What heads do, measured
#
# Each score is a mean over the queries of 8 passages of *Hamlet* (a validation play) of 128
# tokens each (`course_utils.attention` states each rule exactly):
#
# - **previous-token**: the weight on the token just before, w[i, i−1];
# - **first-token** (an "attention sink": heads with nothing to do often park weight on the first
#   token, [Xiao et al. 2023](https://arxiv.org/abs/2309.17453)): the weight on position 0;
# - **mean distance**: how many tokens back a head looks, on average;
# - **entropy**: how spread its weights are, $-\sum_j w_{ij} \ln w_{ij}$ in nats (0: all on one token;
#   uniform over $n$ tokens: $\ln n$).

# %%
hamlet = torch.tensor(tokenizer.encode(load_corpus().validation["hamlet"], verbose=False))
starts = torch.linspace(1000, len(hamlet) - 2000, 8).long()
windows = torch.stack([hamlet[start : start + 129] for start in starts])  # (8, 129): inputs and next tokens
weights = attention_weights(model, windows[:, :-1])
scores = head_scores(weights)
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
for ax, (name, table) in zip(axes.flatten(), scores.items()):
    plot_score_table(table, name.replace("_", " "), ax, fmt=".1f" if name == "mean_distance" else ".2f")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each rule is a line or two of tensor code. Here are three of them for one head's weights on one
# passage, w (T, T), written out and checked against `course_utils.attention` (layer 2, head 3,
# first passage).

# %%
def previous_token_by_hand(w: torch.Tensor) -> torch.Tensor:
    """Mean of w[i, i-1] over the queries i = 1 .. T-1 of one head's weights w (T, T)."""
    # EXERCISE previous_token_score: Return the mean over queries i >= 1 of w[i, i - 1], the weight on the token just before (a 0-d tensor).
    raise NotImplementedError('Return the mean over queries i >= 1 of w[i, i - 1], the weight on the token just before (a 0-d tensor).')


def mean_distance_by_hand(w: torch.Tensor) -> torch.Tensor:
    """Mean over the queries i of sum_j w[i, j] (i - j): how far back a head looks, in tokens."""
    # EXERCISE mean_distance: Return the mean over all queries i of sum_j w[i, j] (i - j), in tokens (a 0-d tensor).
    raise NotImplementedError('Return the mean over all queries i of sum_j w[i, j] (i - j), in tokens (a 0-d tensor).')


def entropy_by_hand(w: torch.Tensor) -> torch.Tensor:
    """Mean over the queries i of -sum_j w[i, j] ln w[i, j], in nats, with 0 ln 0 = 0."""
    # EXERCISE attention_entropy: Return the mean over all queries of -sum_j w[i, j] ln w[i, j], in nats, counting 0 ln 0 as 0 (a 0-d tensor).
    raise NotImplementedError('Return the mean over all queries of -sum_j w[i, j] ln w[i, j], in nats, counting 0 ln 0 as 0 (a 0-d tensor).')

# %%
checks.previous_token_score(previous_token_by_hand)

# %%
checks.mean_distance(mean_distance_by_hand)

# %%
checks.attention_entropy(entropy_by_hand)

# %%
one_head = [weights[2][:1, 3:4]]  # layer 2, head 3, the first passage: a list of one (1, 1, T, T)
for name, by_hand, rule in [("previous-token", previous_token_by_hand, previous_token_score),
                            ("mean distance", mean_distance_by_hand, mean_distance),
                            ("entropy", entropy_by_hand, entropy)]:
    check_below(f"{name} by hand against course_utils.attention", abs(by_hand(one_head[0][0, 0]) - rule(one_head)[0, 0]),
                1e-5)


# %% [markdown]
# Now sort the heads, by rules stated before looking: a head is **previous-token** if more than
# 0.4 of its weight is on the previous token, a **sink** if more than 0.4 is on the first token,
# **local** if it looks fewer than 8 tokens back on average, and **broad** otherwise (the first
# rule that holds wins).

# %%
def kind_of_head(layer: int, head: int) -> str:
    if scores["previous_token"][layer, head] > 0.4:
        return "previous-token"
    if scores["first_token"][layer, head] > 0.4:
        return "sink"
    if scores["mean_distance"][layer, head] < 8:
        return "local"
    return "broad"


kinds = {(layer, head): kind_of_head(layer, head) for layer in range(L) for head in range(H)}
for kind in ("previous-token", "sink", "local", "broad"):
    heads = [f"{layer}.{head}" for (layer, head), k in kinds.items() if k == kind]
    print(f"{kind:>15}: {len(heads):>2} heads {' '.join(heads)}")
print("(heads are named layer.head)")

# %% [markdown]
# One example of each kind this model has, on the *Hamlet* passage (the sharpest head of its
# kind, by entropy):

# %%
present = [kind for kind in ("previous-token", "sink", "local", "broad") if kind in kinds.values()]
passage_labels = token_labels(tokenizer, windows[0, :40])
fig, axes = plt.subplots(1, len(present), figsize=(6 * len(present), 6), squeeze=False)
for ax, kind in zip(axes[0], present):
    members = [head for head, k in kinds.items() if k == kind]
    layer, head = min(members, key=lambda lh: scores["entropy"][lh].item())
    plot_attention(weights[layer][0, head, :40, :40], passage_labels, ax, title=f"{kind}: layer {layer}, head {head}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Induction heads: looking for them, then growing one
#
# An **induction head** completes patterns: if "A B" appeared earlier and the current token is A,
# it attends to the B that followed the earlier A and copies it ([Olsson et al. 2022](https://arxiv.org/abs/2209.11895), "In-context
# Learning and Induction Heads"). Large models have them, and they are thought to carry much of
# in-context learning. The test: a block of random tokens, then the same block again. Random
# tokens cannot be predicted, so the first copy is hard; a model with induction heads predicts the
# second copy almost perfectly, and its induction heads put their weight on "the token after the
# earlier occurrence" (`induction_score`).

# %%
repeated = repeated_random_tokens(8, 100, config.vocab_size, seeded_generator(0))  # (8, 200)
with torch.no_grad():
    nll = -model(repeated).log_softmax(-1)[:, :-1].gather(-1, repeated[:, 1:, None]).squeeze(-1)  # (8, 199)
first_copy, second_copy = nll[:, :99].mean().item(), nll[:, 100:].mean().item()


def induction_score_by_hand(w: torch.Tensor, block: int) -> torch.Tensor:
    """One head's weights (T, T) on a block of ``block`` tokens repeated twice (T = 2 block):
    its induction score (a 0-d tensor)."""
    # EXERCISE induction_score: Return the mean, over the queries of the second copy, of the weight on the key just after the query token's first occurrence (a 0-d tensor).
    raise NotImplementedError("Return the mean, over the queries of the second copy, of the weight on the key just after the query token's first occurrence (a 0-d tensor).")


# %%
checks.induction_score(induction_score_by_hand)

# %%
bundled_induction = induction_score(attention_weights(model, repeated), block=100)
first_layer = attention_weights(model, repeated)[0].mean(dim=0)  # (H, T, T), averaged over the batch
assert all(abs(induction_score_by_hand(first_layer[h], 100) - bundled_induction[0, h]) < 1e-5
           for h in range(first_layer.shape[0]))
print(f"{model_name()}: loss on the first copy {first_copy:.1f} nats per token, on the second {second_copy:.1f}")
print(f"largest induction score of any head: {bundled_induction.max().item():.2f}")
if model_name() == "shakespeare-gpt":  # what this model is; GPT-2 (COURSE_MODEL=gpt2) differs
    assert second_copy > first_copy - 0.5 and bundled_induction.max() < 0.05

# %% [markdown]
# The bundled model has none: the second copy is no easier than the first (random tokens are
# rare tokens, so both losses are far above its usual 4 nats), and no head looks where an
# induction head would. Why not, this lesson cannot settle. Its training text, Shakespeare's
# plays (verse and prose, about 1.5 million tokens), seldom repeats a long span within one
# window, so copying seldom pays. But ordinary text is like that too, and Olsson et al. saw
# induction heads form early in training in every model of two or more layers they trained on it;
# their "early", though, came after far more tokens than this model ever saw (lesson 05's table:
# its corpus about a dozen times over). Too little training may be the reason as much as the kind
# of text. (Run the lesson with `COURSE_MODEL=gpt2` and the same cell measures GPT-2, which was
# trained on far more web text, full of repeats.)
#
# So we make a model that needs to copy. Each training row is a random block of 6 to 24 tokens
# repeated to fill 64 positions (`repeated_block_batch`). The block length changes from row to
# row, so looking a fixed distance back does not work: the model must find where the current
# token appeared before and copy what followed. A 2-layer model, 64 wide with 4 heads and a
# vocabulary of 64, trained for 400 steps; every 20 steps we measure its loss on the copyable
# positions of a held-out batch. (This cell trains for about half a minute; its numbers vary a
# little from one CPU to another, so its output is not compared, and its asserts check the
# claims.)

# %% tags=["readme-figure"]
# NBVAL_IGNORE_OUTPUT
copier_config = GPTConfig(vocab_size=64, context_length=64, n_layer=2, n_head=4, n_embd=64)
copier, history = train_copying_model(copier_config, steps=400, eval_every=20)
fig, ax = plt.subplots(figsize=(7, 3.5))
_ = ax.plot(history["step"], history["copying_loss"], "o-")
ax.set(xlabel="training step", ylabel="loss on copyable tokens (nats)", title="An induction head forms: the phase change")
plt.tight_layout()
plt.show()
drops = [before - after for before, after in zip(history["copying_loss"], history["copying_loss"][1:])]
sharpest = max(range(len(drops)), key=drops.__getitem__)
print(f"copying loss: {history['copying_loss'][0]:.2f} at step 20, {history['copying_loss'][sharpest]:.2f} at step "
      f"{history['step'][sharpest]}, {history['copying_loss'][sharpest + 1]:.2f} 20 steps later, "
      f"{history['copying_loss'][-1]:.2f} at step {history['step'][-1]}")
assert history["copying_loss"][-1] < 1.5 < 3.0 < history["copying_loss"][0]
assert max(drops) > 0.3  # one 20-step interval does much of the work: a phase change, not a slope

# %% [markdown]
# For the first couple of hundred steps the loss creeps down, from the 4.2 nats of a uniform
# guess (ln 64) by learning which tokens occur in the row. Then within a few dozen steps it
# falls by several nats. That sudden drop is the "phase change" Olsson et al. describe. Which
# heads did it? Score every head on repeated random tokens:

# %%
# NBVAL_IGNORE_OUTPUT
test_rows = repeated_random_tokens(16, 24, 64, seeded_generator(5))
copier_weights = attention_weights(copier, test_rows)
copier_induction = induction_score(copier_weights, block=24)
copier_previous = head_scores(copier_weights)["previous_token"]
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
plot_score_table(copier_induction, "induction score", axes[0])
plot_score_table(copier_previous, "previous-token score", axes[1])
plt.tight_layout()
plt.show()
induction_heads = [(1, h) for h in range(4) if copier_induction[1, h] > 0.3]
previous_heads = [(0, h) for h in range(4) if copier_previous[0, h] > 0.1]
print(f"induction heads (score > 0.3): {induction_heads}; previous-token heads in layer 0 (score > 0.1): "
      f"{previous_heads}")
print("layer 0's previous-token scores: " + ", ".join(f"{score:.2f}" for score in copier_previous[0].tolist()))
assert induction_heads and previous_heads and copier_induction[0].max() < 0.1

# %% [markdown]
# The second layer's heads are induction heads. The first layer's put only a fifth or so of their
# weight on the previous token (printed): by section 3's rule, which asks for more than 0.4, none
# of them is a previous-token head. We call them previous-token heads here with a lower bar, 0.1,
# chosen after looking, so the bar proves nothing by itself; what establishes their role is the
# ablation below. Four heads share the job, each carrying part of it. That is the circuit Olsson et al. found: a first-layer head writes "my previous token was A"
# into each position, so a second-layer head can search for "the position whose previous token
# is A" (the current token) and copy that position's token. An induction head cannot work
# without its previous-token partner, and we can test that: knock heads out and measure the
# copying loss again.

# %%
# NBVAL_IGNORE_OUTPUT
held_out = repeated_block_batch(64, 65, 64, seeded_generator(9))
copying = {"all heads": copying_loss(copier, *held_out)}
for name, group in (("one induction head", induction_heads[:1]), ("all induction heads", induction_heads),
                    ("one previous-token head", previous_heads[:1]), ("all previous-token heads", previous_heads)):
    mask = torch.ones(2, 4)
    for layer, head in group:
        mask[layer, head] = 0.0
    copying[name] = copying_loss(copier, *held_out, head_mask=mask)
for name, loss in copying.items():
    print(f"{name:>24} removed: copying loss {loss:.2f}" if name != "all heads" else f"{'with all heads':>32}: {loss:.2f}")
before_the_change = max(history["copying_loss"][: sharpest + 1])  # the loss before the sudden drop
print(f"{'before the phase change':>32}: {before_the_change:.2f} at most")
print(f"{'a uniform guess (ln 64)':>32}: {math.log(64):.2f}")
assert copying["all induction heads"] > copying["all heads"] + 1.5
assert copying["all previous-token heads"] > copying["all heads"] + 1.5
assert min(copying["all induction heads"], copying["all previous-token heads"]) > before_the_change

# %% [markdown]
# Removing one head costs a little. Removing all heads of either kind does not take the model
# back to where it was before the phase change: it leaves it *worse* than it ever was on this
# data (asserted), and worse than guessing uniformly among the 64 tokens where the printed loss
# is above ln 64. The rest of the model now counts on these heads: the layers after them were
# trained to read what they write, and without it they are confidently wrong. And the model
# spread the circuit over several heads that back each other up, which is why removing heads one
# at a time can make a mechanism look unimportant. Keep that in mind for the next section.
#
# ### Induction heads and in-context learning
#
# [Olsson et al. (2022)](https://arxiv.org/abs/2209.11895) tie induction heads to *in-context learning*: a model predicting later
# tokens of a text better than earlier ones because it uses what the text said before. GPT-2's
# paper showed a language model doing tasks zero-shot, from the prompt alone; GPT-3's showed it
# doing them few-shot, from a handful of examples in the prompt, with no change to its weights:
# prompting as an alternative to fine-tuning (lesson 09 uses it). Olsson et al.'s simplest
# measure is the loss late in a context minus the loss early in it: negative means the context
# helps. We measure it for both models, on their own kind of text:

# %%
# NBVAL_IGNORE_OUTPUT
def loss_by_position(model: MiniGPT, rows: torch.Tensor) -> torch.Tensor:
    """(N, T) ids -> (T - 1,) mean nats at each position over the rows."""
    with torch.no_grad():
        log_probs = model(rows[:, :-1]).log_softmax(dim=-1)
    return -log_probs.gather(-1, rows[:, 1:, None]).squeeze(-1).mean(dim=0)


hamlet_rows = torch.stack([hamlet[start : start + 501] for start in starts])  # (8, 501) from section 3's passages
bundled_by_position = loss_by_position(model, hamlet_rows)
copier_by_position = loss_by_position(copier, held_out[0])
in_context = {
    "shakespeare-gpt on Hamlet": (bundled_by_position[40:50].mean(), bundled_by_position[400:500].mean()),
    "copying model, its data": (copier_by_position[4:6].mean(), copier_by_position[40:64].mean()),
}
for name, (early, late) in in_context.items():
    print(f"{name:>26}: early {early:.2f}, late {late:.2f} nats per token; late - early {late - early:+.2f}")
assert all(late < early for early, late in in_context.values())

# %% [markdown]
# Both are negative: later tokens are easier for both models. For the copying model the context
# is everything (its tokens are random, so only copying helps). The bundled model has no
# induction heads, so its gain comes from other mechanisms, which we have not pinned down here
# (plausibly the names and words the scene has already used). In-context learning is a measured
# effect that many mechanisms can produce; induction heads are the best understood of them.

# %% [markdown]
# ## 5. Which heads matter? Ablation
#
# A score says where a head looks, not whether what it finds is used. To measure that, remove the
# head: each attention layer of `MiniGPT` has a `head_mask` attribute, one factor per head that
# multiplies the head's output before the heads are mixed, so a 0 knocks one head out and nothing
# else changes (`heads_scaled` sets it for every layer from a (layers, heads) table, for the
# duration of a `with` block; the forward pass itself takes no extra argument).
# `ablation_effects` does it for every head in turn and returns how much the next-token loss on
# the *Hamlet* passages rises.

# %%
base_loss, effects = ablation_effects(model, windows)
fig, ax = plt.subplots(figsize=(7, 4.5))
plot_score_table(effects, f"loss rise without each head (nats; all heads: {base_loss:.2f})", ax, fmt=".2f",
                 cmap="magma")
plt.show()
ranked = sorted(((effects[lh].item(), lh) for lh in kinds), reverse=True)
(top_rise, top), (second_rise, _) = ranked[:2]
print(f"removing one head at a time: the loss rises by at most {top_rise:.2f} nats (layer {top[0]}, head {top[1]}, "
      f"a {kinds[top]} head); the next largest rise is {second_rise:.2f}")
print(f"heads whose removal costs less than 0.01 nats: {sum(rise < 0.01 for rise, _ in ranked)} of {L * H}")

# %% [markdown]
# Does the picture predict it? Compare each head's cost with its scores, across all heads
# (Pearson correlation; +1 would mean the score ranks heads exactly by importance):

# %%
for name in ("previous_token", "mean_distance", "entropy"):
    correlation = torch.corrcoef(torch.stack([scores[name].flatten(), effects.flatten()]))[0, 1].item()
    print(f"{name.replace('_', ' '):>15} vs loss rise: correlation {correlation:+.2f}")

# %% [markdown]
# Barely at all. Half the heads can go for less than a hundredth of a nat each, the one that
# matters most is a first-layer head that the scores call broad, and no score ranks the heads by
# what they are worth. That is a finding about this one small model. Whether larger models'
# heads are more specialised we cannot test here; the clean heads in interpretability papers come
# from larger models, and are chosen examples.

# %% [markdown]
# ## 6. What attention maps do not tell you
#
# Attention weights say where a head *reads*; they do not say what it reads there, what it writes,
# or whether anything downstream uses it. The value vectors decide what is read, the output
# projection what is written, and later layers and the residual stream (which carries
# everything forward unchanged) decide what matters. Heads also back each other up, as the copying
# model showed. So a striking map can belong to a head that does little, and a dull one to a head
# that matters. Compare this model's sharpest head, by entropy, with its most diffuse:

# %%
sharpest = min(kinds, key=lambda lh: scores["entropy"][lh].item())
broadest = max(kinds, key=lambda lh: scores["entropy"][lh].item())
for name, (layer, head) in (("sharpest", sharpest), ("most diffuse", broadest)):
    print(f"{name:>12}: layer {layer} head {head}, entropy {scores['entropy'][layer, head]:.2f} nats, "
          f"loss rise without it {effects[layer, head]:.2f} nats")
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, (name, (layer, head)) in zip(axes, (("sharpest", sharpest), ("most diffuse", broadest))):
    plot_attention(weights[layer][0, head, :40, :40], passage_labels, ax, title=f"{name}: layer {layer}, head {head}")
plt.tight_layout()
plt.show()
if model_name() == "shakespeare-gpt":
    assert effects[broadest] > 2 * effects[sharpest]

# %% [markdown]
# The head whose map looks like nothing, weight smeared over the whole passage, is the one the
# model can least do without; the sharp, "interpretable" head costs a fraction of that. A broad
# head can still carry something essential, such as an average of the context (what play, what
# speaker, prose or verse), which no single cell of its map shows. Attention maps are a place to
# start a hypothesis; ablation, and experiments like the copying model's, are how to test it
# ([Jain and Wallace 2019](https://arxiv.org/abs/1902.10186), "Attention is not Explanation", argue the same for other models).
#
# ## 7. Explore
#
# Type any text, pick a layer and a head (or all heads, averaged), and the map and that head's
# scores on your text follow. The heatmap is an HTML table: hover over a cell for its weight.
# (The widget's stored output shows weights to three decimals, whose last digit can differ from
# one CPU to another, so it is not compared.)

# %%
# NBVAL_IGNORE_OUTPUT
explorer = AttentionExplorer(model, tokenizer, line, layer=sharpest[0], head=sharpest[1])
display(explorer.widget)

# %% [markdown]
# The controls can be moved from code too, exactly as with the mouse, which is how the course's
# tests check that the explorer follows them:

# %%
before = explorer.heatmap.value
explorer.controls["head"].value = ALL_HEADS
print("the map changed when the head changed:", explorer.heatmap.value != before)
print(f"tokens shown: {len(explorer.view.labels)}; weights {tuple(explorer.view.weights.shape)}")
assert explorer.heatmap.value != before

# %% [markdown]
# ## Check your understanding
#
# 1. Row i of an attention map always sums to 1. What does that force a head to do when nothing
#    in the context is relevant, and which score would show it?
# 2. The bundled model has no induction heads, yet it was trained on far more text than the
#    copying model. What about its data, and what about the copying data, explains that?
# 3. Removing one of the copying model's induction heads barely hurt; removing all of them undid
#    the phase change. What does that say about reading importance off single-head ablations?
# 4. Why can an induction head not exist in the first layer of a model? (Hint: what does a key
#    in layer 0 know about the token before it?)
# 5. The most diffuse head mattered most. Name something useful a head can compute by
#    spreading its weight evenly.
