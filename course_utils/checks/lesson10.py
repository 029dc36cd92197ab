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
    to_id = bpe.byte_ids()
    return [{"words": words} for words in (
        {},  # no words: no pairs
        {(1,): 3},  # one byte: no pair at all
        {(1, 2): 1},
        {(1, 2): 4},  # weighted by the word's count
        {(7, 7, 7): 2},  # the pair (7, 7) at two overlapping positions: both count
        {(1, 2): 1, (3, 4): 1},  # no pair across two words
        {(1, 2, 1, 2): 1, (2, 1): 5},
        # bytes, not characters: an emoji is four, a Greek letter two
        {tuple(to_id[b] for b in "🎭🎭".encode()): 2, tuple(to_id[b] for b in " λόγος".encode()): 3},
        random_words,
    )]


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _without_overlap(word: Word, pair: tuple[int, int]) -> int:
    """How many times ``pair`` occurs in ``word`` when occurrences may not share an id."""
    return len(word) - len(bpe.merge(word, pair, -1))


def _compare_pair_counts(actual: tuple, expected: tuple, case: dict) -> str | None:
    """What is off in the learner's counts: a pair no word holds, a pair missed, or a count, with a
    question about the count's two ingredients (the word's count, every position)."""
    mine, theirs = dict(actual), dict(expected)
    if mine == theirs:
        return None
    if extra := sorted(set(mine) - set(theirs)):
        return (f"it counts the pair {extra[0]}, which no word holds side by side. Does a pair run from the end of "
                "one word into the start of the next?")
    pair = next(pair for pair in sorted(theirs) if mine.get(pair) != theirs[pair])
    if pair not in mine:
        return f"the pair {pair} is missing, though a word holds it ({_times(theirs[pair])} in all)"
    words = case["words"]
    if mine[pair] == sum(count * _without_overlap(word, pair) for word, count in words.items()):
        why = "as if two occurrences that share an id counted once: counting is not merging"
    elif mine[pair] == bpe.pair_counts({word: 1 for word in words})[pair]:
        why = "as if each word occurred once: what does a word's count say?"
    else:
        why = "what should each position where the pair stands add?"
    return f"the pair {pair} is counted {_times(mine[pair])} instead of {_times(theirs[pair])}, {why}"


PAIR_COUNTS = Exercise(
    name="pair_counts", lesson="10", subject="pair_counts_by_hand", cases=_pair_count_cases,
    answer=lambda subject, words: tuple(sorted(dict(subject(dict(words))).items())),
    reference=lambda words: tuple(sorted(bpe.pair_counts(words).items())), compare=_compare_pair_counts)
"""``subject(words)``: {word (tuple of ids): count} -> Counter {(a, b): n}, each adjacent pair of
each word counted at every position, weighted by the word's count (compared as sorted items)."""


def _compare_merged(actual: tuple, expected: tuple, case: dict) -> str | None:
    """How the learner's merge differs: how many occurrences it merged, or which ones."""
    if actual == expected:
        return None
    new_id, word, pair = case["new_id"], case["word"], case["pair"]
    if any(token not in word for token in actual if token != new_id):
        return f"it holds ids the word does not: the result is made of the word's ids and {new_id} only"
    made, due = actual.count(new_id), expected.count(new_id)
    overlapping = sum(a == pair[0] and b == pair[1] for a, b in zip(word, word[1:])) > due
    if made > due and overlapping:
        return (f"{made} merges where {due} fit: two occurrences of the pair that share an id cannot both merge. "
                "Which one does a left-to-right scan reach first?")
    if made > due:
        return f"{made} merge(s) where the pair {pair}, in that order, occurs {_times(due)}"
    if made < due:
        return f"{made} merge(s) where {due} fit: is every occurrence of the pair replaced, up to the word's end?"
    if len(actual) > len(expected):
        return f"{len(actual)} ids instead of {len(expected)}: the two ids a merge replaces must not stay behind"
    if len(actual) < len(expected):
        return f"{len(actual)} ids instead of {len(expected)}: is every id outside the pair kept, the last one too?"
    return (f"{made} merge(s), as expected, but at other positions: where occurrences overlap, which one does a "
            "left-to-right scan merge?")


MERGE = Exercise(
    name="merge", lesson="10", subject="merge_by_hand", compare=_compare_merged,
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
        ([""], 260),  # no text: no merges
        (["a"], 260),  # one byte: no pair to merge, so training stops early
        (["aaa"], 259),  # overlapping pairs: "aaa" merges to (aa, a), not (aa, aa)
        (["zzz", "ab"], 258),  # (z, z) twice in "zzz", at overlapping positions: it beats (a, b)
        (["aaa", "bc", "bc"], 258),  # (a, a) counts twice in "aaa": a tie with (b, c), won by the smaller ids
        (["aaaa"], 259),
        (["ax"] * 2 + [" x"] * 2, 258),  # a tie: the smaller pair of ids, not the smaller bytes
        (["zz"] * 5 + ["zzq"] * 2 + [" q"] * 2, 259),  # a tie after a merge: smaller ids, not string order
        (["low lower lowest", "newer wider"], 270),  # merges never cross a pre-token's edge
        (["λόγος λόγος"], 262),  # another script: its characters are two bytes each
        (["🎭🎭🎭"], 262),  # an emoji is four bytes, and three in a row overlap once merged
        (["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"], 290),
    )]


def _library_merges(texts: list[str], vocab_size: int) -> tuple[tuple[int, int], ...]:
    return tuple(bpe.from_tokenizer(train_bpe(texts, vocab_size).to_str()).merges)


def _spelled(pair: tuple[int, int], vocab: list[bytes]) -> str:
    """A pair as the bytes of its two tokens (ids the vocabulary does not hold shown as ids)."""
    return " + ".join(repr(vocab[token]) if 0 <= token < len(vocab) else f"id {token}" for token in pair)


def _compare_merges(actual: tuple, expected: tuple, case: dict) -> str | None:
    """The first merge that differs, with what each pair counts at that point of the library's run
    (a tie, a rarer pair, or a pair no pre-token holds), or how many merges there should be."""
    if actual == expected:
        return None
    library = bpe.train_bpe_by_hand(case["texts"], case["vocab_size"])
    words = dict(bpe.word_counts(case["texts"]))
    for step, (mine, theirs) in enumerate(zip(actual, expected)):
        if mine != theirs:
            counts = bpe.pair_counts(words)
            head = (f"merge {step + 1}{f' (the first {step} agree)' if step else ''}: "
                    f"{_spelled(mine, library.vocab)} instead of {_spelled(theirs, library.vocab)}")
            known = all(0 <= token < len(library.vocab) for token in mine)
            if step == 0 and known and not any(
                    library.vocab[mine[0]] + library.vocab[mine[1]] in text.encode() for text in case["texts"]):
                return (f"{head}, bytes the texts do not hold. Is each byte spelled by its id in the vocabulary "
                        "(the byte_ids table), not by its value?")
            if counts[mine] == 0:
                return (f"{head}, a pair no pre-token holds side by side at that point. Do merges join one "
                        "pre-token to the next, or overlap?")
            if counts[mine] == counts[theirs]:
                return f"{head}: both occur {_times(counts[theirs])}, a tie. What decides a tie?"
            return (f"{head}: it occurs {_times(counts[mine])}, the other {_times(counts[theirs])}. Are the pairs "
                    "counted in every pre-token, as often as it occurs, at every position?")
        words = {bpe.merge(word, theirs, library.merges[theirs]): count for word, count in words.items()}
    return (f"{len(actual)} merges instead of {len(expected)} (the first {min(len(actual), len(expected))} agree). "
            f"How many new tokens fit in a vocabulary of {case['vocab_size']}, and when must training stop early?")


TRAIN_BPE_BY_HAND = Exercise(
    name="train_bpe_by_hand", lesson="10", subject="train_bpe_by_hand", cases=_training_cases,
    answer=lambda subject, texts, vocab_size: tuple(tuple(pair) for pair in subject(list(texts), vocab_size)),
    reference=_library_merges, compare=_compare_merges)
"""``subject(texts, vocab_size)``: the merges, in order, that byte-level BPE learns from ``texts``
(each a pair of ids whose merge gets the next id), as ``tokenizer.train_bpe`` learns them."""


def _encode_cases() -> list[dict]:
    small = {(1, 2): 257, (2, 3): 258, (257, 3): 259}
    rank_first = {(2, 3): 257, (1, 2): 258}  # learned earlier wins, wherever it sits
    play = bpe.from_tokenizer(train_bpe(["To be, or not to be, that is the question"] * 3, 300).to_str())
    other_scripts = bpe.from_tokenizer(train_bpe(["Ἐν ἀρχῇ ἦν ὁ λόγος, λόγος 🎭🎭🎭"] * 2, 300).to_str())
    to_id = bpe.byte_ids()
    return [{"word": word, "merges": merges} for word, merges in (
        ((), small), ((5,), small), ((1, 2), small), ((4, 4), small), ((1, 2, 3), small), ((1, 2, 3), rank_first),
        ((3, 1, 2, 1, 2), small), ((1, 2, 3, 1, 2, 3), small),
        (tuple(to_id[b] for b in b" question"), play.merges),
        (tuple(to_id[b] for b in b" that"), play.merges),
        (tuple(to_id[b] for b in " λόγος".encode()), other_scripts.merges),
        (tuple(to_id[b] for b in "🎭🎭🎭".encode()), other_scripts.merges),
        (tuple(to_id[b] for b in "🎭".encode()), play.merges),  # bytes no merge joins: they stay as they are
    )]


def _library_encode_word(word: Word, merges: dict[tuple[int, int], int]) -> Word:
    return bpe.encode_word_naive(word, merges, {pair: rank for rank, pair in enumerate(merges)})


def _compare_encoded(actual: tuple, expected: tuple, case: dict) -> str | None:
    """How the learner's ids differ: other bytes, a merge left undone, or merges in another order."""
    if actual == expected:
        return None
    spelled = dict(enumerate(bpe.byte_vocab()))
    for (left, right), new_id in case["merges"].items():
        spelled[new_id] = spelled[left] + spelled[right]
    if b"".join(spelled.get(token, b"?") for token in actual) != b"".join(spelled[token] for token in case["word"]):
        return "its tokens spell other bytes than the word: a merge replaces a pair by that pair's own new id"
    if left_over := [pair for pair in zip(actual, actual[1:]) if pair in case["merges"]]:
        return (f"it stops with the adjacent pair {left_over[0]} still in it, and that pair has a merge: when is "
                "a word finished?")
    return ("every merge that could be done is done, but in another order, so other tokens result. When several "
            "pairs could merge, which goes first?")


ENCODE = Exercise(
    name="encode", lesson="10", subject="encode_word_by_hand", cases=_encode_cases,
    answer=lambda subject, word, merges: tuple(subject(word, dict(merges))),
    reference=_library_encode_word, compare=_compare_encoded)
"""``subject(word, merges)``: one pre-token's byte ids merged with ``merges`` (pair -> new id, in the
order learned): while some adjacent pair has a merge, merge the earliest-learned one (a tuple)."""

EXERCISES = (PAIR_COUNTS, MERGE, TRAIN_BPE_BY_HAND, ENCODE)
