"""The benchmark command: medians and side-by-side ratios, printed (never asserted in tests).
The timing rule is ``course_utils.timing``'s; the measurements of models, ``course_utils.measure``'s.

    python -m course_utils bench generation [--model shakespeare-gpt] [--runs 3] [--batch 1] [--device cpu]
    python -m course_utils bench generation --floor [--model shakespeare-gpt] [--draft shakespeare-gpt-draft]
    python -m course_utils bench speculative [--model shakespeare-gpt] [--draft shakespeare-gpt-draft] [--runs 3]
        [--draft-lengths 1-8] [--without-transformers] [--busy N]
    python -m course_utils bench training [--preset shakespeare-gpt] [--runs 3] [--steps 1] [--precision auto]

``generation`` times greedy decoding from a short prompt up to the model's full context, four
ways in the same run, interleaved round by round so that machine noise hits all of them: our
``generate`` with the preallocated KV cache (the default), with the growing one, without a cache,
and ``transformers``' own ``model.generate()`` (which uses its cache). One warm-up round is
discarded. Only generated tokens count: the prompt is not.

``generation --floor`` asks how far a cached step (batch 1) is from what it cannot go below. It
splits a step's time by torch's profiler into groups of operations (``measure.OPERATION_GROUPS``)
and the Python between them, then times the step beside the bare products of a vector with every
weight matrix (the GEMVs a step cannot skip) and beside reading every weight once at this
machine's copy bandwidth.

``training`` times training steps (forward, loss, backward, clipping, AdamW) of a preset's
model and batch, in the same run: ``MiniGPT`` as ``course_utils.train`` runs it (the precision
``--precision`` resolves to on this machine, fused attention, fused AdamW, all threads),
``transformers``' ``GPT2LMHeadModel`` holding the same weights with the same settings, and
``MiniGPT`` with one setting changed at a time (attention written out instead of the fused
kernel, the for-each AdamW, one thread, the other precision). Where the other precision is
bfloat16 emulated in software (a bfloat16 matmul over four times slower than float32), it is
timed with one step of an eighth of the batch, so that the command still finishes in minutes.
Training tokens per second: batch x context x steps / seconds.

Taught in: lesson 05 (``training_benchmark``); the README's benchmark tables.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, cast

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .compat import ASSISTED_GENERATION_MESSAGES, hidden_transformers_messages
from .generation import GenerationSettings, generate
from .hardware import (
    DEVICES,
    PRECISIONS,
    PrecisionChoice,
    choose_precision,
    describe_machine,
    resolve_device,
    torch_threads,
)
from .hub import load_model
from .measure import (
    DecodeFloor,
    cached_pass_seconds,
    decode_floor,
    memory_bandwidth,
    print_breakdowns,
    step_breakdown,
    step_paths_breakdown,
    transformers_generate_exactly,
)
from .model import GPTConfig, MiniGPT
from .recipes import PRESETS
from .speculative import (
    DEFAULT_ASSISTANT_TOKENS,
    DRAFT_THREADS,
    SPECULATIVE_PROMPTS,
    ModelDrafter,
    SpeculativeStats,
    drafting_like_ours,
    predicted_speedup,
    speculative_generate,
)
from .timing import busy_processes, interleaved_rates, median_seconds, paired_ratio, print_medians
from .train import TrainConfig, make_optimizer, training_step

PROMPT = "ROMEO.\n"


def generation_benchmark(model_name: str, runs: int, batch: int,
                         device: str | torch.device = "cpu") -> dict[str, float]:
    """Median generated tokens per second of each way of decoding; prints the table."""
    device = resolve_device(device)
    hf_model, tokenizer = load_model(model_name)
    hf_model.to(device)
    hf_config: Any = hf_model.config  # a transformers config: its attributes are set at run time
    mini = MiniGPT.from_hf(hf_model)
    prompt = tokenizer([PROMPT] * batch, return_tensors="pt").input_ids.to(device)
    new_tokens = hf_config.n_positions - prompt.shape[1]
    # A MiniGPT has no EOS unless told, and transformers is held to new_tokens: all four ways
    # generate exactly new_tokens tokens.
    ways: dict[str, Callable[[], object]] = {
        "ours, preallocated cache": lambda: generate(mini, prompt, new_tokens),
        "ours, growing cache": lambda: generate(mini, prompt, new_tokens,
                                                cache_implementation="growing"),
        "ours, no cache": lambda: generate(mini, prompt, new_tokens, use_cache=False),
        "transformers generate()": lambda: transformers_generate_exactly(hf_model, prompt, new_tokens),
    }
    print(f"machine: {describe_machine()}, device {device.type}")
    print(f"model: {model_name}, batch {batch}, prompt {prompt.shape[1]} tokens, {new_tokens} generated tokens "
          f"(to the full context of {hf_config.n_positions}), greedy; {runs} runs after 1 warm-up")
    medians = print_medians(interleaved_rates(ways, batch * new_tokens, runs), "tokens/s")
    ours = medians["ours, preallocated cache"]
    print(f"preallocated vs growing cache: {ours / medians['ours, growing cache']:.2f}x")
    print(f"KV cache vs no cache:          {ours / medians['ours, no cache']:.2f}x")
    print(f"ours (cache) vs transformers:  {ours / medians['transformers generate()']:.2f}x")
    return medians


FLOOR_CONTEXT = 300  # cached tokens before the timed step: the middle of a long generation


def floor_report(model_names: list[str], runs: int, steps: int = 200,
                 draft_name: str | None = None) -> dict[str, DecodeFloor]:
    """For each model (batch 1, greedy, ``steps`` tokens), three tables: where a cached decoding
    step's time goes in ``generate``; the same for one step through the modules and as
    ``generate`` takes it (the profile before and after ``decode.decode_step``); and the step
    beside its floors (the bare GEMVs of every weight, as ``F.linear`` runs them and split over
    torch's threads, and every weight read once at this machine's copy bandwidth). The model
    named ``draft_name`` is timed twice: on torch's threads, as ``generate`` runs it, and on
    ``DRAFT_THREADS``, as it drafts for speculative decoding (its floor row is then labelled
    "<name>, drafting")."""
    bandwidth = memory_bandwidth()
    threads, rounds = torch.get_num_threads(), max(runs, 10)
    print(f"machine: {describe_machine()}; copy bandwidth {bandwidth:.1f} GB/s")
    floors: dict[str, tuple[int, DecodeFloor]] = {}
    breakdowns = {}
    paths: dict[str, dict[str, dict[str, float]]] = {}
    for name in model_names:
        hf_model, tokenizer = load_model(name)
        mini = MiniGPT.from_hf(hf_model)
        config = mini.config
        context = torch.randint(0, config.vocab_size, (1, min(FLOOR_CONTEXT, config.context_length - 1)),
                                generator=torch.Generator().manual_seed(0))
        floors[name] = threads, decode_floor(mini, context, runs=rounds, bandwidth=bandwidth)
        paths[name] = step_paths_breakdown(mini, context, runs=runs)
        if name == draft_name:
            with torch_threads(DRAFT_THREADS):
                floors[f"{name}, drafting"] = DRAFT_THREADS, decode_floor(mini, context, runs=rounds,
                                                                          bandwidth=bandwidth)
        prompt = tokenizer(PROMPT, return_tensors="pt").input_ids
        new_tokens = min(steps, config.context_length - prompt.shape[1])
        breakdowns[name] = step_breakdown(partial(generate, mini, prompt, new_tokens), new_tokens, runs)
    print(f"\nwhere a step's time goes (microseconds per generated token, up to {steps} tokens from {PROMPT!r}, "
          f"{threads} threads):")
    print_breakdowns(breakdowns, width=24)
    print(f"\none cached step after up to {FLOOR_CONTEXT} tokens, microseconds, through the modules (model(...)) "
          f"and as generate takes it (course_utils.decode where it applies), {threads} threads:")
    print_breakdowns({f"{name} {path}": paths[name][path] for name in model_names for path in ("modules", "step")},
                     width=32)
    print(f"\none cached step after up to {FLOOR_CONTEXT} tokens beside its floors "
          f"(medians of {rounds} interleaved rounds):")
    print(f"{'model':>33} {'threads':>7} {'modules ms':>11} {'step ms':>8} {'GEMVs ms':>9} {'split ms':>9} "
          f"{'weights MB':>11} {'at copy speed ms':>17} {'step/GEMVs':>11} {'step/split':>11}")
    for name, (on_threads, floor) in floors.items():
        print(f"{name:>33} {on_threads:7d} {floor.module_step * 1e3:11.3f} {floor.step * 1e3:8.3f} "
              f"{floor.gemvs * 1e3:9.3f} {floor.split_gemvs * 1e3:9.3f} {floor.weight_bytes / 1e6:11.1f} "
              f"{floor.copy * 1e3:17.3f} {floor.step_over_gemvs:10.2f}x {floor.step_over_split_gemvs:10.2f}x")
    print("modules: the step through model(...), the modules the lessons write; step: as generate takes it "
          "(course_utils.decode where it applies); GEMVs: F.linear's, as the step multiplies; split: the same "
          "products, each split by its output rows over the threads (measure.split_gemv), since a one-row product "
          "runs on one thread; drafting: on the threads the draft drafts with in speculative decoding "
          "(speculative.DRAFT_THREADS), its products and its floors both")
    return {name: floor for name, (_, floor) in floors.items()}


def speculative_prediction(target: MiniGPT, draft: MiniGPT, prompts: list[torch.Tensor], new_tokens: int,
                           draft_lengths: tuple[int, ...]) -> dict[int, float]:
    """Lesson 07's cost model for each K: the speedup ``predicted_speedup`` gives from the
    acceptance of single drafts on ``prompts`` (counted) and the cost of a draft step and of a
    verification of K + 1 tokens in target steps (timed after ``FLOOR_CONTEXT`` tokens)."""
    settings = GenerationSettings(max_new_tokens=new_tokens)
    stats = SpeculativeStats()
    for prompt in prompts:
        stats.merge(speculative_generate(target, ModelDrafter(draft, settings, prompt.shape[1] + new_tokens), prompt,
                                         1, settings)[1])
    context = torch.randint(0, target.config.vocab_size, (1, min(FLOOR_CONTEXT, target.config.context_length - 10)),
                            generator=torch.Generator().manual_seed(0))
    target_pass = cached_pass_seconds(target, context, [1, *(k + 1 for k in draft_lengths)])
    with torch_threads(DRAFT_THREADS):  # as the drafter runs
        draft_cost = cached_pass_seconds(draft, context, [1])[1] / target_pass[1]
    return {k: predicted_speedup(stats.acceptance_rate, k, draft_cost, target_pass[k + 1] / target_pass[1])
            for k in draft_lengths}


def speculative_benchmark(target_name: str, draft_name: str, runs: int, new_tokens: int = 200,
                          draft_lengths: tuple[int, ...] = tuple(range(1, 9)),
                          with_transformers: bool = True) -> dict[str, float]:
    """Median generated tokens per second, greedy, batch 1, over ``SPECULATIVE_PROMPTS``: our plain
    cached ``generate``, speculative at each draft length and at the default, prompt lookup, and
    transformers' plain and assisted ``generate()`` (unless not ``with_transformers``: theirs take
    minutes beside a busy core), interleaved. Prints the table, each way's speedup beside lesson
    07's prediction, and checks that every way of ours gives the plain tokens."""
    hf_target, tokenizer = load_model(target_name)
    hf_draft, _ = load_model(draft_name)
    target, draft = MiniGPT.from_hf(hf_target), MiniGPT.from_hf(hf_draft)
    prompts = [tokenizer(text, return_tensors="pt").input_ids for text in SPECULATIVE_PROMPTS]

    def ours(**arguments) -> Callable[[], list[torch.Tensor]]:
        return lambda: [generate(target, prompt, new_tokens, **arguments) for prompt in prompts]

    def theirs(**arguments) -> Callable[[], list[torch.Tensor]]:
        return lambda: [transformers_generate_exactly(hf_target, prompt, new_tokens, **arguments) for prompt in prompts]

    default = f"ours, speculative default (K={DEFAULT_ASSISTANT_TOKENS})"
    draft_length = {f"ours, speculative K={k}": k for k in draft_lengths if k != DEFAULT_ASSISTANT_TOKENS}
    draft_length[default] = DEFAULT_ASSISTANT_TOKENS  # passed as no argument: generate's default
    ways = {"ours, plain (cached)": ours()}
    ways.update({name: ours(assistant_model=draft, num_assistant_tokens=k) for name, k in draft_length.items()
                 if name != default})
    ways[default] = ours(assistant_model=draft)
    ways["ours, prompt lookup (5)"] = ours(prompt_lookup_num_tokens=5)
    if with_transformers:
        ways["transformers generate()"] = theirs()
        ways["transformers assisted"] = theirs(assistant_model=hf_draft)
        ways[f"transformers assisted, K={DEFAULT_ASSISTANT_TOKENS} constant"] = theirs(
            assistant_model=drafting_like_ours(hf_draft, DEFAULT_ASSISTANT_TOKENS))
    plain = ways["ours, plain (cached)"]()
    for name, way in ways.items():
        if name.startswith("ours") and not all(torch.equal(a, b) for a, b in zip(way(), plain)):
            raise AssertionError(f"{name} did not give the plain greedy tokens")
    predicted = speculative_prediction(target, draft, prompts, new_tokens, tuple(sorted(set(draft_length.values()))))
    print(f"machine: {describe_machine()}")
    print(f"target {target_name}, draft {draft_name}; greedy, batch 1, {len(prompts)} prompts x {new_tokens} new "
          f"tokens; {runs} interleaved runs after 1 warm-up; every way of ours gave the plain tokens")
    with hidden_transformers_messages(*ASSISTED_GENERATION_MESSAGES):
        # dict(ways): the same ways, typed as interleaved_rates takes them (a dict's value type is invariant)
        rates = interleaved_rates(dict(ways), len(prompts) * new_tokens, runs)
    medians = print_medians(rates, "tokens/s")
    print("speedups: the median over rounds of each round's ratio (runs of one round share the machine's state); "
          "predicted: lesson 07's cost model (acceptance of single drafts, draft and verification costs timed)")
    for name in ways:
        if name != "ours, plain (cached)":
            ratio = paired_ratio(rates[name], rates["ours, plain (cached)"])
            prediction = f"   predicted {predicted[draft_length[name]]:.2f}x" if name in draft_length else ""
            print(f"{name:>36} vs ours plain: {ratio:.2f}x{prediction}")
    if with_transformers:
        print(f"ours speculative (default) vs transformers assisted: "
              f"{paired_ratio(rates[default], rates['transformers assisted']):.2f}x")
        print(f"ours plain vs transformers generate(): "
              f"{paired_ratio(rates['ours, plain (cached)'], rates['transformers generate()']):.2f}x")
    return medians


SLOW_BFLOAT16 = 0.25  # a bfloat16 matmul below this fraction of float32's speed is emulated in software


def training_benchmark(config: TrainConfig, runs: int, steps: int,
                       device: str | torch.device = "cpu") -> dict[str, float]:
    """Median training tokens per second of MiniGPT, GPT2LMHeadModel and the ablations; prints the table."""
    device = resolve_device(device)
    choice = choose_precision(config.precision, device, config.model.n_embd)
    other = "float32" if choice.precision == "bfloat16" else "bfloat16"
    torch.manual_seed(config.seed)
    # MiniGPT takes a GPT preset's configuration (on a Llama preset's it fails, as before)
    mini = MiniGPT(cast(GPTConfig, config.model)).to(device)
    # The same weights and configuration (no dropout on attention weights), in a transformers
    # GPT2LMHeadModel: its attributes (loss_type) are set at run time.
    hf_model: Any = mini.to_hf().to(device)
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
            with sdpa_kernel(backends):
                for inputs, targets in batches[:n_steps]:
                    training_step(model, optimizer, [(inputs[:rows], targets[:rows])], loss_fn, config.grad_clip,
                                  precision)
            torch.set_num_threads(threads)

        return run

    def mini_way(**settings) -> Callable[[], None]:
        model = copy.deepcopy(mini)  # each way trains its own copy: no way changes another's weights
        return trainer(model, model, **settings)

    ways: dict[str, Callable[[], object]] = {
        "MiniGPT": mini_way(),
        "transformers GPT2LMHeadModel": trainer(hf_model, hf_loss),
        "MiniGPT, unfused attention": mini_way(fused_attention=False),
        "MiniGPT, for-each AdamW": mini_way(fused=False),
    }
    print(f"machine: {describe_machine()}, device {device.type}")
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
        assert speedup is not None  # "auto" on a CPU always measures
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


def draft_lengths(text: str) -> tuple[int, ...]:
    """``--draft-lengths``: "A-B" (every K from A to B) or "K1,K2,..." -> the sorted Ks, each at least 1."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            lengths = set(range(first, last + 1))
        else:
            lengths = {int(part) for part in text.split(",")}
    except ValueError:
        lengths = set()
    if not lengths or min(lengths) < 1:
        raise ValueError(f"--draft-lengths takes a range 'A-B' or a list '3,5,8' of draft lengths of at least 1, "
                         f"got {text!r}")
    return tuple(sorted(lengths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils bench", description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["generation", "training", "speculative"])
    parser.add_argument("--model", default="shakespeare-gpt", help="generation, speculative: the (target) model")
    parser.add_argument("--draft", default="shakespeare-gpt-draft", help="speculative, --floor: the draft model")
    parser.add_argument("--floor", action="store_true",
                        help="generation: instead of the four ways, where a step's time goes and the step beside its "
                             "floors, for --model and --draft")
    parser.add_argument("--new-tokens", type=int, default=200, help="speculative: new tokens per prompt")
    parser.add_argument("--draft-lengths", default="1-8",
                        help="speculative: the constant draft lengths K to time beside the default, "
                             "a range 'A-B' or a list '3,5,8' (default 1-8)")
    parser.add_argument("--without-transformers", action="store_true",
                        help="speculative: time only our ways (transformers' take minutes beside a busy core)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare-gpt",
                        help="training: the model configuration and batch of this training preset")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per way (median reported), at least 1")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 1, or the preset's)")
    parser.add_argument("--steps", type=int, default=1, help="training: steps per timed run")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where to run (auto: a GPU if any)")
    parser.add_argument("--busy", type=int, default=0,
                        help="other processes, each keeping one core busy, while the benchmark runs (default 0)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="training: float32, bfloat16 autocast, or auto (bfloat16 where it is faster here)")
    args = parser.parse_args(argv)
    if args.runs < 1 or (args.batch is not None and args.batch < 1) or args.steps < 1:
        parser.error("--runs, --batch and --steps must be at least 1")
    if args.busy < 0:
        parser.error(f"--busy must be 0 or more (other busy processes), got {args.busy}")
    if args.floor and args.benchmark != "generation":
        parser.error("--floor is a report of the generation benchmark")
    try:
        args.draft_lengths = draft_lengths(args.draft_lengths)
    except ValueError as error:
        parser.error(str(error))
    with busy_processes(args.busy):
        run_benchmark(args)
    return 0


def run_benchmark(args: argparse.Namespace) -> None:
    """The benchmark ``main``'s arguments name."""
    if args.floor:
        with torch.no_grad():
            floor_report([args.model, args.draft], args.runs, draft_name=args.draft)
    elif args.benchmark == "generation":
        with torch.no_grad():
            generation_benchmark(args.model, args.runs, args.batch or 1, args.device)
    elif args.benchmark == "speculative":
        with torch.no_grad():
            speculative_benchmark(args.model, args.draft, args.runs, args.new_tokens, args.draft_lengths,
                                  with_transformers=not args.without_transformers)
    else:
        config = replace(PRESETS[args.preset], precision=args.precision)
        if args.batch:
            config = replace(config, batch_size=args.batch)
        training_benchmark(config, args.runs, args.steps, args.device)


if __name__ == "__main__":
    sys.exit(main())
