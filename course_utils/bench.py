"""Benchmarks, printed as medians and side-by-side ratios (never asserted in tests).

    python -m course_utils.bench generation [--model shakespeare-gpt] [--runs 5] [--batch 1]

``generation`` times greedy decoding from a short prompt up to the model's full context, three
ways in the same run, interleaved round by round so that machine noise hits all of them: our
``generate`` with the KV cache, our ``generate`` without it, and ``transformers``' own
``model.generate()`` (which uses its cache). One warm-up round is discarded. Only generated
tokens count: the prompt is not.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from .generation import generate
from .hub import load_model
from .model import MiniGPT

PROMPT = "ROMEO.\n"


def machine_summary() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def generation_benchmark(model_name: str, runs: int, batch: int) -> dict[str, float]:
    """Median generated tokens per second of each way of decoding; prints the table."""
    hf_model, tokenizer = load_model(model_name)
    mini = MiniGPT.from_hf(hf_model)
    prompt = tokenizer([PROMPT] * batch, return_tensors="pt").input_ids
    new_tokens = hf_model.config.n_positions - prompt.shape[1]
    mask = torch.ones_like(prompt)
    ways = {
        "ours, KV cache": lambda: generate(mini, prompt, new_tokens, use_cache=True),
        "ours, no cache": lambda: generate(mini, prompt, new_tokens, use_cache=False),
        "transformers generate()": lambda: hf_model.generate(
            prompt, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=tokenizer.eos_token_id),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    print(f"machine: {machine_summary()}")
    print(f"model: {model_name}, batch {batch}, prompt {prompt.shape[1]} tokens, {new_tokens} generated tokens "
          f"(to the full context of {hf_model.config.n_positions}), greedy; {runs} runs after 1 warm-up")
    for round_index in range(runs + 1):
        for name, run in ways.items():
            started = time.perf_counter()
            out = run()
            seconds = time.perf_counter() - started
            assert out.shape[1] - prompt.shape[1] == new_tokens, name  # every way generated them all
            if round_index > 0:
                rates[name].append(batch * new_tokens / seconds)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        spread = f"{min(rates[name]):.0f}-{max(rates[name]):.0f}"
        print(f"{name:>26}: median {value:7.1f} tokens/s (range {spread})")
    print(f"KV cache vs no cache:          {medians['ours, KV cache'] / medians['ours, no cache']:.2f}x")
    print(f"ours (cache) vs transformers:  {medians['ours, KV cache'] / medians['transformers generate()']:.2f}x")
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=["generation"])
    parser.add_argument("--model", default="shakespeare-gpt")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per way (median reported), at least 1")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch < 1:
        parser.error("--runs and --batch must be at least 1")
    with torch.no_grad():
        generation_benchmark(args.model, args.runs, args.batch)


if __name__ == "__main__":
    main()
