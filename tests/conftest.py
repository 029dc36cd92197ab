"""Fixtures shared by the unit tests: small random GPT-2 checkpoints saved to folders."""

from __future__ import annotations

import pytest
import torch


def make_random_gpt2(folder, *, vocab_size=300, n_positions=48, n_embd=64, n_layer=2, n_head=4, seed=0):
    """Save a randomly initialised GPT2LMHeadModel to ``folder`` and return the folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
    )
    model = GPT2LMHeadModel(config)
    # Larger-than-init weights make logits less flat, so comparisons mean something.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def random_gpt2_dirs(tmp_path_factory):
    """Three random GPT-2 checkpoints of different shapes, saved to folders."""
    shapes = [
        dict(vocab_size=300, n_positions=48, n_embd=64, n_layer=2, n_head=4),
        dict(vocab_size=517, n_positions=64, n_embd=96, n_layer=3, n_head=3),
        dict(vocab_size=128, n_positions=32, n_embd=32, n_layer=1, n_head=1),
    ]
    return [make_random_gpt2(tmp_path_factory.mktemp(f"gpt2_{i}"), seed=i, **shape) for i, shape in enumerate(shapes)]
