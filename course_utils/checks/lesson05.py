"""Lesson 05's exercises: next-token windows, one training step (its losses, the weights it leaves
and the gradients it leaves behind), and bits per byte.

Taught in: lesson 05's workbook (``exercises/05_training``).
"""

from __future__ import annotations

import math

import torch

from .. import train
from ..model import GPTConfig, MiniGPT
from .harness import Exercise, generator


def _window_cases() -> list[dict]:
    draws = generator(9)
    stream = torch.arange(100, 140)  # token i is 100 + i: an off-by-one shows in the numbers
    return [{"tokens": stream, "starts": torch.tensor([0]), "length": 1},
            {"tokens": stream, "starts": torch.tensor([0, 5]), "length": 3},
            {"tokens": stream, "starts": torch.tensor([38]), "length": 1},  # the last window that fits
            {"tokens": torch.randint(0, 50, (500,), generator=draws),
             "starts": torch.randint(0, 400, (6,), generator=draws), "length": 32}]


NEXT_TOKEN_WINDOWS = Exercise(
    name="next_token_windows", lesson="05", subject="windows_by_hand", cases=_window_cases,
    reference=train.windows_at, atol=0.0, parts=("inputs", "targets"))
"""``subject(tokens, starts, length)``: inputs and targets (B, length) of ``train.windows_at``."""

STEP_CONFIG = GPTConfig(vocab_size=13, context_length=8, n_layer=1, n_head=2, n_embd=8)


def _three_steps(step, optimizer_name: str, grad_clip: float, seed: int):
    """Three steps of ``step`` from one start: (the losses (3,), every weight after them, one
    vector, and the norm of the gradients left in ``.grad`` after the last call)."""
    torch.manual_seed(seed)
    model = MiniGPT(STEP_CONFIG)
    optimizer: torch.optim.Optimizer
    if optimizer_name == "sgd":  # plain SGD: the update is the clipped gradient itself, so clipping shows
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    else:
        optimizer = train.make_optimizer(model, train.TrainConfig(learning_rate=1e-2, precision="float32"))
    batches = generator(seed)
    losses, kinds = [], set()
    for _ in range(3):
        ids = torch.randint(0, STEP_CONFIG.vocab_size, (4, STEP_CONFIG.context_length + 1), generator=batches)
        loss = step(model, optimizer, ids[:, :-1], ids[:, 1:], grad_clip)
        kinds.add(type(loss).__name__)  # a tensor returned keeps each step's graph alive in a list of losses
        losses.append(float(loss))
    left = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return (torch.tensor(losses), torch.cat([p.detach().flatten() for p in model.parameters()]),
            float(torch.stack(left).norm()) if left else 0.0, " or ".join(sorted(kinds)))


def _library_step(model, optimizer, inputs, targets, grad_clip):
    return train.training_step(model, optimizer, [(inputs, targets)], grad_clip=grad_clip).item()


TRAINING_STEP = Exercise(
    name="training_step", lesson="05", subject="training_step_by_hand",
    # The gradients' norms here are 0.5-0.9: clips of 0.05 and 0.2 cut them, 100 leaves them.
    cases=lambda: [{"optimizer": name, "grad_clip": clip, "seed": seed}
                   for seed, (name, clip) in enumerate((("adamw", 100.0), ("sgd", 100.0), ("sgd", 0.2),
                                                        ("adamw", 0.05), ("sgd", 0.05)))],
    answer=lambda learner, optimizer, grad_clip, seed: _three_steps(learner, optimizer, grad_clip, seed),
    reference=lambda optimizer, grad_clip, seed: _three_steps(_library_step, optimizer, grad_clip, seed),
    atol=1e-6, parts=("losses", "weights after three steps", "gradient norm left in .grad after the step",
           "type of the loss returned"))
"""``subject(model, optimizer, inputs, targets, grad_clip)``: one optimisation step (loss, backward,
gradient norm clipped to grad_clip, step, no gradient left over), returning the loss. After three
steps from the same start, with AdamW and with plain SGD, the losses and every weight must be the
library's, ``.grad`` must hold nothing after the call, and the loss comes back as a Python float."""


def _bpb_cases() -> list[dict]:
    draws = generator(10)
    return [{"nll": torch.tensor([math.log(2)]), "text": "a"},
            {"nll": torch.tensor([1.0, 2.0]), "text": "ab"},
            {"nll": torch.tensor([1.0, 2.0, 0.5]), "text": "Ophélie’s"},  # characters of 2 and 3 bytes
            {"nll": torch.rand(40, generator=draws) * 5, "text": "To be, or not to be, that is the question"}]


BITS_PER_BYTE = Exercise(
    name="bits_per_byte", lesson="05", subject="bits_per_byte_by_hand", cases=_bpb_cases,
    reference=lambda nll, text: float(nll.double().sum() / math.log(2) / len(text.encode("utf-8"))), atol=1e-6)
"""``subject(nll, text)``: bits per UTF-8 byte from per-token losses in nats."""

EXERCISES = (NEXT_TOKEN_WINDOWS, TRAINING_STEP, BITS_PER_BYTE)
