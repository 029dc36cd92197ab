"""The exercises' hints teach without giving the answer away: every level is words, never a line
of the lesson's solution. Both sides are normalised (lowercase, comments dropped, every identifier
and string a placeholder, dotted names one placeholder, spaces only between words), so renaming
the variables or dropping ``self.`` does not hide a solution line inside a hint."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from course_utils.hints import HINTS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402


def solution_lines() -> dict[str, list[str]]:
    """Each exercise's solution: the lesson's lines between its markers, stripped, blank lines left out."""
    found: dict[str, list[str]] = {}
    for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        lines = lesson.read_text().split("\n")
        for i, line in enumerate(lines):
            if start := make_exercises.START.match(line):
                end = next(j for j in range(i + 1, len(lines)) if make_exercises.END.match(lines[j]))
                found[start.group("name")] = [body.strip() for body in lines[i + 1:end] if body.strip()]
    return found


SOLUTIONS = solution_lines()

TOKEN = re.compile(
    r"""(?P<string>(?P<quote>['"])[^'"\s]*(?P=quote))"""  # a string literal (no spaces: not prose between apostrophes)
    r"|(?P<word>[a-z_][a-z0-9_]*)"
    r"|(?P<number>\d+(?:\.\d+)?(?:e-?\d+)?)"
    r"|(?P<op>\*\*|//|==|<=|>=|!=|->|\.\.\.|[^\s\w])"
)
WORD, CALL = "_", "_("  # a name; a name directly followed by "(", a call (prose leaves a space: "shape (B, T)")
SYNTAX = {WORD, CALL, "(", ")", ",", "."}  # a run of only these (and numbers) is a bare call or a shape
MIN_TOKENS = 6  # the shortest shared run that counts: `loss = f(a, b)` is 7 tokens; `= f(y)` is everywhere
MIN_CALL_TOKENS = 8  # a run of call syntax alone counts from this length: `t.view(B, T, H, D` is 8
# `name = ` followed by a call, an attribute, an index, a bracket or arithmetic: an assignment statement
# (or a keyword argument given an expression), not prose; `m = K` and `set_to_none=True` are words.
ASSIGNMENT = re.compile(
    r"(?<![\w.\]<>=!])[A-Za-z_][\w.]*(?:\[[^\]]*\])?\s*(?<![<>=!])=(?!=)\s*"
    r"(?:[A-Za-z_]\w*\s*[(\[]|[A-Za-z_]\w*\.\w|[A-Za-z_][\w.]*\s*(?:\*\*|//|[-+*/@%])|[(\[~-])"
)

# Code whatever its names: a call of a dotted name with arithmetic or a comparison in its arguments
# (`torch.where(logits > 0, ...)`), a slice (`logits[:-1]`, `values[..., -1:]`).
CODE_SHAPES = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+)+\([^()]*[-+*/@<>][^()]*\)|\w\[[^\]]*:[^\]]*\]")


def tokens(text: str, *, code: bool = False) -> list[str]:
    """``text`` as normalised tokens: every identifier (keywords too) and string is ``_``, a dotted
    name (``self.ln_1``, ``torch.nn.functional.silu``) a single ``_``, a name directly followed by
    ``(`` the call ``_(``; numbers and operators kept. ``code``: drop a trailing comment first."""
    if code:
        text = text.split("#", 1)[0]
    out: list[str] = []
    end = -1  # where the previous token ended
    for match in TOKEN.finditer(text.lower()):
        token = WORD if match.group("string") or match.group("word") else match.group("number") or match.group("op")
        touching = match.start() == end
        end = match.end()
        if token == WORD and touching and len(out) >= 2 and out[-1] == "." and out[-2] == WORD:
            out.pop()  # `a.b` -> `_`
        elif token == "(" and touching and out and out[-1] == WORD:
            out[-1] = CALL
        else:
            out.append(token)
    return out


def joined(run: list[str]) -> str:
    """Tokens as text: a space only between two words or numbers, or before a bracket that is not a
    call (``x = x + f(y)`` -> ``_=_+_(_)``)."""
    text = ""
    for token in run:
        after_word = text and (text[-1] == WORD or text[-1].isdigit())
        if after_word and (token == WORD or token == CALL or token[0].isdigit() or token == "("):
            text += " "
        text += token
    return text


def meaningful(run: list[str]) -> bool:
    """Long enough to be code, and more than words, a bare call or a shape: an operator, an `=`, an
    index among at least three symbols, or a long call. A bracket closed that the run did not open
    ends a piece: `x=y), z` is the end of one call and the start of another, not code."""
    piece: list[str] = []
    depth = 0
    for token in [*run, None]:
        if token is None or (token in (")", "]") and depth == 0):
            if meaningful_piece(piece):
                return True
            piece, depth = [], 0
            continue
        depth += token in (CALL, "(", "[")
        depth -= token in (")", "]")
        piece.append(token)
    return False


def meaningful_piece(run: list[str]) -> bool:
    symbols = [t for t in run if t != WORD]
    operator = any(t not in SYNTAX and not t[0].isdigit() for t in run)
    # The call without the words around it ("then reshape(B, T, C) and"), its operands kept.
    symbol_at = [i for i, t in enumerate(run) if t != WORD]
    if not symbol_at:
        return False
    start = symbol_at[0] if run[symbol_at[0]] in (CALL, "(") else max(symbol_at[0] - 1, 0)
    end = symbol_at[-1] if run[symbol_at[-1]] in (")", "]") else symbol_at[-1] + 1
    call = run[start:end + 1]
    return (len(run) >= MIN_TOKENS and operator and len(symbols) >= 3) or (
        CALL in call and len(call) >= MIN_CALL_TOKENS)


def longest_shared_run(a: list[str], b: list[str]) -> list[str]:
    """The longest run of tokens that ``a`` and ``b`` share."""
    best, best_end = 0, 0
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best, best_end = current[j], i
        previous = current
    return a[best_end - best:best_end]


def hint_problems(hint: str, solutions: dict[str, list[str]] = SOLUTIONS) -> list[str]:
    """What makes ``hint`` code rather than words: a solution line (any exercise's) inside it, a
    code-shaped run of tokens it shares with a solution line, an assignment, a slice or a method
    call with arithmetic in it."""
    problems = []
    hint_tokens = tokens(hint)
    normalised_hint = joined(hint_tokens)
    for name, lines in solutions.items():
        for line in lines:
            line_tokens = tokens(line, code=True)
            if meaningful(line_tokens) and joined(line_tokens) in normalised_hint:
                problems.append(f"contains {name}'s solution line {line!r}")
                continue
            shared = longest_shared_run(hint_tokens, line_tokens)
            if meaningful(shared):
                problems.append(f"shares {joined(shared)!r} with {name}'s solution line {line!r}")
    problems += [f"an assignment or keyword argument: {match.group(0)!r}..." for match in ASSIGNMENT.finditer(hint)]
    problems += [f"code: {match.group(0)!r}" for match in CODE_SHAPES.finditer(hint)]
    return problems


def test_every_exercise_has_its_hints_and_no_hint_is_stale():
    assert set(HINTS) == set(SOLUTIONS)


@pytest.mark.parametrize("name", sorted(HINTS))
def test_two_or_three_levels_from_a_nudge(name):
    levels = HINTS[name]
    assert 2 <= len(levels) <= 3, f"{name}: {len(levels)} levels"
    assert all(isinstance(level, str) and level.strip() for level in levels)
    assert len(levels[0]) < len(levels[-1]), f"{name}: the first level must be a nudge, shorter than the last"


@pytest.mark.parametrize("name", sorted(HINTS))
def test_no_hint_is_the_solutions_code(name):
    found = {f"hint {level}": problems for level, hint in enumerate(HINTS[name], 1)
             if (problems := hint_problems(hint))}
    assert not found, f"{name}: a hint gives code, say it in words: {found}"


# Hints that were the solution's code with other names, and would teach nothing.
LEAKY_HINTS = {
    "block_forward": "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)).",
    "split_heads": "t.view(B, T, n_head, D), then swap dimensions 1 and 2.",
    "repeat_kv": "x.repeat_interleave(n_rep, dim=1) on (B, n_kv_heads, T, D).",
    "lora_forward": "self.base(x) + self.scale * (x @ self.lora_A.T) @ self.lora_B.T, or self.base(x) alone.",
    "dpo_loss": "-F.logsigmoid(beta * (chosen - reference_chosen) - beta * (rejected - reference_rejected)).mean().",
    "training_step": "optimizer.zero_grad(); loss = model(inputs, targets); loss.backward(); optimizer.step().",
    "top_k": "torch.topk(logits, top_k).values[..., -1:] is the threshold; masked_fill where logits < threshold.",
    "attention": "scores = q @ k.transpose(-2, -1) / sqrt(d); masked_fill the future with -inf; softmax(dim=-1).",
}


@pytest.mark.parametrize("name", sorted(LEAKY_HINTS))
def test_a_hint_that_is_the_code_renamed_is_caught(name):
    assert hint_problems(LEAKY_HINTS[name], {name: SOLUTIONS[name]})


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_every_solution_written_as_a_hint_is_caught(name):
    assert hint_problems("; ".join(SOLUTIONS[name]), {name: SOLUTIONS[name]}), f"{name}: the check misses it"


def test_words_pass():
    for prose in ("Take the top-k values along the last dimension; the smallest of them is the threshold.",
                  "x (B, H, T, D): rotate (a, b) to (a cos - b sin, a sin + b cos), pair i with i + D/2.",
                  "Clear the gradients after the step, with zero_grad(set_to_none=True).",
                  "scored by its sum divided by its length to the power length_penalty (the bonus when m = K)"):
        assert not hint_problems(prose), prose
