"""Which device and which training precision to use, chosen by the hardware the course runs on.

Devices: ``"auto"`` takes an accelerator when there is one (CUDA, then Apple's MPS), else the
CPU. Lessons run on the CPU unless ``COURSE_DEVICE`` names another device, so that their stored
outputs match.

Precision: training runs its matrix multiplies in bfloat16 (autocast; weights and optimizer stay
float32) only where that is really faster. On a CPU with native bfloat16 (AMX or AVX-512 BF16)
it is; on one without, PyTorch emulates it and it is about 30 times *slower* than float32. So
``"auto"`` measures: it times one bfloat16 and one float32 matrix multiply of the model's width
and takes bfloat16 only when it is at least ``BFLOAT16_MIN_SPEEDUP`` times faster. A measurement
answers for the CPU at hand, including one whose capabilities are limited by settings such as
``ONEDNN_MAX_CPU_ISA``, where a list of instruction-set flags would not. On CUDA, bfloat16 is
taken where the GPU supports it; on MPS, float32.

Taught in: lesson 05 (precision), and every lesson takes its device from ``lesson_device``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .timing import median_seconds

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bfloat16")
# bfloat16 matmuls must beat float32 by this much: a training step also converts tensors and
# runs elementwise operations, so it gains less than a matrix multiply alone (measured on an
# AVX-512 BF16 CPU: matmul 2.2x, whole step 1.6x).
BFLOAT16_MIN_SPEEDUP = 1.5


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else MPS if available, else the CPU. A named device must be
    available; otherwise a ``ValueError`` says what is."""
    name = str(device)
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (optionally with an index, e.g. 'cuda:1'), got {name!r}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if kind == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[kind]:
        present = ", ".join(d for d, ok in available.items() if ok)
        raise ValueError(f"device {name!r} is not available on this machine; available: {present}")
    return torch.device(name)


def lesson_device() -> torch.device:
    """The device lessons run on: ``$COURSE_DEVICE`` (any value ``resolve_device`` takes), else the CPU."""
    return resolve_device(os.environ.get("COURSE_DEVICE") or "cpu")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to ``threads``, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_name() -> str:
    """The processor's model name as Linux reports it, else what ``platform`` knows."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """One line for benchmark output and model cards: processor and the kernels torch picked for it
    (AVX512, AVX2: an emulated CPU shows here), cores, torch version, threads."""
    return (f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()} kernels), {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def bfloat16_matmul_speedup(width: int, device: torch.device, runs: int = 3) -> float:
    """float32 time / bfloat16 time of a (256 x width) @ (width x 4 width) matrix multiply, the
    shape of a transformer MLP's first layer; medians by ``timing.median_seconds``."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(256, width, generator=generator).to(device)
    b = torch.randn(width, 4 * width, generator=generator).to(device)
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        seconds[dtype] = median_seconds(lambda: x @ y, runs, device)  # noqa: B023 (called before the loop moves on)
    return seconds[torch.float32] / seconds[torch.bfloat16]


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision training runs in (``"float32"`` or ``"bfloat16"``), why, and the measured
    bfloat16 matmul speed-up over float32 when one was measured."""

    precision: str
    reason: str
    bfloat16_speedup: float | None = None

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype matrix multiplies are autocast to, or None for plain float32."""
        return torch.bfloat16 if self.precision == "bfloat16" else None


def autocast(device: torch.device, precision: str):
    """The context a training forward pass runs in: bfloat16 autocast for ``precision``
    "bfloat16" (matrix multiplies in bfloat16, weights in float32), nothing for "float32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


@functools.cache
def _measured_speedup(width: int, device: torch.device) -> float:
    return bfloat16_matmul_speedup(width, device)


def choose_precision(
    requested: str = "auto",
    device: str | torch.device = "cpu",
    width: int = 256,
    measure: Callable[[int, torch.device], float] | None = None,
) -> PrecisionChoice:
    """The training precision for ``requested`` (``"auto"``, ``"float32"`` or ``"bfloat16"``).

    An explicit choice is honoured. ``"auto"`` on a CPU calls ``measure(width, device)`` (default:
    ``bfloat16_matmul_speedup``, measured once per width and device in a process) and picks
    bfloat16 when the speed-up is at least ``BFLOAT16_MIN_SPEEDUP``; on CUDA it picks bfloat16
    where the GPU supports it, on MPS float32.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, "asked for")
    device = resolve_device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bfloat16", "auto: this GPU supports bfloat16")
        return PrecisionChoice("float32", "auto: this GPU does not support bfloat16")
    if device.type == "mps":
        return PrecisionChoice("float32", "auto: float32 on Apple MPS")
    speedup = (measure or _measured_speedup)(width, device)
    verdict = "bfloat16" if speedup >= BFLOAT16_MIN_SPEEDUP else "float32"
    return PrecisionChoice(
        verdict,
        f"auto: a bfloat16 matrix multiply ran {speedup:.2g}x as fast as float32 on this CPU "
        f"(bfloat16 needs {BFLOAT16_MIN_SPEEDUP}x)",
        speedup,
    )
