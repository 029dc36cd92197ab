"""The models the checks run learners' code on, and the tools to compare a learner's module with
the library's: build it with the library's weights, and name the first layer whose output differs.

Taught in: every lesson's workbook (``exercises/``), through ``course_utils.checks``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..hub import load_model
from ..model import GPTConfig, MiniGPT
from .harness import ExerciseFailed, generator

TINY, BUNDLED = "a tiny random GPT (C=4, 2 heads)", "the bundled shakespeare-gpt"


@functools.cache
def reference_model(label: str) -> MiniGPT:
    """The models the checks load their weights from, built once: a tiny random GPT (readable
    inputs) or the bundled ``shakespeare-gpt`` (the real thing)."""
    if label != TINY:
        return MiniGPT.from_hf(load_model("shakespeare-gpt")[0]).eval()
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=11, context_length=16, n_layer=2, n_head=2, n_embd=4))
    with torch.no_grad():  # weights larger than at initialisation: outputs far from flat
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.eval()


@functools.cache
def bundled_tokenizer() -> Any:
    return load_model("shakespeare-gpt")[1]


def learners_module(learner_class: type, arguments: Any, state: dict, what: str) -> torch.nn.Module:
    """``learner_class(*arguments)`` (one argument: a config) with ``state`` loaded; an
    ``ExerciseFailed`` that says why if the class does not take those weights (its ``__init__``
    must build the lesson's layers)."""
    try:
        module = learner_class(*arguments) if isinstance(arguments, tuple) else learner_class(arguments)
        module.load_state_dict(state)
    except NotImplementedError:
        raise
    except Exception as error:
        raise ExerciseFailed(f"cannot build {getattr(learner_class, '__name__', learner_class)} and load {what}'s "
                             f"weights into it ({type(error).__name__}: {error}); keep the lesson's __init__ as it "
                             "is") from None
    return module.eval()


class FirstOutput(torch.nn.Module):
    """A library module whose forward returns (output, extra), made to return the output alone."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


def first_differing_module(learner: torch.nn.Module, reference: torch.nn.Module, inputs: torch.Tensor,
                           atol: float) -> str | None:
    """Run both models on ``inputs`` and name the first module, in the order the reference calls
    them, whose output in the learner's model differs (the models share their modules' names)."""
    recorded = _module_outputs(learner, reference, inputs)
    if recorded is None:
        return None
    outputs, order = recorded
    learners_modules = {name for name, _ in learner.named_modules()}
    for name in order:
        if name not in learners_modules:  # a library module put inside the learner's under another name
            continue
        theirs = outputs["reference"][name]
        if name not in outputs["learner"]:
            return f"{name} is never called by your forward"
        mine = outputs["learner"][name]
        try:  # (T, C) position vectors against (B, T, C) ones are the same vectors
            mine, theirs = torch.broadcast_tensors(mine, theirs)
        except (RuntimeError, TypeError):
            return f"{name}'s output has shape {tuple(getattr(mine, 'shape', ()))} instead of {tuple(theirs.shape)}"
        gap = (mine - theirs).abs().max().item()
        if gap > atol:
            return f"the first module whose output differs is {name}, by up to {gap:.3g}"
    return None


def _module_outputs(learner: torch.nn.Module, reference: torch.nn.Module, inputs: torch.Tensor
                    ) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]] | None:
    """Each named module's first output in both models on ``inputs`` (``{"learner": {name: output},
    "reference": {...}}``) and the order the reference calls its modules in; None if either model
    fails on ``inputs``."""
    outputs: dict[str, dict[str, torch.Tensor]] = {"learner": {}, "reference": {}}
    order: list[str] = []
    handles = []
    for side, model in (("learner", learner), ("reference", reference)):
        for name, module in model.named_modules():
            if not name or isinstance(module, torch.nn.Dropout | torch.nn.ModuleList):
                continue

            def record(module, arguments, output, side=side, name=name):
                if side == "reference" and name not in order:
                    order.append(name)
                outputs[side].setdefault(name, output[0] if isinstance(output, tuple) else output)

            handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            learner(inputs)
            reference(inputs)
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
    return outputs, order


def prompts(seed: int, shapes: list[tuple[str, int, int]]) -> list[tuple[str, torch.Tensor]]:
    """(model label, random prompt ids (B, T)) for each (label, B, T)."""
    draws = generator(seed)
    return [(label, torch.randint(0, reference_model(label).config.vocab_size, (B, T), generator=draws))
            for label, B, T in shapes]
