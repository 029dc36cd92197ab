"""The sampling playground: sliders for the sampling settings, the next-token distribution
before and after filtering, and a seeded continuation.

The logic is pure (``distribution_rows``, ``distribution_html``, ``seeded_continuation``) and
unit-tested; ``SamplingPlayground`` only wires ipywidgets sliders to it.

Taught in: lesson 03.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from .adapters import model_device, next_token_logits
from .generation import generate
from .sampling import GenerationSettings


@dataclass(frozen=True)
class TokenRow:
    """One candidate next token: its text and probability before and after filtering."""

    token: str
    before: float
    after: float


@torch.no_grad()
def distribution_rows(
    model: torch.nn.Module, tokenizer, input_ids: torch.Tensor, settings: GenerationSettings, top_n: int = 12
) -> tuple[list[TokenRow], int]:
    """The ``top_n`` most likely next tokens after ``input_ids`` (1, T) with their probability
    before and after ``settings``' penalties and filters, and how many tokens survive filtering."""
    logits = next_token_logits(model, input_ids)
    mask = torch.ones_like(input_ids)
    before = logits.softmax(-1)[0]
    after = settings.process(logits, input_ids, mask, input_ids.shape[1]).softmax(-1)[0]
    top = torch.topk(before, min(top_n, before.numel())).indices
    rows = [TokenRow(tokenizer.decode([int(i)]), float(before[i]), float(after[i])) for i in top]
    return rows, int((after > 0).sum())


def _bar(probability: float, colour: str) -> str:
    return f"<div style='background:{colour};width:{200 * probability:.0f}px;height:10px'></div>"


def distribution_html(rows: list[TokenRow], kept: int) -> str:
    """An HTML table with a bar per probability; filtered-out tokens are greyed out."""
    lines = [f"<p><b>{kept}</b> tokens can be drawn after filtering</p>",
             "<table><tr><th>token</th><th>before</th><th></th><th>after</th><th></th></tr>"]
    for row in rows:
        kept_row = row.after > 0
        lines.append(
            f"<tr style='color:{'#000' if kept_row else '#999'}'><td><code>{html.escape(repr(row.token))}</code></td>"
            f"<td>{row.before:.3f}</td><td>{_bar(row.before, '#68a')}</td>"
            f"<td>{row.after:.3f}</td><td>{_bar(row.after, '#2a7' if kept_row else '#bbb')}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def seeded_continuation(
    model: torch.nn.Module, tokenizer, input_ids: torch.Tensor, settings: GenerationSettings, seed: int = 0
) -> str:
    """The text sampled after ``input_ids`` with ``settings`` and a generator seeded with ``seed``."""
    generator = torch.Generator(input_ids.device).manual_seed(seed)
    out = generate(model, input_ids, generation_config=settings, generator=generator)
    return tokenizer.decode(out[0, input_ids.shape[1]:])


class SamplingPlayground:
    """Sliders for temperature, top-k, top-p, min-p and repetition penalty, and a seed box; shows
    the filtered next-token distribution and a seeded continuation, and updates whenever a
    control changes.

    ``display(playground.widget)`` in a notebook. ``playground.sliders[name].value = x`` moves a
    slider from code, exactly as dragging it does; ``playground.seed_box.value = n`` types a seed.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, prompt: str, max_new_tokens: int = 30, seed: int = 0):
        import ipywidgets as widgets

        self.model, self.tokenizer = model, tokenizer
        self.input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model_device(model))
        self.max_new_tokens = max_new_tokens
        style = {"description_width": "150px"}
        layout = widgets.Layout(width="450px")
        self.sliders = {
            "temperature": widgets.FloatSlider(value=1.0, min=0.05, max=2.0, step=0.05, description="temperature"),
            "top_k": widgets.IntSlider(value=0, min=0, max=100, description="top_k (0 = off)"),
            "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top_p"),
            "min_p": widgets.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.01, description="min_p"),
            "repetition_penalty": widgets.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.05,
                                                      description="repetition_penalty"),
        }
        for slider in self.sliders.values():
            slider.style, slider.layout = style, layout
            slider.observe(self.update, names="value")
        self.seed_box = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                               style=style, layout=widgets.Layout(width="300px"))
        self.seed_box.observe(self.update, names="value")
        self.distribution = widgets.HTML()
        self.continuation = widgets.HTML()
        self.widget = widgets.VBox([*self.sliders.values(), self.seed_box, self.distribution, self.continuation])
        self.update()

    def settings(self) -> GenerationSettings:
        values = {name: slider.value for name, slider in self.sliders.items()}
        values["min_p"] = values["min_p"] or None
        return GenerationSettings(do_sample=True, max_new_tokens=self.max_new_tokens, **values)

    def update(self, change: dict | None = None) -> None:
        """Recompute both panels from the sliders' current values."""
        settings = self.settings()
        rows, kept = distribution_rows(self.model, self.tokenizer, self.input_ids, settings)
        self.rows, self.kept = rows, kept
        self.distribution.value = distribution_html(rows, kept)
        self.text = seeded_continuation(self.model, self.tokenizer, self.input_ids, settings, self.seed_box.value)
        self.continuation.value = f"<pre>{html.escape(self.text)}</pre>"
