"""Timing on a noisy machine: one rule, used by every lesson and benchmark that measures speed.

The rule: discard the first call (a warm-up: caches, lazy initialisation, the allocator), time
the rest, report the median; on a GPU, wait for the device before reading the clock. To compare
ways of doing one thing, time them in interleaved rounds (``interleaved_rates``) and take the
median of each round's ratio (``paired_ratio``), so that a slow spell of the machine hits them
all alike. Timings are printed, never asserted in tests. A claim a lesson asserts about speed
compares such paired ratios with a margin it states (``paired_ratio(faster, slower) > 1.5``), never
two rates timed minutes apart.

This module needs torch alone, so that ``hardware`` can time a matrix multiply without loading
``transformers``. The measurements of models built on the rule (time per generated token, a
cached pass, FLOPs, bytes written, memory bandwidth) are in ``course_utils.measure``.

Taught in: lesson 03 (decoding methods' speed), lesson 04 (time per token, batch sizes), lesson 05
(training speed), lesson 07 (speed-ups).
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch

WARMUP_CALLS = 1  # calls discarded before timing, in every measurement here


def synchronize(device: torch.device | str | None) -> None:
    """Wait until ``device`` has finished its queued work (a GPU runs asynchronously)."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_seconds(run: Callable[[], object], runs: int = 5, device: torch.device | str | None = None) -> float:
    """Median wall time of ``runs`` calls of ``run`` after ``WARMUP_CALLS`` discarded ones."""
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer, got {runs!r}")
    times = []
    for call in range(WARMUP_CALLS + runs):
        synchronize(device)
        started = time.perf_counter()
        run()
        synchronize(device)
        if call >= WARMUP_CALLS:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_rates(ways: dict[str, Callable[[], object]], units: int, runs: int) -> dict[str, list[float]]:
    """``WARMUP_CALLS`` discarded rounds, then ``runs`` rounds of every way in turn; returns each
    way's ``units`` per second, one value per timed round."""
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for round_index in range(WARMUP_CALLS + runs):
        for name, run in ways.items():
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
            if round_index >= WARMUP_CALLS:
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


# The model measurements moved to ``measure`` (they need transformers, which this module must not
# load); their old import path, ``course_utils.timing.StepTimer`` and so on, still works.
MEASURE_NAMES = ("StepTimer", "interleaved_step_seconds", "cached_pass_seconds", "memory_bandwidth", "count_flops",
                 "BytesWritten", "bytes_written")


def __getattr__(name: str):
    if name in MEASURE_NAMES:
        from . import measure  # here, not at the top: measure imports this module, and transformers

        return getattr(measure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` other processes that each keep one core busy (a Python loop) while the block
    runs: a benchmark's figures on a machine that is doing something else too."""
    others = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in others:
            process.kill()
            process.wait()
