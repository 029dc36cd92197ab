"""Looking inside attention: every head's weights, scores that say what a head does, and
ablation that tests whether it matters.

Shapes: L layers, H heads, B batch, T tokens. Attention weights are a list of L tensors
(B, H, T, T), row i holding query i's weights over keys 0..i. Scores are (L, H) tensors.

The scores (each a mean over the queries that can show the pattern, and over the batch):

- previous-token: the weight a query puts on the token just before it, w[i, i-1], for i >= 1;
- first-token ("attention sink"): the weight on position 0, w[i, 0], for i >= 1;
- mean distance: how far back a query looks on average, sum_j w[i, j] (i - j);
- entropy: how spread the weights are, -sum_j w[i, j] log w[i, j], in nats;
- induction: on a random block repeated twice, the weight a query in the second copy puts on
  the token *after* the earlier occurrence of its own token, w[i, i - n + 1] for a block of
  length n (Olsson et al. 2022, "In-context Learning and Induction Heads").

This is lesson 06's analysis of attention; attention itself is ``model.attend``, and the
weights come from ``attention_weights`` (in ``adapters``, which reads them from a course model or
a ``transformers`` one; re-exported here). The explorer widget that shows them is
``attention_explorer.py``; its names are re-exported here too.

Taught in: lesson 02 (``attention_weights``), lesson 06 (everything here).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import torch

from .adapters import attention_weights  # noqa: F401  (its documented home is course_utils.attention too)
from .model import Block, GPTConfig, MiniGPT
from .train import TrainConfig, Trainer

SCORE_NAMES = ("previous_token", "first_token", "mean_distance", "entropy")


def _stack(weights: list[torch.Tensor]) -> torch.Tensor:
    """A list of L (B, H, T, T) tensors -> one (L, B, H, T, T) tensor, checking the shapes."""
    if not weights:
        raise ValueError("weights must hold at least one layer's (B, H, T, T) attention")
    stacked = torch.stack([w.float() for w in weights])
    if stacked.dim() != 5 or stacked.shape[-1] != stacked.shape[-2]:
        raise ValueError(f"each layer's weights must be (B, H, T, T), got {tuple(weights[0].shape)}")
    if stacked.shape[-1] < 2:
        raise ValueError("the scores need at least 2 tokens")
    return stacked


def previous_token_score(weights: list[torch.Tensor]) -> torch.Tensor:
    """(L, H): mean of w[i, i-1] over queries i >= 1."""
    stacked = _stack(weights)
    return stacked.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 3))


def first_token_score(weights: list[torch.Tensor]) -> torch.Tensor:
    """(L, H): mean of w[i, 0] over queries i >= 1 (query 0 can only look at itself)."""
    return _stack(weights)[..., 1:, 0].mean(dim=(1, 3))


def mean_distance(weights: list[torch.Tensor]) -> torch.Tensor:
    """(L, H): mean over queries of sum_j w[i, j] (i - j), in tokens."""
    stacked = _stack(weights)
    T = stacked.shape[-1]
    positions = torch.arange(T, dtype=torch.float32)
    distance = (positions[:, None] - positions[None, :]).clamp(min=0)  # (T, T): i - j where j <= i
    return (stacked * distance).sum(-1).mean(dim=(1, 3))


def entropy(weights: list[torch.Tensor]) -> torch.Tensor:
    """(L, H): mean over queries of -sum_j w[i, j] log w[i, j], in nats (0 log 0 = 0)."""
    stacked = _stack(weights)
    return -torch.special.xlogy(stacked, stacked).sum(-1).mean(dim=(1, 3))


def head_scores(weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """All of ``SCORE_NAMES``, each an (L, H) table, from one set of attention weights."""
    rules = (previous_token_score, first_token_score, mean_distance, entropy)
    return {name: rule(weights) for name, rule in zip(SCORE_NAMES, rules)}


def repeated_random_tokens(
    batch: int, block: int, vocab_size: int, generator: torch.Generator, low: int = 0
) -> torch.Tensor:
    """(batch, 2 * block) ids: a random block of ``block`` tokens drawn from [low, vocab_size),
    then the same block again."""
    if block < 2:
        raise ValueError(f"block must be at least 2 tokens, got {block}")
    if not 0 <= low < vocab_size:
        raise ValueError(f"low must be in [0, vocab_size={vocab_size}), got {low}")
    first = torch.randint(low, vocab_size, (batch, block), generator=generator)
    return torch.cat([first, first], dim=1)


def induction_score(weights: list[torch.Tensor], block: int) -> torch.Tensor:
    """(L, H): on a block of ``block`` tokens repeated twice (T = 2 * block), the mean weight each
    query i of the second copy (i = block .. 2 * block - 1) puts on key i - block + 1: its own
    token first appeared at i - block, and an induction head looks at what came next."""
    stacked = _stack(weights)
    T = stacked.shape[-1]
    if T != 2 * block:
        raise ValueError(f"the weights cover {T} tokens; a block of {block} repeated twice needs {2 * block}")
    queries = torch.arange(block, 2 * block)
    keys = queries - block + 1
    return stacked[..., queries, keys].mean(dim=(1, 3))


def repeated_block_batch(
    batch: int, length: int, vocab_size: int, generator: torch.Generator, shortest: int = 6, longest: int = 24
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that reward copying: each row is a random block of a random length in
    [shortest, longest], repeated until the row holds ``length`` tokens.

    Returns ids (batch, length) and a bool mask (batch, length - 1), True at the positions t whose
    next token can be copied: from the start of the second copy on, the current token ids[t]
    occurred one block earlier, and the target ids[t + 1] is what followed it there. A model
    that attends to a fixed offset cannot solve this, because the block length changes from row
    to row; it must find the earlier occurrence of the current token and copy what followed it,
    as an induction head does.
    """
    if not 2 <= shortest <= longest < length:
        raise ValueError(f"need 2 <= shortest <= longest < length, got {shortest}, {longest}, {length}")
    ids = torch.empty(batch, length, dtype=torch.long)
    copyable = torch.zeros(batch, length - 1, dtype=torch.bool)
    block_lengths = torch.randint(shortest, longest + 1, (batch,), generator=generator)
    for row, block in enumerate(block_lengths.tolist()):
        block_ids = torch.randint(0, vocab_size, (block,), generator=generator)
        ids[row] = block_ids.repeat(length // block + 1)[:length]
        copyable[row, block:] = True
    return ids, copyable


@contextlib.contextmanager
def heads_scaled(model: MiniGPT, head_mask: torch.Tensor | None) -> Iterator[MiniGPT]:
    """Within the block, multiply each head's output by ``head_mask`` (n_layer, n_head) before
    ``c_proj`` mixes the heads (0 removes a head, 1 keeps it): each layer's
    ``CausalSelfAttention.head_mask`` is set, and restored afterwards. None changes nothing."""
    config = model.config
    if head_mask is not None and tuple(head_mask.shape) != (config.n_layer, config.n_head):
        raise ValueError(f"head_mask must have shape (n_layer, n_head) = {(config.n_layer, config.n_head)}, "
                         f"got {tuple(head_mask.shape)}")
    layers = [cast(Block, block).attn for block in model.h]
    before = [attention.head_mask for attention in layers]
    try:
        for layer, attention in enumerate(layers):
            attention.head_mask = None if head_mask is None else head_mask[layer]
        yield model
    finally:
        for attention, mask in zip(layers, before):
            attention.head_mask = mask


def copying_loss(
    model: MiniGPT, ids: torch.Tensor, copyable: torch.Tensor, head_mask: torch.Tensor | None = None
) -> float:
    """Mean next-token loss (nats) over the ``copyable`` positions of ``repeated_block_batch`` rows,
    with each head's output scaled by ``head_mask`` (n_layer, n_head) if given (``heads_scaled``)."""
    with torch.no_grad(), heads_scaled(model, head_mask):
        logits = model(ids[:, :-1])
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return losses[copyable].mean().item()


def train_copying_model(
    config: GPTConfig, steps: int, batch: int = 64, learning_rate: float = 1e-3, eval_every: int = 25, seed: int = 0
) -> tuple[MiniGPT, dict[str, list[float]]]:
    """Train a fresh MiniGPT (``config``, on the CPU) through the ``Trainer``, with AdamW at
    PyTorch's defaults (betas (0.9, 0.999), weight decay 0.01 on every weight), a constant learning
    rate and no clipping, on ``batch`` rows of ``repeated_block_batch`` of
    ``config.context_length`` tokens, drawn with a generator seeded by ``seed``: the plain
    next-token loss on every position.

    The default rate was measured on a 2-layer, 64-wide, 4-head model with a vocabulary of 64 and
    batches of 64 x 64 tokens: at 1e-3 the copying loss falls suddenly around step 200 (seeds 0 and
    1); at 3e-3 it only drifts down for 1,500 steps and no induction head forms.

    Every ``eval_every`` steps, and after the last, the loss on the copyable positions of one fixed
    held-out batch is recorded (to 5 decimals, as the Trainer records scores): history["step"]
    and history["copying_loss"]. Seeded: the same call gives the same model on the same machine.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
    torch.manual_seed(seed)  # the weights the Trainer would build from this seed
    model = MiniGPT(config)
    held_out = repeated_block_batch(
        batch, config.context_length + 1, config.vocab_size, torch.Generator().manual_seed(seed + 1)
    )

    def copying_batches(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ids, _ = repeated_block_batch(n, config.context_length + 1, config.vocab_size, generator)
        return ids[:, :-1], ids[:, 1:]

    constant_rate = TrainConfig(model=config, batch_size=batch, max_steps=steps, warmup_steps=0,
                                learning_rate=learning_rate, min_lr=learning_rate, grad_clip=None,
                                eval_interval=eval_every, checkpoint_interval=steps, precision="float32", seed=seed)
    with tempfile.TemporaryDirectory(prefix="course-copying-") as folder:
        trainer = Trainer(constant_rate, None, Path(folder), eval_fn=lambda _: copying_loss(model, *held_out),
                          progress=False, device="cpu", model=model, batches=copying_batches,
                          optimizer=torch.optim.AdamW(model.parameters(), lr=learning_rate))
        trainer.run()
    return model.eval(), {"step": trainer.history["eval_step"], "copying_loss": trainer.history["val_bpb"]}


@torch.no_grad()
def ablation_effects(model: MiniGPT, windows: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Knock out each head in turn (its output multiplied by 0 before ``c_proj``) and measure the
    next-token loss on ``windows`` (N, T + 1) token ids.

    Returns the loss with every head (nats per token) and an (L, H) table of how much each
    head's removal raises it (negative: the model does better without that head here).
    """
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (N, T + 1) token ids with T >= 1, got {tuple(windows.shape)}")
    config = model.config
    inputs, targets = windows[:, :-1], windows[:, 1:]
    everything = torch.ones(config.n_layer, config.n_head, device=inputs.device)
    base = model(inputs, targets).item()
    effects = torch.zeros(config.n_layer, config.n_head, device="cpu")  # filled from .item()
    for layer in range(config.n_layer):
        for head in range(config.n_head):
            mask = everything.clone()
            mask[layer, head] = 0.0
            with heads_scaled(model, mask):
                effects[layer, head] = model(inputs, targets).item() - base
    return base, effects


def token_labels(tokenizer, ids: torch.Tensor) -> list[str]:
    """Readable labels for the tokens of (T,) ``ids``: each token's text with spaces shown as
    '␣' and newlines as '⏎', so that a heatmap's axes can be read."""
    return [tokenizer.decode([int(i)]).replace(" ", "␣").replace("\n", "⏎") for i in ids]


def plot_attention(weights: torch.Tensor, labels: list[str], ax=None, title: str = ""):
    """A (T, T) attention map as a heatmap, queries down and keys across, labelled with tokens."""
    import matplotlib.pyplot as plt

    if weights.dim() != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] != len(labels):
        raise ValueError(f"weights must be (T, T) with T = len(labels) = {len(labels)}, got {tuple(weights.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.32 * len(labels) + 1.5, 0.32 * len(labels) + 1))
    image = ax.imshow(weights.float().numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    return image


def plot_head_grid(weights: list[torch.Tensor], batch_row: int = 0, figure_width: float = 12.0):
    """Every head of every layer as a small map: a grid of L rows and H columns."""
    import matplotlib.pyplot as plt

    stacked = _stack(weights)[:, batch_row]  # (L, H, T, T)
    L, H = stacked.shape[:2]
    cell = figure_width / H
    fig, axes = plt.subplots(L, H, figsize=(figure_width, cell * L), squeeze=False)
    for layer in range(L):
        for head in range(H):
            ax = axes[layer, head]
            ax.imshow(stacked[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=9)
    fig.supxlabel("in each map: key (attended to), left to right", fontsize=10)
    fig.supylabel("in each map: query (attending), top to bottom", fontsize=10)
    fig.tight_layout()
    return fig


def plot_score_table(table: torch.Tensor, title: str, ax=None, fmt: str = ".2f", cmap: str = "viridis"):
    """An (L, H) table of scores as a heatmap with each value written in its cell."""
    import matplotlib.pyplot as plt

    if table.dim() != 2:
        raise ValueError(f"table must be (L, H), got {tuple(table.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * table.shape[1] + 1.5, 0.5 * table.shape[0] + 1))
    image = ax.imshow(table.float().numpy(), cmap=cmap)
    for layer, row in enumerate(table.tolist()):
        for head, value in enumerate(row):
            ax.text(head, layer, format(value, fmt), ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(table.shape[1]))
    ax.set_yticks(range(table.shape[0]))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title)
    return image


# The explorer's names, re-exported: the explorer imports this module, so the import waits for
# the first use of one of them (a top-level import would be a cycle).
EXPLORER_NAMES = ("ALL_HEADS", "AttentionExplorer", "HeadView", "attention_html", "head_view", "scores_html")


def __getattr__(name: str):
    if name in EXPLORER_NAMES:
        from . import attention_explorer  # here, not at the top: attention_explorer imports this module

        return getattr(attention_explorer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
