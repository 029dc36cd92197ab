"""Loading models and tokenizers: bundled names, Hugging Face ids and local folders.

``COURSE_MODEL`` picks the model every lesson uses (default ``shakespeare-gpt``) and
``COURSE_DRAFT_MODEL`` the draft for speculative decoding (default ``shakespeare-gpt-draft``).
Each may be a bundled name, a Hugging Face id such as ``gpt2`` (from the local cache, or
downloaded where a hub is reachable) or a local folder in Hugging Face format.
``COURSE_DEVICE`` (see ``hardware.lesson_device``) places the models: the CPU unless it names
another device.

Taught in: every lesson's first cell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .bundled import (  # noqa: F401  (their documented home is course_utils.hub too)
    ASSETS,
    BUNDLED_MODELS,
    CHECKSUMS,
    DEFAULT_DRAFT_MODEL,
    DEFAULT_MODEL,
    ModelUnavailableError,
    read_checksums,
    verify_bundled,
)
from .hardware import lesson_device, resolve_device


def model_name(name: str | None = None) -> str:
    """``name``, else ``$COURSE_MODEL``, else ``shakespeare-gpt``."""
    return name or os.environ.get("COURSE_MODEL") or DEFAULT_MODEL


def draft_model_name(name: str | None = None) -> str:
    """``name``, else ``$COURSE_DRAFT_MODEL``, else ``shakespeare-gpt-draft``."""
    return name or os.environ.get("COURSE_DRAFT_MODEL") or DEFAULT_DRAFT_MODEL


def resolve(name: str) -> str:
    """The folder of a bundled model (its files checked against their checksums), a local
    folder, or else ``name`` as a hub id."""
    if name in BUNDLED_MODELS:
        folder = ASSETS / name
        if not (folder / "config.json").exists():
            raise ModelUnavailableError(
                f"The bundled model {name!r} is missing from {folder}; reinstall the course "
                f"or rebuild it with `python -m course_utils.train --preset {name}`."
            )
        verify_bundled(name)
        return str(folder)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    return name


def _from_pretrained(loader, name: str):
    """Call ``loader.from_pretrained``: the local cache first, then the hub unless offline."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # a "Loading weights" bar per call is noise in a lesson
    source = resolve(name)
    if Path(source).is_dir():
        return loader.from_pretrained(source)
    try:
        return loader.from_pretrained(source, local_files_only=True)
    except OSError:
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    error_text = ""
    if not offline:
        try:
            return loader.from_pretrained(source)
        except Exception as error:  # hub errors come in many types; all mean "not here"
            error_text = f" ({type(error).__name__})"
    raise ModelUnavailableError(
        f"Model {name!r} is neither bundled ({', '.join(BUNDLED_MODELS)}), nor a local folder, "
        f"nor in the Hugging Face cache, and could not be downloaded{error_text}: connect once to "
        f"download it, or set COURSE_MODEL to a bundled name or a folder saved with save_pretrained()."
    ) from None


def load_tokenizer(name: str | None = None):
    """The tokenizer of ``name`` (default: ``COURSE_MODEL`` or ``shakespeare-gpt``)."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, model_name(name))


def load_model(name: str | None = None, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    """A causal LM (float32, eval mode) and its tokenizer.

    Args:
        name: a bundled name (``shakespeare-gpt``, ``shakespeare-gpt-draft``), a Hugging Face id
            such as ``gpt2``, or a local folder. Default: ``$COURSE_MODEL`` or ``shakespeare-gpt``.
        device: where to put the model ("cpu", "cuda", "mps", "auto" or a ``torch.device``).
            Default: ``lesson_device()``, i.e. ``$COURSE_DEVICE`` or the CPU.
    """
    from transformers import AutoModelForCausalLM

    name = model_name(name)
    if device is None:
        device = lesson_device()
    elif not isinstance(device, torch.device):  # a name: checked to be available here
        device = resolve_device(device)
    model = _from_pretrained(AutoModelForCausalLM, name).float().eval().to(device)
    return model, load_tokenizer(name)
