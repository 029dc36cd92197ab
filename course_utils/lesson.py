"""What every lesson's first cell calls, so lessons run the same everywhere."""

from __future__ import annotations

import random

import numpy as np
import torch

LESSON_THREADS = 2  # CPU matmuls are not bitwise equal across thread counts: fix it


def setup(seed: int = 0, threads: int = LESSON_THREADS) -> torch.Generator:
    """Seed Python, NumPy and torch, fix torch's thread count and print precision, and return
    a seeded generator.

    Pass the returned ``torch.Generator`` to sampling so that draws repeat exactly.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=3, sci_mode=False)
    return torch.Generator().manual_seed(seed)


def check_below(what: str, value: float, bound: float) -> None:
    """Assert ``value < bound`` and print the bound, not the value.

    Float noise such as the difference between two ways of computing the same logits changes in
    its last digits from one CPU to the next; the bound holds on all of them. So the printed line
    is the same everywhere while the assert still carries the claim.
    """
    if not value < bound:
        raise AssertionError(f"{what}: {value:.2e} is not below {bound:.0e}")
    print(f"{what}: below {bound:.0e}")
