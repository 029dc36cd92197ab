from collections import Counter
from course_utils import bpe
from course_utils.checks import lesson10 as L
from course_utils.checks.harness import ExerciseFailed

def pc(words):
    c = Counter()
    for w, n in words.items():
        for p in zip(w, w[1:]): c[p] += n
    return c
def pc_unweighted(words):
    c = Counter()
    for w in words:
        for p in zip(w, w[1:]): c[p] += 1
    return c
def pc_across(words):
    seq = [i for w, n in words.items() for _ in range(n) for i in w]
    return Counter(zip(seq, seq[1:]))
def pc_nonoverlap(words):
    c = Counter()
    for w, n in words.items():
        i = 0
        while i < len(w) - 1:
            c[(w[i], w[i+1])] += n
            i += 2 if w[i] == w[i+1] else 1
    return c
def mg(word, pair, new):
    out, i = [], 0
    while i < len(word):
        if word[i:i+2] == pair: out.append(new); i += 2
        else: out.append(word[i]); i += 1
    return tuple(out)
def mg_right(word, pair, new):
    out, i = [], len(word) - 1
    while i >= 0:
        if i > 0 and word[i-1:i+1] == pair: out.append(new); i -= 2
        else: out.append(word[i]); i -= 1
    return tuple(reversed(out))
def mg_first(word, pair, new):
    for i in range(len(word) - 1):
        if word[i:i+2] == pair: return word[:i] + (new,) + word[i+2:]
    return word
def mg_overlap(word, pair, new):
    out = []
    for i in range(len(word)):
        if word[i:i+2] == pair: out.append(new)
        elif i > 0 and word[i-1:i+1] == pair: continue
        else: out.append(word[i])
    return tuple(out)
def train(texts, vocab_size, key=lambda c, p: (-c[p], p), merge=mg, count=pc, words_of=None):
    words = dict(bpe.word_counts(texts)) if words_of is None else words_of(texts)
    merges = []
    for new in range(257, vocab_size):
        c = count(words)
        if not c: break
        best = min(c, key=lambda p: key(c, p))
        merges.append(best)
        merged = {}
        for w, n in words.items():
            w = merge(w, best, new)
            merged[w] = merged.get(w, 0) + n
        words = merged
    return merges
to_id = bpe.byte_ids()
def whole_text(texts):
    return {tuple(to_id[b] for b in "".join(texts).encode()): 1}
def distinct_once(texts):
    return {w: 1 for w in bpe.word_counts(texts)}
def enc(word, merges):
    rank = {p: r for r, p in enumerate(merges)}
    while len(word) > 1:
        p = min(zip(word, word[1:]), key=lambda p: rank.get(p, len(rank)))
        if p not in rank: break
        word = mg(word, p, merges[p])
    return word
def enc_last_rank(word, merges):
    rank = {p: -r for r, p in enumerate(merges)}
    while len(word) > 1:
        cands = [p for p in zip(word, word[1:]) if p in rank]
        if not cands: break
        p = min(cands, key=lambda p: rank[p]); word = mg(word, p, merges[p])
    return word
def enc_one_merge(word, merges):
    rank = {p: r for r, p in enumerate(merges)}
    cands = [p for p in zip(word, word[1:]) if p in rank]
    return mg(word, min(cands, key=rank.get), merges[min(cands, key=rank.get)]) if cands else word
def enc_leftmost(word, merges):
    while True:
        for i in range(len(word) - 1):
            if word[i:i+2] in merges: word = word[:i] + (merges[word[i:i+2]],) + word[i+2:]; break
        else: return word
def enc_sequential(word, merges):
    for p, n in merges.items(): word = mg(word, p, n)
    return word
cases = [(L.PAIR_COUNTS, pc, True), (L.PAIR_COUNTS, pc_unweighted, False), (L.PAIR_COUNTS, pc_across, False), (L.PAIR_COUNTS, pc_nonoverlap, False),
         (L.MERGE, mg, True), (L.MERGE, mg_right, False), (L.MERGE, mg_first, False), (L.MERGE, mg_overlap, False),
         (L.TRAIN_BPE_BY_HAND, train, True),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, key=lambda c, p: (-c[p], tuple(-x for x in p))), False),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, key=lambda c, p: (-c[p], bpe.byte_vocab()[p[0]] if p[0] < 257 else b"")), False),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, merge=mg_overlap), False),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, words_of=whole_text), False),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, words_of=distinct_once), False),
         (L.TRAIN_BPE_BY_HAND, lambda t, v: train(t, v, count=pc_nonoverlap), False),
         (L.ENCODE, enc, True), (L.ENCODE, enc_sequential, True), (L.ENCODE, enc_last_rank, False), (L.ENCODE, enc_one_merge, False), (L.ENCODE, enc_leftmost, False)]
for ex, f, ok in cases:
    try:
        ex(f); got = True
    except ExerciseFailed as e:
        got = False; msg = str(e).splitlines()[0][:150]
    print("OK " if got == ok else "BAD", ex.name, getattr(f, "__name__", "lambda"), "passes" if got else "fails: " + msg)
try:
    L.TRAIN_BPE_BY_HAND(train)
except ExerciseFailed as e:
    print(e)
