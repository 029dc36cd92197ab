"""From a language model to an assistant: chat templates, the loss on answers only, LoRA and DPO.

A chat model is the same next-token predictor after more training. The pieces here:

- a chat template: roles marked by special tokens added to the tokenizer, the rendering written
  once in Jinja and stored with the tokenizer, so that ``tokenizer.apply_chat_template`` and
  ``render_chat`` give the same text; ``add_chat_tokens`` adds the tokens and grows the model's
  embedding, each new row the mean of the old ones (Hewitt 2021, "Initializing new word
  embeddings for pretrained language models": the new tokens start as an average token);
- supervised fine-tuning (SFT) data: ``answer_only_batch`` pads prompt + answer pairs into
  next-token inputs and targets whose targets are -100 (ignored by the loss) everywhere but the
  answer, so the model learns to answer, not to write prompts;
- LoRA (Hu et al. 2021): a frozen linear layer W plus a trainable low-rank update
  (alpha / r) B A, with B (out, r) starting at zero so that training starts from the base model;
  ``merge`` folds the update into W for inference, ``unmerge`` takes it out again;
- DPO (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7): for a prompt x with a
  chosen answer y_w and a rejected one y_l, the loss
  -log sigmoid(beta [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))]),
  where pi is the model being tuned and ref the frozen model it started from.

Shapes: B batch, T tokens, V vocabulary, C width, r LoRA rank.

Taught in: lesson 09.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import GrowingKVCache
from .model import MiniGPT

ROLES = ("system", "user", "assistant")
END_OF_TURN = "<|end|>"
CHAT_TOKENS = tuple(f"<|{role}|>" for role in ROLES) + (END_OF_TURN,)
# Each message: its role's token, a newline, the content, the end-of-turn token, a newline.
# add_generation_prompt appends the assistant's token and newline: where the model's answer starts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
IGNORE_INDEX = -100  # the target cross_entropy skips (``ignore_index``)
SPEAKER = re.compile(r"^([A-Z][A-Za-z'\- ]{0,30})\.$")  # a speech's first line: "HAMLET." or "Ham."


def speeches(play: str) -> list[tuple[str, str]]:
    """The play's speeches in order, as (speaker, first line of the speech): a speech is a block
    (between blank lines) whose first line is a name and a full stop. Stage directions and
    continuations break a run of speeches: they appear as ("", "")."""
    found = []
    for block in play.split("\n\n"):
        lines = block.strip().split("\n")
        match = SPEAKER.match(lines[0].strip()) if len(lines) > 1 else None
        found.append((match.group(1), lines[1].strip()) if match else ("", ""))
    return found


@dataclass(frozen=True)
class NextSpeakerExample:
    """A run of consecutive speeches from a scene with at least three speakers in it, and who
    speaks next: ``answer``, always one of the excerpt's ``names``. ``speakers`` lists who speaks
    each speech of the excerpt, in order (what the simple rules of ``SPEAKER_RULES`` look at)."""

    excerpt: str  # "A.\nline\n\nB.\nline\n\nC.\nline\n\nA.\nline"
    speakers: tuple[str, ...]
    answer: str

    @property
    def names(self) -> tuple[str, ...]:
        """The excerpt's speakers, each once, in the order they first speak: the choices."""
        return tuple(dict.fromkeys(self.speakers))

    @property
    def others(self) -> tuple[str, ...]:
        """The wrong choices: every name of the excerpt but the answer."""
        return tuple(name for name in self.names if name != self.answer)


def next_speaker_examples(plays: dict[str, str], max_chars: int = 60, length: int = 4,
                          min_speakers: int = 3) -> list[NextSpeakerExample]:
    """Every place in ``plays`` (by name; sorted, for a fixed order) where ``length`` consecutive
    speeches, with at least ``min_speakers`` different speakers among them, are followed by a
    speech of one of those speakers. Each speech of the excerpt is cut to its first line (at most
    ``max_chars`` characters); the answer is the next speech's speaker."""
    if length < 2 or not 2 <= min_speakers <= length:
        raise ValueError(f"need length >= 2 and 2 <= min_speakers <= length, got {length} and {min_speakers}")
    examples = []
    for name in sorted(plays):
        found = speeches(plays[name])
        for i in range(len(found) - length):
            window, (following, _) = found[i : i + length], found[i + length]
            speakers = tuple(who for who, _ in window)
            if all(speakers) and len(set(speakers)) >= min_speakers and following in speakers:
                excerpt = "\n\n".join(f"{who}.\n{line[:max_chars]}" for who, line in window)
                examples.append(NextSpeakerExample(excerpt, speakers, following))
    return examples


def most_frequent(names: list[str] | tuple[str, ...]) -> str:
    """The name that occurs most often; among equals, the first to occur."""
    return max(dict.fromkeys(names), key=list(names).count)


# The simple rules a model must beat: each picks one of an example's names from who spoke when.
SPEAKER_RULES: dict[str, Callable[[NextSpeakerExample], str]] = {
    "the last speaker": lambda example: example.speakers[-1],
    "the speaker before the last": lambda example: example.speakers[-2],
    "the first speaker of the excerpt": lambda example: example.speakers[0],
    "the most frequent speaker": lambda example: most_frequent(example.speakers),
    "the most frequent, not the last": lambda example: most_frequent(
        [name for name in example.speakers if name != example.speakers[-1]]),
}


QUESTION = "Who speaks next?\n"  # the user's turn starts with it, then the excerpt (lesson 09's task)


def next_speaker_pair(example: NextSpeakerExample, tokenizer, answer: str | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of ``example`` as a chat: the prompt is ``QUESTION`` and the excerpt
    as the user's turn, then the generation prompt; the answer is ``answer`` (default: the right
    name) and the end-of-turn token. The tokenizer must have the chat tokens (``add_chat_tokens``)."""
    prompt = render_chat([{"role": "user", "content": QUESTION + example.excerpt}], add_generation_prompt=True)
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    return tokenizer(prompt).input_ids, tokenizer(answer or example.answer).input_ids + [end]


def pair_batches(
    pairs: list[tuple[list[int], list[int]]], pad_token_id: int, score_prompt: bool = False,
) -> Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A ``Trainer`` batch source: ``batches(n, generator)`` draws n of ``pairs`` at random and
    returns them as ``answer_only_batch`` rows (inputs, targets), each (n, T)."""
    def batches(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, len(pairs), (n,), generator=generator, device=generator.device).tolist()
        return answer_only_batch([pairs[row] for row in rows], pad_token_id, score_prompt=score_prompt)
    return batches


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The text ``CHAT_TEMPLATE`` renders for ``messages`` (each ``{"role": ..., "content": ...}``,
    role one of ``ROLES``), written out in Python."""
    for index, message in enumerate(messages):
        if set(message) != {"role", "content"} or message["role"] not in ROLES:
            raise ValueError(f"messages[{index}] must be {{'role': one of {ROLES}, 'content': str}}, got {message!r}")
        if not isinstance(message["content"], str):
            raise ValueError(f"messages[{index}]['content'] must be a string, got {type(message['content']).__name__}")
    text = "".join(f"<|{m['role']}|>\n{m['content']}{END_OF_TURN}\n" for m in messages)
    return text + ("<|assistant|>\n" if add_generation_prompt else "")


def resize_token_embeddings(model: MiniGPT, vocab_size: int) -> None:
    """Grow ``model``'s token embedding (tied to its LM head) to ``vocab_size`` rows, in place.
    The new rows are the mean of the old ones; the old rows are unchanged, so the model's
    logits for the old tokens are unchanged too."""
    old = model.wte.weight
    added = vocab_size - old.shape[0]
    if added < 0:
        raise ValueError(f"vocab_size must be at least the current {old.shape[0]}, got {vocab_size}")
    with torch.no_grad():
        rows = old.mean(dim=0, keepdim=True).expand(added, -1)
        weight = torch.cat([old, rows]).detach().clone()
    model.wte = nn.Embedding(vocab_size, old.shape[1], device=old.device, dtype=old.dtype)
    model.wte.weight = nn.Parameter(weight)
    model.lm_head = nn.Linear(old.shape[1], vocab_size, bias=False, device=old.device, dtype=old.dtype)
    model.lm_head.weight = model.wte.weight  # tied again
    model.config.vocab_size = vocab_size


def add_chat_tokens(tokenizer, model: MiniGPT) -> list[int]:
    """Add ``CHAT_TOKENS`` to ``tokenizer`` as special tokens (never split, skipped on decoding
    with ``skip_special_tokens``), store ``CHAT_TEMPLATE`` in it, and grow ``model``'s
    embedding to match. Returns the new tokens' ids. Both are changed in place."""
    tokenizer.add_special_tokens({"extra_special_tokens": list(CHAT_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    resize_token_embeddings(model, len(tokenizer))
    return tokenizer.convert_tokens_to_ids(list(CHAT_TOKENS))


def answer_only_batch(
    pairs: list[tuple[list[int], list[int]]], pad_token_id: int, device: torch.device | str = "cpu",
    score_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token inputs and targets (B, T) for prompt + answer pairs of token ids, right-padded
    with ``pad_token_id`` to the longest pair: inputs = (prompt + answer)[:-1], targets =
    (prompt + answer)[1:], with every target that is not an answer token (prompt, padding) set to
    ``IGNORE_INDEX``; with ``score_prompt``, only the padding (the loss on every token, for
    comparison). T = the longest prompt + answer, minus one."""
    if not pairs or any(not prompt or not answer for prompt, answer in pairs):
        raise ValueError("pairs must be a non-empty list of (prompt ids, answer ids), each non-empty")
    length = max(len(prompt) + len(answer) for prompt, answer in pairs) - 1
    inputs = torch.full((len(pairs), length), pad_token_id, dtype=torch.long, device=device)
    targets = torch.full((len(pairs), length), IGNORE_INDEX, dtype=torch.long, device=device)
    for row, (prompt, answer) in enumerate(pairs):
        sequence = torch.tensor(prompt + answer, dtype=torch.long, device=device)
        inputs[row, : len(sequence) - 1] = sequence[:-1]
        # target t is token t + 1: the answer's tokens are targets len(prompt) - 1 onwards
        first = 0 if score_prompt else len(prompt) - 1
        targets[row, first : len(sequence) - 1] = sequence[first + 1 :]
    return inputs, targets


class LoRALinear(nn.Module):
    """``base`` (an ``nn.Linear``, frozen) plus a trainable low-rank update: x -> base(x) +
    (alpha / r) x A^T B^T, with A (r, in) random (Kaiming-uniform, as ``nn.Linear``) and
    B (out, r) zero, so that at the start the layer is exactly ``base``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if not isinstance(rank, int) or not 1 <= rank <= min(base.in_features, base.out_features):
            largest = min(base.in_features, base.out_features)
            raise ValueError(f"rank must be an integer in [1, {largest}], got {rank!r}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.base = base.requires_grad_(False)
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update (out, in) the adapter adds to the base weight: (alpha / r) B A."""
        return self.scale * self.lora_B @ self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: one matrix multiply per call, as before LoRA."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of the base weight again (to train on, or to swap adapters)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # MiniGPT's linear layers


def add_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = LORA_TARGETS) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each ``nn.Linear`` whose name ends with one of
    ``targets`` in a ``LoRALinear``, in place. Returns the wrapped layers' names."""
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and full.endswith(targets):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                wrapped.append(full)
    if not wrapped:
        raise ValueError(f"no nn.Linear in the model has a name ending with one of {targets}")
    return wrapped


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [module for module in model.modules() if isinstance(module, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    """Merge every adapter of ``model`` into its base weight."""
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every adapter of ``model`` out of its base weight."""
    for layer in lora_layers(model):
        layer.unmerge()


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that receive gradients (a tied matrix once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summed_answer_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) the sum, over each row's answer positions (targets (B, T) not ``IGNORE_INDEX``), of
    the log-probability the logits (B, T, V) give the target token. The softmax is taken only
    at the answer positions: an answer is a few of a row's T positions."""
    scored = targets != IGNORE_INDEX
    log_probs = F.log_softmax(logits[scored].float(), dim=-1)  # (answer tokens, V)
    picked = log_probs.gather(-1, targets[scored].unsqueeze(-1)).squeeze(-1)
    rows = scored.nonzero()[:, 0]
    return torch.zeros(len(targets), dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)


def answer_log_probs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) the summed log-probability of each row's answer tokens: the targets (B, T) that are
    not ``IGNORE_INDEX``, given ``inputs`` (B, T) (as ``answer_only_batch`` makes them)."""
    return summed_answer_log_probs(model(inputs), targets)


def answer_logits(model: nn.Module, prompt: list[int], answers: list[list[int]],
                  prefix_cache: GrowingKVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (K, L, V) that predict each of K answers' tokens after ``prompt`` (ids), and those
    tokens as targets (K, L), L the longest answer, shorter ones padded with ``IGNORE_INDEX``.

    The prompt is run once, into a KV cache (lesson 04) that may already hold a shared prefix
    (``prefix_cache``, left unchanged), and the cache is then copied to one row per answer to run
    the answers' tokens: the answers share the prompt's keys and values, so K answers cost one
    prompt and K short rows, not K prompts."""
    if not prompt or not answers or not all(answers):
        raise ValueError("need non-empty prompt ids and a list of non-empty answer ids")
    cache = copy.deepcopy(prefix_cache) if prefix_cache is not None else GrowingKVCache()
    last = model(torch.tensor([prompt]), cache=cache)[:, -1:]  # (1, 1, V): predicts each answer's first token
    longest = max(map(len, answers))
    targets = torch.tensor([answer + [IGNORE_INDEX] * (longest - len(answer)) for answer in answers])
    logits = last.expand(len(answers), 1, -1)
    if longest > 1:
        # each answer's tokens but the last as inputs, right-padded: padding after an answer's tokens
        # cannot change the logits that predict them
        inputs = torch.tensor([answer[:-1] + [answer[0]] * (longest - len(answer)) for answer in answers])
        cache.reorder(torch.zeros(len(answers), dtype=torch.long))
        logits = torch.cat([logits, model(inputs, cache=cache)], dim=1)
    return logits, targets


@torch.no_grad()
def choice_log_probs(
    model: nn.Module, questions: list[tuple[list[int], list[list[int]]]], shared_prefix: list[int] | None = None,
) -> list[torch.Tensor]:
    """For each question, (prompt ids, [answer ids of each choice]), the summed log-probability
    of each choice after the prompt: a (K,) tensor for K choices; the model's pick is its argmax.
    Every prompt may follow one ``shared_prefix`` of ids (a few-shot context), whose keys and
    values are computed once for all the questions (``answer_logits``)."""
    prefix_cache = None
    if shared_prefix:
        prefix_cache = GrowingKVCache()
        model(torch.tensor([shared_prefix]), cache=prefix_cache)
    return [summed_answer_log_probs(*answer_logits(model, prompt, answers, prefix_cache))
            for prompt, answers in questions]


def rate_and_error(correct: torch.Tensor) -> tuple[float, float]:
    """The rate of a (N,) boolean tensor of outcomes and its standard error, sqrt(p (1 - p) / N):
    p +- 2 standard errors is about a 95% interval."""
    if correct.numel() == 0:
        raise ValueError("correct must hold at least one outcome")
    rate = correct.float().mean().item()
    return rate, math.sqrt(rate * (1 - rate) / correct.numel())


def paired_difference(first: torch.Tensor, second: torch.Tensor) -> tuple[float, float]:
    """The difference of two rates measured on the same N questions ((N,) boolean tensors), and
    its standard error from the per-question differences: tighter than from the two rates
    alone, since questions that both get right, or both wrong, add no noise."""
    if first.shape != second.shape or first.dim() != 1 or len(first) < 2:
        raise ValueError(f"first and second must be (N,) outcomes on the same N >= 2 questions, "
                         f"got {tuple(first.shape)} and {tuple(second.shape)}")
    differences = first.float() - second.float()
    return differences.mean().item(), (differences.std() / math.sqrt(len(differences))).item()


@torch.no_grad()
def preference_report(model: nn.Module, reference: nn.Module,
                      questions: list[tuple[list[int], list[int], list[list[int]]]], beta: float) -> dict[str, float]:
    """On ``questions``, each (prompt ids, chosen answer ids, [rejected answer ids, ...]), over
    every (chosen, rejected) pair: the win rate (the chosen answer more likely than the rejected
    one under ``model``) and the mean reward margin r_chosen - r_rejected of DPO's implicit
    rewards against ``reference``; and the KL from the reference, KL(model || reference) in nats
    per answer token: the two next-token distributions compared at every position that predicts
    a chosen answer's token."""
    wins, pairs, margin_sum, kl_sum, kl_tokens = 0, 0, 0.0, 0.0, 0
    for prompt, chosen, rejected in questions:
        logits, targets = answer_logits(model, prompt, [chosen, *rejected])
        reference_logits, _ = answer_logits(reference, prompt, [chosen, *rejected])
        scores = summed_answer_log_probs(logits, targets)
        reference_scores = summed_answer_log_probs(reference_logits, targets)
        # DPO's implicit rewards, the chosen answer against each rejected one
        _, chosen_rewards, rejected_rewards = dpo_loss(
            scores[:1].expand(len(rejected)), scores[1:], reference_scores[:1].expand(len(rejected)),
            reference_scores[1:], beta)
        wins += int((scores[0] > scores[1:]).sum())
        margin_sum += float((chosen_rewards - rejected_rewards).sum())
        pairs += len(rejected)
        scored = targets[0] != IGNORE_INDEX
        log_p = F.log_softmax(logits[0][scored].float(), dim=-1)
        log_q = F.log_softmax(reference_logits[0][scored].float(), dim=-1)
        kl_sum += float((log_p.exp() * (log_p - log_q)).sum())
        kl_tokens += int(scored.sum())
    if not pairs:
        raise ValueError("questions must hold at least one (chosen, rejected) pair")
    return {"win rate": wins / pairs, "margin": margin_sum / pairs, "KL": kl_sum / kl_tokens}


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's loss (Rafailov et al. 2023, eq. 7) from summed answer log-probabilities (B,) of the
    model being tuned (``chosen``, ``rejected``) and of the frozen reference. Returns the mean
    loss -log sigmoid(r_w - r_l) and the implicit rewards r_w, r_l (B,), r = beta (log pi - log ref),
    detached: their difference is the reward margin, and r_w > r_l a win."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_rewards = beta * (chosen - reference_chosen)
    rejected_rewards = beta * (rejected - reference_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()
