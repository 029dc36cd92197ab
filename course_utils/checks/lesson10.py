"""Lesson 10's exercises: counting adjacent pairs, merging a pair, the BPE training loop, encoding.

Taught in: lesson 10's workbook (``exercises/10_tokenizers``).
"""

from __future__ import annotations

import random

from .. import bpe
from ..tokenizer import train_bpe
from .harness import Exercise

Word = tuple[int, ...]


def _pair_count_cases() -> list[dict]:
    draws = random.Random(10)
    random_words = {tuple(draws.randrange(1, 6) for _ in range(draws.randrange(1, 7))): draws.randrange(1, 9)
                    for _ in range(12)}
    return [{"words": words} for words in (
        {(1,): 3},  # one byte: no pair at all
        {(1, 2): 1},
        {(1, 2): 4},  # weighted by the word's count
        {(7, 7, 7): 2},  # the pair (7, 7) at two overlapping positions: both count
        {(1, 2): 1, (3, 4): 1},  # no pair across two words
        {(1, 2, 1, 2): 1, (2, 1): 5},
        random_words,
    )]


PAIR_COUNTS = Exercise(
    name="pair_counts", lesson="10", subject="pair_counts_by_hand", cases=_pair_count_cases,
    answer=lambda subject, words: tuple(sorted(dict(subject(dict(words))).items())),
    reference=lambda words: tuple(sorted(bpe.pair_counts(words).items())))
"""``subject(words)``: {word (tuple of ids): count} -> Counter {(a, b): n}, each adjacent pair of
each word counted at every position, weighted by the word's count (compared as sorted items)."""


MERGE = Exercise(
    name="merge", lesson="10", subject="merge_by_hand",
    cases=lambda: [{"word": word, "pair": pair, "new_id": 300} for word, pair in (
        ((), (1, 2)), ((1,), (1, 2)), ((1, 2), (1, 2)), ((2, 1), (1, 2)), ((1, 2, 3), (2, 3)),
        ((7, 7, 7), (7, 7)),  # overlapping: the left one only
        ((7, 7, 7, 7), (7, 7)), ((1, 2, 1, 2, 1), (1, 2)), ((3, 1, 2, 2, 1, 2), (1, 2)), ((5, 5, 5, 5, 5), (5, 5)))],
    answer=lambda subject, word, pair, new_id: tuple(subject(word, pair, new_id)),
    reference=lambda word, pair, new_id: bpe.merge(word, pair, new_id))
"""``subject(word, pair, new_id)``: ``word`` with each occurrence of ``pair``, left to right and
without overlap, replaced by ``new_id`` (compared as a tuple)."""


def _training_cases() -> list[dict]:
    return [{"texts": texts, "vocab_size": size} for texts, size in (
        (["ab"], 258),
        (["aaa"], 259),  # overlapping pairs: "aaa" merges to (aa, a), not (aa, aa)
        (["aaa", "bc", "bc"], 258),  # (a, a) counts twice in "aaa": a tie with (b, c), won by the smaller ids
        (["aaaa"], 259),
        (["ax"] * 2 + [" x"] * 2, 258),  # a tie: the smaller pair of ids, not the smaller bytes
        (["zz"] * 5 + ["zzq"] * 2 + [" q"] * 2, 259),  # a tie after a merge: smaller ids, not string order
        (["low lower lowest", "newer wider"], 270),  # merges never cross a pre-token's edge
        (["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"], 290),
    )]


def _library_merges(texts: list[str], vocab_size: int) -> tuple[tuple[int, int], ...]:
    return tuple(bpe.from_tokenizer(train_bpe(texts, vocab_size).to_str()).merges)


TRAIN_BPE_BY_HAND = Exercise(
    name="train_bpe_by_hand", lesson="10", subject="train_bpe_by_hand", cases=_training_cases,
    answer=lambda subject, texts, vocab_size: tuple(tuple(pair) for pair in subject(list(texts), vocab_size)),
    reference=_library_merges)
"""``subject(texts, vocab_size)``: the merges, in order, that byte-level BPE learns from ``texts``
(each a pair of ids whose merge gets the next id), as ``tokenizer.train_bpe`` learns them."""


def _encode_cases() -> list[dict]:
    small = {(1, 2): 257, (2, 3): 258, (257, 3): 259}
    rank_first = {(2, 3): 257, (1, 2): 258}  # learned earlier wins, wherever it sits
    play = bpe.from_tokenizer(train_bpe(["To be, or not to be, that is the question"] * 3, 300).to_str())
    to_id = bpe.byte_ids()
    return [{"word": word, "merges": merges} for word, merges in (
        ((5,), small), ((1, 2), small), ((4, 4), small), ((1, 2, 3), small), ((1, 2, 3), rank_first),
        ((3, 1, 2, 1, 2), small), ((1, 2, 3, 1, 2, 3), small),
        (tuple(to_id[b] for b in b" question"), play.merges),
        (tuple(to_id[b] for b in b" that"), play.merges),
    )]


def _library_encode_word(word: Word, merges: dict[tuple[int, int], int]) -> Word:
    return bpe.encode_word_naive(word, merges, {pair: rank for rank, pair in enumerate(merges)})


ENCODE = Exercise(
    name="encode", lesson="10", subject="encode_word_by_hand", cases=_encode_cases,
    answer=lambda subject, word, merges: tuple(subject(word, dict(merges))),
    reference=_library_encode_word)
"""``subject(word, merges)``: one pre-token's byte ids merged with ``merges`` (pair -> new id, in the
order learned): while some adjacent pair has a merge, merge the earliest-learned one (a tuple)."""

EXERCISES = (PAIR_COUNTS, MERGE, TRAIN_BPE_BY_HAND, ENCODE)
