"""Lesson 09's exercises: the answer-only label mask, LoRA's forward, and DPO's loss (extreme
margins included).

Taught in: lesson 09's workbook (``exercises/09_assistant``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .. import post_training
from .harness import Exercise, ExerciseFailed, generator


def _mask_cases() -> list[dict]:
    draws = generator(24)
    return [{"prompt": torch.randint(1, 50, (p,), generator=draws).tolist(),
             "answer": torch.randint(50, 99, (a,), generator=draws).tolist()}
            for p, a in [(1, 1), (2, 1), (1, 2), (3, 2), (5, 1), (4, 4), (9, 3)]]


def _library_mask(prompt: list[int], answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = post_training.answer_only_batch([(prompt, answer)], pad_token_id=0)
    return inputs[0], targets[0]


LABEL_MASK = Exercise(
    name="label_mask", lesson="09", subject="answer_only_by_hand", cases=_mask_cases, reference=_library_mask,
    atol=0.0, parts=("inputs", "targets"))
"""``subject(prompt, answer)``: token id lists -> next-token (inputs, targets), each (T,),
T = len(prompt) + len(answer) - 1, every target but the answer's ``IGNORE_INDEX``: one row of
``post_training.answer_only_batch``."""


def _lora_cases() -> list[dict]:
    draws = generator(25)
    cases = []
    for batch, n_in, n_out, rank, alpha, merged in [
            ((1,), 2, 3, 1, 1.0, False), ((2,), 3, 2, 1, 4.0, False), ((1, 3), 4, 6, 2, 2.0, False),
            ((2, 5), 8, 12, 4, 16.0, False), ((2, 5), 8, 12, 4, 16.0, True)]:
        cases.append({"weight": torch.randn(n_out, n_in, generator=draws), "bias": torch.randn(n_out, generator=draws),
                      "rank": rank, "alpha": alpha, "lora_A": torch.randn(rank, n_in, generator=draws),
                      "lora_B": torch.randn(n_out, rank, generator=draws), "merged": merged,
                      "x": torch.randn(*batch, n_in, generator=draws)})
    return cases


def _lora(cls: type, weight, bias, rank, alpha, lora_A, lora_B, merged) -> torch.nn.Module:
    base = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        base.weight.copy_(weight)
        base.bias.copy_(bias)
    module = cls(copy.deepcopy(base), rank, alpha)
    with torch.no_grad():
        module.lora_A.copy_(lora_A)
        module.lora_B.copy_(lora_B)
    if merged:
        post_training.LoRALinear.merge(module)
    return module


def _output_and_gradients(module: Any, x: torch.Tensor) -> tuple:
    """(the output, the gradients of its sum with respect to lora_A and lora_B, and whether the
    frozen base weight is as it was): a forward that is right in value but trains nothing, or
    changes the frozen layer, says so here."""
    frozen = module.base.weight.detach().clone()
    output = module(x)
    gradients: tuple
    if not isinstance(output, torch.Tensor) or output.grad_fn is None:
        gradients = ("no gradient", "no gradient")
    else:
        found = torch.autograd.grad(output.sum(), (module.lora_A, module.lora_B), allow_unused=True)
        gradients = tuple(g if g is not None else "no gradient reaches it" for g in found)
    return output.detach() if isinstance(output, torch.Tensor) else output, *gradients, torch.equal(
        module.base.weight.detach(), frozen)


def _lora_answer(learner_class: type, x: torch.Tensor, **weights) -> tuple:
    try:
        module = _lora(learner_class, **weights)
    except Exception as error:
        raise ExerciseFailed(f"cannot build {getattr(learner_class, '__name__', learner_class)}(base, rank, alpha) "
                             f"({type(error).__name__}: {error}); keep it a subclass of LoRALinear") from None
    return _output_and_gradients(module, x)


def _lora_reference(x: torch.Tensor, **weights) -> tuple:
    return _output_and_gradients(_lora(post_training.LoRALinear, **weights), x)


LORA_FORWARD = Exercise(
    name="lora_forward", lesson="09", subject="LoRAByHand", cases=_lora_cases, answer=_lora_answer,
    reference=_lora_reference, atol=1e-4,
    parts=("output", "gradient of lora_A", "gradient of lora_B", "the frozen weight unchanged"))
"""``subject(base, rank, alpha)`` is a ``LoRALinear`` whose ``forward(x)`` the learner wrote:
x (..., in) -> (..., out), the frozen layer plus (alpha / r) B A x, or the frozen layer alone when
``merged``. Checked with B random (at B = 0 every forward agrees), then merged."""


def _dpo_cases() -> list[dict]:
    """Small first; random log-probabilities; last, margins of +-120 and beyond, where a loss
    written as log(sigmoid(...)) overflows to infinity and the library's log-sigmoid does not."""
    draws = generator(26)
    one = torch.tensor
    cases = [{"chosen": one([-1.0]), "rejected": one([-1.0]), "reference_chosen": one([-1.0]),
              "reference_rejected": one([-1.0]), "beta": 0.1},
             {"chosen": one([-2.0]), "rejected": one([-6.0]), "reference_chosen": one([-3.0]),
              "reference_rejected": one([-4.0]), "beta": 0.5}]
    for size, beta in [(3, 0.1), (8, 1.0), (16, 0.05)]:
        four = torch.randn(4, size, generator=draws) * 4 - 10
        cases.append({"chosen": four[0], "rejected": four[1], "reference_chosen": four[2],
                      "reference_rejected": four[3], "beta": beta})
    cases.append({"chosen": one([-130.0, -5.0]), "rejected": one([-10.0, -300.0]),
                  "reference_chosen": one([-10.0, -5.0]), "reference_rejected": one([-10.0, -5.0]), "beta": 1.0})
    cases.append({"chosen": one([-400.0]), "rejected": one([-1.0]), "reference_chosen": one([-2.0]),
                  "reference_rejected": one([-3.0]), "beta": 2.0})
    return cases


def _loss_and_gradients(loss_fn, chosen, rejected, reference_chosen, reference_rejected, beta):
    """(the loss, its gradient with respect to ``chosen`` and to ``rejected``): a loss that is
    right in value but cut off from the graph trains nothing, and says so here."""
    leaves = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
    given = [leaf * 1.0 for leaf in leaves]  # not leaves, as a model's outputs are: in-place changes are allowed
    before = [tensor.detach().clone() for tensor in given]
    loss = loss_fn(*given, reference_chosen, reference_rejected, beta)
    if any(not torch.equal(tensor.detach(), old) for tensor, old in zip(given, before)):
        changed = "it changed the caller's log-probabilities in place"
        return loss.detach() if isinstance(loss, torch.Tensor) else loss, changed, changed
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        cut = "no gradient: the loss is cut off from the log-probabilities (.item(), a new tensor or no_grad)"
        return loss, cut, cut
    gradients = torch.autograd.grad(loss.sum(), leaves, allow_unused=True)
    return loss.detach(), *(g if g is not None else "no gradient reaches it" for g in gradients)


DPO_LOSS = Exercise(
    name="dpo_loss", lesson="09", subject="dpo_loss_by_hand", cases=_dpo_cases,
    answer=lambda learner, **case: _loss_and_gradients(learner, **case),
    reference=lambda **case: _loss_and_gradients(lambda *a: post_training.dpo_loss(*a)[0], **case), atol=1e-5,
    parts=("loss", "gradient with respect to chosen", "gradient with respect to rejected"))
"""``subject(chosen, rejected, reference_chosen, reference_rejected, beta)``: summed answer
log-probabilities (B,) -> DPO's mean loss (0-d), as ``post_training.dpo_loss``, with the same
gradients with respect to the tuned model's log-probabilities."""

EXERCISES = (LABEL_MASK, LORA_FORWARD, DPO_LOSS)
