"""The exercises' hints, from a nudge to a near-solution, shown one at a time on request.

A workbook never shows a hint by itself: a failed check says that ``checks.hint("name")`` has
one, and each call gives the next level. The first points at the idea, the last comes close to
the code. None is the solution's code; ``tests/test_exercises.py`` checks that no hint and no
solution appears in a workbook.

Taught in: every lesson's workbook (``exercises/``), through ``checks.hint``.
"""

from __future__ import annotations

HINTS: dict[str, tuple[str, ...]] = {
    # ---- lesson 01
    "token_log_probs": (
        "Which position's logits are the model's guess for token t? Not position t itself.",
        "Turn each row of logits into log-probabilities over the vocabulary, then pick, at each position, "
        "the entry of the token that actually came next.",
        "logits[:-1] guess ids[1:]; log_softmax over the last dimension, then gather (or index) with ids[1:].",
    ),
    "causal_mask": (
        "Draw a 4 x 4 grid of (query i, key j) and shade the cells a query may use. What shape is it?",
        "The allowed cells are the diagonal and everything below it; torch has functions for the triangle "
        "above or below a diagonal.",
        "torch.tril (or the negation of torch.triu with diagonal=1) of a (T, T) bool tensor of ones.",
    ),
    "attention": (
        "Three steps: similarity scores between queries and keys, weights from the scores, a weighted sum "
        "of values. Where does the mask act?",
        "The mask must act before the softmax, so that hidden keys get exactly zero weight; the softmax runs "
        "over the keys, the last dimension.",
        "scores = q @ k.transpose(-2, -1) / sqrt(d); masked_fill the future with -inf when causal; "
        "softmax(dim=-1); multiply by v.",
    ),
    # ---- lesson 02
    "split_heads": (
        "Each position's C channels must be cut into n_head consecutive slices of D. Which dimension do "
        "you split first?",
        "A view straight to (B, n_head, T, D) cuts across positions. View the channels first, then move "
        "the head dimension in front of the positions.",
        "t.view(B, T, n_head, D), then swap dimensions 1 and 2.",
    ),
    "attention_module": (
        "One linear layer makes queries, keys and values for all heads at once. What are its outputs' "
        "three parts, and what shape does each head need?",
        "Split c_attn's output into three C-wide parts, split each into heads (your split_heads), attend "
        "causally within each head, then lay the heads side by side again before c_proj.",
        "Scale the scores by sqrt(head size), not sqrt(C); merging is transpose(1, 2) then reshape(B, T, C).",
    ),
    "block_forward": (
        "GPT-2 is pre-norm: where does each LayerNorm sit relative to the sub-layer and the residual "
        "addition?",
        "Each sub-layer reads a normalised copy of the stream and adds its result to the un-normalised "
        "stream. Attention first, then the MLP.",
        "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)).",
    ),
    "gpt_forward": (
        "What does the first block receive: only the tokens' vectors, or something more?",
        "The input to the blocks is the token embedding plus the position embedding of 0, 1, ..., T - 1. "
        "After the last block, one more step comes before the head.",
        "wte(ids) + wpe(arange(T)), every block in order, ln_f, then lm_head.",
    ),
    # ---- lesson 03
    "top_k": (
        "Find the value of the k-th largest logit in each row; everything below it goes.",
        "Compare values, not positions: two tokens tied with the k-th largest must both stay.",
        "torch.topk(logits, top_k).values[..., -1:] is the threshold; masked_fill where logits < threshold.",
    ),
    "top_p": (
        "Which tokens go into the nucleus first? Think of the tokens sorted from most to least likely.",
        "Keep a token when the probability of the tokens before it in that order is still below top_p: "
        "the token that crosses top_p stays.",
        "Sort descending, softmax, cumsum; drop where cumsum - own probability >= top_p; scatter the mask "
        "back to the original order.",
    ),
    "repetition_penalty": (
        "A penalty must make a seen token less likely whatever the sign of its logit.",
        "Dividing a negative logit by a penalty > 1 would raise it. Mark which tokens each row has seen "
        "(once, however often), then treat positive and negative logits differently.",
        "A zeros_like(logits) bool mask filled with scatter along ids; torch.where(logits > 0, logits / p, "
        "logits * p) where seen.",
    ),
    "sampling_loop": (
        "One token at a time: the model's logits at the last position, shaped by the settings, then a draw.",
        "Apply temperature first, then top-k, then top-p, to the last position's logits; softmax; draw with "
        "the generator; append the token and repeat.",
        "Use the library's filters (apply_temperature, top_k_filter, top_p_filter) in that order, then "
        "torch.multinomial(probs, 1, generator=generator) and torch.cat.",
    ),
    "beam_search": (
        "Keep num_beams partial texts and their summed log-probabilities; each step, every beam proposes "
        "continuations and only the best num_beams survive.",
        "Score beam x token as beam score + log-softmax of that beam's next-token logits, and keep the best "
        "num_beams of all of them. A beam that ends with EOS is finished: set it aside.",
        "A finished hypothesis is ranked by score / length ** length_penalty (length = its tokens after "
        "the prompt, EOS included); stop when num_beams are finished and no running beam can beat them.",
    ),
    # ---- lesson 04
    "cached_attention_step": (
        "The new token's query needs every key and value so far: the cached ones and its own.",
        "Append the new key and value to the cache along the position dimension; the new query may see "
        "all of them, so no mask is needed.",
        "torch.cat along dim=2, scores scaled by sqrt(D), softmax over the last dimension, times the values.",
    ),
    "shifted_causal_mask": (
        "New query i sits at absolute position n_past + i. Which keys are in its past?",
        "It is the causal mask with n_past more columns on the left, all visible.",
        "The future to hide is torch.triu(ones, diagonal=n_past + 1); return its negation.",
    ),
    "cached_generation": (
        "Run the prompt once to fill the cache; after that, each step feeds the model only the newest token.",
        "model(ids, cache=cache) returns logits for the tokens passed; the cache remembers the keys and values "
        "of everything passed before.",
        "logits = model(prompt, cache=cache); then loop: pick argmax of logits[:, -1], append, "
        "logits = model(token[:, None], cache=cache).",
    ),
    # ---- lesson 05
    "next_token_windows": (
        "The target at each position is the token that comes next in the text.",
        "Inputs and targets are the same window of the text, the targets starting one token later.",
        "tokens[s : s + length] and tokens[s + 1 : s + 1 + length] for each start s, stacked with torch.stack.",
    ),
    "bits_per_byte": (
        "Two changes of unit: nats to bits, and per token to per byte of text.",
        "Total the losses rather than averaging them, then divide by the text's size in bytes, not characters.",
        "sum(nll) / math.log(2) / len(text.encode('utf-8')).",
    ),
    "training_step": (
        "A step is: forget the last gradients, compute the loss, back-propagate, limit the gradient, update.",
        "Gradients accumulate in .grad until cleared; clip the total gradient norm before the optimizer "
        "uses it, not after.",
        "optimizer.zero_grad(); loss = model(inputs, targets); loss.backward(); "
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm); optimizer.step().",
    ),
    # ---- lesson 06
    "previous_token_score": (
        "Where in the (T, T) weight matrix are the weights of query i on key i - 1?",
        "They form the diagonal just below the main diagonal; query 0 has no previous token.",
        "torch.diagonal(w, offset=-1).mean().",
    ),
    "mean_distance": (
        "For one query, the weighted average of how far back each key is.",
        "Build the matrix of distances i - j, weight it by w, sum over the keys, then average over the queries.",
        "(w * (arange(T)[:, None] - arange(T)[None, :])).sum(-1).mean().",
    ),
    "attention_entropy": (
        "Entropy of each query's weight row, then the mean over queries.",
        "Masked weights are exactly 0, and 0 * log 0 must count as 0, not nan.",
        "torch.special.xlogy(w, w) gives w ln w with 0 where w is 0; negate, sum over keys, mean.",
    ),
    "induction_score": (
        "On a repeated random sequence, an induction head at the second copy looks at the token after the "
        "previous occurrence of the current token.",
        "With a sequence of length n repeated, the current token's previous occurrence is n positions back, "
        "and the token after it is n - 1 back.",
        "Average w[i, i - n + 1] over the queries i of the second copy (i >= n).",
    ),
    # ---- lesson 07
    "residual_distribution": (
        "When a draft is rejected, the correction must supply exactly the probability the draft fell short of.",
        "Keep the positive part of p - q and make it a distribution.",
        "clamp(p - q, min=0), divided by its own sum.",
    ),
    "greedy_acceptance": (
        "Walk along the drafts while they agree with the target's choices.",
        "Stop at the first disagreement; the target's choice there is the next token, and when all drafts "
        "agree the target's extra choice is a bonus.",
        "A cumulative product of (drafted == choices[:K]) counts the leading matches m; the token is choices[m].",
    ),
    "speculative_step": (
        "Each draft is accepted with probability min(1, p/q) of its token, in order, until one is rejected.",
        "At the first rejection, draw the replacement from the residual max(0, p - q) normalised; if every "
        "draft is accepted, draw one bonus token from the target's next distribution.",
        "Use uniforms[i] < p[i, x_i] / q[i, x_i] to accept draft i; on rejection sample the residual with "
        "the generator; return the accepted drafts plus the one new token.",
    ),
    # ---- lesson 08
    "apply_rope": (
        "RoPE turns consecutive pairs of a vector's dimensions by an angle that grows with the position.",
        "Pair i (dimensions 2i and 2i + 1, or i and i + D/2 in the half-split layout) turns by "
        "position * theta ** (-2i / D).",
        "With cos and sin of those angles: (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos), in the layout the "
        "library uses (the two halves of the head).",
    ),
    "rms_norm": (
        "Like LayerNorm without the mean: divide by the root of the mean square.",
        "Compute the mean of x squared over the last dimension, add eps inside the square root, then scale "
        "by the learned weight.",
        "x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.",
    ),
    "swiglu": (
        "Two projections up, one gated by the other, then one projection down.",
        "The gate goes through SiLU and multiplies the other up-projection elementwise.",
        "down(F.silu(gate(x)) * up(x)).",
    ),
    "repeat_kv": (
        "With grouped-query attention, several query heads share one key/value head. How many?",
        "Each key/value head must appear n_rep = n_head / n_kv_heads times in a row, next to each other.",
        "x.repeat_interleave(n_rep, dim=1) on (B, n_kv_heads, T, D).",
    ),
    "label_mask": (
        "Inputs and targets are the same sequence, prompt then answer, shifted by one: the target at "
        "position t is the token at t + 1.",
        "Only the targets that are answer tokens are scored. With the shift, the first of them sits at "
        "position len(prompt) - 1; every target before it becomes IGNORE_INDEX.",
        "sequence = torch.tensor(prompt + answer); inputs = sequence[:-1]; targets = sequence[1:] with its "
        "first len(prompt) - 1 entries set to IGNORE_INDEX.",
    ),
    "lora_forward": (
        "The frozen layer still runs; the adapter adds to its output. Look at the shapes: lora_A is "
        "(r, in), lora_B is (out, r).",
        "x goes through A first (down to r numbers), then B (up to out), and the result is multiplied by "
        "self.scale. Once merged, the update is already inside self.base.",
        "self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T, or self.base(x) alone if self.merged.",
    ),
    "dpo_loss": (
        "Each answer's implicit reward is beta times how much more likely the policy finds it than the "
        "reference does, in log-probabilities.",
        "reward = beta * (policy log-prob - reference log-prob), for the chosen and for the rejected answer. "
        "The loss asks the chosen reward to beat the rejected one, through a log-sigmoid.",
        "-F.logsigmoid(beta * (chosen - reference_chosen) - beta * (rejected - reference_rejected)).mean().",
    ),
}

_given: dict[str, int] = {}


def hint(name: str) -> None:
    """Print the next hint for exercise ``name``: the first call gives the first (a nudge), each later
    call the next, up to the last (close to the code)."""
    if name not in HINTS:
        raise ValueError(f"no exercise named {name!r}; the exercises with hints are: {', '.join(sorted(HINTS))}")
    levels = HINTS[name]
    level = min(_given.get(name, 0), len(levels) - 1)
    _given[name] = level + 1
    last = " (the last one; the solved lesson in notebooks/ has the answer)" if level == len(levels) - 1 else ""
    print(f"{name}, hint {level + 1} of {len(levels)}{last}: {levels[level]}")
