"""Byte-level BPE from scratch: the trainer and encoders behind ``tokenizer.train_bpe``, by hand.

The pieces, in the order a tokenizer uses them:

1. ``pretokenize`` splits text into pre-tokens with GPT-2's pattern (words with their leading
   space, runs of digits, runs of punctuation, runs of whitespace). Merges never cross a
   pre-token's edge.
2. Each pre-token becomes its UTF-8 bytes, one id per byte (ids 1..256; id 0 is
   ``<|endoftext|>``).
3. Training (``train_bpe_by_hand``) counts the adjacent pairs of ids over all pre-tokens,
   weighted by how often each pre-token occurs, merges the most frequent pair into a new token,
   and repeats until the vocabulary is full.
4. Encoding (``encode_naive``, ``encode``) replays the merges on a new text, lowest rank first.
5. ``decode`` joins the tokens' bytes and reads them as UTF-8.

Every rule here is the one ``tokenizers`` follows (``tests/test_bpe.py`` proves the merges and
the ids equal): the same merges as ``train_bpe`` on the same texts, the same ids as the bundled
tokenizer.

Taught in: lesson 10 (a tokenizer from scratch, proved equal to the library's).
"""

from __future__ import annotations

import heapq
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from .tokenizer import END_OF_TEXT

Pair = tuple[int, int]
Word = tuple[int, ...]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte value: byte -> one character.

    Bytes that are printable and not a space (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand
    for themselves; the other 68 take the characters from U+0100 on, in byte order (so the
    space, byte 32, is ``Ġ`` and the newline, byte 10, is ``Ċ``). ``tokenizers`` writes its
    vocabulary and merges in these characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in mapping]
    mapping.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return mapping


BYTES_TO_UNICODE = bytes_to_unicode()
UNICODE_TO_BYTES = {char: byte for byte, char in BYTES_TO_UNICODE.items()}


def byte_vocab() -> list[bytes]:
    """The vocabulary before any merge: ``<|endoftext|>`` (id 0), then the 256 single bytes.

    The bytes come in the order of their stand-in characters (``bytes_to_unicode``), the order
    ``tokenizers``' trainer sorts its alphabet in: ``!`` is id 1, byte 0 (``Ā``) is id 189.
    """
    by_character = sorted(range(256), key=lambda byte: BYTES_TO_UNICODE[byte])
    return [END_OF_TEXT.encode()] + [bytes([byte]) for byte in by_character]


def byte_ids() -> dict[int, int]:
    """Byte value -> its id in ``byte_vocab()``."""
    return {vocab_bytes[0]: token_id for token_id, vocab_bytes in enumerate(byte_vocab()) if token_id > 0}


# Unicode's White_Space characters: what ``\s`` matches in ``tokenizers``' regular expressions.
# Python's own ``\s`` also matches U+001C..U+001F, which ``tokenizers`` does not.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


@cache
def _category_class(first_letter: str) -> str:
    """A character-class body (``a-zA-Z...``) matching every code point whose Unicode general
    category starts with ``first_letter`` ("L": letters, "N": numbers), as ``\\p{L}`` does."""
    ranges: list[str] = []
    start = None
    for code in range(sys.maxunicode + 2):
        inside = code <= sys.maxunicode and unicodedata.category(chr(code)).startswith(first_letter)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
            start = None
    return "".join(ranges)


@cache
def gpt2_pattern() -> re.Pattern[str]:
    """GPT-2's pre-tokenisation pattern, with the standard library's ``re``.

    GPT-2 writes it ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``:
    an English contraction, else letters with at most one space before them, else digits (any
    number), else other symbols, else whitespace; ``\\s+(?!\\S)`` leaves a run of whitespace's
    last space to start the next word. ``re`` has no ``\\p{L}``, so the letter and number classes
    are spelled out from ``unicodedata``.
    """
    letters, numbers, space = _category_class("L"), _category_class("N"), WHITESPACE
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{space}{letters}{numbers}]+"
        rf"|[{space}]+(?![^{space}])|[{space}]+"
    )


def pretokenize(text: str) -> list[str]:
    """``text`` cut into GPT-2's pre-tokens, left to right; joined back they give ``text``.

    The same cut as ``pre_tokenizers.ByteLevel(add_prefix_space=False)`` for every character in
    Python's Unicode database (``unicodedata.unidata_version``); a character Unicode assigned
    later is a symbol here, where ``tokenizers``' newer tables may know it as a letter.
    """
    return gpt2_pattern().findall(text)


def word_counts(texts: Iterable[str]) -> Counter[Word]:
    """How often each pre-token occurs in ``texts``, each pre-token as its bytes' ids."""
    to_id = byte_ids()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pretokenize(text))
    return Counter({tuple(to_id[byte] for byte in piece.encode()): count for piece, count in counts.items()})


def pair_counts(words: dict[Word, int]) -> Counter[Pair]:
    """Adjacent pairs of ids over ``words`` (word -> how often it occurs), each pair counted once
    per position, weighted by the word's count: ``{(1, 1, 1): 2}`` gives ``{(1, 1): 4}``."""
    counts: Counter[Pair] = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count
    return counts


def merge(word: Word, pair: Pair, new_id: int) -> Word:
    """``word`` with each occurrence of ``pair`` replaced by ``new_id``, scanning left to right
    without overlap: ``merge((a, a, a), (a, a), n) == (n, a)``."""
    merged: list[int] = []
    i = 0
    while i < len(word):
        if word[i : i + 2] == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


@dataclass
class ByteLevelBPE:
    """A trained tokenizer: ``vocab[id]`` is the token's bytes, ``merges`` maps each merged pair to
    its new id, in the order learned (a merge's position in the dict is its rank)."""

    vocab: list[bytes]
    merges: dict[Pair, int]


def _check_vocab_size(vocab_size: int) -> None:
    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {END_OF_TEXT}), got {vocab_size}")


def _add_merge(bpe: ByteLevelBPE, pair: Pair) -> int:
    """Record the merge of ``pair`` and return its token's id: a new id, or the existing one when
    another pair already made the same bytes (``tokenizers`` reuses it; the vocabulary does not
    grow)."""
    merged_bytes = bpe.vocab[pair[0]] + bpe.vocab[pair[1]]
    if merged_bytes in bpe.vocab:
        new_id = bpe.vocab.index(merged_bytes)
    else:
        new_id = len(bpe.vocab)
        bpe.vocab.append(merged_bytes)
    bpe.merges[pair] = new_id
    return new_id


def most_frequent_pair(counts: Counter[Pair]) -> Pair:
    """The pair with the highest count; among equal counts, the smallest pair of ids
    (``(5, 9)`` before ``(5, 12)`` before ``(6, 1)``), as ``tokenizers``' trainer breaks ties."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def train_bpe_by_hand_naive(texts: Iterable[str], vocab_size: int) -> ByteLevelBPE:
    """Byte-level BPE, the slow way: recount every pair after every merge.

    Until the vocabulary holds ``vocab_size`` tokens (or no pair is left): count the pairs,
    merge the most frequent (``most_frequent_pair``) in every word. The result equals
    ``train_bpe(texts, vocab_size)``.
    """
    _check_vocab_size(vocab_size)
    words = dict(word_counts(texts))
    bpe = ByteLevelBPE(vocab=byte_vocab(), merges={})
    while len(bpe.vocab) < vocab_size:
        counts = pair_counts(words)
        if not counts:
            break
        pair = most_frequent_pair(counts)
        new_id = _add_merge(bpe, pair)
        words = {merge(word, pair, new_id): count for word, count in words.items()}
    return bpe


class _PairIndex:
    """Pair counts kept up to date as words change, with a heap to find the most frequent.

    ``counts[pair]`` is exact; ``words_with[pair]`` holds every word index that contains the pair
    (and perhaps some that no longer do). The heap holds ``(-count, pair)`` entries, some stale:
    a popped entry whose count is out of date goes back with its current count.
    """

    def __init__(self, words: list[list[int]], frequencies: list[int]) -> None:
        self.counts: Counter[Pair] = Counter()
        self.words_with: defaultdict[Pair, set[int]] = defaultdict(set)
        for index, word in enumerate(words):
            self.add(index, word, frequencies[index])
        self.heap = [(-count, pair) for pair, count in self.counts.items()]
        heapq.heapify(self.heap)

    def add(self, index: int, word: list[int], frequency: int) -> None:
        """Count word ``index``'s pairs ``frequency`` more times (negative: fewer)."""
        for pair in zip(word, word[1:]):
            self.counts[pair] += frequency
            if frequency > 0:
                self.words_with[pair].add(index)

    def push_changed(self, pairs: Iterable[Pair]) -> None:
        """Put ``pairs`` on the heap with their current counts (those still present)."""
        for pair in pairs:
            if self.counts[pair] > 0:
                heapq.heappush(self.heap, (-self.counts[pair], pair))

    def pop_most_frequent(self) -> Pair | None:
        """The most frequent pair (ties: the smallest), or None when no pair is left."""
        while self.heap:
            negative_count, pair = heapq.heappop(self.heap)
            if -negative_count == self.counts[pair]:
                return pair
            if self.counts[pair] > 0:
                heapq.heappush(self.heap, (-self.counts[pair], pair))
        return None


def train_bpe_by_hand(texts: Iterable[str], vocab_size: int) -> ByteLevelBPE:
    """Byte-level BPE, fast: the same merges as ``train_bpe_by_hand_naive``, but after each merge
    only the words containing the merged pair are recounted.

    Subtracting a changed word's old pairs and adding its new ones keeps every count exact, so
    the most frequent pair (ties: the smallest pair of ids) is the one the naive loop picks.
    """
    _check_vocab_size(vocab_size)
    counted = word_counts(texts)
    words = [list(word) for word in counted]
    frequencies = list(counted.values())
    index = _PairIndex(words, frequencies)
    bpe = ByteLevelBPE(vocab=byte_vocab(), merges={})
    while len(bpe.vocab) < vocab_size:
        pair = index.pop_most_frequent()
        if pair is None:
            break
        new_id = _add_merge(bpe, pair)
        changed: set[Pair] = set()
        for word_index in index.words_with.pop(pair):
            word = words[word_index]
            merged = list(merge(tuple(word), pair, new_id))
            if len(merged) == len(word):
                continue  # a stale entry: the pair left this word in an earlier merge
            index.add(word_index, word, -frequencies[word_index])
            index.add(word_index, merged, frequencies[word_index])
            changed.update(zip(merged, merged[1:]))
            words[word_index] = merged
        del index.counts[pair]
        index.push_changed(changed)
    return bpe


def merge_ranks(bpe: ByteLevelBPE) -> dict[Pair, int]:
    """Each merged pair's rank: 0 for the pair learned first, 1 for the next, and so on."""
    return {pair: position for position, pair in enumerate(bpe.merges)}


def encode_word_naive(word: Word, merges: dict[Pair, int], rank: dict[Pair, int]) -> Word:
    """One pre-token's ids merged the slow way: while some adjacent pair has a merge, merge every
    occurrence of the pair of lowest ``rank`` (see ``merge_ranks``) into ``merges[pair]``."""
    while len(word) > 1:
        pair = min(zip(word, word[1:]), key=lambda pair: rank.get(pair, len(rank)))
        if pair not in rank:
            break
        word = merge(word, pair, merges[pair])
    return word


def encode_naive(text: str, bpe: ByteLevelBPE) -> list[int]:
    """``text``'s token ids: each pre-token's bytes, merged by ``encode_word_naive``."""
    to_id, rank = byte_ids(), merge_ranks(bpe)
    ids: list[int] = []
    for piece in pretokenize(text):
        ids.extend(encode_word_naive(tuple(to_id[byte] for byte in piece.encode()), bpe.merges, rank))
    return ids


class Encoder:
    """The fast encoder: each pre-token's merges found with a heap, and each distinct pre-token
    encoded once (a cache), as ``tokenizers`` does.

    A word is a linked list of symbols; the heap holds ``(rank, position)`` of every adjacent
    pair with a merge. The lowest rank pops first and, within a rank, the leftmost, which is
    the naive rule's left-to-right scan. A popped entry whose symbols changed since it was
    pushed is skipped.
    """

    def __init__(self, bpe: ByteLevelBPE) -> None:
        self.merges = bpe.merges
        self.rank = merge_ranks(bpe)
        self.to_id = byte_ids()
        self.cache: dict[str, list[int]] = {}

    def encode_word(self, word: list[int]) -> list[int]:
        """One pre-token's ids (a list of byte ids) merged lowest rank first."""
        symbols = list(word)
        after = [*range(1, len(symbols)), -1]  # index of the next live symbol, -1 at the end
        before = list(range(-1, len(symbols) - 1))
        heap = [(self.rank[pair], i, pair) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in self.rank]
        heapq.heapify(heap)
        while heap:
            _, i, pair = heapq.heappop(heap)
            j = after[i]
            if symbols[i] == -1 or j == -1 or (symbols[i], symbols[j]) != pair:
                continue  # this pair was broken up by an earlier merge
            symbols[i], symbols[j] = self.merges[pair], -1
            after[i] = after[j]
            if after[i] != -1:
                before[after[i]] = i
            self._push(heap, symbols, before[i], i)
            self._push(heap, symbols, i, after[i])
        return [symbol for symbol in symbols if symbol != -1]

    def _push(self, heap: list[tuple[int, int, Pair]], symbols: list[int], left: int, right: int) -> None:
        if left != -1 and right != -1 and (symbols[left], symbols[right]) in self.rank:
            pair = (symbols[left], symbols[right])
            heapq.heappush(heap, (self.rank[pair], left, pair))

    def encode(self, text: str) -> list[int]:
        """``text``'s token ids."""
        ids: list[int] = []
        for piece in pretokenize(text):
            if piece not in self.cache:
                self.cache[piece] = self.encode_word([self.to_id[byte] for byte in piece.encode()])
            ids.extend(self.cache[piece])
        return ids


def encode(text: str, bpe: ByteLevelBPE) -> list[int]:
    """``text``'s token ids, by ``Encoder`` (fast); the same ids as ``encode_naive``."""
    return Encoder(bpe).encode(text)


def decode(ids: Iterable[int], bpe: ByteLevelBPE) -> str:
    """The text of ``ids``: their tokens' bytes joined and read as UTF-8.

    ``decode(encode(text, bpe), bpe) == text`` for every string. A cut inside a character
    (some of its bytes only) gives U+FFFD, as ``errors="replace"`` does.
    """
    return b"".join(bpe.vocab[token_id] for token_id in ids).decode("utf-8", errors="replace")


def from_tokenizer(tokenizer_json: str) -> ByteLevelBPE:
    """A ``ByteLevelBPE`` read from ``tokenizers``' JSON (``Tokenizer.to_str()``, or the
    ``tokenizer.json`` a model folder holds): ids, bytes and merges in their order."""
    model = json.loads(tokenizer_json)["model"]
    vocab = [b""] * len(model["vocab"])
    for token, token_id in model["vocab"].items():
        vocab[token_id] = END_OF_TEXT.encode() if token == END_OF_TEXT else bytes(UNICODE_TO_BYTES[c] for c in token)
    ids = {token: token_id for token, token_id in model["vocab"].items()}
    merges: dict[Pair, int] = {}
    for entry in model["merges"]:
        left, right = entry.split(" ") if isinstance(entry, str) else entry
        merges[(ids[left], ids[right])] = ids[left + right]
    return ByteLevelBPE(vocab=vocab, merges=merges)
