"""Measurements of models, each on the timing rule of ``course_utils.timing`` (a discarded
warm-up, interleaved rounds, medians): the time of every generated token (``StepTimer``,
``interleaved_step_seconds``), of one cached pass of k tokens (``cached_pass_seconds``), this
machine's memory bandwidth, and ``transformers``' ``generate()`` held to exactly N new tokens, so
that it can be timed beside ours (``transformers_generate_exactly``).

Beside the clock, two counts that do not depend on it: the FLOPs of the matrix products
(``count_flops``) and the bytes of the new tensors a computation writes (``bytes_written``).

This module loads ``transformers`` (``StepTimer`` is one of its stopping criteria) and the KV cache;
``timing`` stays below both.

Taught in: lesson 04 (time per token, FLOPs, memory bandwidth, the bytes attention writes with and
without the T x T matrix), lesson 07 (the cost of a verification pass); the benchmark command.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import StoppingCriteria

from .kv_cache import PreallocatedKVCache
from .timing import WARMUP_CALLS, interleaved_rates, median_seconds


class StepTimer(StoppingCriteria):
    """A stopping criterion that never stops: it records ``time.perf_counter()`` each time the
    generation loop asks it, once per generated token. Works with our ``generate`` and with
    ``transformers``' (``stopping_criteria=[timer]``)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def interleaved_step_seconds(ways: dict[str, Callable[[StepTimer, int], object]], steps: int,
                             runs: int) -> dict[str, list[list[float]]]:
    """The rule of ``interleaved_rates`` for a curve: ``WARMUP_CALLS`` discarded rounds, then
    ``runs`` rounds of every way in turn. Each call ``run(timer, steps)`` generates ``steps``
    tokens with ``timer``, a fresh ``StepTimer``, as a stopping criterion; returns each way's
    seconds per generated token, one list of ``steps`` per timed round (the first token's includes
    the prefill). Raises ``ValueError`` if a way calls its timer other than ``steps`` times."""
    seconds: dict[str, list[list[float]]] = {name: [] for name in ways}
    for round_index in range(WARMUP_CALLS + runs):
        for name, run in ways.items():
            timer = StepTimer()
            started = time.perf_counter()
            run(timer, steps)
            if len(timer.times) != steps:
                raise ValueError(f"{name!r} generated {len(timer.times)} tokens, not steps={steps}")
            if round_index >= WARMUP_CALLS:
                ends = [started, *timer.times]
                seconds[name].append([after - before for before, after in zip(ends, ends[1:])])
    return seconds


def transformers_generate_exactly(model: torch.nn.Module, input_ids: torch.Tensor, new_tokens: int,
                                  **arguments) -> torch.Tensor:
    """``model.generate()`` of a ``transformers`` causal LM held to exactly ``new_tokens`` new
    tokens after ``input_ids`` (B, T), unpadded rows, so that it does the same work as our
    ``generate`` on a model without EOS: ``min_new_tokens = max_new_tokens = new_tokens`` (EOS's
    logit is masked at every step, so greedy takes the best other token where EOS would win),
    greedy (``do_sample=False``), every position attended, padding id the model's EOS (so that
    ``transformers`` need not warn). ``arguments`` go to ``generate()`` as well
    (``stopping_criteria``, ``assistant_model``...) and may override these. Returns
    (B, T + new_tokens), fewer only if a stopping criterion in ``arguments`` stops."""
    hf_model: Any = model  # a transformers model: generation_config and generate() are its own
    eos = hf_model.generation_config.eos_token_id
    exact = dict(attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                 do_sample=False, pad_token_id=eos[0] if isinstance(eos, list) else eos)
    return hf_model.generate(input_ids, **(exact | arguments))


@torch.no_grad()
def cached_pass_seconds(model: torch.nn.Module, context: torch.Tensor, chunk_sizes: Sequence[int],
                        runs: int = 30) -> dict[int, float]:
    """Median seconds of one forward pass of k new tokens through a KV cache that already holds
    ``context`` (1, T), for each k in ``chunk_sizes`` (a course model): the cost of a plain
    decoding step (k = 1) and of verifying k - 1 drafted tokens. Interleaved, as
    ``interleaved_rates``: each round runs every size once, then the cache is cropped back."""
    if runs < 1 or not chunk_sizes or min(chunk_sizes) < 1:
        raise ValueError(f"runs and every chunk size must be positive, got runs={runs}, chunk_sizes={chunk_sizes}")
    cache = PreallocatedKVCache(context.shape[1] + max(chunk_sizes))
    model(context, cache=cache)
    config: Any = model.config  # a course model's (GPTConfig or LlamaConfig)
    chunks = {k: torch.randint(0, config.vocab_size, (1, k), generator=torch.Generator().manual_seed(k),
                               device="cpu").to(context.device) for k in chunk_sizes}

    def one_pass(chunk: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model(chunk, cache=cache)
            cache.crop(context.shape[1])
        return run

    # the ways are named str(k): interleaved_rates takes names
    rates = interleaved_rates({str(k): one_pass(chunk) for k, chunk in chunks.items()}, units=1, runs=runs)
    return {k: statistics.median(1 / rate for rate in rates[str(k)]) for k in chunks}


def memory_bandwidth(megabytes: int = 512, runs: int = 5) -> float:
    """This machine's memory bandwidth in GB/s: a copy of ``megabytes`` MB (far larger than the
    CPU caches) reads and writes every byte, so bandwidth = 2 x bytes / median copy time."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), runs)
    return 2 * source.numel() * source.element_size() / seconds / 1e9


def count_flops(run: Callable[[], object]) -> dict[str, int]:
    """Floating-point operations (2 per multiply-add) of the matrix products ``run()`` performs,
    by kind: "linear" (matrix multiplies of weights: projections, MLP, LM head) and "attention"
    (query-key scores and the weighted sum of values). Counted by torch's ``FlopCounterMode``,
    taught to count CPU fused attention, which it otherwise skips."""
    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def fused_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    with FlopCounterMode(display=False, custom_mapping={fused: fused_attention}) as counter:
        run()
    by_op = counter.get_flop_counts()["Global"]
    attention = sum(flops for op, flops in by_op.items() if op in (fused, torch.ops.aten.bmm))
    return {"linear": counter.get_total_flops() - attention, "attention": attention}


@dataclass(frozen=True)
class BytesWritten:
    """The new tensors one computation wrote: ``total`` bytes over all of them, and the largest
    one's ``largest`` bytes and ``largest_shape``."""

    total: int
    largest: int
    largest_shape: tuple[int, ...]


class _WriteCounter(TorchDispatchMode):
    """Sees every torch operation; keeps the size and shape of each result in fresh memory."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = [*args, *(kwargs or {}).values()]
        shared = {tensor.untyped_storage().data_ptr() for tensor in _tensors(inputs)}
        result = func(*args, **(kwargs or {}))
        for tensor in _tensors([result]):
            if tensor.untyped_storage().data_ptr() not in shared:  # a view or an in-place update writes nothing new
                self.written.append((tensor.numel() * tensor.element_size(), tuple(tensor.shape)))
        return result


def _tensors(values: list) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, list | tuple):
            found += _tensors(list(value))
    return found


def bytes_written(run: Callable[[], object]) -> BytesWritten:
    """Count the new tensors the torch operations of ``run()`` write: every result that does not
    share memory with the operation's inputs (views and in-place updates are not new), in bytes.
    Counted with torch's dispatch mode, which sees each operation, fused kernels included, as it
    runs; what one kernel keeps inside itself (FlashAttention's tiles) is never a tensor."""
    with _WriteCounter() as counter:
        run()
    if not counter.written:
        return BytesWritten(0, 0, ())
    largest, shape = max(counter.written, key=lambda item: item[0])
    return BytesWritten(sum(size for size, _ in counter.written), largest, shape)
