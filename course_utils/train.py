"""The training loop and its pieces: ``TrainConfig``, the ``Trainer`` and ``training_step``, the
one step every trainer here takes.

The recipe: AdamW (weight decay on matrices only), linear warm-up then cosine decay to
``min_lr``, gradient clipping, bfloat16 autocast where this machine runs it faster (weights and
optimizer stay float32; see ``course_utils.hardware``), and evaluation as it goes. A run is seeded
and resumable: a checkpoint (model, optimizer, step, random states, history) is written
atomically every ``checkpoint_interval`` steps to ``<out>/checkpoint.pt``, and a new ``Trainer``
on the same folder continues from it.

Nothing here is specific to a model or a task, as in minGPT's Trainer: ``batches=`` and
``loss_fn=`` change what a step learns from and what it minimises (lesson 09's fine-tuning, the
draft model's distillation). The bundled models' recipes and the command that trains them,
``python -m course_utils train`` (or ``python -m course_utils.train``), are in
``course_utils.recipes``.

Taught in: lesson 05 (the loop, ``Trainer``, ``training_step``), lesson 08 (equal-time comparisons),
lesson 09 (``fine_tuning_trainer``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .adapters import model_device
from .checkpoints import (  # noqa: F401  (their documented home is course_utils.train too)
    CHECKPOINT_NAME,
    CheckpointError,
    configuration_differences,
    load_checkpoint,
    save_atomically,
)
from .files import remove_leftovers
from .hardware import PRECISIONS, PrecisionChoice, autocast, choose_precision, lesson_device, resolve_device
from .llama import LlamaConfig, config_from_dict
from .model import CourseModel, GPTConfig
from .tokenizer import END_OF_TEXT


@dataclass
class TrainConfig:
    """Everything a run depends on besides its data and its loss (the ``Trainer``'s ``train_tokens``
    or ``batches``, and ``loss_fn``)."""

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
    grad_clip: float | None = 1.0  # the gradient norm's limit; None: no clipping
    eval_interval: int = 200
    eval_tokens: int = 16384  # validation tokens scored at each periodic evaluation
    checkpoint_interval: int = 100
    seed: int = 1337
    # "auto": bfloat16 autocast only where this machine runs it faster (course_utils.hardware).
    precision: str = "auto"
    # Tokens per training sequence; None: the model's context_length. Shorter than the context
    # trains positions beyond it never (lesson 08's extrapolation experiment).
    sequence_length: int | None = None
    # A training-time budget: stop once this many minutes of training steps have run (evaluation
    # not counted), with the cosine decay following the fraction of the budget spent; max_steps
    # stays an upper bound. Equal-time comparisons of architectures use it.
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = config_from_dict(self.model)
        for name in ("batch_size", "gradient_accumulation_steps", "max_steps", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
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
    """A freshly initialised MiniGPT or MiniLlama: what ``config`` builds."""
    return config.build()


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


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (inputs, targets) (B, T) -> mean loss
# (n, generator) -> (inputs, targets), n rows each: a step's batch drawn with the run's generator
Batches = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn | None = None,
    grad_clip: float | None = 1.0,
    precision: str = "float32",
) -> torch.Tensor:
    """The one training step every trainer here takes (the ``Trainer``, and through it lesson 06's
    copying model and lesson 09's fine-tuning; the training benchmark; lesson 05's checks of the
    learner's step): for each of the N micro-batches (inputs, targets), each (B, T) on
    the model's device, the loss ``loss_fn(inputs, targets)`` (default: the model's own) under
    ``precision`` autocast, backward with the loss divided by N, so the summed gradients are those
    of the mean over all micro-batches; then clip the gradient norm to ``grad_clip`` (None: no
    clipping), step and clear. Returns the mean loss as a 0-d tensor, left on the device.

    With one micro-batch and float32 this is the five lines lesson 05 writes: ``loss =
    model(inputs, targets)``, ``loss.backward()``, clip, ``optimizer.step()``, clear."""
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


@dataclass
class Trainer:
    """A resumable training run; ``run()`` trains to ``config.max_steps``.

    ``device``: where to train ("auto", "cpu", "cuda", "mps"); None means ``$COURSE_DEVICE``, else
    the CPU. The precision is ``config.precision`` resolved for that device (``self.precision``).

    By default each step draws random windows of ``train_tokens`` and minimises the model's own
    next-token loss. ``batches(n, generator) -> (inputs, targets)`` (B = n rows) replaces the
    windows, and ``loss_fn(inputs, targets) -> loss`` the loss: lesson 09 trains on prompt and
    answer pairs, and on preference pairs, through them, lesson 06 on repeated blocks, and the
    draft model learns from its teacher (``recipes.distillation_hooks``). ``train_tokens`` is then
    None. ``model`` and ``optimizer`` may be built elsewhere, as minGPT's Trainer takes them.
    """

    config: TrainConfig
    train_tokens: torch.Tensor | None
    out: Path
    # callable(model) -> a validation score (bits per byte for language modelling), or None
    eval_fn: Callable[[CourseModel], float] | None = None
    progress: bool = True  # a progress bar, and a line per evaluation
    device: str | torch.device | None = None
    # The model to train; None builds a fresh one from config.model (seeded with config.seed).
    # A model built elsewhere (as minGPT's Trainer takes one) must match config.model.
    model: CourseModel = None  # type: ignore[assignment]
    batches: Batches | None = None
    loss_fn: LossFn | None = None
    # The optimizer of ``model``; None: ``make_optimizer``. The schedule sets its learning rate.
    optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]
    history: dict = field(default_factory=lambda: {"step": [], "loss": [], "lr": [], "eval_step": [], "val_bpb": []})

    def __post_init__(self) -> None:
        if (self.train_tokens is None) == (self.batches is None):
            raise ValueError("pass exactly one of train_tokens (random windows) and batches")
        self.device = lesson_device() if self.device is None else resolve_device(self.device)
        self.precision: PrecisionChoice = choose_precision(self.config.precision, self.device, self.config.model.n_embd)
        if self.progress:
            print(f"training on {self.device.type} in {self.precision.precision} ({self.precision.reason})")
        torch.manual_seed(self.config.seed)
        if self.model is None:
            self.model = build_model(self.config.model)
        elif self.model.config != self.config.model:
            raise ValueError(f"model has config {self.model.config}, but config.model is {self.config.model}; "
                             "they must match (checkpoints and the learning-rate schedule depend on it)")
        self.model = self.model.to(self.device)
        if self.optimizer is None:
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
        saved, current = json.loads(state["config"]), json.loads(json.dumps(asdict(self.config)))
        if saved != current:
            differ = ", ".join(f"{name} {saved_value!r} there, {current_value!r} here"
                               for name, saved_value, current_value in configuration_differences(saved, current))
            raise CheckpointError(f"{self.out / CHECKPOINT_NAME} was written by a run with another configuration "
                                  f"({differ}): resume with the same settings, or train into another --out")
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
        if self.train_tokens is not None:
            inputs, targets = random_batch(self.train_tokens, sequences, config.tokens_per_sequence, self.generator)
        else:
            assert self.batches is not None  # __post_init__: exactly one of train_tokens and batches
            inputs, targets = self.batches(sequences, self.generator)
        micro_batches = [(micro_inputs.to(self.device), micro_targets.to(self.device)) for micro_inputs, micro_targets
                         in zip(inputs.split(config.batch_size), targets.split(config.batch_size))]
        loss = training_step(self.model, self.optimizer, micro_batches, self.loss_fn, config.grad_clip,
                             self.precision.precision)
        self.step += 1
        self.history["step"].append(self.step)
        value = loss.item()  # the step's one synchronisation
        self.history["loss"].append(round(value, 5))
        self.history["lr"].append(lr)
        return value

    def evaluate(self) -> float:
        if self.eval_fn is None:
            raise ValueError("evaluate() needs the Trainer's eval_fn")
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


def fine_tuning_trainer(
    model: CourseModel,
    batches: Batches,
    out: Path,
    steps: int,
    learning_rate: float,
    batch_size: int = 8,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Trainer:
    """A ``Trainer`` that fine-tunes ``model`` in place: ``steps`` steps of ``batch_size`` rows from
    ``batches`` (with ``loss_fn``, default the model's own loss), in float32, the learning rate
    warming up over min(10, steps) steps to ``learning_rate`` and decaying to ``learning_rate / 10``,
    one checkpoint in ``out`` at the end, no progress bar. Call ``run()``, or ``advance()`` step by
    step. Lesson 09's runs (SFT, LoRA, DPO) and ``chat.tuned_chat_model`` take it."""
    config = TrainConfig(model=model.config, batch_size=batch_size, max_steps=steps, warmup_steps=min(10, steps),
                         learning_rate=learning_rate, min_lr=learning_rate / 10, eval_interval=steps,
                         checkpoint_interval=steps, precision="float32", seed=seed)
    return Trainer(config, None, out, progress=False, device=device, model=model, batches=batches, loss_fn=loss_fn)


# The presets, distillation, the model card, export and the command moved to ``recipes`` (which
# imports this module); their old import path, ``course_utils.train.PRESETS`` and so on, still works.
RECIPE_NAMES = ("PRESETS", "VOCAB_SIZE", "TEACHER_PROMPT_TOKENS", "teacher_greedy_texts", "distillation_loss",
                "MODEL_CARD", "distillation_summary", "export", "main")


def __getattr__(name: str):
    if name in RECIPE_NAMES:
        from . import recipes  # here, not at the top: recipes imports this module

        return getattr(recipes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    # The command is recipes.main, which imports this module; __main__ imports it by name, when run.
    from .__main__ import main as run_command

    sys.exit(run_command(["train", *sys.argv[1:]]))
