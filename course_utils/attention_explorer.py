"""The attention explorer: a text box and layer and head dropdowns over a heatmap of one head's
attention, with its scores on the text.

The logic is pure (``head_view``, ``attention_html``, ``scores_html``) and unit-tested;
``AttentionExplorer`` only wires ipywidgets to it. The heatmap is an HTML table, so a live
callback needs no figure and the page's cells can be found and read. The weights and scores are
``attention.py``'s, which re-exports these names.

Taught in: lesson 06.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from .adapters import attention_weights, layers_and_heads
from .attention import head_scores, token_labels

ALL_HEADS = "all heads"


@dataclass(frozen=True)
class HeadView:
    """What the explorer shows for one text, layer and head (or the mean of all heads)."""

    labels: list[str]  # token labels, T of them
    weights: torch.Tensor  # (T, T)
    scores: dict[str, float]  # each of SCORE_NAMES for this head (mean over heads for all heads)


def head_view(
    model: torch.nn.Module, tokenizer, text: str, layer: int, head: int | None, max_tokens: int = 40
) -> HeadView:
    """Attention of ``layer``'s ``head`` (None: the mean of the layer's heads) on the first
    ``max_tokens`` tokens of ``text``, with token labels and the head's scores on that text."""
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens]
    if ids.shape[1] < 2:
        raise ValueError(f"text must have at least 2 tokens, got {ids.shape[1]}: {text!r}")
    weights = attention_weights(model, ids)
    if not 0 <= layer < len(weights):
        raise ValueError(f"layer must be in [0, {len(weights) - 1}], got {layer}")
    n_head = weights[layer].shape[1]
    if head is not None and not 0 <= head < n_head:
        raise ValueError(f"head must be in [0, {n_head - 1}] or None (all heads), got {head}")
    tables = head_scores(weights)
    if head is None:
        shown = weights[layer][0].mean(0)
        scores = {name: table[layer].mean().item() for name, table in tables.items()}
    else:
        shown = weights[layer][0, head]
        scores = {name: table[layer, head].item() for name, table in tables.items()}
    return HeadView(token_labels(tokenizer, ids[0]), shown, scores)


def attention_html(view: HeadView) -> str:
    """The view's (T, T) weights as an HTML table: one row per query, one column per key, each
    cell shaded by its weight (hover shows the value); future keys are left blank."""
    header = "".join(f"<th style='writing-mode:vertical-rl;font-weight:normal'>{html.escape(label)}</th>"
                     for label in view.labels)
    rows = []
    for query, label in enumerate(view.labels):
        cells = []
        for key in range(len(view.labels)):
            if key > query:
                cells.append("<td></td>")
                continue
            weight = float(view.weights[query, key])
            cells.append(f"<td title='{weight:.3f}' style='background:rgba(40,90,160,{weight:.3f});"
                         f"width:14px;height:14px'></td>")
        row_label = f"<th style='text-align:right;font-weight:normal'>{html.escape(label)}</th>"
        rows.append(f"<tr>{row_label}{''.join(cells)}</tr>")
    return (f"<table class='attention-map' style='border-collapse:collapse;font-size:11px'>"
            f"<tr><th></th>{header}</tr>{''.join(rows)}</table>")


def scores_html(view: HeadView) -> str:
    """The view's scores as a one-row HTML table."""
    cells = "".join(f"<td><b>{name.replace('_', ' ')}</b>: <span class='score-{name}'>{value:.3f}</span></td>"
                    for name, value in view.scores.items())
    return f"<table class='attention-scores'><tr>{cells}</tr></table>"


class AttentionExplorer:
    """A text box and layer and head dropdowns; shows the chosen head's attention on the text as a
    heatmap, with its scores, and updates whenever a control changes.

    ``display(explorer.widget)`` in a notebook. ``explorer.controls[name].value = x`` changes a
    control from code, exactly as a learner does. ``head=None`` (``ALL_HEADS`` in the dropdown)
    shows the mean of the layer's heads.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, text: str, layer: int = 0, head: int | None = 0):
        import ipywidgets as widgets

        self.model, self.tokenizer = model, tokenizer
        n_layer, n_head = layers_and_heads(model)
        self.controls = {
            "text": widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="600px")),
            "layer": widgets.Dropdown(options=list(range(n_layer)), value=layer, description="layer"),
            # Not None for "all heads": a Dropdown reads None as "nothing selected" and shows blank.
            "head": widgets.Dropdown(options=[(ALL_HEADS, ALL_HEADS)] + [(str(h), h) for h in range(n_head)],
                                     value=ALL_HEADS if head is None else head, description="head"),
        }
        for control in self.controls.values():
            control.observe(self.update, names="value")
        self.heatmap = widgets.HTML()
        self.scores = widgets.HTML()
        self.widget = widgets.VBox([*self.controls.values(), self.scores, self.heatmap])
        self.update()

    def update(self, change: dict | None = None) -> None:
        """Recompute the view from the controls' current values."""
        head = self.controls["head"].value
        self.view = head_view(self.model, self.tokenizer, self.controls["text"].value,
                              self.controls["layer"].value, None if head == ALL_HEADS else head)
        self.heatmap.value = attention_html(self.view)
        self.scores.value = scores_html(self.view)

