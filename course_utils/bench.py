"""Benchmarks, printed as medians and side-by-side ratios (never asserted in tests).

    python -m course_utils.bench generation [--model shakespeare-gpt] [--runs 3] [--batch 1] [--device cpu]
    python -m course_utils.bench training [--preset shakespeare-gpt] [--runs 3] [--steps 1] [--precision auto]

``generation`` times greedy decoding from a short prompt up to the model's full context, four
ways in the same run, interleaved round by round so that machine noise hits all of them: our
``generate`` with the preallocated KV cache (the default), with the growing one, without a cache,
and ``transformers``' own ``model.generate()`` (which uses its cache). One warm-up round is
discarded. Only generated tokens count: the prompt is not.

``training`` times training steps (forward, loss, backward, clipping, AdamW) of a preset's
model and batch, in the same run: ``MiniGPT`` as ``course_utils.train`` runs it (the precision
``--precision`` resolves to on this machine, fused attention, fused AdamW, all threads),
``transformers``' ``GPT2LMHeadModel`` holding the same weights with the same settings, and
``MiniGPT`` with one setting changed at a time (attention written out instead of the fused
kernel, the for-each AdamW, one thread, the other precision). Where the other precision is
bfloat16 emulated in software (a bfloat16 matmul over four times slower than float32), it is
timed with one step of an eighth of the batch, so that the command still finishes in minutes.
Training tokens per second: batch x context x steps / seconds.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from transformers import StoppingCriteria

from .compat import ASSISTED_GENERATION_MESSAGES, hidden_transformers_messages
from .generation import generate
from .hardware import DEVICES, PRECISIONS, PrecisionChoice, autocast, choose_precision, resolve_device
from .hub import load_model
from .model import MiniGPT, PreallocatedKVCache
from .train import PRESETS, TrainConfig, make_optimizer, update

PROMPT = "ROMEO.\n"


def machine_summary() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def median_seconds(run: Callable[[], object], runs: int = 5) -> float:
    """Median wall time of ``runs`` calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.no_grad()
def cached_pass_seconds(model: MiniGPT, context: torch.Tensor, chunk_sizes: Sequence[int],
                        runs: int = 30) -> dict[int, float]:
    """Median seconds of one forward pass of k new tokens through a KV cache that already holds
    ``context`` (1, T), for each k in ``chunk_sizes``: the cost of a plain decoding step (k = 1)
    and of verifying k - 1 drafted tokens. The sizes are interleaved run by run, so that a slow
    spell of the machine affects them all alike."""
    if runs < 1 or not chunk_sizes or min(chunk_sizes) < 1:
        raise ValueError(f"runs and every chunk size must be positive, got runs={runs}, chunk_sizes={chunk_sizes}")
    cache = PreallocatedKVCache(context.shape[1] + max(chunk_sizes))
    model(context, cache=cache)
    chunks = {k: torch.randint(0, model.config.vocab_size, (1, k), generator=torch.Generator().manual_seed(k))
              for k in chunk_sizes}
    times: dict[int, list[float]] = {k: [] for k in chunk_sizes}
    for run in range(runs + 1):  # the first round warms up
        for k, chunk in chunks.items():
            started = time.perf_counter()
            model(chunk, cache=cache)
            if run:
                times[k].append(time.perf_counter() - started)
            cache.crop(context.shape[1])
    return {k: statistics.median(values) for k, values in times.items()}


def memory_bandwidth(megabytes: int = 512, runs: int = 5) -> float:
    """This machine's memory bandwidth in GB/s: a copy of ``megabytes`` MB (far larger than the
    CPU caches) reads and writes every byte, so bandwidth = 2 x bytes / median copy time."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), runs)
    return 2 * source.numel() * source.element_size() / seconds / 1e9


class StepTimer(StoppingCriteria):
    """A stopping criterion that never stops: it records ``time.perf_counter()`` each time the
    generation loop asks it, once per generated token. Works with our ``generate`` and with
    ``transformers``' (``stopping_criteria=[timer]``)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


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


def interleaved_rates(ways: dict[str, Callable[[], object]], units: int, runs: int) -> dict[str, list[float]]:
    """Run each way once as a warm-up, then ``runs`` rounds of all of them in turn; returns each
    way's ``units`` per second, one value per timed round."""
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for round_index in range(runs + 1):
        for name, run in ways.items():
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
            if round_index > 0:
                rates[name].append(units / seconds)
    return rates


def paired_ratio(rates: list[float], baseline: list[float]) -> float:
    """The median over rounds of rates[i] / baseline[i], for rates from ``interleaved_rates``."""
    return statistics.median(rate / base for rate, base in zip(rates, baseline, strict=True))


def print_medians(rates: dict[str, list[float]], unit: str) -> dict[str, float]:
    """Each way's median rate, printed with its range; returns the medians."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"{name:>30}: median {value:8.1f} {unit} (range {min(rates[name]):.0f}-{max(rates[name]):.0f})")
    return medians


def generation_benchmark(model_name: str, runs: int, batch: int, device: str = "cpu") -> dict[str, float]:
    """Median generated tokens per second of each way of decoding; prints the table."""
    device = resolve_device(device)
    hf_model, tokenizer = load_model(model_name)
    hf_model.to(device)
    mini = MiniGPT.from_hf(hf_model)
    prompt = tokenizer([PROMPT] * batch, return_tensors="pt").input_ids.to(device)
    new_tokens = hf_model.config.n_positions - prompt.shape[1]
    mask = torch.ones_like(prompt)
    # A MiniGPT has no EOS unless told, and min_new_tokens keeps transformers going: all
    # four ways generate exactly new_tokens tokens.
    ways = {
        "ours, preallocated cache": lambda: generate(mini, prompt, new_tokens),
        "ours, growing cache": lambda: generate(mini, prompt, new_tokens,
                                                cache_implementation="growing"),
        "ours, no cache": lambda: generate(mini, prompt, new_tokens, use_cache=False),
        "transformers generate()": lambda: hf_model.generate(
            prompt, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=tokenizer.eos_token_id),
    }
    print(f"machine: {machine_summary()}, device {device.type}")
    print(f"model: {model_name}, batch {batch}, prompt {prompt.shape[1]} tokens, {new_tokens} generated tokens "
          f"(to the full context of {hf_model.config.n_positions}), greedy; {runs} runs after 1 warm-up")
    medians = print_medians(interleaved_rates(ways, batch * new_tokens, runs), "tokens/s")
    ours = medians["ours, preallocated cache"]
    print(f"preallocated vs growing cache: {ours / medians['ours, growing cache']:.2f}x")
    print(f"KV cache vs no cache:          {ours / medians['ours, no cache']:.2f}x")
    print(f"ours (cache) vs transformers:  {ours / medians['transformers generate()']:.2f}x")
    return medians


def drafting_like_ours(hf_draft, num_assistant_tokens: int):
    """A copy of a ``transformers`` draft model that drafts as our ``generate`` does: exactly
    ``num_assistant_tokens`` tokens per step (schedule "constant") and no confidence threshold.
    transformers 5.x drafts up to 20 tokens by default and stops a draft early once the draft's
    top probability falls below 0.4 (``assistant_confidence_threshold``); comparing the two
    loops at the same drafting policy leaves only what each does around the models."""
    if not isinstance(num_assistant_tokens, int) or num_assistant_tokens < 1:
        raise ValueError(f"num_assistant_tokens must be a positive integer, got {num_assistant_tokens!r}")
    draft = copy.deepcopy(hf_draft)
    draft.generation_config.num_assistant_tokens = num_assistant_tokens
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    return draft


SPECULATIVE_PROMPTS = ("ROMEO.\n", "KING LEAR.\nBlow, winds,", "PORTIA.\nThe quality of mercy", "MACBETH.\nIs this",
                       "HAMLET.\nTo be")


def speculative_benchmark(target_name: str, draft_name: str, runs: int, new_tokens: int = 200,
                          draft_lengths: tuple[int, ...] = (1, 2, 3, 4, 6, 8)) -> dict[str, float]:
    """Median generated tokens per second, greedy, batch 1, over ``SPECULATIVE_PROMPTS``: our plain
    cached ``generate``, speculative at each draft length and at the default, prompt lookup, and
    transformers' plain and assisted ``generate()``, interleaved. Prints the table and checks
    that every way of ours gives the plain tokens."""
    from .generation import DEFAULT_ASSISTANT_TOKENS

    hf_target, tokenizer = load_model(target_name)
    hf_draft, _ = load_model(draft_name)
    target, draft = MiniGPT.from_hf(hf_target), MiniGPT.from_hf(hf_draft)
    prompts = [tokenizer(text, return_tensors="pt").input_ids for text in SPECULATIVE_PROMPTS]

    def ours(**arguments) -> Callable[[], list[torch.Tensor]]:
        return lambda: [generate(target, prompt, new_tokens, **arguments) for prompt in prompts]

    def theirs(**arguments) -> Callable[[], list[torch.Tensor]]:
        return lambda: [hf_target.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                           min_new_tokens=new_tokens, do_sample=False,
                                           pad_token_id=tokenizer.eos_token_id, **arguments) for prompt in prompts]

    ways = {"ours, plain (cached)": ours()}
    ways.update({f"ours, speculative K={k}": ours(assistant_model=draft, num_assistant_tokens=k)
                 for k in draft_lengths if k != DEFAULT_ASSISTANT_TOKENS})
    ways[f"ours, speculative default (K={DEFAULT_ASSISTANT_TOKENS})"] = ours(assistant_model=draft)
    ways["ours, prompt lookup (5)"] = ours(prompt_lookup_num_tokens=5)
    ways["transformers generate()"] = theirs()
    ways["transformers assisted"] = theirs(assistant_model=hf_draft)
    ways[f"transformers assisted, K={DEFAULT_ASSISTANT_TOKENS} constant"] = theirs(
        assistant_model=drafting_like_ours(hf_draft, DEFAULT_ASSISTANT_TOKENS))
    plain = ways["ours, plain (cached)"]()
    for name, way in ways.items():
        if name.startswith("ours") and not all(torch.equal(a, b) for a, b in zip(way(), plain)):
            raise AssertionError(f"{name} did not give the plain greedy tokens")
    print(f"machine: {machine_summary()}")
    print(f"target {target_name}, draft {draft_name}; greedy, batch 1, {len(prompts)} prompts x {new_tokens} new "
          f"tokens; {runs} interleaved runs after 1 warm-up; every way of ours gave the plain tokens")
    with hidden_transformers_messages(*ASSISTED_GENERATION_MESSAGES):
        rates = interleaved_rates(ways, len(prompts) * new_tokens, runs)
    medians = print_medians(rates, "tokens/s")
    print("speedups: the median over rounds of each round's ratio (runs of one round share the machine's state)")
    for name in ways:
        if name != "ours, plain (cached)":
            print(f"{name:>36} vs ours plain: {paired_ratio(rates[name], rates['ours, plain (cached)']):.2f}x")
    default = f"ours, speculative default (K={DEFAULT_ASSISTANT_TOKENS})"
    print(f"ours speculative (default) vs transformers assisted: "
          f"{paired_ratio(rates[default], rates['transformers assisted']):.2f}x")
    return medians


SLOW_BFLOAT16 = 0.25  # a bfloat16 matmul below this fraction of float32's speed is emulated in software


def training_benchmark(config: TrainConfig, runs: int, steps: int, device: str = "cpu") -> dict[str, float]:
    """Median training tokens per second of MiniGPT, GPT2LMHeadModel and the ablations; prints the table."""
    device = resolve_device(device)
    choice = choose_precision(config.precision, device, config.model.n_embd)
    other = "float32" if choice.precision == "bfloat16" else "bfloat16"
    torch.manual_seed(config.seed)
    mini = MiniGPT(config.model).to(device)
    hf_model = mini.to_hf().to(device)  # the same weights and configuration (no dropout on attention weights)
    hf_model.loss_type = "ForCausalLM"  # the loss transformers picks for this class; set, so it need not warn
    B, T = config.batch_size, config.model.context_length
    windows = torch.randint(0, config.model.vocab_size, (steps, B, T + 1), generator=torch.Generator().manual_seed(0))
    batches = [(w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)) for w in windows]
    threads = torch.get_num_threads()

    def hf_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # shift_labels: targets are already the next tokens, exactly as MiniGPT's loss takes them
        return hf_model(input_ids=inputs, labels=targets, shift_labels=targets).loss

    def trainer(model, loss_fn, precision=choice.precision, fused=True, n_threads=threads, fused_attention=True,
                rows=B, n_steps=steps) -> Callable[[], None]:
        optimizer = make_optimizer(model, config, fused=fused)
        # The math backend is attention written out: scores, mask, softmax, weighted sum.
        backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH] if fused_attention else [SDPBackend.MATH]

        def run() -> None:
            torch.set_num_threads(n_threads)
            model.train()
            with sdpa_kernel(backends):
                for inputs, targets in batches[:n_steps]:
                    with autocast(device, precision):
                        loss = loss_fn(inputs[:rows], targets[:rows])
                    update(model, optimizer, loss, config.grad_clip)
            torch.set_num_threads(threads)

        return run

    def mini_way(**settings) -> Callable[[], None]:
        model = copy.deepcopy(mini)  # each way trains its own copy: no way changes another's weights
        return trainer(model, model, **settings)

    ways = {
        "MiniGPT": mini_way(),
        "transformers GPT2LMHeadModel": trainer(hf_model, hf_loss),
        "MiniGPT, unfused attention": mini_way(fused_attention=False),
        "MiniGPT, for-each AdamW": mini_way(fused=False),
    }
    print(f"machine: {machine_summary()}, device {device.type}")
    print(f"precision: {choice.precision} ({choice.reason})")
    print(f"model: {config.model.n_layer} layers x {config.model.n_embd}, {mini.num_parameters():,} parameters; "
          f"batch {B} x {T} tokens, {steps} steps per run; {runs} runs after 1 warm-up")
    rates = interleaved_rates(ways, steps * B * T, runs)
    # Changing the thread count slows whatever runs next (measured: ~8%), so the one-thread way
    # runs on its own afterwards instead of in the interleaved rounds.
    rates.update(interleaved_rates({"MiniGPT, 1 thread": mini_way(n_threads=1)}, steps * B * T, runs))
    other_name = f"MiniGPT, {other}"
    if other == "bfloat16" and is_emulated_bfloat16(choice, config.model.n_embd, device):
        rows = max(1, B // 8)
        print(f"{other_name}: emulated in software here, so timed with 1 step of {rows} x {T} tokens")
        rates[other_name] = interleaved_rates({other_name: mini_way(precision=other, rows=rows, n_steps=1)},
                                              rows * T, 1)[other_name]
    else:
        rates.update(interleaved_rates({other_name: mini_way(precision=other)}, steps * B * T, runs))
    medians = print_medians(rates, "training tokens/s")
    ours = medians["MiniGPT"]
    print(f"MiniGPT vs transformers:        {ours / medians['transformers GPT2LMHeadModel']:.2f}x")
    for name in ("MiniGPT, unfused attention", "MiniGPT, for-each AdamW", "MiniGPT, 1 thread", other_name):
        print(f"gain over {name[9:]:<21} {ours / medians[name]:.2f}x")
    optimizer_ms = optimizer_step_milliseconds(mini, config, runs)
    print(f"the AdamW step alone: fused {optimizer_ms['fused']:.1f} ms, for-each {optimizer_ms['for-each']:.1f} ms "
          f"(a whole training step: {1e3 * B * T / ours:.0f} ms)")
    return medians


def is_emulated_bfloat16(choice: PrecisionChoice, width: int, device: torch.device) -> bool:
    """Whether bfloat16 matmuls run far slower than float32 here (software emulation)."""
    if device.type != "cpu":
        return False
    speedup = choice.bfloat16_speedup
    if speedup is None:  # an explicit choice measured nothing: measure now
        speedup = choose_precision("auto", device, width).bfloat16_speedup
    return speedup < SLOW_BFLOAT16


def optimizer_step_milliseconds(model: torch.nn.Module, config: TrainConfig, runs: int) -> dict[str, float]:
    """Median milliseconds of one AdamW step over ``model``'s parameters, fused and for-each."""
    model = copy.deepcopy(model)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    result = {}
    for name, fused in (("fused", True), ("for-each", False)):
        optimizer = make_optimizer(model, config, fused=fused)
        result[name] = 1e3 * median_seconds(optimizer.step, runs=max(runs, 5))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["generation", "training", "speculative"])
    parser.add_argument("--model", default="shakespeare-gpt", help="generation, speculative: the (target) model")
    parser.add_argument("--draft", default="shakespeare-gpt-draft", help="speculative: the draft model")
    parser.add_argument("--new-tokens", type=int, default=200, help="speculative: new tokens per prompt")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare-gpt",
                        help="training: the model configuration and batch of this training preset")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per way (median reported), at least 1")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 1, or the preset's)")
    parser.add_argument("--steps", type=int, default=1, help="training: steps per timed run")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where to run (auto: a GPU if any)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="training: float32, bfloat16 autocast, or auto (bfloat16 where it is faster here)")
    args = parser.parse_args(argv)
    if args.runs < 1 or (args.batch is not None and args.batch < 1) or args.steps < 1:
        parser.error("--runs, --batch and --steps must be at least 1")
    if args.benchmark == "generation":
        with torch.no_grad():
            generation_benchmark(args.model, args.runs, args.batch or 1, args.device)
    elif args.benchmark == "speculative":
        with torch.no_grad():
            speculative_benchmark(args.model, args.draft, args.runs, args.new_tokens)
    else:
        config = replace(PRESETS[args.preset], precision=args.precision)
        if args.batch:
            config = replace(config, batch_size=args.batch)
        training_benchmark(config, args.runs, args.steps, args.device)


if __name__ == "__main__":
    main()
