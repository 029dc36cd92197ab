"""The small library behind the course's lessons: one implementation of each idea.

Taught in: every lesson (the public names: ``load_model``, ``MiniGPT``, ``generate``...).

The public names are imported when first used (``from course_utils import MiniGPT`` works as
ever), so that ``import course_utils``, and ``python -m course_utils doctor``, need neither torch
nor transformers: the doctor reports them when they are missing or broken.
"""

from __future__ import annotations

import importlib

# Each public name and the module it lives in.
PUBLIC_NAMES = {"generate": "generation", "load_model": "hub", "load_tokenizer": "hub", "LlamaConfig": "llama",
                "MiniLlama": "llama", "GPTConfig": "model", "MiniGPT": "model"}
__all__ = sorted(PUBLIC_NAMES)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in PUBLIC_NAMES:
        return getattr(importlib.import_module(f".{PUBLIC_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
