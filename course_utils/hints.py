"""The exercises' hints, from a nudge to a near-solution in words, shown one at a time on request.

A workbook never shows a hint by itself: a failed check says that ``checks.hint("name")`` has
one, and each call gives the next level. The first points at the idea, the last says in words
which operations to do, in what order, along which dimension and what to watch; none is code.
``tests/test_hints.py`` checks that no level contains a line of the lesson's solution (names
aside) or an assignment, and ``tests/test_exercises.py`` that no hint and no solution appears in
a workbook.

Taught in: every lesson's workbook (``exercises/``), through ``checks.hint``.
"""

from __future__ import annotations

HINTS: dict[str, tuple[str, ...]] = {
    # ---- lesson 01
    "token_log_probs": (
        "Which position's logits are the model's guess for token t? Not position t itself.",
        "Turn each row of logits into log-probabilities over the vocabulary, then pick, at each position, "
        "the entry of the token that actually came next.",
        "Leave out the last position's logits (they guess a token that is not there) and the first token "
        "(nothing guesses it). Take the log-softmax over the vocabulary, the last dimension, then at each "
        "remaining position pick the entry of the following token: gather along the vocabulary dimension "
        "needs the ids as a column, and the result squeezed back to shape (T - 1,).",
    ),
    "causal_mask": (
        "Draw a 4 x 4 grid of (query i, key j) and shade the cells a query may use. What shape is it?",
        "The allowed cells are the diagonal and everything below it; torch has functions for the triangle "
        "above or below a diagonal.",
        "Start from a (T, T) tensor of ones of dtype bool. Either keep its lower triangle, diagonal included "
        "(torch.tril), or take the future, the triangle strictly above the diagonal (torch.triu one diagonal "
        "up), and negate it. The result must stay bool, not 0 and 1.",
    ),
    "attention": (
        "Three steps: similarity scores between queries and keys, weights from the scores, a weighted sum "
        "of values. Where does the mask act?",
        "The mask must act before the softmax, so that hidden keys get exactly zero weight; the softmax runs "
        "over the keys, the last dimension.",
        "Multiply the queries by the keys transposed in their last two dimensions and divide by the square "
        "root of the head size, q's last dimension. When causal, fill the scores where the causal mask is "
        "False with minus infinity. Softmax over the last dimension (the keys), then multiply the weights "
        "by the values.",
    ),
    # ---- lesson 02
    "split_heads": (
        "Each position's C channels must be cut into n_head consecutive slices of D. Which dimension do "
        "you split first?",
        "A view straight to (B, n_head, T, D) cuts across positions. View the channels first, then move "
        "the head dimension in front of the positions.",
        "Read B, T and C from t's shape; the head size D is C divided by n_head. First view t as four "
        "dimensions, batch, positions, heads, head size, so that only the channel dimension is cut and "
        "each head gets D consecutive channels; then swap the positions and heads dimensions (the second "
        "and third), which gives (B, n_head, T, D).",
    ),
    "attention_module": (
        "One linear layer makes queries, keys and values for all heads at once. What are its outputs' "
        "three parts, and what shape does each head need?",
        "Split c_attn's output into three C-wide parts, split each into heads (your split_heads), attend "
        "causally within each head, then lay the heads side by side again before c_proj.",
        "Cut c_attn's output along the channels into three parts of width C and put each through "
        "split_heads. Scale the scores by the square root of the head size, not of C; fill the future "
        "with minus infinity before the softmax over the keys; weight the values. To merge, swap heads and "
        "positions back first and only then reshape to (B, T, C): a reshape straight from "
        "(B, n_head, T, D) mixes positions. Finish with c_proj.",
    ),
    "block_forward": (
        "GPT-2 is pre-norm: where does each LayerNorm sit relative to the sub-layer and the residual "
        "addition?",
        "Each sub-layer reads a normalised copy of the stream and adds its result to the un-normalised "
        "stream. Attention first, then the MLP.",
        "Two residual updates, in order. Normalise the stream with ln_1, run attention on that copy and add "
        "its output to the stream itself; then normalise the updated stream with ln_2, run the MLP on that "
        "copy and add its output too. The LayerNorms never replace the stream, and the MLP reads the stream "
        "after attention's addition, not the block's input.",
    ),
    "gpt_forward": (
        "What does the first block receive: only the tokens' vectors, or something more?",
        "The input to the blocks is the token embedding plus the position embedding of 0, 1, ..., T - 1. "
        "After the last block, one more step comes before the head.",
        "Look up the token embeddings with wte and the embeddings of the positions 0 to T - 1 with wpe (make "
        "the positions on the ids' device) and add them; pass the sum through every block of h in order, "
        "each output the next one's input; apply the final LayerNorm ln_f; lm_head turns the result into "
        "logits.",
    ),
    # ---- lesson 03
    "top_k": (
        "Find the value of the k-th largest logit in each row; everything below it goes.",
        "Compare values, not positions: two tokens tied with the k-th largest must both stay.",
        "Take each row's top_k largest values along the last dimension (torch.topk); the smallest of them, "
        "kept as a column of shape (B, 1) so that it broadcasts along its row, is the threshold. Replace "
        "every logit strictly below its row's threshold with minus infinity (masked_fill); ties stay.",
    ),
    "top_p": (
        "Which tokens go into the nucleus first? Think of the tokens sorted from most to least likely.",
        "Keep a token when the probability of the tokens before it in that order is still below top_p: "
        "the token that crosses top_p stays.",
        "Sort each row's logits in descending order and keep the order; softmax the sorted logits and take "
        "the running sum along the row; subtract each token's own probability to get the mass before it; "
        "mark for removal where that mass is at least top_p. Scatter the marks back to vocabulary order "
        "with the kept order, and set the marked logits to minus infinity.",
    ),
    "repetition_penalty": (
        "A penalty must make a seen token less likely whatever the sign of its logit.",
        "Dividing a negative logit by a penalty > 1 would raise it. Mark which tokens each row has seen "
        "(once, however often), then treat positive and negative logits differently.",
        "Make a boolean mask shaped like logits, False everywhere, and scatter True along the last dimension "
        "at each row's input_ids. Compute the penalised logits: the negative ones multiplied by the penalty, "
        "the others divided by it. Then choose element by element (torch.where): the penalised logit where "
        "the token was seen, the original elsewhere.",
    ),
    "sampling_loop": (
        "One token at a time: the model's logits at the last position, shaped by the settings, then a draw.",
        "Apply temperature first, then top-k, then top-p, to the last position's logits; softmax; draw with "
        "the generator; append the token and repeat.",
        "Repeat max_new_tokens times: run the model on the whole sequence without gradients and keep the "
        "logits of the last position, (B, V); put them through the library's apply_temperature, then "
        "top_k_filter, then top_p_filter; softmax over the vocabulary; draw one token per row with "
        "torch.multinomial, passing the generator; concatenate the drawn column to the sequence along the "
        "positions. Return the whole extended sequence.",
    ),
    "beam_search": (
        "Keep num_beams partial texts, the beams, each with the summed log-probability of its tokens; each "
        "step every beam proposes continuations and the best candidates, over all beams, survive.",
        "Score every (beam, token) candidate as the beam's sum plus that beam's next-token log-softmax, and "
        "rank the candidates of all beams together. Take the best 2 * num_beams, not num_beams: some of them "
        "may end with EOS, and those are not continued, yet num_beams beams must still run.",
        "Start from one beam, the prompt, with sum 0. Each step, walk the best 2 * num_beams candidates from "
        "best to worst. A candidate that ends (its token is EOS, or this is step max_new_tokens) becomes a "
        "finished hypothesis only if it ranks among the step's first num_beams; its score is its sum divided "
        "by its length to the power length_penalty, the length counting the tokens after the prompt, EOS "
        "included; it is never continued. The other candidates, in rank order, become the next beams until "
        "num_beams are chosen. Keep the best num_beams finished hypotheses; stop as soon as num_beams have "
        "finished (early_stopping=True) or after the last step, and return the best-scored one, (1, length).",
    ),
    # ---- lesson 04
    "cached_attention_step": (
        "The new token's query needs every key and value so far: the cached ones and its own.",
        "Append the new key and value to the cache along the position dimension; the new query may see "
        "all of them, so no mask is needed.",
        "Concatenate the cached keys and the new key along the positions (the third dimension), and the "
        "values the same way, in the same order. Score the new query against all the keys, divided by the "
        "square root of the head size; softmax over the last dimension, the keys; multiply by the values.",
    ),
    "shifted_causal_mask": (
        "New query i sits at absolute position n_past + i. Which keys are in its past?",
        "It is the causal mask with n_past more columns on the left, all visible.",
        "Make an (n_new, n_past + n_new) boolean tensor of ones. The future to hide is its upper triangle "
        "starting n_past + 1 diagonals above the main one (torch.triu's diagonal argument); return the "
        "negation of that future.",
    ),
    "cached_generation": (
        "Run the prompt once to fill the cache; after that, each step feeds the model only the newest token.",
        "Called with a cache (its cache keyword), the model returns logits only for the tokens you pass, "
        "and the cache remembers the keys and values of everything passed before.",
        "Make one GrowingKVCache. Without gradients, run the whole prompt through the model with it, once. "
        "Then for each new token: take the argmax over the vocabulary of the last position's logits, kept as "
        "a column (B, 1); append it to the sequence; run the model on that column alone, with the same "
        "cache, for the next logits (after the last token that call can be skipped). The check counts the "
        "calls: the prompt first, then one token each, always the same cache.",
    ),
    "online_softmax": (
        "A softmax needs each row's largest score and its sum of exponentials, but you see one block of "
        "keys at a time. What can each query keep between blocks, and how do you fix it up when a later "
        "block holds a larger score?",
        "Keep three running quantities per query: the largest score so far, the sum of the exponentials "
        "of the scores minus that largest score, and the output so far, the values weighted by those same "
        "exponentials. When a block raises the largest score, both sums were measured against the old one: "
        "multiply them by the exponential of the old largest score minus the new one.",
        "Start the largest score at minus infinity and the sum at zero, one of each per query (keep a "
        "trailing dimension of size 1 so they broadcast), and the output at zeros shaped like q. For each "
        "block of keys and values: score the queries against the block's keys, divided by the square root "
        "of the head size, and set the scores of keys later than their query to minus infinity. The new "
        "largest score is the element-wise larger of the old one and the block's row maximum. Multiply the "
        "old sum and the old output by the exponential of (old largest minus new largest); add the block's "
        "exponentials of (score minus new largest), summed over the keys, to the sum, and the same "
        "exponentials times the block's values to the output. At the end divide the output by the sum.",
    ),
    # ---- lesson 05
    "next_token_windows": (
        "The target at each position is the token that comes next in the text.",
        "Inputs and targets are the same window of the text, the targets starting one token later.",
        "For each start s (the starts as a Python list), slice the length tokens beginning at s for the "
        "inputs, and the length tokens beginning one position later for the targets; stack each list of "
        "windows into a (len(starts), length) tensor and return the two.",
    ),
    "bits_per_byte": (
        "Two changes of unit: nats to bits, and per token to per byte of text.",
        "Total the losses rather than averaging them, then divide by the text's size in bytes, not characters.",
        "Sum nll into one number; divide by the natural logarithm of 2 to turn nats into bits; divide by the "
        "number of bytes of the text encoded as UTF-8 (the length of the encoded bytes, not of the string).",
    ),
    "training_step": (
        "A step is: start with no old gradients, compute the loss, back-propagate, limit the gradient, "
        "update, and leave no gradient behind.",
        "Gradients accumulate in each parameter's .grad until cleared. Clip the total gradient norm after "
        "the backward pass and before the optimizer uses it, not after. The check looks at every .grad "
        "after your call returns: it must find none.",
        "In this order: clear the gradients (the optimizer's zero_grad); compute the loss by calling the "
        "model on inputs and targets; call backward on it; clip the total norm of all the model's "
        "parameters' gradients to grad_clip with torch.nn.utils.clip_grad_norm_; let the optimizer step; "
        "then clear the gradients again, zero_grad(set_to_none=True), so that no .grad is left over after "
        "the call. Return the loss as a Python float (its item).",
    ),
    # ---- lesson 06
    "previous_token_score": (
        "Where in the (T, T) weight matrix are the weights of query i on key i - 1?",
        "They form the diagonal just below the main diagonal; query 0 has no previous token.",
        "Take the diagonal of w one step below the main one (torch.diagonal with offset minus one): it holds "
        "each query's weight on the key just before it, for queries 1 to T - 1. Its mean is the score, a "
        "0-d tensor.",
    ),
    "mean_distance": (
        "For one query, the weighted average of how far back each key is.",
        "Build the matrix of distances i - j, weight it by w, sum over the keys, then average over the queries.",
        "Make the positions 0 to T - 1 in w's dtype; the distance matrix is the query position minus the key "
        "position, a column minus a row broadcast to (T, T), clamped at zero for keys ahead (their weight "
        "is 0 anyway). Multiply it by w elementwise, sum over the keys, the last dimension, then take the "
        "mean over the queries.",
    ),
    "attention_entropy": (
        "Entropy of each query's weight row, then the mean over queries.",
        "Masked weights are exactly 0, and 0 * log 0 must count as 0, not nan.",
        "torch.special.xlogy computes x ln y and gives 0 wherever x is 0: use it with the weights as both "
        "arguments. Negate, sum over the keys (the last dimension), then take the mean over the queries.",
    ),
    "induction_score": (
        "On a repeated random sequence, an induction head at the second copy looks at the token after the "
        "previous occurrence of the current token.",
        "With a block of tokens repeated, the current token's previous occurrence is one block length back, "
        "and the token after it is one position less far back.",
        "The queries of the second copy are the positions block to 2 * block - 1. For each, pick the weight "
        "on the key block - 1 positions earlier: index w with a tensor of query positions and a tensor of "
        "key positions, taken in pairs (not a sub-matrix). Their mean is the score, a 0-d tensor.",
    ),
    # ---- lesson 07
    "residual_distribution": (
        "When a draft is rejected, the correction must supply exactly the probability the draft fell short of.",
        "Keep the positive part of p - q and make it a distribution.",
        "Subtract q from p elementwise, clamp the negative entries to zero, then divide by the sum of what "
        "is left so that it sums to 1.",
    ),
    "greedy_acceptance": (
        "Walk along the drafts while they agree with the target's choices.",
        "Stop at the first disagreement; the target's choice there is the next token, and when all drafts "
        "agree the target's extra choice is a bonus.",
        "Compare the drafts elementwise with the first K choices and turn the result into integers; their "
        "cumulative product along the drafts stays 1 up to the first mismatch and is 0 from there, so its "
        "sum is m, the number of leading matches. The token is the choice at index m (the bonus when all "
        "K match). Return both as Python ints.",
    ),
    "speculative_step": (
        "Each draft is accepted with probability min(1, p/q) of its token, in order, until one is rejected; "
        "the step returns how many drafts were accepted and the one token that follows them.",
        "At the first rejection, draw the replacement from the residual max(0, p - q) normalised (your "
        "residual_distribution); if every draft is accepted, draw one bonus token from p's last row. Return "
        "(kept, token): kept, an int, the number of drafts accepted; token, the one new token, not the "
        "drafts themselves.",
        "The check replays the library's random numbers, so draw them in exactly this order, none ahead of "
        "time. For each draft i in turn, with its token x: draw ONE uniform number with torch.rand, a single "
        "value from the generator, and accept when it is below min(1, p's row i at x divided by q's row i at "
        "x). At the first rejection, draw one sample with torch.multinomial, passing the generator, from the "
        "normalised residual of row i of p and q, and return i and that token. If all K are accepted, draw "
        "the bonus from p's row K the same way and return K and it.",
    ),
    # ---- lesson 08
    "apply_rope": (
        "RoPE turns pairs of a head vector's dimensions by an angle that grows with the position; cos and "
        "sin already hold those angles' cosines and sines.",
        "Here pair i is dimension i with dimension i + D/2, the two halves of the head, not neighbours 2i "
        "and 2i + 1. cos and sin are (B, T, D): each batch row has its own positions (left padding shifts "
        "them), so use every row, never row 0's for all; they have no head dimension.",
        "Split x's last dimension into its first half a and second half b. Take the first D/2 columns of cos "
        "and sin (the second half repeats them) and insert a head dimension after the batch dimension so "
        "they broadcast over the H heads, keeping each batch row's own values. The rotated pair is "
        "(a cos - b sin, a sin + b cos): concatenate those two halves back along the last dimension.",
    ),
    "rms_norm": (
        "Like LayerNorm without the mean: divide by the root of the mean square.",
        "Compute the mean of x squared over the last dimension, add eps inside the square root, then scale "
        "by the learned weight.",
        "Square x and take the mean over the last dimension, keeping that dimension so it broadcasts; add "
        "self.eps; take the reciprocal square root (torch.rsqrt); multiply x by it, then by self.weight. "
        "No mean is subtracted.",
    ),
    "swiglu": (
        "Two projections up, one gated by the other, then one projection down.",
        "The gate goes through SiLU and multiplies the other up-projection elementwise.",
        "Apply gate_proj to x and pass the result through SiLU; apply up_proj to x; multiply the two "
        "elementwise; map the product back to C with down_proj.",
    ),
    "repeat_kv": (
        "With grouped-query attention, several query heads share one key/value head. How many?",
        "Each key/value head must appear n_rep times in a row, its copies next to each other: head 0, "
        "head 0, head 1, head 1, ..., not the whole set of heads tiled.",
        "Repeat along the head dimension, the second of (B, K, T, D), with repeat_interleave, which puts "
        "each head's n_rep copies side by side. Tiling the whole set (repeat, or a concatenation of copies) "
        "gives the wrong order, and repeating along the positions or the head size the wrong shape.",
    ),
    "label_mask": (
        "Inputs and targets are the same sequence, prompt then answer, shifted by one: the target at "
        "position t is the token at t + 1.",
        "Only the targets that are answer tokens are scored. With the shift, the first of them sits one "
        "position before the prompt's length; every target before it becomes IGNORE_INDEX.",
        "Make one tensor of the prompt's ids followed by the answer's. The inputs are all of it but the last "
        "token; the targets are a copy of all of it but the first, with the first few set to IGNORE_INDEX: "
        "as many as the prompt has tokens, minus one (the prompt's last token predicts the answer's first, "
        "so that target stays). Return (inputs, targets).",
    ),
    "lora_forward": (
        "The frozen layer still runs; the adapter adds to its output. Look at the shapes: lora_A is "
        "(r, in), lora_B is (out, r).",
        "x goes through A first (down to r numbers), then B (up to out), and the result is multiplied by "
        "self.scale. Once merged, the update is already inside self.base.",
        "If self.merged, return the frozen layer's output alone: the update is already in it, and adding "
        "it again would count it twice. Otherwise take self.base's output on x and add the update: x "
        "multiplied by lora_A transposed (r numbers), then by lora_B transposed (out numbers), scaled by "
        "self.scale.",
    ),
    "dpo_loss": (
        "Each answer's implicit reward is beta times how much more likely the policy finds it than the "
        "reference does, in log-probabilities.",
        "Each reward is beta times the policy's log-probability minus the reference's, for the chosen and "
        "for the rejected answer. The loss asks the chosen reward to beat the rejected one, through a "
        "log-sigmoid.",
        "Compute the chosen answers' rewards, beta times the difference between chosen and reference_chosen, "
        "and the rejected ones' the same way. Take the log-sigmoid (F.logsigmoid) of the chosen rewards minus "
        "the rejected ones, negate it, and average over the pairs.",
    ),
    # ---- lesson 10
    "pair_counts": (
        "A word that occurs n times contributes each of its adjacent pairs n times. How many adjacent pairs "
        "does a word of length L have?",
        "Walk each word's positions 0 .. L-2 and count the pair at each; every position counts, even when two "
        "pairs overlap, as in three equal ids. Pairs never join the end of one word to the start of the next.",
        "Start an empty Counter. For each word and its count, pair the word with itself shifted by one (zip of "
        "the word and the word from its second id), and add the word's count to each such pair's entry. "
        "Return the Counter.",
    ),
    "merge": (
        "Scan the word once, from left to right. What happens at a position where the pair starts?",
        "Where the pair starts at position i, emit the new id and jump past both ids; elsewhere emit the id "
        "and move one step. That jump is what stops two overlapping occurrences from both merging.",
        "Keep an output list and an index i from 0. While i is inside the word: if the slice of two ids at i "
        "equals the pair, append the new id and add 2 to i; otherwise append the id at i and add 1. Return the "
        "output as a tuple.",
    ),
    "train_bpe_by_hand": (
        "Every step is the same three moves: count pairs over all pre-tokens, pick one pair, merge it "
        "everywhere. Which pair wins when two have the same count?",
        "Count each distinct pre-token once, with its frequency (the library's word_counts does it), so that "
        "merges never cross a pre-token's edge. The winner: the highest count, and among equal counts the "
        "smallest pair of ids.",
        "Get the word counts. For each new id from 257 up to vocab_size - 1: count the pairs with your "
        "pair_counts; stop if there are none; take the minimum over the pairs of the key (minus the count, "
        "the pair itself); record that pair; rebuild the words with your merge applied to each, keeping the "
        "counts. Return the recorded pairs in order.",
    ),
    "encode": (
        "The merges were learned in an order. When a word could take several merges, which one happens first?",
        "Always merge the adjacent pair that was learned earliest (its position in merges), then look again: "
        "a merge can create a new pair that has a merge of its own.",
        "Give every pair its rank, its position in merges. While the word has at least two ids: among its "
        "adjacent pairs find the one of lowest rank (pairs with no merge rank last); if that pair has no "
        "merge, stop; otherwise replace it everywhere with its new id using your merge. Return the word.",
    ),
}


_given: dict[str, int] = {}


def hint(name: str) -> None:
    """Print the next hint for exercise ``name``: the first call gives the first (a nudge), each later
    call the next, up to the last (a near-solution in words)."""
    if name not in HINTS:
        raise ValueError(f"no exercise named {name!r}; the exercises with hints are: {', '.join(sorted(HINTS))}")
    levels = HINTS[name]
    level = min(_given.get(name, 0), len(levels) - 1)
    _given[name] = level + 1
    last = " (the last one; the solved lesson in notebooks/ has the answer)" if level == len(levels) - 1 else ""
    print(f"{name}, hint {level + 1} of {len(levels)}{last}: {levels[level]}")
