"""The chat box: a conversation with a tuned model, its reply streamed token by token, a text
box, Send and Clear, and the sampling settings.

The logic is ``chat.chat_reply`` (pure and unit-tested); ``ChatBox`` only wires ipywidgets to
it and renders the conversation as HTML.

Taught in: lesson 09.
"""

from __future__ import annotations

import html

import torch

from .chat import chat_reply


class ChatBox:
    """A conversation, a text box, Send and Clear buttons, a "sample" box and a temperature
    slider. Send adds the learner's message, streams the model's reply into the conversation and
    keeps both for the next turn; Clear starts again. The reply is ``chat_reply``'s: greedy, or
    with "sample" ticked sampled at the slider's temperature (top-k 50, ``generate``'s default).

    ``display(chat.widget)`` in a notebook. ``chat.text_box.value = "..."`` then ``chat.send()``
    does from code exactly what typing and clicking Send do.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, system: str | None = None, max_new_tokens: int = 40):
        import ipywidgets as widgets

        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.system = system
        self.messages: list[dict[str, str]] = []
        # Several lines: a scene is a few speeches, each a name and a line (Enter starts a new line).
        self.text_box = widgets.Textarea(placeholder="Ask the model...", description="you", rows=5,
                                         layout=widgets.Layout(width="520px"))
        self.do_sample = widgets.Checkbox(value=False, description="sample (else greedy)")
        self.temperature = widgets.FloatSlider(value=1.0, min=0.1, max=1.5, step=0.1, description="temperature",
                                               style={"description_width": "initial"})
        self.send_button = widgets.Button(description="Send", button_style="primary")
        self.clear_button = widgets.Button(description="Clear")
        self.conversation = widgets.HTML()
        self.send_button.on_click(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.clear())
        controls = widgets.HBox([self.text_box, self.send_button, self.clear_button])
        self.widget = widgets.VBox([self.conversation, controls, widgets.HBox([self.do_sample, self.temperature])])
        self.clear()

    def clear(self) -> None:
        """Start a new conversation (keeping the system message)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self._show("")

    def send(self) -> str:
        """Send the text box's message; stream and return the reply. A message ``chat_reply``
        refuses (one that would overflow the model's context, say) enters neither the history nor
        the conversation: the box shows why, keeps the text to shorten, and returns ""."""
        text = self.text_box.value.strip()
        if not text:
            return ""
        messages = [*self.messages, {"role": "user", "content": text}]
        streamed: list[str] = []

        def show(piece: str) -> None:
            streamed.append(piece)
            self._show("".join(streamed), messages)

        try:
            reply = chat_reply(self.model, self.tokenizer, messages, self.max_new_tokens, seed=len(messages),
                               on_text=show, do_sample=self.do_sample.value, temperature=self.temperature.value)
        except ValueError as refusal:
            self._show("", self.messages, notice=f"Not sent: {refusal}")
            return ""
        self.text_box.value = ""
        self.messages = [*messages, {"role": "assistant", "content": reply}]
        self._show("")
        return reply

    def _show(self, partial_reply: str, messages: list[dict[str, str]] | None = None, notice: str = "") -> None:
        def paragraph(role: str, text: str) -> str:  # line breaks kept: a scene is several lines
            return f"<p><b>{html.escape(role)}:</b> {html.escape(text).replace(chr(10), '<br>')}</p>"

        rows = [paragraph(m["role"], m["content"]) for m in (self.messages if messages is None else messages)]
        if partial_reply:
            rows.append(paragraph("assistant", partial_reply))
        if notice:
            rows.append(f"<p class='notice'><i>{html.escape(notice)}</i></p>")
        self.conversation.value = "<div class='chat'>" + "\n".join(rows) + "</div>"
