"""The course's byte-level BPE tokenizer, GPT-2's scheme trained on the training plays.

Byte-level means every string, in any script, maps to tokens with no unknown token: the 256
byte values are the base alphabet and BPE merges frequent pairs on top of them, splitting
words first with GPT-2's pre-tokenisation pattern. Training is deterministic: the same text
and vocabulary size give the same merges.

Taught in: lesson 05 (the tokenizer the bundled models were trained with).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

END_OF_TEXT = "<|endoftext|>"


def train_bpe(texts: list[str], vocab_size: int = 4096) -> Tokenizer:
    """Train a byte-level BPE tokenizer with ``vocab_size`` tokens, ``<|endoftext|>`` as id 0."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {END_OF_TEXT}), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_for_transformers(tokenizer: Tokenizer, folder: str | Path, context_length: int) -> None:
    """Save ``tokenizer`` so that ``AutoTokenizer.from_pretrained(folder)`` loads it."""
    from transformers import TokenizersBackend

    wrapped = TokenizersBackend(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=context_length,
        clean_up_tokenization_spaces=False,
    )
    wrapped.save_pretrained(str(folder))
