"""Model quality on the validation plays: bits per byte and draft/target agreement.

Bits per byte (bpb) is the model's total negative log-likelihood of the validation text, in
bits, divided by the text's length in UTF-8 bytes. Unlike loss per token it does not depend
on the tokenizer, so models with different vocabularies compare fairly.

Each validation play is scored as ``<|endoftext|> play``: every token of the play is predicted
from the start-of-text marker and what precedes it. Plays longer than the context are scored
with a sliding window whose stride is half the context, so every scored token after the first
window sees at least half a context of history.

``python -m course_utils evaluate --model shakespeare-gpt`` prints both numbers.

Taught in: lesson 05 (bits per byte), lesson 07 (the draft's greedy agreement), lesson 08.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .adapters import LogitsFn, logits_fn, model_context, model_device
from .data import load_corpus
from .hub import load_model


def sliding_windows(n_tokens: int, context: int) -> Iterator[tuple[int, int, int]]:
    """Windows ``(start, end, first_scored)`` over positions 0..n_tokens-1.

    Position p (p >= 1) is predicted from the window's tokens before it. Every position from 1
    on is scored exactly once; after the first window, each scored position has at least
    ``context // 2`` tokens of history inside its window.
    """
    if context < 2:
        raise ValueError(f"context must be at least 2, got {context}")
    stride = context // 2
    start, first_scored = 0, 1
    while True:
        end = min(start + context, n_tokens)
        yield start, end, first_scored
        if end == n_tokens:
            return
        first_scored = end
        start = end - (context - stride)


@torch.no_grad()
def token_nll(
    forward: LogitsFn, ids: list[int], context: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Negative log-likelihood in nats of each of ``ids[1:]`` given what precedes it (float64, on
    the CPU); the windows are run on ``device``, where the model is."""
    tokens = torch.tensor(ids, dtype=torch.long, device="cpu")
    nll = torch.empty(len(ids) - 1, dtype=torch.float64, device="cpu")
    for start, end, first_scored in sliding_windows(len(ids), context):
        window = tokens[start:end].unsqueeze(0).to(device)
        logits = forward(window)[0, :-1].float().cpu()  # predictions for positions start+1 .. end-1
        targets = tokens[start + 1 : end]
        losses = F.cross_entropy(logits, targets, reduction="none").double()
        offset = first_scored - (start + 1)
        nll[first_scored - 1 : end - 1] = losses[offset:]
    return nll


def bits_per_byte(model: torch.nn.Module, tokenizer, texts: list[str], context: int | None = None) -> float:
    """Bits per UTF-8 byte of ``texts`` (each scored as ``<|endoftext|> text``)."""
    context = context or model_context(model)
    forward = logits_fn(model)
    total_nats, total_bytes = 0.0, 0
    for text in texts:
        ids = [tokenizer.eos_token_id] + tokenizer.encode(text, verbose=False)
        total_nats += float(token_nll(forward, ids, context, model_device(model)).sum())
        total_bytes += len(text.encode("utf-8"))
    return total_nats / math.log(2) / total_bytes


def bits_per_byte_blocks(model: torch.nn.Module, tokenizer, text: str, blocks: int,
                         context: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``text`` scored as ``bits_per_byte`` scores it (``<|endoftext|> text``, every token with the
    context before it), then cut into ``blocks`` runs of consecutive tokens (equal counts, the last
    run takes the rest): each run's bits per byte (blocks,) and its bytes (blocks,). The mean
    weighted by the bytes is ``bits_per_byte(model, tokenizer, [text])``; the spread of the runs,
    or of the differences between two models' runs, gives a standard error. A run's bytes are
    those of the text decoded up to its end, less the runs before it."""
    ids = [tokenizer.eos_token_id] + tokenizer.encode(text, verbose=False)
    if not 1 <= blocks <= len(ids) - 1:
        raise ValueError(f"blocks must be between 1 and the text's {len(ids) - 1} tokens, got {blocks}")
    nll = token_nll(logits_fn(model), ids, context or model_context(model), model_device(model))
    ends = [len(nll) * (block + 1) // blocks for block in range(blocks)]
    decoded = [0] + [len(tokenizer.decode(ids[1 : end + 1]).encode("utf-8")) for end in ends]
    nats = torch.stack([run.sum() for run in torch.tensor_split(nll, ends[:-1])])
    sizes = torch.tensor(decoded[1:], dtype=torch.float64) - torch.tensor(decoded[:-1], dtype=torch.float64)
    return nats / math.log(2) / sizes, sizes


@torch.no_grad()
def greedy_agreement(
    draft: torch.nn.Module, target: torch.nn.Module, tokenizer, texts: list[str], context: int
) -> float:
    """Fraction of positions where draft and target predict the same most likely next token,
    over the tokens of ``texts`` in non-overlapping windows of ``context`` tokens."""
    draft_fn, target_fn = logits_fn(draft), logits_fn(target)
    device = model_device(target)
    agree = total = 0
    for text in texts:
        ids = torch.tensor([tokenizer.eos_token_id] + tokenizer.encode(text, verbose=False), device=device)
        for start in range(0, len(ids), context):
            window = ids[start : start + context].unsqueeze(0)
            same = draft_fn(window).argmax(-1) == target_fn(window).argmax(-1)
            agree += int(same.sum())
            total += same.numel()
    return agree / total


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils evaluate``: a model's bits per byte on the validation plays, and
    optionally a draft's greedy agreement with it."""
    parser = argparse.ArgumentParser(prog="python -m course_utils evaluate",
                                     description="A model's bits per byte on the validation plays.")
    parser.add_argument("--model", default="shakespeare-gpt", help="bundled name, hub id or folder")
    parser.add_argument("--draft", default=None, help="also report this draft's greedy agreement")
    args = parser.parse_args(argv)
    model, tokenizer = load_model(args.model)
    texts = list(load_corpus().validation.values())
    context = model_context(model)
    print(f"{args.model}: {bits_per_byte(model, tokenizer, texts, context):.4f} bits per byte "
          f"on the validation plays (context {context}, stride {context // 2})")
    if args.draft:
        draft, _ = load_model(args.draft)
        rate = greedy_agreement(draft, model, tokenizer, texts, context)
        print(f"{args.draft}: agrees with {args.model}'s greedy next token on {rate:.1%} of positions")
    return 0
