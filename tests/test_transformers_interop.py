"""Every path from the course to ``transformers``, run with warnings turned into failures.

A new ``transformers`` release inside the range ``pyproject.toml`` allows may deprecate a name
the course uses. Its message goes to stderr, which nbval compares, so a lesson fails although
nothing in the course changed (transformers 5.24 did this to lesson 04). These tests call each
interop path once and fail on any warning: from Python's ``warnings`` module, or from
``transformers``' own logger, which ``-W error`` does not see and which prints each message only
once per process (its memory of what it printed is cleared first).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import pytest
import torch
from test_llama import random_hf

from course_utils import MiniGPT, MiniLlama, generate, load_model, load_tokenizer
from course_utils.adapters import logits_fn
from course_utils.attention import attention_weights
from course_utils.compat import (
    ASSISTED_GENERATION_MESSAGES,
    cache_argument,
    hidden_transformers_messages,
    output_cache,
)
from course_utils.kv_cache import kv_cache_bytes
from course_utils.measure import StepTimer, transformers_generate_exactly
from course_utils.speculative import drafting_like_ours


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect, into the yielded list, every warning raised inside the block: through Python's
    ``warnings`` and through ``transformers``' logger (WARNING and above)."""
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # otherwise a message printed by an earlier test is not printed again
    hf_logging.info_once.cache_clear()
    handler = _Records()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        hf_logger.removeHandler(handler)
        messages += [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
        messages += [f"transformers logger, {r.levelname}: {r.getMessage()} ({r.pathname}:{r.lineno})"
                     for r in handler.records]


@pytest.fixture
def no_warnings():
    """Fail the test if the code under it warns."""
    with captured_warnings() as messages:
        yield
    assert not messages, "the course triggered warnings:\n" + "\n".join(messages)


@pytest.fixture(scope="module")
def bundled():
    target, tokenizer = load_model()
    draft, _ = load_model("shakespeare-gpt-draft")
    prompt = tokenizer("ROMEO.\nBut soft", return_tensors="pt").input_ids
    return target, draft, tokenizer, prompt


def test_loading_the_bundled_models_and_tokenizer(no_warnings):
    target, tokenizer = load_model()
    draft, _ = load_model("shakespeare-gpt-draft")
    assert load_tokenizer().get_vocab() == tokenizer.get_vocab()
    assert not target.training and not draft.training
    assert target.config.vocab_size == draft.config.vocab_size == len(tokenizer)


def test_generate_with_a_transformers_model(bundled, no_warnings):
    from transformers import TextStreamer

    target, _, tokenizer, prompt = bundled
    greedy = generate(target, prompt, max_new_tokens=8)
    assert torch.equal(greedy, target.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8,
                                               do_sample=False, pad_token_id=tokenizer.eos_token_id))
    sampled = generate(target, prompt, max_new_tokens=8, do_sample=True, top_k=20, top_p=0.9,
                       generator=torch.Generator().manual_seed(0))
    beams = generate(target, prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2, length_penalty=0.5)
    assert sampled.shape == (1, prompt.shape[1] + 8) and beams.shape == (2, prompt.shape[1] + 8)
    padding = load_tokenizer()
    padding.pad_token, padding.padding_side = padding.eos_token, "left"
    batch = padding(["ROMEO.\n", "JULIET.\nO Romeo"], return_tensors="pt", padding=True)
    assert generate(target, batch.input_ids, max_new_tokens=4, attention_mask=batch.attention_mask).shape[0] == 2
    streamed = generate(target, prompt, max_new_tokens=4, streamer=TextStreamer(tokenizer, skip_prompt=True))
    assert torch.equal(streamed, greedy[:, :prompt.shape[1] + 4])


def test_transformers_generate_with_a_course_stopping_criterion(bundled, no_warnings):
    target, _, _, prompt = bundled
    timer = StepTimer()
    out = transformers_generate_exactly(target, prompt, 5, stopping_criteria=[timer])
    assert out.shape[1] == prompt.shape[1] + 5 and len(timer.times) == 5


def test_the_tokenizer_paths_use_the_transformers_5_names(bundled, monkeypatch, tmp_path, no_warnings):
    """StopOnText decodes a batch with ``decode`` (not ``batch_decode``), add_chat_tokens adds
    ``extra_special_tokens`` (not ``additional_special_tokens``), and a tokenizer saved by
    ``save_for_transformers`` loads back as a ``TokenizersBackend``."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, TokenizersBackend

    from course_utils.generation import StopOnText
    from course_utils.post_training import CHAT_TOKENS, add_chat_tokens
    from course_utils.tokenizer import save_for_transformers

    target, _, _, prompt = bundled
    tokenizer = load_tokenizer()

    def refused(*args, **kwargs):
        raise AssertionError("batch_decode was called")

    monkeypatch.setattr(type(tokenizer), "batch_decode", refused)
    rows = torch.cat([prompt, prompt]).clone()
    rows[1, -1] = tokenizer.eos_token_id
    assert StopOnText(tokenizer, ["soft"], prompt_length=0)(rows).tolist() == [True, False]
    added_with = []
    original = type(tokenizer).add_special_tokens
    monkeypatch.setattr(type(tokenizer), "add_special_tokens",
                        lambda self, tokens, **kw: added_with.append(sorted(tokens)) or original(self, tokens, **kw))
    add_chat_tokens(tokenizer, MiniGPT.from_hf(target))
    assert added_with == [["extra_special_tokens"]] and set(CHAT_TOKENS) <= set(tokenizer.all_special_tokens)
    save_for_transformers(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), tmp_path, context_length=64)
    assert isinstance(AutoTokenizer.from_pretrained(str(tmp_path)), TokenizersBackend)


def test_attention_weights_of_a_transformers_model(bundled, no_warnings):
    target, _, _, prompt = bundled
    ours = MiniGPT.from_hf(target)
    for theirs, mine in zip(attention_weights(target, prompt), attention_weights(ours, prompt)):
        assert (theirs - mine).abs().max() < 1e-5


def test_the_kv_cache_of_a_transformers_model(bundled, no_warnings):
    target, _, _, prompt = bundled
    cache = output_cache(target(prompt, use_cache=True))
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == kv_cache_bytes(MiniGPT.from_hf(target).config, prompt.shape[1])


def test_a_cache_passed_back_into_a_transformers_model(bundled, no_warnings):
    target, _, _, prompt = bundled
    full = target(prompt).logits
    cache = output_cache(target(prompt[:, :-2], use_cache=True))
    rest = target(prompt[:, -2:], use_cache=True, **cache_argument(target, cache)).logits
    assert (rest - full[:, -2:]).abs().max() < 1e-4


def test_assisted_generation_at_our_drafting_policy_with_its_messages_hidden(bundled, no_warnings):
    target, draft, tokenizer, prompt = bundled
    like_ours = drafting_like_ours(draft, 5)
    assert (like_ours.generation_config.num_assistant_tokens, like_ours.generation_config.num_assistant_tokens_schedule,
            like_ours.generation_config.assistant_confidence_threshold) == (5, "constant", 0.0)
    assert draft.generation_config.assistant_confidence_threshold != 0.0  # the original is untouched
    arguments = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                     pad_token_id=tokenizer.eos_token_id)
    with hidden_transformers_messages(*ASSISTED_GENERATION_MESSAGES):
        assisted = target.generate(prompt, assistant_model=like_ours, **arguments)
    assert torch.equal(assisted, target.generate(prompt, **arguments))
    with pytest.raises(ValueError, match="num_assistant_tokens must be a positive integer"):
        drafting_like_ours(draft, 0)


def test_hidden_messages_are_only_the_named_ones():
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.generation.utils")
    with captured_warnings() as messages:
        with hidden_transformers_messages("about its own call"):
            logger.warning("a message about its own call")
            logger.warning("a message the caller must see")
        logger.warning("about its own call, after the block")
    assert len(messages) == 2 and "the caller must see" in messages[0] and "after the block" in messages[1]
    with pytest.raises(ValueError, match="fragments"):
        with hidden_transformers_messages():
            pass


def test_speculative_decoding_with_transformers_models(bundled, no_warnings):
    target, draft, _, prompt = bundled
    plain = generate(target, prompt, max_new_tokens=12)
    assert torch.equal(generate(target, prompt, max_new_tokens=12, assistant_model=draft), plain)
    assert torch.equal(generate(target, prompt, max_new_tokens=12, assistant_model=MiniGPT.from_hf(draft)), plain)
    assert torch.equal(generate(target, prompt, max_new_tokens=12, prompt_lookup_num_tokens=3), plain)


def test_transformers_own_assisted_generation_gives_the_same_tokens(bundled):
    """Lesson 07 and the benchmark time transformers' assisted generation against ours. Not under
    ``no_warnings``: in transformers 5.24 its candidate generator itself passes a
    ``generation_config`` together with ``max_new_tokens`` to the draft's ``generate()`` and logs a
    deprecation of that; no call of the course's does it."""
    target, draft, tokenizer, prompt = bundled
    assisted = target.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                               pad_token_id=tokenizer.eos_token_id, assistant_model=draft)
    assert torch.equal(assisted, generate(target, prompt, max_new_tokens=12))


def test_minigpt_to_and_from_transformers(bundled, no_warnings):
    target, _, _, prompt = bundled
    mini = MiniGPT.from_hf(target)
    back = mini.to_hf()
    assert (back(prompt).logits - target(prompt).logits).abs().max() < 1e-4
    assert (logits_fn(target)(prompt) - mini(prompt)).abs().max() < 1e-4


@pytest.mark.parametrize("kind, window", [("llama", None), ("mistral", 7)])
def test_minillama_to_and_from_transformers(kind, window, no_warnings):
    shape = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    hf_model = random_hf(kind, sliding_window=window, **shape)
    ids = torch.randint(0, 211, (1, 20), generator=torch.Generator().manual_seed(0))
    mini = MiniLlama.from_hf(hf_model)
    assert (mini(ids) - hf_model(ids).logits).abs().max() < 1e-4
    assert (mini.to_hf()(ids).logits - hf_model(ids).logits).abs().max() < 1e-4
    ones = torch.ones_like(ids)
    assert torch.equal(generate(mini, ids, max_new_tokens=6),
                       hf_model.generate(ids, attention_mask=ones, max_new_tokens=6, do_sample=False))


def test_the_capture_sees_what_transformers_logs(bundled):
    """The check itself: reading the output's old field name logs a deprecation through
    transformers' logger on releases that renamed it, and the capture must see it."""
    target, _, _, prompt = bundled
    output = target(prompt, use_cache=True)
    if "cache" not in getattr(output, "__dataclass_fields__", {}):
        pytest.skip("this transformers release has not renamed past_key_values")
    with captured_warnings() as messages:
        _ = output.past_key_values
    assert any("deprecated" in message for message in messages), messages
    with captured_warnings() as messages:
        warnings.warn("a plain Python warning", DeprecationWarning, stacklevel=1)
    assert len(messages) == 1 and "a plain Python warning" in messages[0]
