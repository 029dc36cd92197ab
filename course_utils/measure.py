"""Measurements of models, each on the timing rule of ``course_utils.timing`` (a discarded
warm-up, interleaved rounds, medians): the time of every generated token (``StepTimer``,
``interleaved_step_seconds``), of one cached pass of k tokens (``cached_pass_seconds``), this
machine's memory bandwidth, and ``transformers``' ``generate()`` held to exactly N new tokens, so
that it can be timed beside ours (``transformers_generate_exactly``).

Beside the clock, two counts that do not depend on it: the FLOPs of the matrix products
(``count_flops``) and the bytes of the new tensors a computation writes (``bytes_written``).

And how far a decoding step is from its floor: ``decode_floor`` (the step beside the bare
products of its weights), ``step_breakdown`` (where its time goes), ``compiled_step`` (what
``torch.compile`` changes).

This module loads ``transformers`` (``StepTimer`` is one of its stopping criteria) and the KV cache;
``timing`` stays below both.

Taught in: lesson 04 (time per token, FLOPs, memory bandwidth, the bytes attention writes with and
without the T x T matrix, a step beside its floor and compiled), lesson 07 (the cost of a verification
pass); the benchmark command.
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

from .decode import DecodeStep, cached_forward
from .kv_cache import PreallocatedKVCache
from .model import MiniGPT
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
            cached_forward(model, chunk, cache)  # as generate and speculative decoding run it (decode.decode_step)
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


def weight_matrices(model: torch.nn.Module) -> list[torch.Tensor]:
    """The matrices one decoding step multiplies a vector by: every ``nn.Linear``'s weight, the LM
    head's included, each once (a tied embedding is read as the LM head, not again)."""
    seen: set[int] = set()
    matrices = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            matrices.append(module.weight.detach())
    return matrices


@dataclass(frozen=True)
class DecodeFloor:
    """A cached decoding step (batch 1) beside what it cannot go below: ``step``,
    ``module_step``, ``gemvs`` and ``split_gemvs`` in median seconds, ``weight_bytes`` the bytes
    of ``weight_matrices``, ``bandwidth`` this machine's copy bandwidth in GB/s."""

    step: float  # one new token after ``context`` cached tokens, as generate runs it (decode.cached_forward)
    module_step: float  # the same step through model(...), the modules the lessons write
    gemvs: float  # one product of a vector with every weight matrix, back to back: the arithmetic a step cannot skip
    # the same products, each split by its output rows into one part per thread (``split_gemv``): a
    # product of one row runs on a single thread in the matrix library torch calls, however many
    # threads torch has, so ``gemvs`` leaves the other cores idle
    split_gemvs: float
    weight_bytes: int
    bandwidth: float

    @property
    def copy(self) -> float:
        """Seconds to read every weight once at copy speed: the floor for weights too large for the caches."""
        return self.weight_bytes / (self.bandwidth * 1e9)

    @property
    def step_over_gemvs(self) -> float:
        return self.step / self.gemvs

    @property
    def step_over_split_gemvs(self) -> float:
        return self.step / self.split_gemvs


def split_gemv_operands(vector: torch.Tensor, matrix: torch.Tensor,
                        parts: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two operands of one ``torch.bmm`` that multiplies ``vector`` (1, C_in) by ``matrix``
    (C_out, C_in) transposed in ``parts`` blocks of the matrix's rows, which bmm runs each on a
    thread of its own: the vector expanded to (parts, 1, C_in) and (parts, C_in, C_out / parts)
    views of the matrix's transpose (of a contiguous copy, if it is not contiguous); None where
    ``parts`` is below 2 or does not divide C_out."""
    C_out, C_in = matrix.shape
    if parts < 2 or C_out % parts:
        return None
    return (vector.expand(parts, *vector.shape),
            matrix.contiguous().view(parts, C_out // parts, C_in).transpose(1, 2))


def split_gemv(vector: torch.Tensor, matrix: torch.Tensor, parts: int) -> torch.Tensor:
    """``vector`` (1, C_in) times ``matrix`` (C_out, C_in) transposed, (1, C_out), as ``parts``
    products with blocks of the matrix's rows in one ``torch.bmm`` (``split_gemv_operands``), else
    ``F.linear``. The same dot products, so the same values up to rounding; a floor to time, not a
    way to decode: generate's products are ``F.linear``'s."""
    operands = split_gemv_operands(vector, matrix, parts)
    return torch.nn.functional.linear(vector, matrix) if operands is None else torch.bmm(*operands).view(1, -1)


def _one_step_both_ways(model: torch.nn.Module, context: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Two callables, each one cached step of one token after ``context`` (1, T), which it
    prefills once into a ``PreallocatedKVCache``: "modules", through ``model(...)``, and "step",
    as ``generate`` takes it (``decode.cached_forward``). Each crops the cache back to T after its
    step, so every call starts from the same cache."""
    cache = PreallocatedKVCache(context.shape[1] + 1)
    model(context, cache=cache)
    token = context[:, -1:]

    def module_step() -> None:
        model(token, cache=cache)
        cache.crop(context.shape[1])

    def step() -> None:
        cached_forward(model, token, cache)
        cache.crop(context.shape[1])

    return {"modules": module_step, "step": step}


@torch.no_grad()
def decode_floor(model: torch.nn.Module, context: torch.Tensor, runs: int = 30,
                 bandwidth: float | None = None) -> DecodeFloor:
    """Time a course model's cached step of one token after ``context`` (1, T), as ``generate``
    takes it and through ``model(...)``, against the bare products of a (1, C_in) vector with
    each of its ``weight_matrices`` (``F.linear``, no bias, nothing between them but a Python
    loop), and against the same products split over torch's threads (``split_gemv``), interleaved
    round by round; ``bandwidth`` (GB/s) defaults to ``memory_bandwidth()``."""
    matrices = weight_matrices(model)
    vectors = [torch.randn(1, matrix.shape[1], dtype=matrix.dtype, device=matrix.device) for matrix in matrices]
    steps = _one_step_both_ways(model, context)

    def gemvs() -> None:
        for vector, matrix in zip(vectors, matrices):
            torch.nn.functional.linear(vector, matrix)

    # the split's operands made once, as the matrices are: the timed loop holds only the products
    split_operands = [split_gemv_operands(vector, matrix, torch.get_num_threads())
                      for vector, matrix in zip(vectors, matrices)]

    def split_gemvs() -> None:
        for vector, matrix, operands in zip(vectors, matrices, split_operands):
            if operands is None:
                torch.nn.functional.linear(vector, matrix)
            else:
                torch.bmm(*operands)

    rates = interleaved_rates({"step": steps["step"], "module_step": steps["modules"], "gemvs": gemvs,
                               "split_gemvs": split_gemvs}, units=1, runs=runs)
    return DecodeFloor(step=statistics.median(1 / rate for rate in rates["step"]),
                       module_step=statistics.median(1 / rate for rate in rates["module_step"]),
                       gemvs=statistics.median(1 / rate for rate in rates["gemvs"]),
                       split_gemvs=statistics.median(1 / rate for rate in rates["split_gemvs"]),
                       weight_bytes=sum(matrix.numel() * matrix.element_size() for matrix in matrices),
                       bandwidth=memory_bandwidth() if bandwidth is None else bandwidth)


@dataclass(frozen=True)
class CompiledStep:
    """``decode.DecodeStep`` eager and compiled by ``torch.compile``: median seconds of each, the
    seconds the first compiled call took (compiling), and the largest absolute difference
    between the two's logits (the compiler fuses and reorders arithmetic, so they can differ in
    the last bits)."""

    eager: float
    compiled: float
    compile_seconds: float
    largest_difference: float


@torch.no_grad()
def compiled_step(model: MiniGPT, context: torch.Tensor, runs: int = 30) -> CompiledStep:
    """Time a MiniGPT's cached step of one token after ``context`` (1, T), ``decode.DecodeStep``
    as ``generate`` takes it against the same step compiled by ``torch.compile`` (one graph for
    every cache length: ``dynamic=True``), interleaved. Raises ``RuntimeError`` naming the reason
    where torch cannot compile here (no C++ compiler, an unsupported platform or Python)."""
    cache = PreallocatedKVCache(context.shape[1] + 1)
    model(context, cache=cache)
    token = context[:, -1:]
    eager = DecodeStep(model)
    started = time.perf_counter()
    try:
        compiled = torch.compile(eager, dynamic=True)
        compiled_logits = compiled(token, cache)
    except Exception as error:  # the compiler's failures have many types, and change between releases
        reason = str(error).strip()
        raise RuntimeError(f"torch.compile could not compile the step here: {type(error).__name__}: "
                           f"{reason.splitlines()[0] if reason else ''}") from error
    compile_seconds = time.perf_counter() - started
    cache.crop(context.shape[1])
    largest_difference = float((eager(token, cache) - compiled_logits).abs().max())

    def timed(step: Callable[[torch.Tensor, PreallocatedKVCache], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            cache.crop(context.shape[1])
            step(token, cache)
        return run

    rates = interleaved_rates({"eager": timed(eager), "compiled": timed(compiled)}, units=1, runs=runs)
    return CompiledStep(eager=statistics.median(1 / rate for rate in rates["eager"]),
                        compiled=statistics.median(1 / rate for rate in rates["compiled"]),
                        compile_seconds=compile_seconds, largest_difference=largest_difference)


# Where a decoding step's time goes: each torch operation the profiler records, by its name.
OPERATION_GROUPS = {
    "matrix products": ("linear", "addmm", "mm", "bmm", "matmul"),
    "attention": ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
                  "_scaled_dot_product_attention_math", "softmax", "_softmax"),
    "norms and activations": ("layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm", "gelu", "silu",
                              "rsqrt", "pow", "mean"),
    "elementwise arithmetic": ("add", "add_", "mul", "mul_", "sub", "div", "neg", "cos", "sin"),
    "cache writes and copies": ("copy_", "cat", "clone", "contiguous", "fill_", "zero_", "index_put_", "empty",
                                "empty_strided", "zeros", "ones", "full", "full_like", "zeros_like", "ones_like",
                                "empty_like", "to", "_to_copy"),
    "views and indexing": ("view", "_unsafe_view", "reshape", "transpose", "t", "as_strided", "slice", "narrow",
                           "select", "expand", "split", "split_with_sizes", "unsqueeze", "squeeze", "unbind",
                           "permute", "alias", "detach", "index", "index_select", "embedding", "arange", "lift_fresh"),
    "sampling and stopping": ("argmax", "multinomial", "topk", "all", "any", "where", "bitwise_or", "bitwise_or_",
                              "bitwise_and", "bitwise_not", "logical_not", "min", "max", "lt", "ge", "eq", "isin",
                              "item", "_local_scalar_dense", "masked_fill", "masked_fill_"),
}


def operation_group(name: str) -> str:
    """The ``OPERATION_GROUPS`` key of an operation named ``name`` ("aten::addmm", "addmm"), else
    "other operations"."""
    bare = name.removeprefix("aten::")
    for group, names in OPERATION_GROUPS.items():
        if bare in names:
            return group
    return "other operations"


def step_breakdown(run: Callable[[], object], steps: int, runs: int = 3) -> dict[str, float]:
    """Seconds per step of ``run()`` (which decodes ``steps`` tokens), split by where they go: the
    self time of torch's operations by ``OPERATION_GROUPS`` (one profiled call), and "Python
    between operations", the median unprofiled wall time minus the operations' total. The
    profiler adds a little to each operation it records, so that last figure is a lower bound."""
    from torch.profiler import ProfilerActivity, profile

    wall = median_seconds(run, runs)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    seconds: dict[str, float] = {group: 0.0 for group in [*OPERATION_GROUPS, "other operations"]}
    for event in profiler.key_averages():
        seconds[operation_group(event.key)] += event.self_cpu_time_total / 1e6
    operations = sum(seconds.values())
    seconds["Python between operations"] = max(wall - operations, 0.0)
    return {group: value / steps for group, value in seconds.items()}


@torch.no_grad()
def step_paths_breakdown(model: torch.nn.Module, context: torch.Tensor, steps: int = 100,
                         runs: int = 3) -> dict[str, dict[str, float]]:
    """``step_breakdown`` of one cached step of one token after ``context`` (1, T), repeated
    ``steps`` times, by both paths: "modules", through ``model(...)`` (what a step costs before
    ``decode.decode_step``), and "step", as ``generate`` takes it (after). Seconds per step by group."""
    def repeated(one_step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(steps):
                one_step()
        return run

    return {path: step_breakdown(repeated(one_step), steps, runs)
            for path, one_step in _one_step_both_ways(model, context).items()}


def print_breakdowns(breakdowns: dict[str, dict[str, float]], width: int) -> None:
    """A table of ``step_breakdown`` results, one column of ``width`` characters per key of
    ``breakdowns`` (its heading), one row per group, in microseconds, and their total."""
    groups = next(iter(breakdowns.values()))
    print(f"{'':>28}" + "".join(f"{heading:>{width}}" for heading in breakdowns))
    for group in groups:
        print(f"{group:>28}" + "".join(f"{seconds[group] * 1e6:{width}.0f}" for seconds in breakdowns.values()))
    print(f"{'total':>28}" + "".join(f"{sum(seconds.values()) * 1e6:{width}.0f}" for seconds in breakdowns.values()))
