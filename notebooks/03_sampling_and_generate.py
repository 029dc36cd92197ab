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
# # Lesson 03 — From logits to text: sampling and `generate()`
#
# A language model does not write text; it scores every possible next token. *Decoding* turns
# those scores into text, and the choice of decoding method changes the text more than most
# people expect. In this lesson we:
#
# 1. write the generation loop by hand, then check `course_utils.generate` does the same;
# 2. see what temperature, top-k, top-p and min-p keep on a small worked example;
# 3. watch greedy decoding fall into loops, and measure it;
# 4. combine filters, and see why their order matters;
# 5. build beam search by hand and prove it equal to `generate(num_beams=...)` and to
#    `transformers`;
# 6. use repetition, frequency and presence penalties;
# 7. meet the pitfalls of `model.generate()`;
# 8. batch with left padding, stream, and stop at a string;
# 9. measure the trade-offs of each method instead of guessing them;
# 10. play with a sampling playground.
#
# What is checked against `transformers`, and what cannot be: the filters (temperature, top-k,
# top-p, min-p) and the repetition penalty are tested to give the same logits as `transformers`'
# logits processors, ties included (`tests/test_filters.py`); greedy decoding, seeded sampling,
# beam search, left-padded batches, the KV cache (lesson 04: each step keeps the keys and values
# it computed, so the next step runs only the new token) and the model's generation-config defaults are
# tested to give the same tokens as `model.generate()` with the same arguments
# (`tests/test_generation.py`), and this lesson checks several of them again. Frequency and
# presence penalties have no `transformers` counterpart: they are tested against OpenAI's
# published rule instead. `StopOnText` is our own stopping criterion (`transformers` has a
# similar `stop_strings=`), tested to stop where the text first appears.

# %%
import copy
from functools import partial

import matplotlib.pyplot as plt
import torch
from transformers import TextStreamer

from course_utils import MiniGPT, generate, load_model
from course_utils.generation import StopOnText
from course_utils.lesson import seeded_generator, setup
from course_utils.sampling import (
    apply_frequency_presence_penalty,
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)
from course_utils.text_metrics import continuation_perplexity, distinct_n, repeated_ngram_rate
from course_utils.timing import interleaved_rates, paired_ratio, print_medians

generator = setup(seed=0)
hf_model, tokenizer = load_model()
model = MiniGPT.from_hf(hf_model)
EOS = tokenizer.eos_token_id


def encode(text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt").input_ids


def show(ids: torch.Tensor, prompt_length: int = 0) -> None:
    print(repr(tokenizer.decode(ids[prompt_length:])))


# %% [markdown]
# ## 1. The generation loop by hand
#
# Generation is a loop: run the model on the tokens so far, take the logits at the **last**
# position, pick a token, append it, repeat — until the model emits the end-of-text token or we
# reach `max_new_tokens`. Picking the most likely token every time is *greedy* decoding.

# %%
prompt = encode("JULIET.\nO Romeo, Romeo! wherefore art thou")
sequence = prompt
with torch.no_grad():
    for _ in range(25):  # max_new_tokens
        logits = model(sequence)[:, -1, :]  # (1, vocab): scores for the next token
        next_token = logits.argmax(dim=-1, keepdim=True)  # greedy pick
        sequence = torch.cat([sequence, next_token], dim=1)  # append
        if next_token.item() == EOS:  # stop at end-of-text
            break
show(sequence[0])

# %% [markdown]
# `generate()` runs this loop and gives exactly its tokens, with batching, padding, filters and
# beams added, and a KV cache (lesson 04): each step after the first runs only the new token
# through the model, reusing the keys and values of the earlier ones, where the loop above reruns
# the whole sequence:

# %%
assert torch.equal(generate(model, prompt, max_new_tokens=25, eos_token_id=EOS), sequence)
print("generate() == the hand-written loop")

# %% [markdown]
# ## 2. What each filter keeps: a worked example
#
# Suppose the model, after "The cat sat on the", predicts this distribution over eight
# candidates. Each decoding knob reshapes it before we draw.

# %% tags=["readme-figure"]
words = ["mat", "floor", "bed", "roof", "chair", "table", "ground", "other"]
probs = torch.tensor([0.35, 0.25, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03])
cat_logits = probs.log()[None, :]  # logits are log-probabilities up to a constant


def kept_distribution(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=-1)[0]


panels = {
    "original": cat_logits,
    "temperature 0.5": apply_temperature(cat_logits, 0.5),
    "temperature 2.0": apply_temperature(cat_logits, 2.0),
    "top-k = 3": top_k_filter(cat_logits, 3),
    "top-p = 0.8": top_p_filter(cat_logits, 0.8),
    "min-p = 0.2": min_p_filter(cat_logits, 0.2),
}
fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharey=True)
for ax, (title, logits) in zip(axes.flat, panels.items()):
    distribution = kept_distribution(logits)
    _ = ax.bar(words, distribution, color=["C0" if p > 0 else "lightgrey" for p in distribution])
    ax.set(title=title, xlabel="next token", ylabel="probability")
    ax.tick_params(axis="x", rotation=45)
plt.tight_layout()
plt.show()
for title, logits in panels.items():
    distribution = kept_distribution(logits)
    kept = ", ".join(f"{w} {p:.2f}" for w, p in zip(words, distribution) if p > 0)
    print(f"{title:>16}: {kept}")

# %% [markdown]
# - **Temperature** $T$ divides the logits $z$ before the softmax, $p_i = e^{z_i / T} / \sum_j e^{z_j / T}$:
#   below 1 sharpens (the favourite gains), above 1 flattens. It never removes a token.
# - **Top-k** keeps the k most likely tokens (all tokens tied with the k-th are kept). [Fan et al.
#   2018](https://arxiv.org/abs/1805.04833), "Hierarchical Neural Story Generation", wrote stories by sampling this way.
# - **Top-p** (nucleus) keeps the smallest set $S$ of most likely tokens with $\sum_{i \in S} p_i \ge p$;
#   the token that crosses $p$ is kept: mat + floor + bed = $0.75 < 0.8$, so roof (→ 0.85) stays.
#   [Holtzman et al. 2020](https://arxiv.org/abs/1904.09751), "The Curious Case of Neural Text Degeneration", proposed it, against
#   top-k's fixed k, and named the failure of likelihood-maximising decoding that section 3 shows:
#   *degeneration*, text that is bland, incoherent or stuck in repetitive loops.
# - **Min-p** keeps the tokens with $p_i \ge \text{min-p} \times \max_j p_j$: $0.2 \times 0.35 = 0.07$, so
#   roof (0.10) stays and chair (0.05) goes. Its cut-off adapts to how confident the model is
#   ([Nguyen et al. 2024](https://arxiv.org/abs/2407.01082), "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM
#   Outputs").

# %%
assert kept_distribution(panels["top-k = 3"]).gt(0).sum() == 3
assert kept_distribution(panels["top-p = 0.8"]).gt(0).tolist() == [True] * 4 + [False] * 4
assert kept_distribution(panels["min-p = 0.2"]).gt(0).tolist() == [True] * 4 + [False] * 4

# %% [markdown]
# The two filters most used are short enough to write yourself, and their edge cases are where
# implementations disagree: **ties** (top-k keeps every token tied with the k-th, as
# `transformers` does) and the **crossing token** (top-p keeps the token whose probability makes
# the running sum reach p, and a sum that lands exactly on p stops there). Written out by hand,
# each must equal the library's filter, which is tested against `transformers`' own.

# %%
def top_k_by_hand(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Logits (B, V) with every token below the top_k-th largest of its row set to -inf."""
    # EXERCISE top_k: Return the logits (B, V) with every token smaller than its row's top_k-th largest set to -inf (ties with it are kept).
    kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))
    # END EXERCISE


def top_p_by_hand(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits (B, V) with all but the nucleus of each row set to -inf: the most likely tokens, in
    order, up to and including the one whose probability makes the sum reach top_p."""
    # EXERCISE top_p: Return the logits (B, V) keeping, per row, the most likely tokens up to and including the one whose probability makes the sum reach top_p; the rest -inf.
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    before = sorted_logits.softmax(dim=-1).cumsum(dim=-1) - sorted_logits.softmax(dim=-1)
    remove_sorted = before >= top_p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))
    # END EXERCISE


tied = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])  # two tokens tied for second place
assert top_k_by_hand(tied, 2).isfinite().sum() == 3 == top_k_filter(tied, 2).isfinite().sum()
for p in (0.5, 0.75, 0.8, 0.95):  # at 0.95 one of the two tied 0.03 tokens goes: either may
    assert torch.equal(top_p_by_hand(cat_logits, p).sort().values, top_p_filter(cat_logits, p).sort().values)
print("top-k with a tie keeps", int(top_k_by_hand(tied, 2).isfinite().sum()), "tokens; top-p by hand = top_p_filter")

# %% [markdown]
# ## 3. Greedy decoding loops
#
# Greedy looks safe — always the best token — but a model's single most likely continuation is
# often a loop: once a phrase repeats, repeating it again becomes the most likely thing to do.
# [Holtzman et al. (2020)](https://arxiv.org/abs/1904.09751) call this *degeneration*, show it in greedy decoding and beam search
# alike (with GPT-2 Large), and made nucleus sampling to avoid it. We generate 150 tokens
# greedily and with sampling and measure the fraction of 4-grams that already occurred earlier in
# the same text.

# %%
prompt = encode("KING HENRY.\nOnce more unto the breach, dear friends,")
greedy = generate(model, prompt, max_new_tokens=150)[0]
sampled = generate(model, prompt, max_new_tokens=150, do_sample=True, top_p=0.9, top_k=0, generator=generator)[0]
for name, ids in (("greedy", greedy), ("sampled (top-p 0.9)", sampled)):
    rate = repeated_ngram_rate(ids[prompt.shape[1]:].tolist(), 4)
    print(f"--- {name}: {rate:.0%} of 4-grams are repeats")
    show(ids[:prompt.shape[1] + 60], prompt.shape[1])
greedy_rate = repeated_ngram_rate(greedy[prompt.shape[1]:].tolist(), 4)
assert greedy_rate > repeated_ngram_rate(sampled[prompt.shape[1]:].tolist(), 4)

# %% [markdown]
# **Why the loop feeds itself.** In training the model only ever predicted the next token of
# *Shakespeare's* text (this is called teacher forcing). Generating, it reads its own. Nothing in
# training showed it its own output, let alone its own mistakes: that train/test mismatch is
# called *exposure bias* ([Bengio et al. 2015](https://arxiv.org/abs/1506.03099), "Scheduled Sampling"; [Ranzato et al. 2016](https://arxiv.org/abs/1511.06732)). We do
# not measure exposure bias here. We measure something narrower that a loop needs: how certain
# the model becomes of its own greedy text as it goes. Take 8 passages of *Hamlet* (a validation
# play, never trained on), keep 32 tokens of each as a prompt, and score two continuations of 160
# tokens with the model: Shakespeare's own, and the model's greedy one. Split into four quarters
# of 40 tokens.

# %%
from course_utils.data import load_corpus  # noqa: E402

hamlet = torch.tensor(tokenizer.encode(load_corpus().validation["hamlet"], verbose=False))  # longer than the context: no warning
prompt_length, continuation_length = 32, 160
starts = torch.linspace(1000, len(hamlet) - 1000, 8).long()
shakespeare = torch.stack([hamlet[start : start + prompt_length + continuation_length] for start in starts])
own_greedy = generate(model, shakespeare[:, :prompt_length], max_new_tokens=continuation_length)
assert own_greedy.shape == shakespeare.shape


def continuation_nll(sequences: torch.Tensor) -> torch.Tensor:
    """(N, prompt + continuation) ids -> (N, continuation) nats the model gives each continuation token."""
    with torch.no_grad():
        log_probs = model(sequences)[:, prompt_length - 1 : -1].log_softmax(dim=-1)
    return -log_probs.gather(-1, sequences[:, prompt_length:, None]).squeeze(-1)


quarters = {name: continuation_nll(ids).view(len(starts), 4, -1).mean(dim=(0, 2))
            for name, ids in (("Shakespeare's text", shakespeare), ("its own greedy text", own_greedy))}
print(f"{'nats per token, by quarter':>28}: " + "  ".join(f"  Q{q + 1}" for q in range(4)))
for name, by_quarter in quarters.items():
    print(f"{name:>28}: " + "  ".join(f"{value:.2f}" for value in by_quarter))
assert quarters["its own greedy text"].max() < quarters["Shakespeare's text"].min() - 1
assert quarters["its own greedy text"][-1] < quarters["its own greedy text"][0]

# %% [markdown]
# That the model finds its own greedy text likelier than Shakespeare's says nothing new: greedy
# decoding picks the likeliest token at every step, so it scores well by construction. The
# informative part is the trend: the model grows *more* certain of its own text the longer it
# runs (asserted: its last quarter scores better than its first), while Shakespeare's text stays
# as surprising as ever. Each repetition makes the next more likely: the loop reinforces itself
# ([Xu et al. 2022](https://arxiv.org/abs/2206.02369), "Learning to Break the Loop", measure this in larger models). Sampling breaks
# out because it sometimes picks a less likely token. Training on the model's own outputs, as
# scheduled sampling does, attacks the train/test mismatch itself; how much that mismatch matters
# in large models is still argued about ([He et al. 2021](https://arxiv.org/abs/1905.10617), "Exposure Bias versus Self-Recovery").

# %% [markdown]
# ## 4. Combining filters, and their order
#
# In practice we combine temperature with top-k or top-p. `transformers` (and `generate`)
# apply them in a fixed order: penalties, then temperature, then top-k, then top-p, then min-p.
# Order matters because temperature changes the probabilities that top-p sums: flattening
# first makes the nucleus bigger.

# %%
temperature_then_top_p = top_p_filter(apply_temperature(cat_logits, 2.0), 0.8)
top_p_then_temperature = apply_temperature(top_p_filter(cat_logits, 0.8), 2.0)
print("temperature 2 → top-p 0.8 keeps", int(temperature_then_top_p.isfinite().sum()), "tokens")
print("top-p 0.8 → temperature 2 keeps", int(top_p_then_temperature.isfinite().sum()), "tokens")
assert temperature_then_top_p.isfinite().sum() > top_p_then_temperature.isfinite().sum()

# %% [markdown]
# With the filters in that order, the sampling loop is section 1's loop with the pick changed:
# shape the last position's logits, turn them into probabilities, and draw one token with a
# seeded `torch.Generator`, so that the same seed gives the same text. Write it; with the same
# seed it must give exactly the tokens `generate(do_sample=True)` gives.

# %%
def sample_by_hand(model, prompt: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int,
                   top_p: float, generator: torch.Generator) -> torch.Tensor:
    """prompt (B, T) -> (B, T + max_new_tokens), each new token drawn after temperature, top-k, top-p."""
    # EXERCISE sampling_loop: Return prompt (B, T) extended by max_new_tokens drawn tokens: each step shape the last position's logits (temperature, top-k, top-p) and draw one token per row with generator.
    sequence = prompt
    for _ in range(max_new_tokens):
        with torch.no_grad():
            last = model(sequence)[:, -1, :]  # (B, V)
        shaped = top_p_filter(top_k_filter(apply_temperature(last, temperature), top_k), top_p)
        drawn = torch.multinomial(shaped.softmax(dim=-1), num_samples=1, generator=generator)  # (B, 1)
        sequence = torch.cat([sequence, drawn], dim=1)
    return sequence
    # END EXERCISE


prompt = encode("ROMEO.\n")
by_hand = sample_by_hand(model, prompt, 30, temperature=0.8, top_k=40, top_p=0.9,
                         generator=seeded_generator(7))
library = generate(model, prompt, max_new_tokens=30, do_sample=True, temperature=0.8, top_k=40, top_p=0.9,
                   generator=seeded_generator(7))
assert torch.equal(by_hand, library)
print("sample_by_hand == generate(do_sample=True), same seed:")
show(by_hand[0], prompt.shape[1])

# %% [markdown]
# ## 5. Beam search, by hand
#
# Greedy commits to one token at a time. Beam search keeps the `num_beams` best partial
# sequences, the *beams*, scored by their summed log-probability. Each step extends every beam
# by every token and ranks all those candidates by their sums; the best `num_beams` candidates
# that do not end become the next beams. A candidate that ends, with end-of-text or at
# `max_new_tokens`, becomes a *finished hypothesis*, if it ranks among the best `num_beams` of
# the step, scored by its sum divided by its number of new tokens to the power `length_penalty`
# (above 0 favours longer outputs, 0 compares plain sums). Ranking the best 2 x `num_beams`
# candidates is always enough: at most one per beam ends with end-of-text, so at least
# `num_beams` are left to continue. With `early_stopping=True` the search stops once
# `num_beams` hypotheses have finished, and the best of them is the answer. These are
# `transformers`' rules; write them for a single prompt, and they must give exactly the tokens
# of `generate(num_beams=..., early_stopping=True)` and of `transformers`.

# %%
def beam_search_by_hand(model, prompt: torch.Tensor, num_beams: int, max_new_tokens: int,
                        eos_token_id: int | None = None, length_penalty: float = 1.0) -> torch.Tensor:
    """The best finished hypothesis (1, T + n), n <= max_new_tokens, for one prompt (1, T)."""
    # EXERCISE beam_search: Return the best finished hypothesis (1, T + n) for prompt (1, T) by transformers' rules above, with early_stopping=True.
    running = [(prompt[0], 0.0)]  # the beams: (tokens, summed log-probability)
    finished = []  # (sum / new tokens ** length_penalty, tokens), the best num_beams
    for new_tokens in range(1, max_new_tokens + 1):
        with torch.no_grad():
            log_probs = model(torch.stack([tokens for tokens, _ in running]))[:, -1, :].log_softmax(dim=-1)
        sums = torch.tensor([score for _, score in running])[:, None] + log_probs  # (beams, V)
        top_sums, top_indices = sums.flatten().topk(2 * num_beams)
        continuing = []
        for rank, (total, index) in enumerate(zip(top_sums.tolist(), top_indices.tolist())):
            beam, token = divmod(index, log_probs.shape[1])
            tokens = torch.cat([running[beam][0], torch.tensor([token])])
            if token == eos_token_id or new_tokens == max_new_tokens:
                if rank < num_beams:  # an ending candidate finishes only among the step's best num_beams
                    finished.append((total / new_tokens**length_penalty, tokens))
            elif len(continuing) < num_beams:
                continuing.append((tokens, total))
        finished = sorted(finished, key=lambda hypothesis: hypothesis[0], reverse=True)[:num_beams]
        running = continuing
        if len(finished) == num_beams:  # early_stopping=True
            break
    return finished[0][1][None]
    # END EXERCISE


prompt = encode("PROSPERO.\nOur revels now are ended.")
by_hand = beam_search_by_hand(model, prompt, num_beams=4, max_new_tokens=20, eos_token_id=EOS)
ours = generate(model, prompt, max_new_tokens=20, num_beams=4, eos_token_id=EOS, early_stopping=True)
theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, num_beams=4,
                           early_stopping=True, do_sample=False, pad_token_id=EOS)
assert torch.equal(by_hand, ours) and torch.equal(ours, theirs)
for penalty in (0.0, 2.0):  # other length penalties: still equal
    assert torch.equal(beam_search_by_hand(model, prompt, 3, 12, EOS, length_penalty=penalty),
                       generate(model, prompt, max_new_tokens=12, num_beams=3, eos_token_id=EOS,
                                length_penalty=penalty, early_stopping=True))
print("by hand == generate(num_beams=4) == transformers:")
show(ours[0], prompt.shape[1])
print("greedy for comparison:")
show(generate(model, prompt, max_new_tokens=20)[0], prompt.shape[1])

# %% [markdown]
# The full version in `generate` runs a batch of prompts at once, with a KV cache, and also has
# `transformers`' other stopping rules: `early_stopping=False` (the default) stops when the best
# running beam, at its current length, can no longer beat the worst finished hypothesis, and
# `"never"` when it cannot at any length; `num_return_sequences` returns the best few. Its tests
# compare it with `transformers` on hundreds of such settings.

# %%
best_three = generate(model, prompt, max_new_tokens=20, num_beams=5, num_return_sequences=3, length_penalty=0.6,
                      early_stopping=True, eos_token_id=EOS)
for rank, ids in enumerate(best_three, 1):
    print(rank, end=": ")
    show(ids, prompt.shape[1])

# %% [markdown]
# The three `early_stopping` settings differ only when beams finish, and that needs an end token
# the model actually emits. Ours rarely ends a play, so we make the end of a line the end of a
# hypothesis (`eos_token_id` = the newline token) and reward length (`length_penalty=2.0`, which
# divides a hypothesis's summed log-probability by its length squared, so longer ones score
# better). `True` stops as soon as `num_beams` hypotheses have finished; `False` stops once the
# best running beam, scored at its current length, cannot beat the worst finished one; `"never"`
# keeps going while a longer continuation could still win. Each is checked against
# `transformers`:

# %%
newline = tokenizer.encode("\n")[0]
prompt = encode("MACBETH.\nIs this a dagger")
endings = {}
for early_stopping in (True, False, "never"):
    ours = generate(model, prompt, max_new_tokens=30, num_beams=3, eos_token_id=newline, length_penalty=2.0,
                    early_stopping=early_stopping)
    theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, num_beams=3,
                               eos_token_id=newline, length_penalty=2.0, early_stopping=early_stopping,
                               do_sample=False, pad_token_id=EOS)
    assert torch.equal(ours, theirs), early_stopping
    endings[early_stopping] = ours[0, prompt.shape[1]:]
    print(f"early_stopping={early_stopping!r:>7}: {len(endings[early_stopping]):>2} new tokens ", end="")
    show(endings[early_stopping])
assert len({tuple(ids.tolist()) for ids in endings.values()}) == 3  # three settings, three answers

# %% [markdown]
# `True` returns the first short line it finished, `"never"` searches on and finds a longer one
# that scores better under the length penalty, and `False` sits between. `True` is the cheapest;
# `"never"` is the exact beam search; `False` is `transformers`' default compromise.
#
# ## 6. Repetition, frequency and presence penalties
#
# Instead of sampling, we can discourage repeats directly:
#
# - **repetition penalty**, as `transformers` applies it: every token already in the text,
#   prompt included, has its logit divided by the penalty if positive, multiplied if negative.
#   The idea comes from CTRL ([Keskar et al. 2019](https://arxiv.org/abs/1909.05858)), whose rule differs: it divides every
#   penalised logit by the penalty whatever its sign, and only for tokens generated so far;
# - **frequency penalty** (OpenAI): subtract `count × penalty` — the more often a token was
#   generated, the stronger the push;
# - **presence penalty** (OpenAI): subtract a flat amount from any token generated at least once.

# %%
logits = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
history = torch.tensor([[0, 2, 2]])
print("logits:                        ", logits[0].tolist())
print("repetition penalty 2:          ", apply_repetition_penalty(logits, history, 2.0)[0].tolist())
print("frequency 0.5 + presence 0.25: ", apply_frequency_presence_penalty(logits, history, 0.5, 0.25)[0].tolist())

# %% [markdown]
# The repetition penalty by hand: the only subtlety is the sign. Dividing a negative logit by a
# penalty above 1 would *raise* it, so negative logits are multiplied instead.

# %%
def repetition_penalty_by_hand(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Logits (B, V) after transformers' repetition penalty for the tokens in input_ids (B, T) of each row."""
    # EXERCISE repetition_penalty: Return the logits (B, V) with each token seen in its row of input_ids divided by penalty if positive, multiplied if negative.
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, input_ids, True)
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)
    # END EXERCISE


assert torch.equal(repetition_penalty_by_hand(logits, history, 2.0), apply_repetition_penalty(logits, history, 2.0))

# %%
prompt = encode("KING HENRY.\nOnce more unto the breach, dear friends,")
for name, arguments in {
    "greedy": {},
    "repetition_penalty=1.3": {"repetition_penalty": 1.3},
    "frequency_penalty=0.5": {"frequency_penalty": 0.5},
    "presence_penalty=1.0": {"presence_penalty": 1.0},
}.items():
    ids = generate(model, prompt, max_new_tokens=100, **arguments)[0, prompt.shape[1]:]
    print(f"{name:>24}: {repeated_ngram_rate(ids.tolist(), 4):5.1%} repeated 4-grams | "
          f"{tokenizer.decode(ids[:30])!r}")

# %% [markdown]
# ## 7. The pitfalls of `model.generate()`
#
# **`max_length` versus `max_new_tokens`.** `max_length` counts the prompt too: a limit that
# looks generous gives few new tokens after a long prompt, and one shorter than the prompt is an
# error. Always pass `max_new_tokens`.

# %%
long_prompt = encode("HAMLET.\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind")
mask = torch.ones_like(long_prompt)
for limits in (dict(max_length=long_prompt.shape[1] + 3), dict(max_length=24), dict(max_new_tokens=24)):
    try:
        out = hf_model.generate(long_prompt, attention_mask=mask, pad_token_id=EOS, **limits)
        print(f"prompt of {long_prompt.shape[1]} tokens, {limits} -> {out.shape[1] - long_prompt.shape[1]} new tokens")
    except ValueError as error:
        print(f"prompt of {long_prompt.shape[1]} tokens, {limits} -> ValueError: {error}")

# %% [markdown]
# **`attention_mask` and `pad_token_id`.** For one unpadded prompt, `transformers` infers an
# all-ones mask and pads finished rows with the EOS id, silently in the 5.x releases this course
# supports (4.x releases printed a warning even then). The trap is a *padded batch*
# without its mask: GPT-2's padding token is its EOS token, so padding cannot be told from text.
# `transformers` warns, and the padded rows really do come out wrong — compare each row with
# the same prompt generated alone:

# %%
tokenizer.padding_side = "left"  # why left: section 8
tokenizer.pad_token = tokenizer.eos_token
prompts = ["ROMEO.\n", "JULIET.\nO Romeo, Romeo!", "MERCUTIO.\nA plague o' both your houses!"]
batch = tokenizer(prompts, return_tensors="pt", padding=True)
without_mask = hf_model.generate(batch.input_ids, max_new_tokens=8, pad_token_id=EOS)
with_mask = hf_model.generate(**batch, max_new_tokens=8, pad_token_id=EOS)
for row, text in enumerate(prompts):
    alone = hf_model.generate(encode(text), attention_mask=torch.ones_like(encode(text)), max_new_tokens=8,
                              pad_token_id=EOS)[0, -8:]
    print(f"row {row} ({int(batch.attention_mask[row].eq(0).sum())} pads): without mask "
          f"{'ok   ' if torch.equal(without_mask[row, -8:], alone) else 'WRONG'} | with mask "
          f"{'ok' if torch.equal(with_mask[row, -8:], alone) else 'WRONG'}")
    assert torch.equal(with_mask[row, -8:], alone)

# %% [markdown]
# **`do_sample=False` ignores temperature.** Greedy and beam search never draw, so
# `temperature`, `top_k` and `top_p` do nothing there. `transformers` says so in a warning
# that is easy to miss; `generate` ignores them the same way:

# %%
plain = generate(model, prompt, max_new_tokens=15)
theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=15, temperature=0.1,
                           pad_token_id=EOS)
with_temperature = generate(model, prompt, max_new_tokens=15, temperature=0.1, top_k=3)
assert torch.equal(plain, with_temperature) and torch.equal(plain, theirs)
print("greedy with temperature=0.1 (and top_k=3) is still plain greedy")

# %% [markdown]
# **`temperature=0`.** Dividing logits by zero is not defined, yet many people write
# `temperature=0` to mean "greedy". Without `do_sample=True` it is greedy, because the temperature
# is ignored; asking to *sample* at temperature 0 is an error, in `transformers` and here.

# %%
assert torch.equal(generate(model, prompt, max_new_tokens=15, temperature=0.0), plain)
print("temperature=0 without do_sample: plain greedy")
for name, call in (("generate", lambda: generate(model, prompt, max_new_tokens=15, do_sample=True, temperature=0.0)),
                   ("transformers", lambda: hf_model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                                              max_new_tokens=15, do_sample=True, temperature=0.0,
                                                              pad_token_id=EOS))):
    try:
        call()
        raise AssertionError(f"{name} sampled at temperature 0")
    except ValueError as error:
        print(f"do_sample=True, temperature=0 -> {name}: ValueError: {str(error).splitlines()[0][:90]}")

# %% [markdown]
# **A model whose defaults sample.** `model.generate()` starts from the model's
# `generation_config`, shipped in its `generation_config.json`, and your arguments override it.
# Many chat models ship sampling on: Llama 3.1 8B Instruct's has `do_sample: true`,
# `temperature: 0.6`, `top_p: 0.9`. Then a call with no decoding arguments *samples*, and two
# runs give two texts. `generate` follows the same rule for a `transformers` model; a `MiniGPT`
# has no generation config and gets `transformers`' defaults (greedy). We give a copy of our
# model that configuration:

# %%
chat_style = copy.deepcopy(hf_model)
chat_style.generation_config.update(do_sample=True, temperature=0.6, top_p=0.9)
defaults = [generate(chat_style, prompt, max_new_tokens=15, generator=seeded_generator(seed))
            for seed in (1, 2)]
explicit = generate(chat_style, prompt, max_new_tokens=15, do_sample=False)
print(f"no arguments, seeds 1 and 2: {'the same text' if torch.equal(*defaults) else 'two different texts'}; "
      f"greedy? {torch.equal(defaults[0], plain)}")
print(f"do_sample=False passed explicitly: greedy? {torch.equal(explicit, plain)}")
assert not torch.equal(*defaults) and torch.equal(explicit, plain)

# %% [markdown]
# **What "deterministic" takes.** Greedy and beam search are deterministic by construction.
# Sampling repeats exactly only with a seeded generator (or global seed), on the same
# hardware, library versions and thread count — floating-point sums differ across them.

# %%
def sample(seed: int) -> torch.Tensor:
    return generate(model, prompt, max_new_tokens=20, do_sample=True, generator=seeded_generator(seed))


assert torch.equal(sample(7), sample(7))
print("same seed, same text:", torch.equal(sample(7), sample(7)), "| other seed, same text:",
      torch.equal(sample(7), sample(8)))

# %% [markdown]
# **Forgetting `model.eval()`.** Dropout is on in training mode and off in evaluation mode.
# `from_pretrained` returns a model in evaluation mode, but a training loop switches it to
# training mode, and a model left there drops 10% of its activations at random (our model's
# configuration: `resid_pdrop` and `embd_pdrop` 0.1) while it generates. Greedy decoding is
# then no longer repeatable. Five greedy runs of the same prompt:

# %%
def distinct_greedy_runs(runs: int = 5) -> int:
    """How many different texts ``runs`` greedy generations of the same prompt give."""
    outputs = {tuple(hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
                                       do_sample=False, pad_token_id=EOS)[0].tolist()) for _ in range(runs)}
    return len(outputs)


print(f"dropout p = {hf_model.config.resid_pdrop}")
hf_model.train()  # as a training loop leaves it
in_training_mode = distinct_greedy_runs()
hf_model.eval()
in_eval_mode = distinct_greedy_runs()
print(f"train mode: {in_training_mode} different texts from 5 greedy runs; eval mode: {in_eval_mode}")
assert in_training_mode > 1 and in_eval_mode == 1

# %% [markdown]
# **Errors learners hit**, each with the message `generate` gives: a token id the model does not
# know (from another model's tokenizer, say), and a prompt on another device than the model
# (here the `meta` device stands in for a GPU).

# %%
for bad_prompt in (torch.tensor([[5, 9000]]), prompt.to("meta")):
    try:
        generate(model, bad_prompt, max_new_tokens=5)
    except ValueError as error:
        print(f"ValueError: {error}")

# %% [markdown]
# ## 8. Batches, streaming and stop strings
#
# **Batching** several prompts needs equal lengths, so shorter prompts are padded. A decoder
# must be padded on the **left**: the next token is predicted from the last position, which
# must be real text. The attention mask hides the padding, and positions count from the first
# real token, so each row gives exactly what it gives alone.

# %%
print(batch.attention_mask)  # the left-padded batch of section 7
batched = generate(model, batch.input_ids, max_new_tokens=12, attention_mask=batch.attention_mask)
for row, text in enumerate(prompts):
    alone = generate(model, encode(text), max_new_tokens=12)
    assert torch.equal(batched[row, -alone.shape[1]:], alone[0])
    show(batched[row], batch.input_ids.shape[1])
print("each padded row equals its prompt generated alone")

# %% [markdown]
# **Streaming** prints text as it is generated, instead of after the last token; `generate`
# accepts `transformers`' `TextStreamer`. **Stop strings** end generation once some text
# appears: here the first line that ends with a full stop, an exclamation or a question mark.

# %%
prompt = encode("HAMLET.\n")
stop_texts = [".\n", "!\n", "?\n"]
streamed = generate(model, prompt, max_new_tokens=40, streamer=TextStreamer(tokenizer, skip_prompt=True),
                    stopping_criteria=[StopOnText(tokenizer, stop_texts, prompt.shape[1])])
print(f"[stopped after {streamed.shape[1] - prompt.shape[1]} new tokens]")

# %% [markdown]
# **Stopping, in detail.** Four questions decide what a stop rule does.
#
# 1. *Token ids or text?* `eos_token_id` compares token ids, which is fast but misses a stop text
#    that the tokenizer can spell in more than one way. Our tokenizer has one token for a blank
#    line, "\n\n", but the model may also write it as two "\n" tokens.
# 2. *Does the stop text stay in the output?* In `generate` and in `transformers`, yes: the tokens
#    were generated, and cutting them is left to you.
# 3. *Per row or for the whole batch?* A row that meets a criterion is finished: its later
#    positions are filled with `pad_token_id` (or the EOS id), while the other rows go on;
#    generation ends when every row is finished. A criterion that returns one answer for the
#    whole batch stops every row at once.
# 4. *Does the prompt count?* `StopOnText` looks at the new text only. `transformers`'
#    `stop_strings=` looks at the end of the whole sequence, so a prompt that ends in "!" and a
#    first new token "\n" make "!\n" and stop at once.

# %%
blank_line = tokenizer.encode("\n\n")
one_token, two_tokens = encode("fair.\n\n")[0], torch.cat([encode("fair.\n")[0], encode("\n")[0]])
assert len(blank_line) == 1 and tokenizer.decode(one_token) == tokenizer.decode(two_tokens)
stop_on_blank_line = StopOnText(tokenizer, ["\n\n"], prompt_length=0)
for name, ids in (("one token", one_token), ("two tokens", two_tokens)):
    print(f"{name:>10}: {[tokenizer.decode([i]) for i in ids.tolist()]}: token id {blank_line[0]} present "
          f"{blank_line[0] in ids.tolist()!s:>5} | text '\\n\\n' present {bool(stop_on_blank_line(ids[None])[0])}")

# The stop text stays, and transformers' stop_strings agrees with StopOnText on a single prompt:
theirs = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=40, do_sample=False,
                           pad_token_id=EOS, stop_strings=stop_texts, tokenizer=tokenizer)
assert torch.equal(theirs, streamed)
new_text = tokenizer.decode(streamed[0, prompt.shape[1]:])
assert new_text.endswith(tuple(stop_texts))
print(f"new text, stop text included: {new_text!r}")

# A batch: rows stop one by one. The prompts of section 7, two of which end in "!":
per_row = generate(model, batch.input_ids, max_new_tokens=40, attention_mask=batch.attention_mask, eos_token_id=EOS,
                   stopping_criteria=[StopOnText(tokenizer, stop_texts, batch.input_ids.shape[1])])
theirs = hf_model.generate(**batch, max_new_tokens=40, do_sample=False, pad_token_id=EOS,
                           stop_strings=stop_texts, tokenizer=tokenizer)
prompt_width = batch.input_ids.shape[1]
for row, text in enumerate(prompts):
    ours_new = per_row[row, prompt_width:]
    ours_length = int(ours_new.ne(EOS).sum())
    theirs_length = int(theirs[row, prompt_width:].ne(EOS).sum())
    print(f"row {row}, prompt ends {text[-1]!r}: ours stops after {ours_length:>2} new tokens, "
          f"transformers' stop_strings after {theirs_length:>2}")
    assert ours_new[ours_length:].eq(EOS).all()  # a finished row holds padding
assert len({int(per_row[row, prompt_width:].ne(EOS).sum()) for row in range(3)}) > 1  # rows end apart
# One answer for the whole batch (any row done) stops every row when the first row is done:
stop_per_row = StopOnText(tokenizer, stop_texts, prompt_width)
whole_batch = generate(model, batch.input_ids, max_new_tokens=40, attention_mask=batch.attention_mask,
                       eos_token_id=EOS, stopping_criteria=[lambda ids, scores: stop_per_row(ids).any()])
first_done = min(int(per_row[row, prompt_width:].ne(EOS).sum()) for row in range(3))
print(f"a criterion for the whole batch: every row stops after {whole_batch.shape[1] - prompt_width} new tokens")
assert whole_batch.shape[1] - prompt_width == first_done
assert all(prompts[row].endswith("!") == bool(theirs[row, prompt_width:].ne(EOS).sum() == 1) for row in range(3))

# %% [markdown]
# **`skip_special_tokens`.** Decoding a padded batch shows the padding, and the end-of-text
# token a finished row emits, as text. `skip_special_tokens=True` drops every special token
# when decoding. That is what you want for display, but it also hides whether a row ended with
# EOS or ran out of `max_new_tokens`: check the ids for that, not the text.

# %%
row = batched[0, 9:]  # "ROMEO.\n" and what followed it, with the last 2 of its 11 pads
print("decode(row):                           ", repr(tokenizer.decode(row)))
print("decode(row, skip_special_tokens=True): ", repr(tokenizer.decode(row, skip_special_tokens=True)))
assert tokenizer.eos_token in tokenizer.decode(row)
assert tokenizer.eos_token not in tokenizer.decode(row, skip_special_tokens=True)

# %% [markdown]
# ## 9. The trade-offs, measured
#
# Which method is "best" depends on what you want. Rather than a table of adjectives, we
# measure each method on the same prompts (60 new tokens each, seeded):
#
# - **distinct-2**: unique bigrams / all bigrams (diversity; higher is more varied);
# - **repeated 4-grams**: share of 4-grams seen earlier in the same text (loops);
# - **perplexity** of the generated text under the model (low: what the model finds likely,
#   which very low values reveal as bland or repetitive);
# - **tokens per second** (its own cell: timings vary from run to run).

# %%
trade_off_prompts = ["ROMEO.\n", "KING LEAR.\nBlow, winds,", "PORTIA.\nThe quality of mercy", "MACBETH.\nIs this"]
methods = {
    "greedy": dict(),
    "beam search (4)": dict(num_beams=4),
    "top-k 40": dict(do_sample=True, top_k=40),
    "top-p 0.9": dict(do_sample=True, top_k=0, top_p=0.9),
    "min-p 0.1": dict(do_sample=True, top_k=0, min_p=0.1),
}


def generate_all(arguments: dict) -> list[torch.Tensor]:
    """Each trade-off prompt's text with 60 new tokens (fewer if it stops), each prompt seeded."""
    return [generate(model, encode(text), max_new_tokens=60, generator=seeded_generator(index), **arguments)[0]
            for index, text in enumerate(trade_off_prompts)]


results, new_tokens = {}, {}
for name, arguments in methods.items():
    continuations, perplexities = [], []
    for text, out in zip(trade_off_prompts, generate_all(arguments)):
        start = encode(text).shape[1]
        continuations.append(out[start:].tolist())
        perplexities.append(continuation_perplexity(model, out, start))
    new_tokens[name] = sum(len(c) for c in continuations)
    results[name] = (distinct_n(continuations, 2),
                     sum(repeated_ngram_rate(c, 4) for c in continuations) / len(continuations),
                     sum(perplexities) / len(perplexities))
print(f"{'method':>16} | distinct-2 | repeated 4-grams | perplexity")
for name, (distinct, repeated, perplexity) in results.items():
    print(f"{name:>16} | {distinct:10.2f} | {repeated:16.1%} | {perplexity:10.1f}")

# %% [markdown]
# Now the clock, by the course's timing rule (`course_utils.timing`): a discarded warm-up round,
# then three rounds in which every method generates the same texts in turn, so that a busy spell
# of the machine slows them all alike; each method's median rate, and beam search's and
# greedy's compared round by round.

# %%
# NBVAL_IGNORE_OUTPUT
calls_per_second = interleaved_rates({name: partial(generate_all, arguments) for name, arguments in methods.items()},
                                     units=1, runs=3)  # one call generates every prompt's text
rates = {name: [rate * new_tokens[name] for rate in per_round] for name, per_round in calls_per_second.items()}
print_medians(rates, "tokens/s")
beam_to_greedy = paired_ratio(rates["beam search (4)"], rates["greedy"])
print(f"beam search (4): {beam_to_greedy:.2f}x greedy's tokens per second")
assert beam_to_greedy > 1.5 / 4  # far less than num_beams times slower: the margin is 1.5x

# %% [markdown]
# Greedy and beam search find text the model rates likely (low perplexity) but repeat
# themselves; sampling trades some likelihood for variety, and the filters decide how much.
# Beam search does `num_beams` times greedy's arithmetic, since every step runs one token per
# beam, yet it is far less than `num_beams` times slower (asserted: at more than 1.5/4 of
# greedy's rate, 1.5 times what `num_beams` times slower would give). The beams run
# as one batch of `num_beams` rows, and on a CPU most of a step's time does not grow with the
# rows: the weights are read once for all of them, and each operation's fixed cost is paid once
# (lesson 04 times batches of several sizes). What the beams add is the extra rows' arithmetic
# and their bookkeeping: ranking `num_beams` × vocabulary candidates and reordering the cache at
# every step. For open-ended text, top-p or
# min-p sampling with a moderate temperature is the usual choice; for short, factual
# completions, greedy or beam search.
#
# ## 10. A sampling playground
#
# Move the sliders: the table shows the next-token probabilities before and after the filters
# (grey: removed), and below it a seeded continuation with those settings. Type another seed to
# draw another continuation with the same settings.

# %%
# NBVAL_IGNORE_OUTPUT
from IPython.display import display

from course_utils.playground import SamplingPlayground

playground = SamplingPlayground(model, tokenizer, "JULIET.\nO Romeo, Romeo! wherefore art thou", max_new_tokens=30)
display(playground.widget)

# %% [markdown]
# The sliders can be moved from code too — exactly what the playground's tests do:

# %%
for value in (0, 40, 5, 1):
    playground.sliders["top_k"].value = value
    print(f"top_k={value:>2}: {playground.kept:4d} tokens can be drawn")
playground.sliders["top_k"].value = 0  # off again, so the playground above is yours to explore

# %% [markdown]
# ## Check your understanding
#
# 1. With the worked example, which tokens does top-p = 0.6 keep? And min-p = 0.5?
# 2. Why can top-k = 50 be too strict for one prompt and too loose for another, while min-p
#    adapts? Describe a distribution where each fails.
# 3. Beam search with `num_beams=1` is which method?
# 4. A frequency penalty of 0.5 and a presence penalty of 0.5: after a token appeared three
#    times, how much has each subtracted from its logit?
# 5. You batch prompts padded on the *right* and get garbage for the short ones. Why?
