"""Checkers for the exercise workbooks (``exercises/``, made by ``scripts/make_exercises.py``).

Each checker takes the learner's function, runs it and the library's own implementation on fixed
inputs, smallest first, then on random ones, and compares. On the first input where they differ
it raises ``ExerciseFailed`` with one message: the input, what was expected, what came back, what
differs, and where a hint is (``checks.hint(name)``, one level per call). It never shows the
solution's code, nor a hint unasked. When every input agrees it
prints one line.

Taught in: every lesson's workbook (``exercises/``).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from . import attention as attention_analysis  # modules whose names the checkers below reuse
from . import llama, speculative
from . import model as gpt_model
from .generation import generate
from .hints import HINTS, hint  # noqa: F401  (checks.hint is what a workbook calls)
from .hub import load_model
from .llama import LlamaConfig, RMSNorm, SwiGLU
from .model import GPTConfig, MiniGPT, attend
from .post_training import LoRALinear, answer_only_batch
from .post_training import dpo_loss as library_dpo_loss
from .sampling import GenerationSettings, apply_repetition_penalty, top_k_filter, top_p_filter
from .speculative import accept_drafts
from .train import TrainConfig, make_optimizer, update, windows_at


class ExerciseFailed(AssertionError):
    """The learner's function gave a wrong answer, raised, or was left blank."""


def _show(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        text = str(value.int() if value.dtype == torch.bool else value)
        return f"{text}  (shape {tuple(value.shape)}, {value.dtype})"
    return repr(value)


def _kind(t: torch.Tensor) -> str:
    return "bool" if t.dtype == torch.bool else "floating-point" if t.is_floating_point() else "integer"


def _difference(actual: Any, expected: Any, atol: float) -> str | None:
    """What differs between two answers, or None when they agree."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            return f"expected a tensor, got a {type(actual).__name__}"
        if actual.shape != expected.shape:
            return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
        if _kind(expected) != "floating-point":  # masks, token ids and counts: exactly equal
            if _kind(actual) != _kind(expected):
                return f"dtype {actual.dtype} instead of a {_kind(expected)} tensor ({expected.dtype})"
            wrong = (actual != expected).nonzero()
            return f"{len(wrong)} entries differ, the first at {wrong[0].tolist()}" if len(wrong) else None
        if _kind(actual) != "floating-point":
            return f"dtype {actual.dtype} instead of a floating-point tensor"
        gap = (actual.double() - expected.double()).abs()
        gap = torch.where(torch.isnan(gap), torch.inf, gap)
        both_minus_inf = torch.isneginf(actual) & torch.isneginf(expected)
        gap = torch.where(both_minus_inf, 0.0, gap)
        if gap.max() > atol:
            worst = (gap == gap.max()).nonzero()[0].tolist()
            return f"largest difference {gap.max():.3g} (tolerance {atol:g}), at {worst}"
        return None
    if isinstance(expected, tuple):
        if not isinstance(actual, tuple | list) or len(actual) != len(expected):
            return f"expected a tuple of {len(expected)}, got {_show(actual)}"
        for index, (mine, theirs) in enumerate(zip(actual, expected)):
            if problem := _difference(mine, theirs, atol):
                return f"item {index}: {problem}"
        return None
    if isinstance(expected, float):
        if not isinstance(actual, int | float) and not (isinstance(actual, torch.Tensor) and actual.numel() == 1):
            return f"expected a number, got a {type(actual).__name__}"
        gap = abs(float(actual) - expected)
        return None if gap <= atol * max(1.0, abs(expected)) else f"off by {gap:.3g} (tolerance {atol:g}, relative)"
    return None if actual == expected else "values differ"


def run_checks(
    name: str,
    learner: Callable,
    reference: Callable,
    cases: Iterable[dict],
    atol: float = 1e-5,
    canonical: Callable[[Any], Any] | None = None,
    locate: Callable[..., str | None] | None = None,
) -> None:
    """Compare ``learner(**case)`` with ``reference(**case)`` for each case, in order (smallest
    first); raise ``ExerciseFailed`` on the first that differs, else print one line.
    ``canonical``, applied to both answers before comparing, makes equally right answers equal
    (for example which of two tied tokens a filter keeps). ``locate(**case)``, called on a wrong
    answer, says where inside the learner's code the answer first went wrong."""
    cases = list(cases)
    for case in cases:
        shown = ", ".join(f"{key}={_show(value)}" for key, value in case.items())
        try:
            actual = learner(**{key: value.clone() if isinstance(value, torch.Tensor) else value
                                for key, value in case.items()})
        except NotImplementedError as blank:
            raise ExerciseFailed(f"{name}: not written yet. The task: {blank}") from None
        except ExerciseFailed:
            raise
        except Exception as error:  # the learner's bug, reported with the input that caused it
            raise ExerciseFailed(f"{name} raised {type(error).__name__}: {error}\n  on the input: {shown}"
                                 + _stuck(name)) from error
        expected = reference(**case)
        if canonical is not None and isinstance(actual, torch.Tensor) and actual.shape == expected.shape:
            problem = _difference(canonical(actual), canonical(expected), atol)
        else:
            problem = _difference(actual, expected, atol)
        if problem:
            where = locate(**case) if locate is not None else None
            problem += f"\n  where:    {where}" if where else ""
            raise _wrong_answer(name, shown, _show(expected), _show(actual), problem)
    print(f"{name}: correct on all {len(cases)} inputs")


def _wrong_answer(name: str, shown: str, expected: str, got: str, problem: str) -> ExerciseFailed:
    """The one failure message of every check: the input, what was expected, what came back,
    what differs, and where the hints are."""
    return ExerciseFailed(f"{name}: wrong answer on the smallest input it fails on\n  input:    {shown}\n"
                          f"  expected: {expected}\n  got:      {got}\n  problem:  {problem}" + _stuck(name))


def _stuck(name: str) -> str:
    """The last line of a failure: where a hint is, never the hint itself."""
    return f"\n  stuck?    checks.hint({name!r}) gives a hint; call it again for the next" if name in HINTS else ""


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- lesson 01 --------------------------------------------------------------------------------

def causal_mask(learner: Callable[[int], torch.Tensor]) -> None:
    """``learner(T)``: the (T, T) bool mask, True where query i may attend to key j (j <= i)."""
    run_checks("causal_mask", learner, lambda T: gpt_model.causal_mask(T), [{"T": T} for T in (1, 2, 3, 4, 7, 16)])


def attention(learner: Callable) -> None:
    """``learner(q, k, v, causal)``: scaled dot-product attention, q, k, v (..., T, d) -> (..., T, d),
    with the causal mask when ``causal``."""
    def reference(q, k, v, causal):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    generator = _generator(1)
    cases = []
    for shape, causal in [((1, 1, 2), True), ((1, 3, 2), True), ((1, 3, 2), False), ((2, 4, 5, 8), True),
                          ((3, 2, 10, 16), False), ((3, 2, 10, 16), True)]:
        q, k, v = (torch.randn(*shape, generator=generator) * 2 for _ in range(3))
        cases.append({"q": q, "k": k, "v": v, "causal": causal})
    run_checks("attention", learner, reference, cases)


def token_log_probs(learner: Callable) -> None:
    """``learner(logits, ids)``: logits (T, V) of one text and its ids (T,) -> the log-probability
    (T - 1,) of each of ids[1:] given the tokens before it."""
    def reference(logits, ids):
        return F.log_softmax(logits[:-1].double(), dim=-1).gather(1, ids[1:, None]).squeeze(1).to(logits.dtype)

    generator = _generator(2)
    cases = []
    for T, V in [(2, 3), (3, 5), (6, 11), (20, 50)]:
        cases.append({"logits": torch.randn(T, V, generator=generator) * 3,
                      "ids": torch.randint(0, V, (T,), generator=generator)})
    run_checks("token_log_probs", learner, reference, cases, atol=1e-4)


# ---- lesson 02 --------------------------------------------------------------------------------

def split_heads(learner: Callable) -> None:
    """``learner(t, n_head)``: (B, T, C) -> (B, H, T, D), head h holding channels h*D .. (h+1)*D - 1."""
    def reference(t, n_head):  # as CausalSelfAttention.forward splits q, k and v
        B, T, C = t.shape
        return t.view(B, T, n_head, C // n_head).transpose(1, 2)

    generator = _generator(3)
    cases = [{"t": torch.arange(B * T * C, dtype=torch.float32).view(B, T, C), "n_head": H}
             for B, T, C, H in [(1, 1, 2, 2), (1, 2, 4, 2), (2, 3, 6, 3), (1, 5, 8, 4)]]
    cases += [{"t": torch.randn(B, T, C, generator=generator), "n_head": H}
              for B, T, C, H in [(2, 7, 32, 4), (3, 9, 64, 8)]]
    run_checks("split_heads", learner, reference, cases, atol=0.0)


TINY, BUNDLED = "a tiny random GPT (C=4, 2 heads)", "the bundled shakespeare-gpt"


@functools.cache
def _reference_model(label: str):
    """The models the module checks load their weights from, built once: a tiny random GPT
    (readable inputs) or the bundled ``shakespeare-gpt`` (the real thing)."""
    if label != TINY:
        return MiniGPT.from_hf(load_model("shakespeare-gpt")[0]).eval()
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=11, context_length=16, n_layer=2, n_head=2, n_embd=4))
    with torch.no_grad():  # weights larger than at initialisation: outputs far from flat
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.eval()


def _learners_module(learner_class: type, arguments: Any, state: dict, what: str):
    """``learner_class(*arguments)`` (one argument: a config) with ``state`` loaded; an
    ``ExerciseFailed`` that says why if the class does not take those weights (its ``__init__``
    must build the lesson's layers)."""
    try:
        module = learner_class(*arguments) if isinstance(arguments, tuple) else learner_class(arguments)
        module.load_state_dict(state)
    except NotImplementedError:
        raise
    except Exception as error:
        raise ExerciseFailed(f"cannot build {learner_class.__name__} and load {what}'s weights into it "
                             f"({type(error).__name__}: {error}); keep the lesson's __init__ as it is") from None
    return module.eval()


class _FirstOutput(torch.nn.Module):
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


def _module_cases(seed: int, lengths: tuple[int, ...]) -> list[dict]:
    generator = _generator(seed)
    cases = []
    for label in (TINY, BUNDLED):
        config = _reference_model(label).config
        for batch, T in zip((1, 1, 2), lengths):
            cases.append({"model": label, "x": torch.randn(batch, min(T, config.context_length), config.n_embd,
                                                           generator=generator)})
    return cases


def attention_module(learner_class: type) -> None:
    """``learner_class(config)`` builds ``c_attn`` and ``c_proj`` as GPT-2 does; its ``forward(x)``
    is masked multi-head self-attention, x (B, T, C) -> (B, T, C). Loaded with the last block's
    attention weights of each model, it must give that module's output."""
    def build(model):
        reference = _reference_model(model)
        return _learners_module(learner_class, reference.config, reference.h[-1].attn.state_dict(),
                                "the attention module")

    def reference(model, x):
        with torch.no_grad():
            return _reference_model(model).h[-1].attn(x)[0]

    def learners(model, x):
        with torch.no_grad():
            return build(model)(x)

    run_checks("attention_module", learners, reference, _module_cases(11, (1, 3, 9)))


def block_forward(learner_class: type) -> None:
    """``learner_class(config)`` builds ``ln_1``, ``attn``, ``ln_2`` and ``mlp``; its ``forward(x)``
    is a pre-norm block, x (B, T, C) -> (B, T, C). It is checked with the library's attention and
    MLP put inside it, so only the block's own wiring is tested."""
    def build(model):
        library_block = _reference_model(model).h[0]
        block = _learners_module(learner_class, _reference_model(model).config, library_block.state_dict(),
                                 "the first block")
        block.attn, block.mlp = _FirstOutput(library_block.attn), library_block.mlp
        return block

    def reference(model, x):
        with torch.no_grad():
            return _reference_model(model).h[0](x)[0]

    def learners(model, x):
        with torch.no_grad():
            return build(model)(x)

    def locate(model, x):
        return first_differing_module(build(model), _reference_model(model).h[0], x, 1e-5)

    run_checks("block_forward", learners, reference, _module_cases(12, (1, 3, 9)), locate=locate)


def gpt_forward(learner_class: type) -> None:
    """``learner_class(config)`` builds ``wte``, ``wpe``, the blocks ``h``, ``ln_f`` and a tied
    ``lm_head``; its ``forward(ids)`` gives logits (B, T, V). Loaded with the whole model's weights
    (your blocks and attention inside), its logits must be the library's, and on a mismatch the
    check names the first layer whose output differs, and by how much."""
    generator = _generator(13)
    cases = []
    for label in (TINY, BUNDLED):
        config = _reference_model(label).config
        for batch, T in ((1, 1), (1, 5), (2, min(40, config.context_length))):
            cases.append({"model": label, "ids": torch.randint(0, config.vocab_size, (batch, T), generator=generator)})

    def build(model):
        reference = _reference_model(model)
        return _learners_module(learner_class, reference.config, reference.state_dict(), "the whole model")

    def reference(model, ids):
        with torch.no_grad():
            return _reference_model(model)(ids)

    def learners(model, ids):
        with torch.no_grad():
            return build(model)(ids)

    def locate(model, ids):
        return first_differing_module(build(model), _reference_model(model), ids, 1e-5)

    run_checks("gpt_forward", learners, reference, cases, atol=1e-4, locate=locate)


# ---- lesson 03 --------------------------------------------------------------------------------

def _filter_cases(seed: int) -> list[torch.Tensor]:
    """Logits (B, V) for the filters, small first: ties, a uniform row, a peaked row, random rows."""
    generator = _generator(seed)
    return [
        torch.tensor([[1.0, 2.0]]),
        torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]]),  # a tie for second place
        torch.zeros(1, 4),  # all tied: probabilities exactly 1/4, sums that land on 0.5 and 0.75
        torch.tensor([[0.35, 0.25, 0.15, 0.10, 0.05, 0.04, 0.03, 0.03]]).log(),
        torch.randn(3, 10, generator=generator) * 2,
        torch.randint(-3, 3, (4, 50), generator=generator).float(),  # many ties
    ]


def _sorted_rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.sort(dim=-1).values  # which of several tied tokens is kept does not matter


def top_k(learner: Callable) -> None:
    """``learner(logits, top_k)``: every token below its row's top_k-th largest logit set to -inf,
    ties with it kept (the rule of ``generation.top_k_filter`` and transformers)."""
    cases = [{"logits": logits, "top_k": k} for logits in _filter_cases(5) for k in (1, 2, 3)
             if k <= logits.shape[-1]]
    run_checks("top_k", learner, top_k_filter, cases, atol=0.0)


def top_p(learner: Callable) -> None:
    """``learner(logits, top_p)``: the nucleus of each row kept, the crossing token included (the
    rule of ``generation.top_p_filter`` and transformers). Tied tokens may be kept either way."""
    cases = [{"logits": logits, "top_p": p} for logits in _filter_cases(6) for p in (0.25, 0.5, 0.75, 0.9)]
    run_checks("top_p", learner, top_p_filter, cases, atol=1e-6, canonical=_sorted_rows)


def repetition_penalty(learner: Callable) -> None:
    """``learner(logits, input_ids, penalty)``: the rule of ``generation.apply_repetition_penalty``."""
    generator = _generator(7)
    cases = [
        {"logits": torch.tensor([[2.0, -1.0]]), "input_ids": torch.tensor([[0]]), "penalty": 2.0},
        {"logits": torch.tensor([[2.0, -1.0]]), "input_ids": torch.tensor([[1]]), "penalty": 2.0},  # a negative logit
        {"logits": torch.tensor([[2.0, 1.0, -1.0, 0.5]]), "input_ids": torch.tensor([[0, 2, 2]]), "penalty": 1.5},
        {"logits": torch.randn(3, 20, generator=generator),
         "input_ids": torch.randint(0, 20, (3, 6), generator=generator), "penalty": 1.3},
        {"logits": torch.randn(2, 20, generator=generator),
         "input_ids": torch.randint(0, 20, (2, 9), generator=generator), "penalty": 0.7},  # below 1 encourages repeats
    ]
    run_checks("repetition_penalty", learner, apply_repetition_penalty, cases)



def _prompts(seed: int, shapes: list[tuple[str, int, int]]) -> list[tuple[str, torch.Tensor]]:
    """(model label, random prompt ids (B, T)) for each (label, B, T)."""
    generator = _generator(seed)
    return [(label, torch.randint(0, _reference_model(label).config.vocab_size, (B, T), generator=generator))
            for label, B, T in shapes]


def sampling_loop(learner: Callable) -> None:
    """``learner(model, prompt, max_new_tokens, temperature, top_k, top_p, generator)``: prompt
    (B, T) extended by max_new_tokens tokens, each drawn from the last position's logits after
    temperature, top-k and top-p; with the same seed, exactly ``generate(do_sample=True)``'s tokens."""
    settings = [(1.0, 3, 1.0), (0.7, 5, 0.9), (1.5, 8, 0.8), (0.8, 40, 0.9), (1.0, 50, 0.5)]
    prompts = _prompts(14, [(TINY, 1, 2), (TINY, 1, 3), (TINY, 2, 4), (BUNDLED, 1, 6), (BUNDLED, 2, 5)])
    cases = [{"model": label, "prompt": prompt, "max_new_tokens": 6, "temperature": t, "top_k": k, "top_p": p,
              "seed": seed} for seed, ((label, prompt), (t, k, p)) in enumerate(zip(prompts, settings))]

    def reference(model, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        return generate(_reference_model(model), prompt, max_new_tokens, do_sample=True, temperature=temperature,
                        top_k=top_k, top_p=top_p, generator=torch.Generator().manual_seed(seed))

    def learners(model, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        return learner(_reference_model(model), prompt, max_new_tokens, temperature, top_k, top_p,
                       torch.Generator().manual_seed(seed))

    run_checks("sampling_loop", learners, reference, cases, atol=0.0)


def beam_search(learner: Callable) -> None:
    """``learner(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty)``: the best
    finished hypothesis for one prompt (1, T), token for token ``generate(num_beams=...,
    early_stopping=True)``. End-of-text is each case's first or second most likely first token,
    so that hypotheses finish early."""
    cases = []
    settings = [(2, 3, None, 1.0), (2, 4, 0, 1.0), (3, 5, 1, 1.0), (3, 6, 0, 0.5), (2, 6, 1, 2.0), (4, 8, 1, 0.0),
                (4, 10, None, 1.0)]
    prompts = _prompts(15, [(TINY, 1, 2), (TINY, 1, 2), (TINY, 1, 3), (TINY, 1, 4), (BUNDLED, 1, 4),
                            (BUNDLED, 1, 6), (BUNDLED, 1, 5)])
    for (label, prompt), (beams, new, eos_rank, penalty) in zip(prompts, settings):
        eos = None
        if eos_rank is not None:
            with torch.no_grad():
                eos = int(_reference_model(label)(prompt)[0, -1].topk(2).indices[eos_rank])
        cases.append({"model": label, "prompt": prompt, "num_beams": beams, "max_new_tokens": new,
                      "eos_token_id": eos, "length_penalty": penalty})

    def reference(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty):
        return generate(_reference_model(model), prompt, max_new_tokens, num_beams=num_beams,
                        eos_token_id=eos_token_id, length_penalty=length_penalty, early_stopping=True)

    def learners(model, prompt, num_beams, max_new_tokens, eos_token_id, length_penalty):
        return learner(_reference_model(model), prompt, num_beams, max_new_tokens, eos_token_id, length_penalty)

    run_checks("beam_search", learners, reference, cases, atol=0.0)

# ---- lesson 06 --------------------------------------------------------------------------------

def _head_weights(seed: int) -> list[torch.Tensor]:
    """One head's causal attention weights (T, T), small first: uniform, one-hot, random ones with
    exact zeros."""
    generator = _generator(seed)
    cases = []
    for T in (2, 3):
        cases.append(torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None])  # uniform over the past
    previous = torch.zeros(4, 4)
    previous[0, 0] = 1.0
    previous[torch.arange(1, 4), torch.arange(0, 3)] = 1.0  # every query on the token before
    cases.append(previous)
    for T in (5, 16):
        scores = torch.randn(T, T, generator=generator) * 2
        scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        cases.append(scores.softmax(-1))
    sparse = cases[-1].clone()
    sparse[sparse < 0.05] = 0.0  # exact zeros inside the past too
    cases.append(sparse / sparse.sum(-1, keepdim=True))
    return cases


def _score_check(name: str, rule_name: str, learner: Callable) -> None:
    rule = getattr(attention_analysis, rule_name)
    run_checks(name, lambda w: torch.as_tensor(learner(w), dtype=torch.float32).reshape(()),
               lambda w: rule([w[None, None]])[0, 0], [{"w": w} for w in _head_weights(8)])


def previous_token_score(learner: Callable) -> None:
    """``learner(w)``: mean of w[i, i-1] over queries i >= 1 of one head's weights (T, T)."""
    _score_check("previous_token_score", "previous_token_score", learner)


def mean_distance(learner: Callable) -> None:
    """``learner(w)``: mean over queries of sum_j w[i, j] (i - j), in tokens."""
    _score_check("mean_distance", "mean_distance", learner)


def attention_entropy(learner: Callable) -> None:
    """``learner(w)``: mean over queries of -sum_j w[i, j] ln w[i, j], 0 ln 0 = 0."""
    _score_check("attention_entropy", "entropy", learner)


def induction_score(learner: Callable) -> None:
    """``learner(w, block)``: one head's weights (T, T) on a block repeated twice (T = 2 block) ->
    the mean, over the queries i of the second copy, of w[i, i - block + 1] (a 0-d tensor)."""
    generator = _generator(16)
    cases = []
    for block in (2, 3, 4, 8):
        T = 2 * block
        ideal = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]  # uniform in the first copy
        ideal[block:] = 0.0
        ideal[torch.arange(block, T), torch.arange(1, block + 1)] = 1.0  # the token after the first occurrence
        random_rows = torch.rand(T, T, generator=generator).tril()
        cases += [{"w": ideal, "block": block}, {"w": random_rows / random_rows.sum(-1, keepdim=True), "block": block}]
    cases.sort(key=lambda case: case["block"])
    run_checks("induction_score", lambda w, block: torch.as_tensor(learner(w, block), dtype=torch.float32).reshape(()),
               lambda w, block: attention_analysis.induction_score([w[None, None]], block)[0, 0], cases)


# ---- lesson 04 --------------------------------------------------------------------------------

def cached_attention_step(learner: Callable) -> None:
    """``learner(q_new, k_new, v_new, cached_k, cached_v)``: one new token's attention over the
    cache and itself, as ``model.attend`` computes it."""
    def reference(q_new, k_new, v_new, cached_k, cached_v):
        return attend(q_new, torch.cat([cached_k, k_new], dim=2), torch.cat([cached_v, v_new], dim=2))[0]

    generator = _generator(13)
    cases = []
    for B, H, T_past, D in [(1, 1, 0, 2), (1, 1, 1, 2), (1, 2, 3, 4), (2, 4, 9, 8), (3, 2, 30, 16)]:  # 0: empty cache
        new = [torch.randn(B, H, 1, D, generator=generator) * 2 for _ in range(3)]
        cached = [torch.randn(B, H, T_past, D, generator=generator) * 2 for _ in range(2)]
        cases.append(dict(zip(("q_new", "k_new", "v_new", "cached_k", "cached_v"), new + cached)))
    run_checks("cached_attention_step", learner, reference, cases)


def shifted_causal_mask(learner: Callable) -> None:
    """``learner(n_new, n_past)``: ``model.causal_mask(n_new, n_past=n_past)``."""
    cases = [{"n_new": n_new, "n_past": n_past} for n_new, n_past in [(1, 0), (1, 3), (2, 1), (3, 9), (5, 0), (4, 20)]]
    run_checks("shifted_causal_mask", learner, lambda n_new, n_past: gpt_model.causal_mask(n_new, n_past=n_past), cases)


class _CallRecorder(torch.nn.Module):
    """A model that records how it is called: the number of tokens and the cache of each call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, input_ids: torch.Tensor, *arguments, cache=None, **keywords) -> torch.Tensor:
        self.calls.append((input_ids.shape[1], cache))
        return self.model(input_ids, *arguments, cache=cache, **keywords)


def cached_generation(learner: Callable) -> None:
    """``learner(model, prompt, max_new_tokens)``: greedy decoding through a KV cache, prompt (B, T)
    -> (B, T + max_new_tokens), the tokens of greedy decoding without one. The model must be
    called on the prompt once and then on one new token at a time, always with the same cache."""
    prompts = _prompts(17, [(TINY, 1, 1), (TINY, 1, 3), (TINY, 2, 4), (TINY, 1, 4), (BUNDLED, 1, 5), (BUNDLED, 2, 4)])
    cases = [{"model": label, "prompt": prompt, "max_new_tokens": new}
             for (label, prompt), new in zip(prompts, (1, 3, 5, 12, 10, 6))]

    def learners(model, prompt, max_new_tokens):
        recorder = _CallRecorder(_reference_model(model))
        answer = learner(recorder, prompt, max_new_tokens)
        sizes = [size for size, _ in recorder.calls]
        caches = [cache for _, cache in recorder.calls]
        one_cache = bool(caches) and caches[0] is not None and all(cache is caches[0] for cache in caches)
        if not one_cache or sizes[0] != prompt.shape[1] or any(size != 1 for size in sizes[1:]):
            got = f"calls on {sizes} tokens, with {len({id(cache) for cache in caches})} different cache(s)"
            raise _wrong_answer("cached_generation",
                                f"model={model!r}, prompt={_show(prompt)}, max_new_tokens={max_new_tokens}",
                                f"calls on {prompt.shape[1]} tokens, then 1 token per call, all with one cache",
                                got + (", some without one" if None in caches else ""),
                                "the cache is not used as it should be: run the prompt once, then only the newest "
                                "token")
        return answer

    def reference(model, prompt, max_new_tokens):
        return generate(_reference_model(model), prompt, max_new_tokens, use_cache=False)

    run_checks("cached_generation", learners, reference, cases, atol=0.0)


# ---- lesson 05 --------------------------------------------------------------------------------

def next_token_windows(learner: Callable) -> None:
    """``learner(tokens, starts, length)``: inputs and targets (B, length) of ``train.windows_at``."""
    generator = _generator(9)
    stream = torch.arange(100, 140)  # token i is 100 + i: an off-by-one shows in the numbers
    cases = [{"tokens": stream, "starts": torch.tensor([0]), "length": 1},
             {"tokens": stream, "starts": torch.tensor([0, 5]), "length": 3},
             {"tokens": stream, "starts": torch.tensor([38]), "length": 1},  # the last window that fits
             {"tokens": torch.randint(0, 50, (500,), generator=generator),
              "starts": torch.randint(0, 400, (6,), generator=generator), "length": 32}]
    run_checks("next_token_windows", learner, windows_at, cases, atol=0.0)


def bits_per_byte(learner: Callable) -> None:
    """``learner(nll, text)``: bits per UTF-8 byte from per-token losses in nats."""
    def reference(nll, text):
        return float(nll.double().sum() / math.log(2) / len(text.encode("utf-8")))

    generator = _generator(10)
    cases = [{"nll": torch.tensor([math.log(2)]), "text": "a"},
             {"nll": torch.tensor([1.0, 2.0]), "text": "ab"},
             {"nll": torch.tensor([1.0, 2.0, 0.5]), "text": "Ophélie’s"},  # characters of 2 and 3 bytes
             {"nll": torch.rand(40, generator=generator) * 5, "text": "To be, or not to be, that is the question"}]
    run_checks("bits_per_byte", learner, reference, cases, atol=1e-6)


def training_step(learner: Callable) -> None:
    """``learner(model, optimizer, inputs, targets, grad_clip)``: one optimisation step (loss,
    backward, gradient norm clipped to grad_clip, step, gradients cleared). After three steps from
    the same start, the losses and every weight must be those of the library's ``update``."""
    config = GPTConfig(vocab_size=13, context_length=8, n_layer=1, n_head=2, n_embd=8)

    def run(step, grad_clip, seed):
        torch.manual_seed(seed)
        model = MiniGPT(config)
        optimizer = make_optimizer(model, TrainConfig(learning_rate=1e-2, precision="float32"))
        batches = _generator(seed)
        losses = []
        for _ in range(3):
            ids = torch.randint(0, config.vocab_size, (4, config.context_length + 1), generator=batches)
            losses.append(float(step(model, optimizer, ids[:, :-1], ids[:, 1:], grad_clip)))
        return torch.tensor(losses), torch.stack([p.detach().norm() for p in model.parameters()])

    def library_step(model, optimizer, inputs, targets, grad_clip):
        loss = model(inputs, targets)
        update(model, optimizer, loss, grad_clip)
        return loss.item()

    cases = [{"grad_clip": clip, "seed": seed} for seed, clip in enumerate((100.0, 1.0, 0.05))]
    run_checks("training_step", lambda grad_clip, seed: run(learner, grad_clip, seed),
               lambda grad_clip, seed: run(library_step, grad_clip, seed), cases, atol=1e-6)


# ---- lesson 07 --------------------------------------------------------------------------------

def residual_distribution(learner: Callable) -> None:
    """``learner(p, q)``: norm(max(0, p - q)) of ``speculative.residual_distribution``."""
    generator = _generator(11)
    cases = [{"p": torch.tensor([1.0, 0.0]), "q": torch.tensor([0.0, 1.0])},
             {"p": torch.tensor([0.5, 0.3, 0.2]), "q": torch.tensor([0.2, 0.6, 0.2])},
             {"p": torch.tensor([0.25, 0.25, 0.25, 0.25]), "q": torch.tensor([0.7, 0.1, 0.1, 0.1])}]
    for V in (8, 50):
        p, q = (torch.randn(V, generator=generator).mul(2).softmax(-1) for _ in range(2))
        cases.append({"p": p, "q": q})
    run_checks("residual_distribution", learner, speculative.residual_distribution, cases, atol=1e-6)


def greedy_acceptance(learner: Callable) -> None:
    """``learner(drafted, choices)``: (drafts kept, next token) as greedy ``speculative.accept_drafts``."""
    def reference(drafted, choices):
        logits = F.one_hot(choices, int(max(choices.max(), drafted.max())) + 1).float()
        kept, following = accept_drafts(drafted[None], logits, None, GenerationSettings())
        return kept, int(following)

    generator = _generator(12)
    cases = [{"drafted": torch.tensor([3]), "choices": torch.tensor([3, 4])},
             {"drafted": torch.tensor([1]), "choices": torch.tensor([3, 4])},
             {"drafted": torch.tensor([5, 1, 2]), "choices": torch.tensor([5, 9, 2, 7])},  # a match after a mismatch
             {"drafted": torch.tensor([5, 9, 2]), "choices": torch.tensor([5, 9, 2, 7])}]  # all kept: the bonus
    for K in (4, 8):
        choices = torch.randint(0, 4, (K + 1,), generator=generator)
        drafted = torch.where(torch.rand(K, generator=generator) < 0.7, choices[:K], (choices[:K] + 1) % 4)
        cases.append({"drafted": drafted, "choices": choices})
    run_checks("greedy_acceptance", learner, reference, cases)


def speculative_step(learner: Callable) -> None:
    """``learner(drafted, p, q, generator)``: drafted (K,) tokens, the target's distributions p
    (K + 1, V) and the drafter's q (K, V) -> (kept, token), exactly ``accept_drafts``' decisions
    given the same random numbers; then, over many steps, the first token out must follow p."""
    settings = GenerationSettings(do_sample=True, top_k=0)
    generator = _generator(18)
    cases = []
    for K, V, kind in [(1, 3, "random"), (2, 3, "p = q"), (2, 4, "random"), (3, 4, "p = 0 on the drafts"),
                       (4, 6, "random"), (4, 6, "random")]:
        p = torch.rand(K + 1, V, generator=generator) + 0.05
        p = p / p.sum(-1, keepdim=True)
        q = p[:K].clone() if kind == "p = q" else torch.rand(K, V, generator=generator) + 0.05
        q = q / q.sum(-1, keepdim=True)
        drafted = torch.multinomial(q, 1, generator=generator).view(K)
        if kind == "p = 0 on the drafts":
            p[torch.arange(K), drafted] = 0.0
            p = p / p.sum(-1, keepdim=True)
        for seed in (len(cases), len(cases) + 100):
            cases.append({"drafted": drafted, "p": p, "q": q, "seed": seed})

    def reference(drafted, p, q, seed):
        kept, token = accept_drafts(drafted[None], p.log(), q, settings, torch.Generator().manual_seed(seed))
        return kept, int(token)

    def learners(drafted, p, q, seed):
        kept, token = learner(drafted, p, q, torch.Generator().manual_seed(seed))
        return int(kept), int(token)

    run_checks("speculative_step", learners, reference, cases)
    # The distribution: a one-draft step, its draft drawn from q, gives a first token distributed as p[0].
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    draws = _generator(19)
    counts = torch.zeros(4)
    n = 4000
    for _ in range(n):
        drafted = torch.multinomial(q[0], 1, generator=draws)
        kept, token = learner(drafted, p, q, draws)
        counts[int(drafted) if kept >= 1 else int(token)] += 1
    expected = p[0] * n
    statistic = float(((counts - expected) ** 2 / expected).sum())
    p_value = float(torch.special.gammaincc(torch.tensor(1.5), torch.tensor(statistic / 2)))  # 3 degrees of freedom
    if p_value < 1e-4:
        raise _wrong_answer("speculative_step", f"{n} one-draft steps, drafts drawn from q={_show(q)}, p={_show(p)}",
                            f"first tokens about {_show(expected.round())}", _show(counts),
                            f"the first token out is not distributed as p[0]: chi-square {statistic:.1f}, "
                            f"p-value {p_value:.1e}")
    print(f"speculative_step: the first token out follows p in {n} steps (chi-square p-value {p_value:.2f})")

# ---- lesson 08 --------------------------------------------------------------------------------

def apply_rope(learner: Callable) -> None:
    """``learner(x, cos, sin)``: x (B, H, T, D) with each pair (x_i, x_{i+D/2}) rotated by its
    position's angle; cos and sin (B, T, D) as ``llama.rope_cos_sin`` gives them."""
    generator = _generator(21)
    cases = []
    for B, H, T, D, start in [(1, 1, 1, 2, 0), (1, 1, 2, 2, 0), (1, 1, 3, 4, 0), (1, 2, 5, 8, 3), (2, 3, 7, 16, 0),
                              (1, 4, 9, 64, 100)]:
        cos, sin = llama.rope_cos_sin(torch.arange(start, start + T)[None].expand(B, T), D)
        cases.append({"x": torch.randn(B, H, T, D, generator=generator), "cos": cos, "sin": sin})
    run_checks("apply_rope", learner, llama.apply_rope, cases, atol=1e-5)


def rms_norm(learner_class: type) -> None:
    """``learner_class(size, eps)`` holds a ``weight`` (size,); its ``forward(x)`` divides x by its
    root-mean-square over the last dimension, eps added to the mean square, and scales by the weight."""
    generator = _generator(22)
    cases = [{"x": torch.randn(*shape, generator=generator) * scale + shift, "eps": eps}
             for shape, scale, shift, eps in [((1, 2), 1.0, 0.0, 1e-6), ((2, 3), 2.0, 1.0, 1e-5),
                                              ((2, 4, 8), 3.0, 1.0, 1e-6), ((1, 5, 16), 0.05, 0.0, 1e-2)]]

    def library(x, eps):
        module = RMSNorm(x.shape[-1], eps)
        with torch.no_grad():
            module.weight.copy_(torch.linspace(0.5, 1.5, x.shape[-1]))
        return module

    def reference(x, eps):
        with torch.no_grad():
            return library(x, eps)(x)

    def learners(x, eps):
        module = _learners_module(learner_class, (x.shape[-1], eps), library(x, eps).state_dict(), "RMSNorm")
        with torch.no_grad():
            return module(x)

    run_checks("rms_norm", learners, reference, cases, atol=1e-5)


def swiglu(learner_class: type) -> None:
    """``learner_class(config)`` builds ``gate_proj``, ``up_proj`` and ``down_proj``; its
    ``forward(x)`` is Llama's gated feed-forward network, x (B, T, C) -> (B, T, C)."""
    generator = _generator(23)
    cases = [{"n_embd": C, "hidden": F_, "x": torch.randn(B, T, C, generator=generator) * 2}
             for B, T, C, F_ in [(1, 1, 2, 3), (1, 3, 4, 6), (2, 5, 16, 40)]]

    def library(n_embd, hidden):
        torch.manual_seed(n_embd)
        module = SwiGLU(LlamaConfig(n_embd=n_embd, n_head=1, n_kv_heads=1, intermediate_size=hidden))
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.normal_(0, 0.7)
        return module.eval()

    def reference(n_embd, hidden, x):
        with torch.no_grad():
            return library(n_embd, hidden)(x)

    def learners(n_embd, hidden, x):
        module = library(n_embd, hidden)
        mine = _learners_module(learner_class, LlamaConfig(n_embd=n_embd, n_head=1, n_kv_heads=1,
                                                            intermediate_size=hidden), module.state_dict(), "SwiGLU")
        with torch.no_grad():
            return mine(x)

    run_checks("swiglu", learners, reference, cases, atol=1e-5)


def repeat_kv(learner: Callable) -> None:
    """``learner(x, n_rep)``: x (B, K, T, D) -> (B, K * n_rep, T, D), each key/value head n_rep times
    with its repeats side by side, so that query head h reads key/value head h // n_rep."""
    cases = [{"x": torch.arange(B * K * T * D, dtype=torch.float32).view(B, K, T, D), "n_rep": n_rep}
             for B, K, T, D, n_rep in [(1, 1, 1, 1, 1), (1, 1, 1, 1, 2), (1, 2, 1, 1, 2), (1, 2, 2, 3, 3),
                                       (2, 4, 3, 2, 2)]]
    run_checks("repeat_kv", learner, lambda x, n_rep: x.repeat_interleave(n_rep, dim=1), cases, atol=0.0)


# ---- lesson 09 --------------------------------------------------------------------------------

def label_mask(learner: Callable) -> None:
    """``learner(prompt, answer)``: token id lists -> next-token (inputs, targets), each (T,),
    T = len(prompt) + len(answer) - 1, every target but the answer's ``IGNORE_INDEX``: one row of
    ``post_training.answer_only_batch``."""
    generator = _generator(24)
    shapes = [(1, 1), (2, 1), (1, 2), (3, 2), (5, 1), (4, 4), (9, 3)]
    cases = [{"prompt": torch.randint(1, 50, (p,), generator=generator).tolist(),
              "answer": torch.randint(50, 99, (a,), generator=generator).tolist()} for p, a in shapes]

    def reference(prompt: list[int], answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = answer_only_batch([(prompt, answer)], pad_token_id=0)
        return inputs[0], targets[0]

    run_checks("label_mask", learner, reference, cases, atol=0.0)


def lora_forward(learner_class: type) -> None:
    """``learner_class(base, rank, alpha)`` is a ``LoRALinear`` whose ``forward(x)`` the learner
    wrote: x (..., in) -> (..., out), the frozen layer plus (alpha / r) B A x, or the frozen layer
    alone when ``merged``. Checked against ``post_training.LoRALinear`` with the same weights,
    B random (at B = 0 every forward agrees), then merged."""
    generator = _generator(25)
    cases = []
    for batch, in_features, out_features, rank, alpha, merged in [
            ((1,), 2, 3, 1, 1.0, False), ((2,), 3, 2, 1, 4.0, False), ((1, 3), 4, 6, 2, 2.0, False),
            ((2, 5), 8, 12, 4, 16.0, False), ((2, 5), 8, 12, 4, 16.0, True)]:
        base = torch.nn.Linear(in_features, out_features)
        with torch.no_grad():
            base.weight.copy_(torch.randn(out_features, in_features, generator=generator))
            base.bias.copy_(torch.randn(out_features, generator=generator))
        state = {"lora_A": torch.randn(rank, in_features, generator=generator),
                 "lora_B": torch.randn(out_features, rank, generator=generator)}
        cases.append({"base": base, "rank": rank, "alpha": alpha, "state": state, "merged": merged,
                      "x": torch.randn(*batch, in_features, generator=generator)})

    def build(cls: type, base, rank, alpha, state, merged) -> torch.nn.Module:
        module = cls(copy.deepcopy(base), rank, alpha)
        with torch.no_grad():
            module.lora_A.copy_(state["lora_A"])
            module.lora_B.copy_(state["lora_B"])
        if merged:
            LoRALinear.merge(module)
        return module

    def reference(base, rank, alpha, state, merged, x):
        with torch.no_grad():
            return build(LoRALinear, base, rank, alpha, state, merged)(x)

    def learners(base, rank, alpha, state, merged, x):
        try:
            module = build(learner_class, base, rank, alpha, state, merged)
        except Exception as error:
            raise ExerciseFailed(f"cannot build {learner_class.__name__}(base, rank, alpha) "
                                 f"({type(error).__name__}: {error}); keep it a subclass of LoRALinear") from None
        with torch.no_grad():
            return module(x)

    run_checks("lora_forward", learners, reference, cases, atol=1e-4)


def dpo_loss(learner: Callable) -> None:
    """``learner(chosen, rejected, reference_chosen, reference_rejected, beta)``: summed answer
    log-probabilities (B,) -> DPO's mean loss (0-d), as ``post_training.dpo_loss``."""
    generator = _generator(26)
    cases = [{"chosen": torch.tensor([-1.0]), "rejected": torch.tensor([-1.0]),
              "reference_chosen": torch.tensor([-1.0]), "reference_rejected": torch.tensor([-1.0]), "beta": 0.1},
             {"chosen": torch.tensor([-2.0]), "rejected": torch.tensor([-6.0]),
              "reference_chosen": torch.tensor([-3.0]), "reference_rejected": torch.tensor([-4.0]), "beta": 0.5}]
    for size, beta in [(3, 0.1), (8, 1.0), (16, 0.05)]:
        four = torch.randn(4, size, generator=generator) * 4 - 10
        cases.append({"chosen": four[0], "rejected": four[1], "reference_chosen": four[2],
                      "reference_rejected": four[3], "beta": beta})

    def reference(chosen, rejected, reference_chosen, reference_rejected, beta):
        return library_dpo_loss(chosen, rejected, reference_chosen, reference_rejected, beta)[0]

    run_checks("dpo_loss", learner, reference, cases, atol=1e-5)


__all__ = ["ExerciseFailed", "apply_rope", "attention", "attention_entropy", "attention_module", "beam_search",
           "bits_per_byte", "block_forward", "cached_attention_step", "cached_generation", "causal_mask", "dpo_loss",
           "first_differing_module", "gpt_forward", "greedy_acceptance", "hint", "induction_score", "label_mask",
           "lora_forward", "mean_distance", "next_token_windows", "previous_token_score", "repeat_kv",
           "repetition_penalty", "residual_distribution", "rms_norm", "run_checks", "sampling_loop",
           "shifted_causal_mask", "speculative_step", "split_heads", "swiglu", "token_log_probs", "top_k", "top_p",
           "training_step"]
