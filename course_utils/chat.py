"""Talking to a tuned model: its reply to a conversation, streamed token by token.

``chat_reply`` renders the conversation with the chat template, generates until the
end-of-turn token with ``generate``'s settings and rules, and hands each new piece of text to a
callback; ``chat_prompt_ids`` tokenizes the conversation so that what a learner types is always
text: a typed ``<|end|>`` cannot end their turn (prompt injection). ``tuned_chat_model`` makes a
model to talk to in seconds. The chat box widget over them is ``chat_box.py`` (``ChatBox``,
re-exported here).

Taught in: lesson 09.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .adapters import model_context, model_device
from .data import load_corpus
from .generation import generate
from .hub import load_model
from .model import MiniGPT
from .post_training import (
    CHAT_TOKENS,
    END_OF_TURN,
    ROLES,
    add_chat_tokens,
    next_speaker_examples,
    next_speaker_pair,
    pair_batches,
    render_chat,
)
from .train import fine_tuning_trainer


class TextCallbackStreamer:
    """A ``generate`` streamer that decodes the new tokens as they come and calls
    ``on_text(piece)`` with each new piece of text (special tokens skipped). The prompt, which
    ``generate`` sends first, is not shown."""

    def __init__(self, tokenizer, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.prompt_seen = False
        self.ids: list[int] = []
        self.text = ""

    def put(self, token_ids: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids += token_ids.flatten().tolist()
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.text) and not text.endswith("\ufffd"):  # wait for a whole character
            self.on_text(text[len(self.text):])
            self.text = text

    def end(self) -> None:
        """Nothing to flush: every whole character was already sent."""


def chat_prompt_ids(
    tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = True, split_special_tokens: bool = True,
) -> list[int]:
    """The token ids of ``render_chat(messages, add_generation_prompt)`` (messages validated as
    ``render_chat`` does), built piece by piece: the template's own markers (each role's token,
    ``<|end|>``) become their special ids, while each message's content, with the newlines around
    it, is tokenized as plain text (transformers' ``split_special_tokens=True``): a special token's
    string typed in a message (``<|end|>``, ``<|assistant|>``, ``<|endoftext|>``) is ordinary
    characters, several ordinary tokens, never the special id, so the user cannot end their turn
    or start the assistant's. The text between two special tokens is tokenized on its own, as
    ``tokenizer(text)`` tokenizes it (it splits at special tokens first, and the chat tokens strip
    no whitespace), so for contents without any special token's string the ids are exactly
    ``tokenizer(render_chat(...)).input_ids``. The tokenizer must have the chat tokens
    (``add_chat_tokens``); the pieces get no tokens from its post-processor (the course's
    tokenizers add none).

    ``split_special_tokens=False`` is the vulnerable way, kept to show the difference: exactly
    ``tokenizer(render_chat(messages, add_generation_prompt)).input_ids``, where a typed ``<|end|>``
    is the end-of-turn id."""
    text = render_chat(messages, add_generation_prompt)  # validates the messages
    missing = [token for token in CHAT_TOKENS if token not in tokenizer.all_special_tokens]
    if missing:  # (either way: without them the turn markers would be plain text, <|end|> no end)
        raise ValueError(f"tokenizer lacks the chat tokens {missing}: add them with add_chat_tokens(tokenizer, model)")
    if not split_special_tokens:
        return tokenizer(text).input_ids
    *role_ids, end = tokenizer.convert_tokens_to_ids(list(CHAT_TOKENS))
    role_id = dict(zip(ROLES, role_ids))

    def plain(segment: str) -> list[int]:
        return tokenizer(segment, add_special_tokens=False, split_special_tokens=True).input_ids

    ids = []
    for message in messages:
        ids += [role_id[message["role"]], *plain("\n" + message["content"]), end, *plain("\n")]
    if add_generation_prompt:
        ids += [role_id["assistant"], *plain("\n")]
    return ids


@torch.no_grad()
def chat_reply(
    model: torch.nn.Module,
    tokenizer,
    messages: list[dict[str, str]],
    max_new_tokens: int = 40,
    *,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
    split_special_tokens: bool = True,
    **settings,
) -> str:
    """The assistant's next turn after ``messages``: generated after the chat template's
    generation prompt until the end-of-turn token (its ``eos_token_id``) or ``max_new_tokens``,
    by ``generate`` with its rules and defaults for ``settings`` (``do_sample``, ``temperature``,
    ``top_k``, ``top_p``, ``min_p``, the penalties, or a whole ``generation_config``): greedy
    unless ``do_sample=True``, which samples after the temperature and top-k (default 50) with a
    generator seeded by ``seed``; greedy ignores the temperature, and sampling refuses 0.
    ``on_text`` receives the reply piece by piece as it is generated. Returns the reply's text.

    The prompt is ``chat_prompt_ids(tokenizer, messages, split_special_tokens=split_special_tokens)``:
    by default a chat token typed in a message is plain text, not a turn marker;
    ``split_special_tokens=False`` tokenizes the rendered text whole (the injectable way)."""
    device = model_device(model)
    prompt = torch.tensor([chat_prompt_ids(tokenizer, messages, split_special_tokens=split_special_tokens)],
                          device=device)
    context = model_context(model)
    if prompt.shape[1] + max_new_tokens > context:
        raise ValueError(f"the conversation ({prompt.shape[1]} tokens) and max_new_tokens ({max_new_tokens}) "
                         f"exceed the model's context of {context} tokens; start a new conversation")
    streamer = TextCallbackStreamer(tokenizer, on_text or (lambda piece: None))
    out = generate(model, prompt, max_new_tokens, eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN),
                   generator=torch.Generator(device).manual_seed(seed), streamer=streamer, **settings)
    return tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)


def tuned_chat_model(steps: int = 40, seed: int = 0) -> tuple[MiniGPT, object]:
    """The bundled model with the chat tokens, fine-tuned on lesson 09's next-speaker task of the
    training plays (answer-only loss, batch 8, ``train.fine_tuning_trainer``) for ``steps``
    steps, at a learning rate of 1e-3: higher than the lesson's 3e-4 over 100 steps, so that 40
    steps (about 10 s on a laptop CPU) teach it to answer and end its turn (at 30 some replies
    still run on). Returns the model (eval mode, on the CPU) and its tokenizer. The classroom's
    chat page uses it."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    hf_model, tokenizer = load_model("shakespeare-gpt", device="cpu")
    model = MiniGPT.from_hf(hf_model)
    end = add_chat_tokens(tokenizer, model)[-1]
    pairs = [next_speaker_pair(example, tokenizer) for example in next_speaker_examples(load_corpus().train)]
    with tempfile.TemporaryDirectory(prefix="course-chat-") as folder:
        fine_tuning_trainer(model, pair_batches(pairs, pad_token_id=end), Path(folder), steps, learning_rate=1e-3,
                            batch_size=8, seed=seed, device="cpu").run()
    return model.eval(), tokenizer


def __getattr__(name: str):
    if name == "ChatBox":  # re-exported; chat_box imports this module, so the import waits for the first use
        from .chat_box import ChatBox  # here, not at the top: chat_box imports this module

        return ChatBox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
