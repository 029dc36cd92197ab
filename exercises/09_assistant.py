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
# # Lesson 09 — From a language model to an assistant: prompting, chat templates, SFT, LoRA and DPO
#
# The models people talk to are the next-token predictors of lessons 02 to 08, trained further.
# Pretraining gives the knowledge; the later stages, *post-training*, shape the behaviour: answer
# the question that was asked, in the form that was asked, and stop. This lesson takes our
# Shakespeare model through those stages on one task it can check, and measures each step:
#
# 1. **prompting**, before any training: zero-shot against few-shot;
# 2. **chat templates**: roles as special tokens, and the template stored with the tokenizer;
# 3. **supervised fine-tuning (SFT)**, with the loss on the answers only;
# 4. **LoRA**: the same fine-tuning through a few per cent of the parameters;
# 5. **preference tuning (DPO)**: learning from pairs of a better and a worse answer;
# 6. a **chat box** to talk to the result.
#
# The task: given three lines of a two-person exchange, name who speaks next. The answer is
# always one of the two names in the excerpt, so it can be checked, and the plays are split as
# in lesson 05: the examples we train on come from the training plays, every measurement from
# *Hamlet* and *The Tempest*, whose scenes the model never trained on. The library's side of
# all this is `course_utils.post_training` and `course_utils.chat`.

# %% [markdown]
# **Exercise workbook.** This is lesson 09 with 3 pieces of code left for you to write: `label_mask`, `lora_forward`, `dpo_loss`. Each blank raises `NotImplementedError` with its task: write the body, run its cell, then the check cell below it. A wrong answer shows the smallest input it fails on, what was expected, what came back and what differs. Stuck? `checks.hint("name")` prints a hint, a nudge first; call it again for the next, closer one. Run the workbook top to bottom: it stops at the first blank. The solved lesson is `notebooks/09_assistant.ipynb`.
#
# To start one exercise again, copy its blank from `git show HEAD:exercises/09_assistant.py`; to reset the whole workbook, run `git checkout exercises/09_assistant.ipynb exercises/09_assistant.py`.

# %%
import copy
import functools
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from course_utils import MiniGPT, generate, load_model
from course_utils.chat import ChatBox
from course_utils.data import load_corpus
from course_utils.evaluation import bits_per_byte
from course_utils.hub import model_name
from course_utils.kv_cache import GrowingKVCache
from course_utils.lesson import check_below, seeded_generator, setup
from course_utils.post_training import (
    CHAT_TOKENS,
    END_OF_TURN,
    IGNORE_INDEX,
    QUESTION,
    LoRALinear,
    add_chat_tokens,
    add_lora,
    answer_log_probs,
    answer_only_batch,
    dpo_loss,
    merge_lora,
    next_speaker_examples,
    next_speaker_pair,
    pair_batches,
    render_chat,
    trainable_parameters,
    unmerge_lora,
)
from course_utils.train import TrainConfig, Trainer

generator = setup(seed=0)
hf_model, tokenizer = load_model()
base = MiniGPT.from_hf(hf_model).eval()
corpus = load_corpus()
train_examples = next_speaker_examples(corpus.train)
held_out = next_speaker_examples(corpus.validation)
runs = Path(tempfile.mkdtemp(prefix="lesson09-"))  # checkpoints of this lesson's runs
print(f"{len(train_examples):,} examples from the training plays, {len(held_out):,} from Hamlet and The Tempest")
print(held_out[0].excerpt)
print("next speaker:", held_out[0].answer)

# %%
from course_utils import checks


# %% [markdown]
# Every measurement below asks the same question of a model: of two answers to a prompt, which
# does it find more likely? A prompt and an answer become one row of next-token inputs and
# targets, with every target but the answer's set to -100 (`answer_only_batch`, built by hand
# in section 3), and the model's log-probability of the answer is the sum over its tokens
# (`answer_log_probs`). Chance is 50%.

# %%
def answer_gaps(model: torch.nn.Module, triples: list[tuple[list[int], list[int], list[int]]],
                shared_prefix: list[int] | None = None, rows_per_batch: int = 32) -> torch.Tensor:
    """(N,) log p(right answer) - log p(wrong answer) for each of N (prompt ids, right answer ids,
    wrong answer ids). Every prompt may follow one ``shared_prefix`` of ids, whose keys and values
    are then computed once, in a KV cache (lesson 04), and copied to every row."""
    prefix_cache = None
    gaps = []
    with torch.no_grad():
        if shared_prefix:
            prefix_cache = GrowingKVCache()
            model(torch.tensor([shared_prefix]), cache=prefix_cache)
        for start in range(0, len(triples), rows_per_batch // 2):
            chunk = triples[start : start + rows_per_batch // 2]
            pairs = [(prompt, answer) for prompt, right, wrong in chunk for answer in (right, wrong)]
            inputs, targets = answer_only_batch(pairs, pad_token_id=tokenizer.eos_token_id)
            forward = model
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.reorder(torch.zeros(len(pairs), dtype=torch.long))  # the prefix's row, once per pair
                forward = functools.partial(model, cache=cache)
            scores = answer_log_probs(forward, inputs, targets)
            gaps.append(scores[0::2] - scores[1::2])
    return torch.cat(gaps)


def prefers_right(model: torch.nn.Module, triples: list[tuple[list[int], list[int], list[int]]],
                  shared_prefix: list[int] | None = None) -> float:
    """Fraction of the triples where the model finds the right answer more likely than the wrong one."""
    return float((answer_gaps(model, triples, shared_prefix) > 0).float().mean())


def ids(text: str) -> list[int]:
    return tokenizer(text).input_ids


# %% [markdown]
# ## 1. Prompting, before any training
#
# GPT-2's paper showed that a language model can do a task it was never trained on when the
# prompt makes the task look like text it has seen (*zero-shot*); GPT-3's showed that a few
# solved examples in the prompt help more (*few-shot*, or in-context learning), with no change
# to a single weight: prompting as an alternative to fine-tuning.
#
# We ask our base model in two ways. First in the plays' own format: the excerpt, a blank line,
# and which of the two names, followed by the full stop every speech heading has, the model
# finds more likely to come next. Then in a question-and-answer format it has never seen,
# `Scene: ... Next speaker: NAME`, with 0, 1, 2, 4 or 8 solved examples from the training plays
# before the question. The lines are cut to 32 characters here, so that eight examples and the
# question fit in the model's 512 tokens.

# %%
QUERIES = 120  # held-out questions per measurement
SHOTS = (0, 1, 2, 4, 8)
short_train = next_speaker_examples(corpus.train, max_chars=32)
short_held_out = next_speaker_examples(corpus.validation, max_chars=32)
queries = [short_held_out[i] for i in torch.randperm(len(short_held_out), generator=seeded_generator(1))[:QUERIES]]


def question(example, solved: bool) -> str:
    """One example in the question-and-answer format, with its answer or left for the model."""
    return f"Scene:\n{example.excerpt}\nNext speaker:" + (f" {example.answer}\n\n" if solved else "")


# The solved examples: the first from a fixed shuffle of the training plays' examples that are
# short enough (at most 48 tokens each), the same for every question.
order = torch.randperm(len(short_train), generator=seeded_generator(2)).tolist()
solved = [short_train[i] for i in order if len(ids(question(short_train[i], True))) <= 48][: max(SHOTS)]
gaps = answer_gaps(base, [(ids(q.excerpt + "\n\n"), ids(q.answer + "."), ids(q.other + ".")) for q in queries])
natural, smallest_gap = float((gaps > 0).float().mean()), gaps.abs().min()
print(f"the plays' own format, zero-shot: {natural:.0%}")
few_shot = {}
for shots in SHOTS:
    context = ids("".join(question(example, True) for example in solved[:shots]))
    triples = [(ids(question(q, False)), ids(" " + q.answer), ids(" " + q.other)) for q in queries]
    longest = len(context) + max(len(prompt) + max(len(right), len(wrong)) for prompt, right, wrong in triples)
    assert longest <= base.config.context_length
    gaps = answer_gaps(base, triples, shared_prefix=context)
    few_shot[shots], smallest_gap = float((gaps > 0).float().mean()), min(smallest_gap, gaps.abs().min())
    print(f"question format, {shots} solved example{'' if shots == 1 else 's'} in the prompt: {few_shot[shots]:.0%} "
          f"(longest prompt {longest} tokens)")
assert smallest_gap > 1e-3  # float noise is about 1e-5 here: no CPU flips a comparison, so these lines hold everywhere
print("every comparison is decided by more than 1e-3 nats")

# %% [markdown]
# Each accuracy is measured on 120 questions, so it carries a standard error of about 4.5
# points (the square root of 0.5 × 0.5 / 120): differences of a few points are noise. On the
# bundled model the figure shows next to nothing: every prompt, zero-shot or few-shot, in the
# plays' format or ours, stays within a few points of chance. The model is 6 million parameters
# trained on 1.5 million tokens of verse, and the question format is text it has never seen.
# GPT-3's climb with the number of examples came with 175 billion parameters; do not expect it
# here. (The solved examples are the same for every question, so their keys and values are
# computed once, in a KV cache, and shared: lesson 04's cache used for prompt caching.)

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(6, 3.5))
_ = ax.plot(list(few_shot), [100 * few_shot[k] for k in few_shot], "o-", label="question format, k examples")
_ = ax.axhline(100 * natural, color="C1", linestyle="--", label="the plays' own format, zero-shot")
_ = ax.axhline(50, color="gray", linestyle=":", label="chance")
ax.set(xlabel="solved examples in the prompt", ylabel="right speaker preferred (%)", xticks=list(SHOTS),
       ylim=(30, 80), title="In-context learning in a 6M-parameter model: weak")
_ = ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Lesson 06 found no induction heads in this model: it predicts the end of a Hamlet passage
# better than its start, but not by copying. Olsson et al. tie in-context learning in large
# models to induction heads, which find an earlier occurrence of the current pattern and copy
# what followed it: in a few-shot prompt, "Next speaker:" followed by a name. A model without
# them gets little from examples in its prompt, which is what we measured. To teach this model
# the task, we have to change its weights.

# %% [markdown]
# ## 2. Chat templates
#
# A chat model reads a conversation as one text in which each turn is marked: who speaks (the
# system, the user, the assistant) and where the turn ends. The marks are special tokens, added
# to the vocabulary so that they are never split and never typed by accident. The model's
# embedding grows by one row per new token (its output layer is tied to it, so it grows too);
# `add_chat_tokens` starts each new row at the mean of the old ones, an average token, rather
# than at random, where a new token could start out more likely than every real one.
#
# The rule that turns messages into text, the *chat template*, is stored with the tokenizer as a
# Jinja template, so that every program that loads the tokenizer renders conversations the same
# way. `transformers`' `apply_chat_template` runs it; `render_chat` is the same rule in Python.

# %%
chat_model = copy.deepcopy(base)
new_ids = add_chat_tokens(tokenizer, chat_model)
END = tokenizer.convert_tokens_to_ids(END_OF_TURN)
print(dict(zip(CHAT_TOKENS, new_ids)))
print(f"vocabulary {base.config.vocab_size} -> {chat_model.config.vocab_size} tokens")
print(tokenizer.chat_template)
conversation = [{"role": "user", "content": QUESTION + held_out[0].excerpt}]
ours = render_chat(conversation, add_generation_prompt=True)
assert ours == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
assert render_chat(conversation) == tokenizer.apply_chat_template(conversation, tokenize=False)
print(ours)
print("its first tokens:", tokenizer.convert_ids_to_tokens(ids(ours))[:6])
with torch.no_grad():
    check_below("old tokens' logits after adding the chat tokens",
                (chat_model(torch.tensor([ids(held_out[0].excerpt)]))[..., : base.config.vocab_size]
                 - base(torch.tensor([ids(held_out[0].excerpt)]))).abs().max(), 1e-6)

# %% [markdown]
# `add_generation_prompt=True` ends the text with `<|assistant|>` and a newline: it tells the
# model whose turn it is. Two classic mistakes break that:
#
# - **the template applied twice**: a program renders the conversation, then passes the text
#   on as a message and renders again. The model reads a user turn that *contains* a
#   conversation, with turn markers where it never saw them in training.
# - **no generation prompt**: the text ends after the user's turn, so the model must guess
#   who speaks next. A model tuned to answer after `<|assistant|>` may instead start a new user
#   turn, or continue the question.
#
# We render both here, and in section 3 show what the tuned model does with them.

# %%
twice = render_chat([{"role": "user", "content": ours}], add_generation_prompt=True)
print(twice)
without_prompt = render_chat(conversation)
print(f"chat tokens in the text: {sum(t in new_ids for t in ids(ours))} rendered once, "
      f"{sum(t in new_ids for t in ids(twice))} rendered twice")
assert sum(t in new_ids for t in ids(twice)) == 2 * sum(t in new_ids for t in ids(ours))


# %% [markdown]
# ## 3. Supervised fine-tuning, with the loss on the answers only
#
# Each training example is a conversation: the question with the excerpt as the user's turn,
# the name and the end-of-turn token as the assistant's. The model reads the whole text, but the
# loss scores only the answer: the prompt's tokens are inputs, never targets. Their targets are
# -100, which `cross_entropy` skips (`ignore_index`). Remember the shift from lesson 05: the
# target at position t is the token at t + 1. `next_speaker_pair` turns an example into its
# prompt's and its answer's token ids; build the inputs and the masked targets by hand:

# %%
def answer_only_by_hand(prompt: list[int], answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt + answer pair of token ids -> next-token (inputs, targets), each (T,) with
    T = len(prompt) + len(answer) - 1, the targets IGNORE_INDEX everywhere but the answer."""
    # EXERCISE label_mask: Return the (inputs, targets) of prompt + answer with every target that is not an answer token set to IGNORE_INDEX.
    raise NotImplementedError('Return the (inputs, targets) of prompt + answer with every target that is not an answer token set to IGNORE_INDEX.')


# %%
checks.label_mask(answer_only_by_hand)

# %%
prompt_ids, answer_ids = next_speaker_pair(train_examples[0], tokenizer)
inputs, targets = answer_only_by_hand(prompt_ids, answer_ids)
library_inputs, library_targets = answer_only_batch([(prompt_ids, answer_ids)], pad_token_id=END)
assert torch.equal(inputs, library_inputs[0]) and torch.equal(targets, library_targets[0])
print(f"{len(inputs)} positions, {int((targets != IGNORE_INDEX).sum())} of them scored: "
      f"{tokenizer.decode(targets[targets != IGNORE_INDEX])!r}")

# %% [markdown]
# Two runs through the course's `Trainer`, with the same steps, data and seed: one with the
# mask, one with the loss on every token but the padding (`score_prompt=True`). We measure, on
# held-out scenes:
#
# - **choice**: does the model find the right name's answer more likely than the other's?
# - **format**: does its greedy answer end its turn, with `<|end|>`, within 8 tokens? And is the
#   answer exactly the right name?
# - **what fine-tuning costs**: bits per byte on a passage of *Hamlet* (plain text, no template),
#   before and after. A model tuned for a task can forget some of what it knew.

# %%
SFT_STEPS, SFT_BATCH = 100, 8
train_pairs = [next_speaker_pair(example, tokenizer) for example in train_examples]
evaluation = held_out[::2][:160]  # every other held-out example, to spread them over both plays
choice_triples = [next_speaker_pair(e, tokenizer) + (next_speaker_pair(e, tokenizer, e.other)[1],) for e in evaluation]
hamlet_passage = corpus.validation["hamlet"][20_000:28_000]


def fine_tune(model: MiniGPT, name: str, batches, learning_rate: float, steps: int = SFT_STEPS,
              batch_size: int = SFT_BATCH, loss_fn=None) -> Trainer:
    """Train ``model`` in place through the course's Trainer, in float32; returns the Trainer."""
    config = TrainConfig(model=model.config, batch_size=batch_size, max_steps=steps, warmup_steps=10,
                         learning_rate=learning_rate, min_lr=learning_rate / 10, eval_interval=steps,
                         checkpoint_interval=steps, precision="float32", seed=0)
    trainer = Trainer(config, None, runs / name, progress=False, model=model, batches=batches, loss_fn=loss_fn)
    trainer.run()
    model.eval()
    return trainer


def greedy_answers(model: MiniGPT, prompts: list[str], max_new_tokens: int = 8) -> list[tuple[str, bool]]:
    """Each prompt's greedy continuation: (its text, whether it ended its turn with <|end|>)."""
    answers = []
    for prompt in prompts:
        out = generate(model, torch.tensor([ids(prompt)]), max_new_tokens, do_sample=False, eos_token_id=END)
        new = out[0, len(ids(prompt)) :].tolist()
        answers.append((tokenizer.decode(new, skip_special_tokens=True), END in new))
    return answers


def measure(model: MiniGPT) -> dict[str, float]:
    """Held-out choice accuracy, turn-ending and exact answers of greedy decoding, and bits per byte."""
    format_examples = evaluation[:24]
    answers = greedy_answers(model, [render_chat([{"role": "user", "content": QUESTION + e.excerpt}],
                                                 add_generation_prompt=True) for e in format_examples])
    return {"choice": prefers_right(model, choice_triples),
            "ends turn": sum(ended for _, ended in answers) / len(answers),
            "exact name": sum(text == e.answer for (text, _), e in zip(answers, format_examples)) / len(answers),
            "bits per byte": bits_per_byte(model, tokenizer, [hamlet_passage])}


results = {"base": measure(chat_model)}
masked_model, unmasked_model = copy.deepcopy(chat_model), copy.deepcopy(chat_model)
started = time.perf_counter()
masked_run = fine_tune(masked_model, "sft-masked", pair_batches(train_pairs, END), learning_rate=3e-4)
unmasked_run = fine_tune(unmasked_model, "sft-every-token", pair_batches(train_pairs, END, score_prompt=True), learning_rate=3e-4)
sft_seconds = time.perf_counter() - started
results["SFT, answer-only loss"] = measure(masked_model)
results["SFT, loss on every token"] = measure(unmasked_model)

# %%
# NBVAL_IGNORE_OUTPUT
print(f"two runs of {SFT_STEPS} steps of {SFT_BATCH} examples in {sft_seconds:.0f} s")
print(f"{'model':>26} {'choice':>7} {'ends turn':>10} {'exact name':>11} {'bits/byte':>10}")
for name, row in results.items():
    print(f"{name:>26} {row['choice']:>7.0%} {row['ends turn']:>10.0%} {row['exact name']:>11.0%} "
          f"{row['bits per byte']:>10.3f}")
base_row, masked_row = results["base"], results["SFT, answer-only loss"]
if model_name() == "shakespeare-gpt":
    assert masked_row["choice"] > base_row["choice"] + 0.1
    assert masked_row["ends turn"] > 0.9 > 0.1 > base_row["ends turn"]
    assert masked_row["choice"] > results["SFT, loss on every token"]["choice"] + 0.1

# %% [markdown]
# Before tuning, the model never ends a turn: `<|end|>` is a token it has never seen. After 100
# steps with the answer-only loss it answers and stops, and the right name is more likely than
# the wrong one far more often than any prompt managed. What it writes greedily is rarely the
# exact name: it must copy a name from the scene, and this model has no induction heads to copy
# with (lesson 06); *Hamlet* also abbreviates its speech headings ("Ber.", "Fran.") where most
# training plays spell names out in capitals, so its guesses look like training-play names.
#
# The two runs differ in where the gradient goes. With the loss on every token, most of it is
# spent on predicting the prompt: the question, which is the same every time, and the excerpt,
# which is Shakespeare the model already models. Two of the first example's 70 targets are the
# answer. In the same 100 steps that run learned neither to prefer the right name nor to stop.
# Plain Shakespeare's bits per byte show what the tuning cost the base model: the text it was
# trained on is now predicted worse, the forgetting that every fine-tuning trades against.
#
# Now the two template mistakes of section 2, given to the tuned model: the choice, the share of
# answers that end their turn, and the first three answers, for each rendering.

# %%
# NBVAL_IGNORE_OUTPUT
renderings = {
    "rendered once": lambda messages: render_chat(messages, add_generation_prompt=True),
    "rendered twice": lambda messages: render_chat(
        [{"role": "user", "content": render_chat(messages, add_generation_prompt=True)}], add_generation_prompt=True),
    "no generation prompt": lambda messages: render_chat(messages),
}
for what, render in renderings.items():
    prompts = [render([{"role": "user", "content": QUESTION + e.excerpt}]) for e in evaluation]
    choice = prefers_right(masked_model, [(ids(prompt), right, wrong) for prompt, (_, right, wrong)
                                          in zip(prompts, choice_triples)])
    answers = greedy_answers(masked_model, prompts[:24])
    print(f"{what:>21}: choice {choice:.0%}, ends turn {sum(ended for _, ended in answers) / len(answers):.0%}; "
          f"first answers {[text for text, _ in answers[:3]]}")

# %% [markdown]
# The choice hardly moves: the scene is still there to read. The format does: with the template
# applied twice, or without the generation prompt, some answers run on without ending their
# turn, and some repeat a token. A large model is more forgiving than ours, which is exactly why
# the mistake goes unnoticed: the output looks almost right, and the model quietly does a
# little worse on every request.

# %% [markdown]
# ## 4. LoRA: fine-tuning a few per cent of the parameters
#
# Full fine-tuning updates every weight and keeps AdamW's two moments and a gradient for each:
# for a 7B model, tens of gigabytes beyond the model itself, and a full copy of the model per
# task. LoRA (Hu et al. 2021) freezes the model and learns, for chosen weight matrices W
# (out × in), a low-rank update: W x + (alpha / r) B A x, with A (r × in) and B (out × r),
# r (in + out) numbers instead of in × out. B starts at zero, so training starts exactly at the
# base model; after training, B A folds into W (*merging*) and inference costs nothing extra.
#
# Write the adapter's forward pass. The class inherits everything else from the library's
# `LoRALinear`: the frozen `base` layer, `lora_A`, `lora_B`, `scale` = alpha / r, and `merged`.

# %%
class LoRAByHand(LoRALinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out): the frozen layer plus the scaled low-rank update (or the
        frozen layer alone once the update is merged into it)."""
        # EXERCISE lora_forward: Return the frozen layer's output plus the low-rank update, scaled; just the frozen layer's output when merged.
        raise NotImplementedError("Return the frozen layer's output plus the low-rank update, scaled; just the frozen layer's output when merged.")


# %%
checks.lora_forward(LoRAByHand)

# %%
layer = chat_model.h[0].attn.c_attn
mine, library_layer = LoRAByHand(layer, rank=4, alpha=8), LoRALinear(layer, rank=4, alpha=8)
mine.load_state_dict(library_layer.state_dict())
x = torch.randn(2, 5, layer.in_features, generator=seeded_generator(3))
with torch.no_grad():
    check_below("by hand against LoRALinear, B = 0", (mine(x) - library_layer(x)).abs().max(), 1e-6)
    check_below("LoRA at the start against the frozen layer", (mine(x) - layer(x)).abs().max(), 1e-6)
    mine.lora_B.normal_(generator=seeded_generator(4))
    library_layer.lora_B.copy_(mine.lora_B)
    check_below("by hand against LoRALinear, B random", (mine(x) - library_layer(x)).abs().max(), 1e-4)
_ = layer.requires_grad_(True)  # LoRALinear froze it; chat_model stays the untouched starting point

# %% [markdown]
# `add_lora` wraps every linear layer of the blocks (attention's `c_attn` and `c_proj`, the
# MLP's `c_fc` and `c_proj`) and freezes everything else, embeddings included. The count of
# trainable parameters, and the memory each run's training state takes (the gradients and
# AdamW's two moments, measured on the tensors the optimizer holds after training):

# %%
LORA_RANK, LORA_ALPHA = 8, 16
lora_model = copy.deepcopy(chat_model)
wrapped = add_lora(lora_model, rank=LORA_RANK, alpha=LORA_ALPHA)
lora_count, full_count = trainable_parameters(lora_model), trainable_parameters(chat_model)
by_formula = sum(LORA_RANK * (m.base.in_features + m.base.out_features)
                 for m in lora_model.modules() if isinstance(m, LoRALinear))
assert lora_count == by_formula
print(f"LoRA r={LORA_RANK} on {len(wrapped)} matrices: {lora_count:,} trainable parameters, "
      f"{lora_count / full_count:.1%} of full fine-tuning's {full_count:,}")


def training_state_bytes(trainer: Trainer) -> int:
    """Bytes of a gradient and AdamW's two moments for each trained parameter, counted on the
    optimizer's state after training."""
    moments = sum(t.numel() * t.element_size() for state in trainer.optimizer.state.values()
                  for t in state.values() if torch.is_tensor(t) and t.dim() > 0)
    gradients = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)
    return moments + gradients


lora_run = fine_tune(lora_model, "lora", pair_batches(train_pairs, END), learning_rate=2e-3)
results["LoRA r=8, answer-only loss"] = measure(lora_model)
memory = {"full fine-tuning": training_state_bytes(masked_run), "LoRA": training_state_bytes(lora_run)}
for name, size in memory.items():
    print(f"{name:>16}: training state {size / 2**20:6.2f} MiB")
assert memory["LoRA"] < memory["full fine-tuning"] / 10

# %% [markdown]
# Quality and time at the same number of steps, with the learning rate each method usually
# needs (LoRA's updates start from zero through small matrices, so it takes a larger one):

# %%
# NBVAL_IGNORE_OUTPUT
full_row, lora_row = results["SFT, answer-only loss"], results["LoRA r=8, answer-only loss"]
step_ms = {"full fine-tuning": 1000 * masked_run.elapsed / masked_run.step,
           "LoRA": 1000 * lora_run.elapsed / lora_run.step}
for name, row in (("full fine-tuning", full_row), ("LoRA", lora_row)):
    print(f"{name:>16}: choice {row['choice']:.0%}, ends turn {row['ends turn']:.0%}, "
          f"bits/byte {row['bits per byte']:.3f}, {step_ms[name]:.0f} ms per step")
if model_name() == "shakespeare-gpt":
    assert lora_row["choice"] > results["base"]["choice"] + 0.1

# %% [markdown]
# LoRA's steps are only a little faster here: the backward pass still runs through every layer
# to reach the adapters, and a model this small spends much of its time outside the big matrix
# multiplies. Its real savings are memory and storage, which grow with the model: the adapter
# is all a task needs to keep. Because the embedding stays frozen, the new `<|end|>` token keeps
# its starting row, the mean of all rows, and only the adapters can make it the most likely
# token, by steering the hidden state towards that row. In 100 steps they did not: LoRA learned
# to prefer the right name about as well as full fine-tuning, but not to stop. In practice the
# new tokens' rows are trained too (in the PEFT library, `trainable_token_indices`, or the
# embedding in `modules_to_save`).
#
# Merging folds B A into W: the merged model computes the same logits as the adapter, with no
# extra work per token; unmerging takes the update out again to swap in another task's adapter.

# %%
probe = torch.tensor([choice_triples[0][0]])
for precision, model, bound in (("float32", lora_model, 1e-4), ("float64", copy.deepcopy(lora_model).double(), 1e-5)):
    with torch.no_grad():
        unmerged = model(probe)
        merge_lora(model)
        merged = model(probe)
        unmerge_lora(model)
        again = model(probe)
    check_below(f"{precision}: merged against unmerged logits", (merged - unmerged).abs().max(), bound)
    check_below(f"{precision}: unmerged again against before", (again - unmerged).abs().max(), bound)

# %% [markdown]
# In float32 the two differ in the last bits of the logits (about 1e-5 on logits of size 10):
# W + (alpha / r) B A rounds differently from W x + (alpha / r) B (A x). In float64 the same
# check holds a thousand times tighter: the merge is exact, and the gap is rounding.


# %% [markdown]
# ## 5. Preference tuning: DPO
#
# SFT shows the model the right answer. Preference tuning shows it a better and a worse answer
# to the same prompt and asks it to prefer the better one, which is how assistants learn what
# is hard to write down but easy to judge.
#
# The classic recipe, **RLHF** (Christiano et al. 2017; Ouyang et al. 2022 for InstructGPT),
# has three stages after SFT: people rank answers; a *reward model* learns to score answers as
# they ranked them; then the language model is trained with reinforcement learning (PPO) to
# write answers the reward model scores highly, while a KL penalty keeps it close to the SFT
# model (without it, the model drifts into text that fools the reward model). That means
# sampling answers during training, and four models in memory: the policy, the reference, the
# reward model and PPO's value model.
#
# **DPO** (Rafailov et al. 2023) shows that the KL-penalised objective has a closed-form best
# policy, and turns it around: the reward is implicit in the policy itself,
# r(x, y) = beta log(pi(y|x) / ref(y|x)). The preference pairs then train the policy directly,
# with a classification loss on the difference of the two rewards:
#
# loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected))
#
# No reward model, no sampling, no PPO: two models (the policy and the frozen reference) and
# the log-probabilities we already compute. Write the loss from the four summed log-probabilities:

# %%
def dpo_loss_by_hand(chosen: torch.Tensor, rejected: torch.Tensor, reference_chosen: torch.Tensor,
                     reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed answer log-probabilities (B,) under the policy and the reference -> DPO's mean loss (0-d)."""
    # EXERCISE dpo_loss: Return the mean over the pairs of -log sigmoid of the chosen answer's implicit reward minus the rejected one's.
    raise NotImplementedError("Return the mean over the pairs of -log sigmoid of the chosen answer's implicit reward minus the rejected one's.")


# %%
checks.dpo_loss(dpo_loss_by_hand)

# %%
four = torch.randn(4, 6, generator=seeded_generator(5)) * 5 - 20  # (4, B): log-probabilities of 6 pairs
check_below("DPO loss by hand against the library", (dpo_loss_by_hand(*four, beta=0.1) - dpo_loss(*four, 0.1)[0]).abs(),
            1e-6)
print(f"at the start (policy = reference): loss {dpo_loss_by_hand(*four[[0, 1, 0, 1]], beta=0.1):.4f} = log 2")

# %% [markdown]
# Our pairs, from the training plays: the prompt is the question, the chosen answer the right
# speaker, the rejected one the other speaker in the scene. The reference is the SFT model
# (answer-only loss) and stays frozen; the policy starts as a copy of it. Each batch holds the
# chosen rows, then the rejected rows of the same prompts, so the loss pairs them up by position.

# %%
DPO_STEPS, DPO_PAIRS, BETA = 40, 8, 0.1
reference = masked_model.requires_grad_(False)
policy = copy.deepcopy(masked_model).requires_grad_(True)


def preference_batches(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n rows: n / 2 chosen answers, then the rejected answers to the same prompts."""
    rows = torch.randint(0, len(train_examples), (n // 2,), generator=generator).tolist()
    chosen = [train_pairs[row] for row in rows]
    rejected = [next_speaker_pair(train_examples[row], tokenizer, train_examples[row].other) for row in rows]
    return answer_only_batch(chosen + rejected, pad_token_id=END)


def dpo_objective(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The Trainer's loss: DPO on a batch of chosen rows followed by their rejected rows."""
    half = inputs.shape[0] // 2
    scores = answer_log_probs(policy, inputs, targets)
    with torch.no_grad():
        reference_scores = answer_log_probs(reference, inputs, targets)
    return dpo_loss(scores[:half], scores[half:], reference_scores[:half], reference_scores[half:], BETA)[0]


def preference_report(model: MiniGPT, rows_per_batch: int = 32) -> dict[str, float]:
    """On the held-out pairs: the win rate (the chosen answer more likely than the rejected one),
    the mean reward margin r_chosen - r_rejected, and the KL from the reference, KL(model || ref)
    in nats per answer token: over the positions that predict a chosen answer's tokens, of the two
    next-token distributions."""
    wins, margins, kl_sum, kl_tokens = 0, [], 0.0, 0
    with torch.no_grad():
        for start in range(0, len(choice_triples), rows_per_batch // 2):
            chunk = choice_triples[start : start + rows_per_batch // 2]
            inputs, targets = answer_only_batch([(prompt, right) for prompt, right, _ in chunk]
                                                + [(prompt, wrong) for prompt, _, wrong in chunk], pad_token_id=END)
            log_p, log_q = F.log_softmax(model(inputs), -1), F.log_softmax(reference(inputs), -1)
            picked = targets.clamp(min=0).unsqueeze(-1)
            scored = targets != IGNORE_INDEX
            scores = (log_p.gather(-1, picked).squeeze(-1) * scored).sum(-1)
            reference_scores = (log_q.gather(-1, picked).squeeze(-1) * scored).sum(-1)
            half = len(chunk)
            _, chosen_rewards, rejected_rewards = dpo_loss(scores[:half], scores[half:], reference_scores[:half],
                                                           reference_scores[half:], BETA)
            wins += int((scores[:half] > scores[half:]).sum())
            margins.append(chosen_rewards - rejected_rewards)
            kl = (log_p.exp() * (log_p - log_q)).sum(-1)[:half]  # (half, T), on the chosen rows
            kl_sum += float(kl[scored[:half]].sum())
            kl_tokens += int(scored[:half].sum())
    return {"win rate": wins / len(choice_triples), "margin": float(torch.cat(margins).mean()),
            "KL": kl_sum / kl_tokens}


before = preference_report(policy)
dpo_run = fine_tune(policy, "dpo", preference_batches, learning_rate=5e-5, steps=DPO_STEPS,
                    batch_size=2 * DPO_PAIRS, loss_fn=dpo_objective)
after = preference_report(policy)
results["SFT, then DPO"] = measure(policy)

# %%
# NBVAL_IGNORE_OUTPUT
print(f"DPO: {DPO_STEPS} steps of {DPO_PAIRS} pairs, beta {BETA}, "
      f"{1000 * dpo_run.elapsed / dpo_run.step:.0f} ms per step")
for name, report in (("before (the SFT model)", before), ("after DPO", after)):
    print(f"{name:>22}: win rate {report['win rate']:.0%}, reward margin {report['margin']:+.3f}, "
          f"KL from the reference {report['KL']:.4f} nats per token")
assert before["KL"] < 1e-6 < after["KL"]
if model_name() == "shakespeare-gpt":
    assert after["win rate"] >= before["win rate"] and after["margin"] > 0 and after["KL"] < 1

# %% [markdown]
# Before DPO the policy *is* the reference: every implicit reward is zero, so the margin and the
# KL are zero. After it, held-out chosen answers gain on rejected ones (the margin), the win
# rate rises, and the model has moved away from the reference, by a small KL: beta sets how
# much moving a unit of preference is worth. A smaller beta lets the policy move further.
#
# The whole course of the lesson, on the held-out scenes:

# %%
# NBVAL_IGNORE_OUTPUT
print(f"{'model':>26} {'choice':>7} {'ends turn':>10} {'exact name':>11} {'bits/byte':>10}")
for name, row in results.items():
    print(f"{name:>26} {row['choice']:>7.0%} {row['ends turn']:>10.0%} {row['exact name']:>11.0%} "
          f"{row['bits per byte']:>10.3f}")

# %% tags=["readme-figure"]
# NBVAL_IGNORE_OUTPUT
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
short = {"base": "base", "SFT, answer-only loss": "SFT,\nanswer only", "SFT, loss on every token": "SFT,\nevery token",
         "LoRA r=8, answer-only loss": "LoRA,\nanswer only", "SFT, then DPO": "SFT,\nthen DPO"}
labels = ["base, few-shot\n(best k)"] + [short[name] for name in results]
choices = [max(few_shot.values())] + [row["choice"] for row in results.values()]
_ = axes[0].bar(range(len(labels)), [100 * c for c in choices], color=["C7"] + ["C0"] * len(results))
_ = axes[0].axhline(50, color="gray", linestyle=":")
axes[0].set(ylabel="right speaker preferred (%)", xlabel="stage", ylim=(0, 100),
            title="Held-out scenes: who speaks next?")
axes[0].set_xticks(range(len(labels)), labels, fontsize=8)
_ = axes[1].bar(range(len(results)), [100 * row["ends turn"] for row in results.values()], color="C2")
axes[1].set(ylabel="answers ending their turn (%)", xlabel="stage", ylim=(0, 105), title="Format-following")
axes[1].set_xticks(range(len(results)), [short[name] for name in results], fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. A chat box
#
# The tuned model in a chat box: type a message and press Send. The reply streams in token by
# token and stops at `<|end|>`; the temperature slider switches from greedy decoding (0) to
# sampling. The conversation is kept and rendered with the chat template each turn. The model
# knows one task, so ask it who speaks next in a scene of your own, in the format it was tuned
# on: "Who speaks next?", then three speeches.

# %%
# NBVAL_IGNORE_OUTPUT
chat = ChatBox(policy, tokenizer)
display(chat.widget)

# %% [markdown]
# The box does from code exactly what typing and Send do:

# %%
# NBVAL_IGNORE_OUTPUT
chat.text_box.value = QUESTION + held_out[1].excerpt
reply = chat.send()
print(chat.messages[-1])
print("the right answer:", held_out[1].answer)
assert chat.messages[-1] == {"role": "assistant", "content": reply} and len(chat.messages) == 2

# %% [markdown]
# ## Check your understanding
#
# 1. Eight solved examples in the prompt changed no weight of the model. Where, in the forward
#    pass, could they change its answer? Why did they barely change ours, and what does lesson
#    06 suggest about a model in which they would?
# 2. Why are the prompt's tokens inputs but not targets in SFT? What does the every-token run
#    spend its gradient on, and what would an assistant trained that way on real conversations
#    learn to do that it should not?
# 3. The chat tokens start as the mean of the old embeddings. What could go wrong if they
#    started as random vectors of the same scale as the old rows?
# 4. LoRA of rank r on an (out × in) matrix trains r (in + out) numbers. How many is that for
#    GPT-2 124M's `c_attn` (768 in, 2304 out) at r = 8, and what fraction of the matrix?
# 5. DPO's implicit reward is beta log(pi / ref). Why does it need the reference model at all:
#    what could the policy do to lower the loss if the reward were beta log pi alone?
# 6. RLHF samples answers from the model during training; DPO only scores fixed pairs. Name one
#    thing RLHF can learn from that DPO cannot see.
