# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 10 — Tokenizers: byte-level BPE from scratch
#
# Every lesson so far fed the model token ids, and took them from a tokenizer we never opened. The
# bundled models read a 4,096-token byte-level BPE, trained on the plays by the `tokenizers`
# library (`course_utils.tokenizer.train_bpe`). This lesson builds that tokenizer by hand and
# proves it equal to the library's, merge for merge and id for id:
#
# 1. text to bytes, and why a byte-level tokenizer has no unknown token;
# 2. pre-tokenisation, GPT-2's regular expression, and what it keeps apart;
# 3. the BPE training loop (count pairs, merge the most frequent, repeat), with the library's
#    tie-breaking rule, proved equal to `train_bpe` on the training plays;
# 4. encoding, the slow way and the fast way, against the library's Rust;
# 5. the vocabulary size: what it buys (shorter sequences) and what it costs (parameters);
# 6. pitfalls every tokenizer of this kind has, each shown on the bundled one.
#
# It needs no lesson before it except lesson 01's idea of a token. Everything runs offline on the
# course's corpus and bundled tokenizer.

# %%
from collections import Counter

import matplotlib.pyplot as plt
import torch

from course_utils import bpe, load_model
from course_utils.data import load_corpus
from course_utils.lesson import setup
from course_utils.timing import interleaved_rates, paired_ratio, print_medians
from course_utils.tokenizer import END_OF_TEXT, train_bpe

generator = setup(seed=0)
# The bundled model and its tokenizer (4,096 tokens), whatever COURSE_MODEL says: this lesson rebuilds
# the tokenizer trained on the plays, so it compares with that one.
hf_model, tokenizer = load_model("shakespeare-gpt")
corpus = load_corpus()
training_texts = [corpus.train[name] for name in sorted(corpus.train)]  # what the tokenizer was trained on
validation = "".join(corpus.validation[name] for name in sorted(corpus.validation))
print(f"{len(training_texts)} training texts, {sum(map(len, training_texts)):,} characters; "
      f"validation plays {sorted(corpus.validation)}, {len(validation):,} characters")

# %% [markdown]
# ## 1. Text to bytes
#
# A computer stores text as bytes. UTF-8, the encoding of nearly every file and web page, spends
# one byte on each ASCII character and two to four on the others. A tokenizer that starts from
# the 256 possible bytes can therefore spell *any* text, in any script, with no "unknown" token:
# the worst it can do is spend one token per byte.

# %%
samples = {"English": "To be, or not to be", "accented": "Où est passé le café ?",
           "Greek": "Ἐν ἀρχῇ ἦν ὁ λόγος", "Japanese": "吾輩は猫である", "emoji": "🎭👑🗡️"}
token_counts = {}
for name, text in samples.items():
    data = text.encode("utf-8")
    ids = tokenizer.encode(text)
    token_counts[name] = len(ids)
    print(f"{name:>9}: {len(text):2} characters, {len(data):2} bytes ({len(data) / len(text):.2f} per character), "
          f"{len(ids):2} tokens")
    assert tokenizer.decode(ids) == text  # every text comes back, exactly: no unknown token
assert token_counts["English"] < len(samples["English"]) / 2  # a few characters per token
assert token_counts["Japanese"] == len(samples["Japanese"].encode())  # one token per byte
print("bytes of 'é':", list("é".encode()), " bytes of '🎭':", list("🎭".encode()))

# %% [markdown]
# The bundled tokenizer was trained on English plays, so English costs few tokens (under one per
# two characters) and Japanese one token per byte (both asserted). Nothing is lost either way
# (asserted: every sample decodes back to itself).
#
# ## 2. Pre-tokenisation
#
# Before any merging, GPT-2 cuts the text into *pre-tokens* with a regular expression: an English
# contraction (`'s`, `'ll`...), else a run of letters with at most one space before it, else a run
# of digits, else a run of other symbols, else whitespace. Merges never cross a pre-token's edge,
# so " the" can become one token but "the." cannot. `bpe.pretokenize` is that rule; it gives the
# same cut as `tokenizers`' `ByteLevel` pre-tokenizer.

# %%
line = "  HAMLET. O, that this too too solid flesh would melt!\nThaw'd 1601 times..."
pieces = bpe.pretokenize(line)
print(pieces)
library_pieces = [piece for piece, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(line)]
assert [("".join(bpe.BYTES_TO_UNICODE[b] for b in piece.encode())) for piece in pieces] == library_pieces
assert "".join(pieces) == line  # nothing dropped

# %% [markdown]
# Spaces travel with the word after them (`' solid'`), a run of spaces leaves its last space to the
# next word, digits stay apart from letters, and punctuation forms its own pieces. The library shows
# each byte as a printable character (GPT-2's `bytes_to_unicode`: the space becomes `Ġ`); the
# assert maps ours the same way and compares.
#
# Why cut at all? Without pre-tokens, frequent combinations of a word and what follows it would
# become tokens of their own. Count how many distinct word-plus-punctuation strings the plays hold,
# against words alone:

# %%
whole_text = "".join(training_texts)
with_punctuation = Counter(whole_text.split())
words_only = Counter(piece.strip() for piece in bpe.pretokenize(whole_text) if piece.strip().isalpha())
print(f"{len(with_punctuation):,} distinct space-separated strings, {len(words_only):,} distinct words")
assert len(with_punctuation) > 2 * len(words_only)
print("one word, many strings:", [s for s in with_punctuation if s.strip(".,;:!?'") == "lord"][:8])

# %% [markdown]
# ## 3. Training: count, merge, repeat
#
# Byte-level BPE ([Sennrich et al. 2016](https://arxiv.org/abs/1508.07909), on bytes as in GPT-2) starts from the 256 bytes and learns
# merges. Each pre-token is a sequence of byte ids, and each distinct pre-token is counted once
# with its frequency. Then, until the vocabulary is full:
# 1. count every adjacent pair of ids, weighted by how often its pre-token occurs;
# 2. take the most frequent pair and give it a new id;
# 3. replace the pair by the new id everywhere.
#
# Write the two pieces. First the counts.

# %%
def pair_counts_by_hand(words: dict[tuple[int, ...], int]) -> Counter:
    """Counter {(a, b): n}: each adjacent pair of ids in each word, weighted by the word's count."""
    # EXERCISE pair_counts: Count each adjacent pair (a, b) of every word, weighted by the word's count.
    counts: Counter = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count
    return counts
    # END EXERCISE


example_words = {(1, 2, 3): 5, (2, 3): 2, (7, 7, 7): 1}
print(pair_counts_by_hand(example_words))
assert pair_counts_by_hand(example_words) == bpe.pair_counts(example_words)

# %% [markdown]
# Then the merge. Scan left to right and never overlap: in `(7, 7, 7)` the pair `(7, 7)` occurs
# twice, overlapping, and only the first is merged, giving `(new, 7)`. That is what `tokenizers`
# does (the tests check it on the library itself).

# %%
def merge_by_hand(word: tuple[int, ...], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """``word`` with each occurrence of ``pair``, scanning left to right without overlap, replaced by ``new_id``."""
    # EXERCISE merge: Replace each occurrence of pair, left to right and without overlap, by new_id.
    merged = []
    i = 0
    while i < len(word):
        if word[i : i + 2] == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)
    # END EXERCISE


print(merge_by_hand((7, 7, 7), (7, 7), 300), merge_by_hand((1, 2, 3, 1, 2), (1, 2), 300))
assert merge_by_hand((7, 7, 7), (7, 7), 300) == bpe.merge((7, 7, 7), (7, 7), 300) == (300, 7)

# %% [markdown]
# One rule is left: which pair wins a tie? `tokenizers` takes the highest count and, among equal
# counts, the smallest pair of ids: `(5, 9)` before `(5, 12)` before `(6, 1)`. Not the order of the
# strings, nor the order the pairs were seen. Two pre-tokens are enough to check it on the library:
# " q" and "zz" + "q" both occur twice, and the library merges the one with the smaller ids first.

# %%
tie_texts = ["zz"] * 5 + ["zzq"] * 2 + [" q"] * 2
library_tie = bpe.from_tokenizer(train_bpe(tie_texts, 259).to_str())
first_merges = [bpe.decode(list(pair), library_tie) for pair in library_tie.merges]
print("tokenizers merged, in order:", first_merges)
assert first_merges == ["zz", " q"]  # zz (5 + 2 = 7 times), then " q" (2) over "zz"+"q" (2): smaller ids

# %% [markdown]
# Now the loop. The learner's version recounts every pair after each merge, which is slow but
# plain; run it on one play.

# %%
def train_bpe_by_hand(texts: list[str], vocab_size: int) -> list[tuple[int, int]]:
    """The merges, in order, that byte-level BPE learns from ``texts`` until ``vocab_size`` tokens
    (or no pair is left): each a pair of ids whose merge gets the next id."""
    # EXERCISE train_bpe_by_hand: Count pairs, merge the most frequent (ties: smallest pair), repeat.
    words = dict(bpe.word_counts(texts))
    merges = []
    for new_id in range(len(bpe.byte_vocab()), vocab_size):
        counts = pair_counts_by_hand(words)
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = {merge_by_hand(word, best, new_id): count for word, count in words.items()}
    return merges
    # END EXERCISE


one_play = [corpus.train["comedy_of_errors"]]
my_merges = train_bpe_by_hand(one_play, 600)
library = bpe.from_tokenizer(train_bpe(one_play, 600).to_str())
print(f"{len(my_merges)} merges by hand; the first ten:", [bpe.decode(list(pair), library) for pair in my_merges[:10]])
same = sum(mine == theirs for mine, theirs in zip(my_merges, library.merges))
print(f"equal to train_bpe's, in order: {same} of {len(library.merges)}")
assert my_merges == list(library.merges)  # the whole list, in order

# %% [markdown]
# On one play and 600 tokens the hand loop gives exactly the library's merges (asserted, the whole
# list in order). (One subtlety: when two different pairs spell the same bytes, `tokenizers` gives
# the second merge the existing id instead of a new one; `bpe.train_bpe_by_hand` follows that, and
# it does not arise here.)
#
# The naive loop recounts every pair of every word after each merge. `bpe.train_bpe_by_hand`
# recounts only the words that held the merged pair and keeps the counts in a heap. With it we can
# train the bundled tokenizer itself, on all 40 training texts, and compare all its merges.

# %%
by_hand = bpe.train_bpe_by_hand(training_texts, 4096)
bundled = bpe.from_tokenizer(tokenizer.backend_tokenizer.to_str())
same = sum(mine == theirs for mine, theirs in zip(by_hand.merges.items(), bundled.merges.items()))
print(f"by hand: {len(by_hand.merges):,} merges; the bundled tokenizer has {len(bundled.merges):,}; "
      f"equal, in order and with their ids: {same:,}")
assert same == len(by_hand.merges) == len(bundled.merges)  # every merge, in order, with its id
assert by_hand.vocab == bundled.vocab

# %% [markdown]
# Every merge of the bundled tokenizer, in order and with its id, comes out of our loop (asserted).
#
# ## 4. Encoding
#
# To encode a new text, cut it into pre-tokens, spell each in bytes, and replay the merges in the
# order they were learned: while some adjacent pair has a merge, merge the pair learned earliest.
# Write the encoder for one pre-token.

# %%
def encode_word_by_hand(word: tuple[int, ...], merges: dict[tuple[int, int], int]) -> tuple[int, ...]:
    """One pre-token's byte ids merged: while a pair has a merge, merge the earliest-learned one
    (its position in ``merges``, which keeps the order learned) everywhere."""
    # EXERCISE encode: Repeatedly merge the adjacent pair learned earliest until no pair has a merge.
    rank = {pair: position for position, pair in enumerate(merges)}
    while len(word) > 1:
        pair = min(zip(word, word[1:]), key=lambda pair: rank.get(pair, len(rank)))
        if pair not in rank:
            break
        word = merge_by_hand(word, pair, merges[pair])
    return word
    # END EXERCISE


to_id = bpe.byte_ids()
ids_by_hand = [token for piece in bpe.pretokenize(validation[:5000])
               for token in encode_word_by_hand(tuple(to_id[b] for b in piece.encode()), bundled.merges)]
assert ids_by_hand == tokenizer.encode(validation[:5000], verbose=False)
print(f"{len(ids_by_hand):,} tokens, identical to the bundled tokenizer's")

# %% [markdown]
# The order matters: merging the most frequent *current* pair instead of the earliest-learned one
# would give other tokens. The library's two encoders follow the same rule: `bpe.encode_naive`
# re-scans for the best pair as above, `bpe.Encoder` keeps the pairs in a heap and remembers each
# pre-token it has already encoded. On both whole validation plays, both give the bundled
# tokenizer's ids, and decoding gives the text back:

# %%
library_ids = tokenizer.encode(validation, verbose=False)
naive_ids, fast_ids = bpe.encode_naive(validation, bundled), bpe.Encoder(bundled).encode(validation)
print(f"{len(library_ids):,} validation tokens; identical to the bundled tokenizer's: "
      f"naive {naive_ids == library_ids}, heap + cache {fast_ids == library_ids}")
assert naive_ids == fast_ids == library_ids
assert bpe.decode(library_ids, bundled) == validation

# Round trips on strings the plays never held: the samples above, and random strings drawn from
# every plane of Unicode (surrogates excluded: they are not characters).
draws = torch.Generator().manual_seed(1)  # test data, not sampling: drawn on the CPU, the same everywhere
points = torch.randint(1, 0x110000, (300, 20), generator=draws, device="cpu").tolist()
strings = [*samples.values(), *("".join(chr(p) for p in row if not 0xD800 <= p < 0xE000) for row in points)]
for text in strings:
    ids = bpe.encode(text, bundled)
    assert bpe.decode(ids, bundled) == text and ids == tokenizer.encode(text)
print(f"{len(strings)} strings of any script (emoji included): decode(encode(text)) == text, "
      "and the ids are the bundled tokenizer's")

# %% [markdown]
# How fast are they? Time the three encoders on both validation plays in interleaved rounds (each
# round runs all three, so a slow spell of the machine slows all of them), and compare within
# each round.

# %%
# NBVAL_IGNORE_OUTPUT
ways = {"naive (re-scan)": lambda: bpe.encode_naive(validation, bundled),
        "heap + cache": lambda: bpe.Encoder(bundled).encode(validation),
        "tokenizers (Rust)": lambda: tokenizer.backend_tokenizer.encode(validation)}
rates = interleaved_rates(ways, len(library_ids), runs=3)
medians = print_medians(rates, "tokens/s")
print(f"heap + cache over naive: {paired_ratio(rates['heap + cache'], rates['naive (re-scan)']):.1f}x; "
      f"Rust over heap + cache: {paired_ratio(rates['tokenizers (Rust)'], rates['heap + cache']):.1f}x")
assert paired_ratio(rates["heap + cache"], rates["naive (re-scan)"]) > 1.5  # typically far more: the cache

# %% [markdown]
# The stored figures come from the machine that last ran the lesson (2 cores of an AMD EPYC); yours
# will differ. The heap and the cache beat the naive re-scan on every machine (asserted, with a
# wide margin: more than 1.5x): most of the gain on the plays comes from the cache, since the
# plays' words are short and repeat. How our Python compares with the Rust library depends on the
# CPU and on the library's release (its `encode` also computes each token's character offsets), so
# the lesson prints that ratio and asserts nothing about it.
#
# ## 5. How big a vocabulary?
#
# More merges make each token cover more bytes, so the same text becomes fewer tokens: more text
# fits in the model's context, and each step of generation writes more of it. The price is
# parameters: the embedding and the LM head hold one row of `n_embd` numbers per token. Train the
# library's tokenizer at several sizes and measure bytes per token on the validation plays.

# %%
sizes = [257, 512, 1024, 2048, 4096, 8192, 16384]
n_embd, context = hf_model.config.n_embd, hf_model.config.n_positions
validation_bytes = len(validation.encode())
bytes_per_token, validation_tokens = {}, {}
for size in sizes:
    trained = train_bpe(training_texts, size)
    validation_tokens[size] = len(trained.encode(validation).ids)
    bytes_per_token[size] = validation_bytes / validation_tokens[size]
    if size == 4096:  # train_bpe at the bundled size is the bundled tokenizer
        assert bpe.from_tokenizer(trained.to_str()).merges == bundled.merges
print(f"{'vocabulary':>10} {'bytes/token':>12} {'validation tokens':>18} {'embedding parameters':>21} "
      f"{'bytes in a context of ' + str(context):>24}")
for size, ratio in bytes_per_token.items():
    print(f"{size:>10} {ratio:12.2f} {validation_tokens[size]:18,} {size * n_embd:21,} {ratio * context:24,.0f}")
assert all(bytes_per_token[a] < bytes_per_token[b] for a, b in zip(sizes, sizes[1:]))
gains = [bytes_per_token[b] / bytes_per_token[a] for a, b in zip(sizes[1:], sizes[2:])]
print("bytes per token gained by each doubling from 512 on:", [f"{gain:.2f}x" for gain in gains])
assert all(later < earlier for earlier, later in zip(gains, gains[1:]))

# %% tags=["readme-figure"]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(sizes, [bytes_per_token[s] for s in sizes], marker="o")
ax.set_xscale("log", base=2)
ax.set_xlabel("vocabulary size (tokens)")
ax.set_ylabel("bytes per token (validation plays)")
ax.set_title("Bigger vocabularies: fewer, longer tokens, with diminishing returns")
ax.axvline(4096, color="grey", linestyle=":")
ax.text(4096, bytes_per_token[257] + 0.1, " the bundled models", color="grey")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each doubling of the vocabulary adds less than the one before (asserted from 512 on), while the
# embedding grows in step with it. Shorter sequences are what a bigger vocabulary buys: the model
# runs once per token, so the validation plays cost that many forward passes to read or write,
# and the context of 512 tokens holds that many more bytes of text. The bundled model's share of
# parameters in its embedding:

# %%
parameters = sum(p.numel() for p in hf_model.parameters())
print(f"embedding: {len(tokenizer) * n_embd:,} of the bundled model's {parameters:,} parameters "
      f"({len(tokenizer) * n_embd / parameters:.0%})")

# %% [markdown]
#
# This is also why the course reports **bits per byte** and not loss per token: a model with a
# bigger vocabulary predicts fewer, longer tokens, so its loss per token is higher for the same
# text even when it predicts the text as well. Dividing the total by the text's bytes removes the
# tokenizer from the comparison (lesson 05).
#
# Whether a bigger vocabulary makes a better model for a fixed budget is an empirical question we
# do not measure here (it would take training several models). [Tao et al.](https://arxiv.org/abs/2407.13623) (2024, "Scaling Laws
# with Vocabulary") find that the best vocabulary grows with the model's size and compute, and
# that many large models use vocabularies smaller than optimal. That is cited, not measured.
#
# ## 6. Pitfalls, on the bundled tokenizer
#
# **The leading space.** A word after a space and the same word at the start of a line are
# different tokens, with different embeddings, because the space belongs to the word:

# %%
for text in ["Hamlet", " Hamlet", "hamlet", " HAMLET"]:
    print(f"{text!r:>10} -> {[tokenizer.decode(i) for i in tokenizer.encode(text)]}")
first, first_after_a_space = tokenizer.encode("Hamlet")[0], tokenizer.encode(" Hamlet")[0]
assert first != first_after_a_space and tokenizer.decode([first_after_a_space]).startswith(" ")

# %% [markdown]
# **Numbers.** Digits form their own pre-tokens, and BPE merges whichever digit strings were
# frequent in its training text. The plays hold almost no numbers, so the bundled tokenizer spells
# every number digit by digit:

# %%
for number in ["7", "1601", "12345"]:
    print(f"{number:>6} -> {[tokenizer.decode(i) for i in tokenizer.encode(number)]}")
assert all(len(tokenizer.encode(number)) == len(number) for number in ["1601", "12345"])

# %% [markdown]
# A tokenizer trained where numbers are common merges the frequent digit strings, and then the
# same digits split differently depending on their neighbours. Train one on a made-up ledger of
# years and sums:

# %%
draws = torch.Generator().manual_seed(0)  # made-up data, drawn on the CPU
years = torch.randint(1500, 1700, (3000,), generator=draws, device="cpu").tolist()
sums = (torch.rand(3000, generator=draws, device="cpu") ** 3 * 100_000).long().tolist()
ledger = "\n".join(f"In the year {year}, paid {amount} crowns." for year, amount in zip(years, sums))
ledger_tokenizer = train_bpe([ledger], 400)
splits = {number: ledger_tokenizer.encode(number).tokens for number in ["1601", "1610", "1234", "12345", "99999"]}
for number, pieces in splits.items():
    print(f"{number:>6} -> {pieces}")
assert len(splits["1601"]) != len(splits["1610"])  # the same four digits, in another order: another split
assert any(len({len(piece) for piece in pieces}) > 1 for pieces in splits.values())  # pieces of uneven length

# %% [markdown]
# The pieces follow frequency, not place value (asserted: 1601 and 1610 split into different
# numbers of pieces, and pieces come in uneven lengths), so adding two numbers means adding pieces
# that do not line up. Some tokenizers split every number into single digits for this reason
# (LLaMA's does: [Touvron et al. 2023](https://arxiv.org/abs/2302.13971), cited, not measured here).

# %% [markdown]
# **Words the plays never use** fall apart into short pieces, so the model sees them as strings it
# must assemble:

# %%
lengths = {}
for word in [" king", " photosynthesis", " tokenizer", " smartphone"]:
    pieces = [tokenizer.decode(i) for i in tokenizer.encode(word)]
    lengths[word] = len(pieces)
    print(f"{word!r:>18}: {len(pieces)} tokens {pieces}")
assert lengths[" king"] == 1 and min(lengths[" photosynthesis"], lengths[" tokenizer"], lengths[" smartphone"]) >= 4

# %% [markdown]
# **Special tokens typed as text.** `<|endoftext|>` is id 0, the boundary between documents. The
# tokenizer matches special tokens inside ordinary text too, so a user who types it produces the
# real boundary, not seven characters. Lesson 09's chat format has the same hole with `<|end|>`:
# a chat front end must escape or refuse such strings in user text.

# %%
typed = "Good night, sweet prince.<|endoftext|>And flights of angels"
ids = tokenizer.encode(typed)
print(ids[:12], "...")
assert tokenizer.convert_tokens_to_ids(END_OF_TEXT) in ids  # the typed string became the special token
assert tokenizer.convert_tokens_to_ids(END_OF_TEXT) not in tokenizer.encode(typed.replace("<|", "< |"))

# %% [markdown]
# **Tokens the model never saw.** The tokenizer holds all 256 bytes, and the plays never use some
# of them (control characters, most bytes of other scripts). Their embeddings were never the input
# of a training step. With tied embeddings they still move: every step, as rows of the LM head,
# they are pushed to score lower for whatever came, so they all drift the same way. Such "glitch
# tokens" (SolidGoldMagikarp in GPT-2 and GPT-3) stand out by their norms and can make a model
# misbehave when they appear.

# %%
training_ids = torch.tensor(tokenizer.encode("".join(training_texts), verbose=False))
counts = torch.bincount(training_ids, minlength=len(tokenizer))
embeddings = hf_model.get_input_embeddings().weight.detach()
norms = embeddings.norm(dim=1)
unseen = counts == 0
unseen[tokenizer.eos_token_id] = False  # <|endoftext|> is not in the text, but training put it between the plays
seen_often = counts > counts.median()
print(f"{int(unseen.sum())} tokens never occur in the training text, e.g. "
      f"{[tokenizer.decode([i]) for i in unseen.nonzero()[:6, 0].tolist()]}")
print(f"median embedding norm: {norms[unseen].median():.2f} for them, {norms[seen_often].median():.2f} for tokens "
      f"seen more often than the median token")
unit = torch.nn.functional.normalize(embeddings[unseen], dim=1)
similarity = (unit @ unit.T)[~torch.eye(int(unseen.sum()), dtype=torch.bool)]
print(f"median cosine similarity between two unseen tokens' embeddings: {similarity.median():.2f}")
assert norms[unseen].median() > 2 * norms[seen_often].median()
assert similarity.median() > 0.5

# %% [markdown]
# The tokens the model never read have embeddings more than twice as long as the common tokens'
# here, and they point nearly the same way (both asserted). A text that contains one puts the model where training
# never took it.

# %% [markdown]
# ## Check your understanding
#
# 1. Why can a byte-level tokenizer encode text it has never seen, in any script, while a word-level
#    one cannot? What does the unseen text cost instead?
# 2. The pair `(7, 7)` occurs twice in `(7, 7, 7)`. Why does BPE merge only one of them, and which?
# 3. Two models read the same text: one with 1,000 tokens, one with 16,000. Which has the higher loss
#    per token, other things equal, and why does bits per byte make them comparable?
# 4. Speculative decoding (lesson 07) lets a small draft model propose token ids that a large model
#    then checks. Why must the two use exactly the same tokenizer, and not merely the same
#    vocabulary size?
# 5. A chat user types `<|end|>`. What could happen in lesson 09's format, and how would you stop it?
