"""The BPE built by hand (course_utils.bpe) equals tokenizers': pre-tokens, merges, ties and ids."""

import random
import unicodedata

import pytest
from tokenizers import pre_tokenizers

from course_utils.bpe import (
    BYTES_TO_UNICODE,
    Encoder,
    byte_vocab,
    decode,
    encode,
    encode_naive,
    from_tokenizer,
    merge,
    pair_counts,
    pretokenize,
    train_bpe_by_hand,
    train_bpe_by_hand_naive,
)
from course_utils.data import load_corpus
from course_utils.hub import load_tokenizer
from course_utils.tokenizer import train_bpe

PIECES = [
    *"abcXYZ0189 '\t\n\r.,!?-_",
    *["  ", "   ", "\n\n", "'s", "'ll", "'re", "é", "ß", "日本", "語", "Ⅻ", "²", "١٢", "\u0301", "😀", "👍🏽"],
    *["Привет", "مرحبا", "नमस्ते", "\x1c", "\xa0", "\u3000", "\u2028", "\x85", "\x00", "\x7f"],
]


def random_strings(seed: int, count: int) -> list[str]:
    """Strings of the PIECES above and of random code points Python's Unicode database knows."""
    rng = random.Random(seed)
    known = [chr(c) for c in range(0x30000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]

    def piece() -> str:
        return rng.choice(PIECES if rng.random() < 0.8 else known)

    return ["".join(piece() for _ in range(rng.randint(0, 40))) for _ in range(count)]


def merges_of(tokenizer):
    return list(from_tokenizer(tokenizer.to_str()).merges.items())


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer()


@pytest.fixture(scope="module")
def bundled_bpe(bundled):
    return from_tokenizer(bundled.backend_tokenizer.to_str())


def test_the_byte_ids_are_tokenizers_order():
    assert from_tokenizer(train_bpe(["x"], vocab_size=257).to_str()).vocab == byte_vocab()


def test_pretokenize_cuts_as_tokenizers_byte_level_does():
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in random_strings(seed=0, count=2000) + [load_corpus().validation["tempest"][:20_000]]:
        mine = ["".join(BYTES_TO_UNICODE[byte] for byte in piece.encode()) for piece in pretokenize(text)]
        assert mine == [piece for piece, _ in byte_level.pre_tokenize_str(text)], repr(text)
        assert "".join(pretokenize(text)) == text


def test_pair_counts_weigh_each_position_by_the_words_count():
    assert pair_counts({(1, 1, 1): 2, (1, 2): 3}) == {(1, 1): 4, (1, 2): 3}


def test_merge_is_left_to_right_without_overlap():
    assert merge((7, 7, 7), (7, 7), 300) == (300, 7)
    assert merge((7, 7, 7, 7), (7, 7), 300) == (300, 300)
    assert merge((1, 2, 3, 1, 2), (1, 2), 300) == (300, 3, 300)
    a = byte_vocab().index(b"a")
    library = train_bpe(["aa"], vocab_size=258)  # one merge: (a, a) -> 257
    assert library.encode("aaa").ids == [257, a] and library.encode("aaaaa").ids == [257, 257, a]


@pytest.mark.parametrize(
    "texts",
    [
        ["aaa"] * 2 + ["cb"] * 3,  # "aaa" holds the pair (a, a) twice: 4 beats 3
        ["aaaa", "aaa", "aaaaa"],  # overlapping runs
        ["zz"] * 5 + ["zzq"] * 2 + [" q"] * 2,  # tie: (Ġ, q) has ids (221, 82), (zz, q) (257, 82)
        ["ax"] * 2 + [" x"] * 2,  # tie: a is id 65, the space (Ġ) 221, though b" " < b"a"
        ["zy xw", "ba dc", "Āb ab", "xy ĀĀ"],
    ],
)
def test_ties_and_overlaps_merge_as_tokenizers_does(texts):
    expected = merges_of(train_bpe(texts, vocab_size=300))
    assert list(train_bpe_by_hand(texts, vocab_size=300).merges.items()) == expected
    assert list(train_bpe_by_hand_naive(texts, vocab_size=300).merges.items()) == expected


def test_the_tie_rule_is_the_smallest_pair_of_ids():
    merges = list(train_bpe_by_hand(["zz"] * 5 + ["zzq"] * 2 + [" q"] * 2, vocab_size=300).merges)
    space, q, z = (byte_vocab().index(bytes([byte])) for byte in b" qz")
    assert merges == [(z, z), (space, q), (257, q)]  # not "zzq" < "Ġq", the strings' order


def test_training_on_a_play_gives_tokenizers_merges():
    play = load_corpus().train["comedy_of_errors"]
    expected = merges_of(train_bpe([play], vocab_size=800))
    assert list(train_bpe_by_hand([play], vocab_size=800).merges.items()) == expected
    short = [play[:20_000]]
    assert list(train_bpe_by_hand_naive(short, vocab_size=320).merges.items()) == merges_of(train_bpe(short, 320))


def test_both_encoders_give_the_bundled_tokenizers_ids(bundled, bundled_bpe):
    encoder = Encoder(bundled_bpe)
    long_word = "".join(random.Random(2).choices("abcdefghijklmnopqrstuvwxyz", k=2000))  # many merges in one pre-token
    texts = [load_corpus().validation["hamlet"][:5000], long_word, *random_strings(seed=1, count=300)]
    for text in texts:
        expected = bundled.encode(text, verbose=False)
        assert encoder.encode(text) == expected, repr(text)
        assert encode_naive(text, bundled_bpe) == expected, repr(text)
        assert decode(expected, bundled_bpe) == text


def test_decode_round_trips_any_text_and_replaces_a_cut_character(bundled, bundled_bpe):
    for text in ["Thou art more lovely — ça va? 日本語 \t\n 👍🏽 مرحبا", "", "\x00\x1c\r\n"]:
        assert decode(encode(text, bundled_bpe), bundled_bpe) == text
    first_byte = byte_vocab().index("😀".encode()[:1])
    assert decode([first_byte], bundled_bpe) == "\ufffd" == bundled.decode([first_byte])


@pytest.mark.parametrize("train", [train_bpe_by_hand, train_bpe_by_hand_naive])
def test_a_vocabulary_smaller_than_the_bytes_is_refused(train):
    with pytest.raises(ValueError, match="vocab_size"):
        train(["hello"], vocab_size=256)
