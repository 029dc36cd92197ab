"""What every lesson's first cell calls, so lessons run the same everywhere.

Taught in: every lesson (``setup``); ``scripts/check.py`` and ``scripts/regenerate_notebooks.py``
run lessons in ``lesson_environment()``.
"""

from __future__ import annotations

import functools
import os
import random

import numpy as np
import torch

from .hardware import lesson_device

LESSON_THREADS = 2  # CPU matmuls are not bitwise equal across thread counts: fix it
# Set to 1 by scripts/check.py and scripts/regenerate_notebooks.py: a lesson's plt.show() then
# raises on a figure with an unlabelled axis, so every lesson figure is checked where it is made.
CHECK_FIGURES = "COURSE_CHECK_FIGURES"


def setup(seed: int = 0, threads: int = LESSON_THREADS) -> torch.Generator:
    """Seed Python, NumPy and torch, fix torch's thread count and print precision, and return
    a seeded generator on the lesson's device.

    The device is ``hardware.lesson_device()``: ``$COURSE_DEVICE`` (e.g. ``cuda``, ``mps``) or the
    CPU. Off the CPU, it also becomes torch's default device, so that the tensors and models a
    lesson creates land where ``load_model`` put the models. (On the CPU nothing is changed:
    a default device adds a little overhead to every torch call, and lessons time things.)
    Pass the returned ``torch.Generator`` to sampling so that draws repeat exactly.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=3, sci_mode=False)
    if os.environ.get(CHECK_FIGURES) == "1":
        require_axis_labels()
    device = lesson_device()
    if device.type != "cpu":
        torch.set_default_device(device)
    return seeded_generator(seed)


def seeded_generator(seed: int) -> torch.Generator:
    """A ``torch.Generator`` on the lesson's device (``lesson_device()``), seeded with ``seed``:
    sampling on a GPU needs a generator on the GPU. On the CPU it is ``torch.Generator().manual_seed(seed)``."""
    return torch.Generator(lesson_device()).manual_seed(seed)


def lesson_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to run lessons in for stored or checked outputs (``scripts/check.py`` and
    ``scripts/regenerate_notebooks.py``): ``base`` (default ``os.environ``) offline, with a fixed
    hash seed and the figure check on, and without the variables that would choose another model,
    draft or device, since stored outputs come from the bundled models on the CPU."""
    env = dict(os.environ if base is None else base)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0", CHECK_FIGURES: "1"})
    for name in ("COURSE_MODEL", "COURSE_DRAFT_MODEL", "COURSE_DEVICE"):
        env.pop(name, None)
    return env


def unlabelled_axes(figure) -> list[str]:
    """Each axes of a matplotlib ``figure`` with no x label or no y label, described by its title
    and what is missing. A figure-wide label (``fig.supxlabel``, ``fig.supylabel``) labels every
    axes of a grid. Axes turned off (``ax.axis("off")``) and colorbars are exempt."""
    figure_labels = {axis: getattr(figure, f"_sup{axis}label", None) for axis in ("x", "y")}
    missing = []
    for index, ax in enumerate(figure.axes):
        if not ax.axison or getattr(ax, "_colorbar", None) is not None:
            continue
        lacks = [axis for axis, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel()))
                 if not label.strip() and not ((sup := figure_labels[axis]) and sup.get_text().strip())]
        if lacks:
            missing.append(f"axes {index} ({ax.get_title() or 'untitled'!r}): no {' and no '.join(lacks)} label")
    return missing


def require_axis_labels() -> None:
    """Make ``matplotlib.pyplot.show`` raise ``ValueError`` when an open figure has an axes
    without an x or y label (see ``unlabelled_axes``). Idempotent."""
    import matplotlib.pyplot as plt

    if getattr(plt.show, "checks_axis_labels", False):
        return
    original = plt.show

    @functools.wraps(original)
    def show(*args, **kwargs):
        problems = [f"figure {number}: {problem}" for number in plt.get_fignums()
                    for problem in unlabelled_axes(plt.figure(number))]
        if problems:
            plt.close("all")
            raise ValueError("every axis of a lesson figure needs a label:\n" + "\n".join(problems))
        return original(*args, **kwargs)

    show.checks_axis_labels = True  # type: ignore[attr-defined]  # a mark on the wrapper
    plt.show = show


def check_below(what: str, value: float, bound: float) -> None:
    """Assert ``value < bound`` and print the bound, not the value.

    Float noise such as the difference between two ways of computing the same logits changes in
    its last digits from one CPU to the next; the bound holds on all of them. So the printed line
    is the same everywhere while the assert still carries the claim.
    """
    if not value < bound:
        raise AssertionError(f"{what}: {value:.2e} is not below {bound:.0e}")
    print(f"{what}: below {bound:.0e}")
