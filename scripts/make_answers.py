"""Fill in the numbers in the answers to each lesson's "Check your understanding" (``docs/answers/``).

    python scripts/make_answers.py          # rewrite every marked number from the lessons' stored outputs
    python scripts/make_answers.py --check  # exit 1, naming each one, if any is not what the lessons give

An answer never types a number that a lesson printed or the library computes. It marks it,

    the run reached <!-- value: final_bpb -->2.54<!-- /value --> bits per byte

and ``VALUES`` below says where each value comes from: a pattern that must match the lesson's
stored outputs exactly once, or a computation with ``course_utils``. When a lesson's outputs are
regenerated (on another CPU, with other timings), run this script again; the test
``tests/test_answers.py`` fails until the answers agree with the lessons.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import torch
from transformers.generation.logits_process import TopPLogitsWarper

from course_utils import MiniGPT
from course_utils.files import write_atomically
from course_utils.kv_cache import kv_cache_bytes
from course_utils.llama import LlamaConfig, parameter_count
from course_utils.model import GPTConfig
from course_utils.sampling import apply_frequency_presence_penalty, min_p_filter, top_p_filter
from course_utils.speculative import predicted_speedup

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "notebooks"
ANSWERS = ROOT / "docs" / "answers"
MARKED = re.compile(r"<!-- value: (?P<name>[a-z0-9_]+) -->(?P<value>.*?)<!-- /value -->", re.DOTALL)
# Markdown reads a line that starts with "<!--" as raw HTML (a CommonMark HTML block, which may
# interrupt a paragraph): the rest of that line would lose its formatting and math, and the paragraph
# would break there. So no marked value starts a line.
LAST_WORD_BEFORE_A_VALUE = re.compile(r"(?<=\S) (?P<word>[^\s<>$`]+)\n(?P<indent>[ \t]*)(?=<!-- value:)")
LINE_BREAK_BEFORE_A_VALUE = re.compile(r"(?<=\S)\n[ \t]*(?=<!-- value:)")


class StoredOutputs:
    """The text a lesson's code cells printed, as stored in its ``.ipynb`` (streams and text/plain)."""

    def __init__(self, notebook: Path):
        self.lesson = notebook.stem
        texts = []
        for cell in nbformat.read(notebook, as_version=4).cells:
            for output in cell.get("outputs", []):
                texts.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
        self.text = "\n".join(texts)

    def one(self, pattern: str) -> str:
        """The first group of the one match of ``pattern`` (multiline) in the outputs."""
        matches = list(re.finditer(pattern, self.text, re.MULTILINE))
        if len(matches) != 1:
            raise ValueError(f"{self.lesson}: the pattern {pattern!r} must match its stored outputs exactly once; "
                             f"it matched {len(matches)} times")
        return matches[0].group(1)

    def number(self, pattern: str) -> float:
        return float(self.one(pattern).replace(",", ""))


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+|-?\d+", text)]


def lesson_01(out: StoredOutputs) -> dict[str, str]:
    scores = torch.tensor(numbers(out.one(r"^scores:\n (tensor\(\[\[[^a-z]*\]\]\))"))).view(6, 6)
    allowed = torch.tril(torch.ones(6, 6, dtype=torch.bool))
    zeroed_after = torch.softmax(scores, dim=-1) * allowed  # softmax over everything, the future zeroed after
    prompt, new = 10, 100
    return {
        "zeroed_row_sums": ", ".join(f"{s:.2f}" for s in zeroed_after.sum(dim=-1).tolist()),
        "first_row": out.one(r"^weights \(softmax of each row\):\n tensor\(\[\[([^\]]+)\]"),
        "unmasked_change": out.one(r"^causal=False: smallest change at positions before the edit = (\S+)$"),
        "tokens_without_cache": f"{sum(prompt + step for step in range(new)):,}",
        "tokens_with_cache": f"{prompt + (new - 1):,}",
    }


def lesson_02(out: StoredOutputs) -> dict[str, str]:
    asked = GPTConfig(vocab_size=4096, context_length=512, n_layer=6, n_head=6, n_embd=384)
    total = parameter_count(asked)
    embeddings = (asked.vocab_size + asked.context_length) * asked.n_embd

    def tying_share(config: GPTConfig) -> str:  # the head V x C that tying saves, of the untied model
        head = config.vocab_size * config.n_embd
        return f"{head / (parameter_count(config) + head):.1%}"

    ours = GPTConfig(vocab_size=4096, context_length=512, n_layer=6, n_head=8, n_embd=256)
    xl = GPTConfig(vocab_size=50257, context_length=1024, n_layer=48, n_head=25, n_embd=1600)
    tiny = GPTConfig(vocab_size=4096, context_length=512, n_layer=1, n_head=2, n_embd=16)
    try:
        MiniGPT(tiny)(torch.zeros(1, tiny.context_length + 1, dtype=torch.long))
        too_long = "no error"
    except ValueError as error:
        too_long = f"`ValueError: {error}`"  # as code, in the answer's sentence (a marker in a code block would show)
    return {
        "q1_parameters": f"{total:,}",
        "q1_embeddings": f"{embeddings:,}",
        "q1_embedding_share": f"{embeddings / total:.0%}",
        "tying_small": out.one(r"^weight tying saves [\d,]+ parameters \((\d+\.\d%) of the untied model\)$"),
        "tying_xl": tying_share(xl),
        "tying_ours": tying_share(ours),
        "loaded_logits": out.one(r"^logits \(1, 14, 4096\): largest difference: (.+)$"),
        "too_long": too_long,
    }


def lesson_03(out: StoredOutputs) -> dict[str, str]:
    shown = re.findall(r"(\w+) (\d\.\d+)", out.one(r"^ +original: (.+)$"))
    words = [word for word, _ in shown]
    logits = torch.tensor([float(p) for _, p in shown]).log()[None, :]

    def kept(filtered: torch.Tensor) -> str:
        return ", ".join(word for word, keep in zip(words, filtered[0].isfinite().tolist()) if keep)

    once = torch.zeros(1, 4)
    seen_three_times = torch.tensor([[2, 2, 2]])
    frequency = once - apply_frequency_presence_penalty(once, seen_three_times, 0.5, 0.0)
    presence = once - apply_frequency_presence_penalty(once, seen_three_times, 0.0, 0.5)
    return {
        "top_p_06": kept(top_p_filter(logits, 0.6)),
        "top_p_06_transformers": kept(TopPLogitsWarper(0.6)(None, logits.clone())),
        "min_p_05": kept(min_p_filter(logits, 0.5)),
        "min_p_05_threshold": f"{0.5 * logits.softmax(-1).max():.3f}",
        "frequency_subtracted": f"{frequency[0, 2]:.1f}",
        "presence_subtracted": f"{presence[0, 2]:.1f}",
        "unmasked_left_padding": out.one(r"^row 0 \((\d+ pads)\): without mask WRONG"),
    }


def lesson_04(out: StoredOutputs) -> dict[str, str]:
    def row(T: int) -> list[str]:
        line = out.one(rf"^( +{T} \|.+)$")
        return re.findall(r"(\d+\.\d+) M", line)

    at_8, at_64 = row(8), row(64)
    gpt2_large = GPTConfig(vocab_size=50257, context_length=1024, n_layer=36, n_head=20, n_embd=1280)
    eight_users = kv_cache_bytes(gpt2_large, 1024, batch=8, bytes_per_value=2)
    return {
        "linear_8": at_8[0], "linear_64": at_64[0], "attention_8": at_8[1], "attention_64": at_64[1],
        "cached_linear": at_8[2], "cached_attention_8": at_8[3], "cached_attention_64": at_64[3],
        "flops_without": out.one(r"^generating 512 tokens: about (\d+ GFLOP) without a cache"),
        "flops_with": out.one(r"without a cache, (\S+ GFLOP) with one$"),
        "unmasked_difference": out.one(r"^without the mask: max difference (\S+) "),
        "gpt2_large_per_sequence": out.one(r"^GPT-2 Large, 1024 tokens, float16: (\d+ MB) per sequence"),
        "eight_users": f"{eight_users / 1e9:.2f} GB",
        "eight_users_bytes": f"{eight_users:,}",
        "preallocated_bytes": out.one(r"^ preallocated, 512 positions: measured ([\d,]+) bytes"),
        "growing_bytes": out.one(r"^ +growing, 100 positions: measured +([\d,]+) bytes"),
        "preallocated_speed": out.one(r"preallocated (\S+x) the growing cache"),
        "ceiling_share": out.one(r"^bandwidth-bound ceiling: .+ = (\d+%) of it$"),
        "batch_64_ratio": out.one(r"^batch 64 reaches .+ = (\S+x) the batch-1 ceiling$"),
        "key_difference": out.one(r"^same token, positions 50 and 49: max key difference (\S+) "),
        "key_size": out.one(r"\(typical key size (\S+)\)$"),
    }


def lesson_05(out: StoredOutputs) -> dict[str, str]:
    def run_row(name: str) -> tuple[float, float]:
        line = out.one(rf"^ +{name} +(\d[\d,]+ +[\d,]+) ")
        parameters, tokens_seen = (float(x.replace(",", "")) for x in line.split())
        return parameters, tokens_seen

    training_tokens = out.number(r"^training tokens: ([\d,]+);")
    ours, _ = run_row("this lesson's run")
    bundled, _ = run_row("shakespeare-gpt")
    chinchilla = out.number(r"^ +Chinchilla +(\d+\.\d+)$")
    perplexity, bytes_per_token = 20, 4
    return {
        "bug_loss": out.one(r"shift 0 \(bug\) (\d+\.\d+)$"),
        "correct_loss": out.one(r"^loss after 100 steps: shift 1 \(correct\) (\d+\.\d+),"),
        "same_speaker_by_play": out.one(r"^validation speeches by a speaker seen in training: split by play (\d+%)"),
        "same_speaker_random": out.one(r"random chunks (\d+%)$"),
        "bits_per_token": f"{math.log2(perplexity):.2f}",
        "bits_per_byte": f"{math.log2(perplexity) / bytes_per_token:.2f}",
        "masked_train_loss": out.one(r"^final training loss: with mask (\d+\.\d+),"),
        "unmasked_train_loss": out.one(r"^final training loss: with mask \d+\.\d+, without (\d+\.\d+)$"),
        "unmasked_future_bpb": out.one(r"^validation bits per byte of the unmasked model, future visible: (\S+)$"),
        "honest_masked_bpb": out.one(r"honest \(mask on, as in generation\): with mask (\d+\.\d+),"),
        "honest_unmasked_bpb": out.one(r"honest \(mask on, as in generation\): with mask \S+, without (\d+\.\d+)$"),
        "resume_step": out.one(r"^the new Trainer starts at step (\d+)$"),
        "resume_difference": out.one(r"^largest difference between the two runs' losses: (.+)$"),
        "chinchilla_ratio": f"{chinchilla:.0f}",
        "our_parameters": f"{ours:,.0f}",
        "our_chinchilla_tokens": f"{chinchilla * ours / 1e6:.1f} million",
        "our_chinchilla_passes": f"{chinchilla * ours / training_tokens:.0f}",
        "bundled_chinchilla_tokens": f"{chinchilla * bundled / 1e6:.0f} million",
        "bundled_chinchilla_passes": f"{chinchilla * bundled / training_tokens:.0f}",
        "training_tokens": f"{training_tokens:,.0f}",
    }


def lesson_06(out: StoredOutputs) -> dict[str, str]:
    return {
        "sink_heads": out.one(r"^ +sink: +(\d+) heads"),
        "first_copy_loss": out.one(r"^shakespeare-gpt: loss on the first copy (\S+) nats"),
        "second_copy_loss": out.one(r"on the second (\S+)$"),
        "bundled_induction": out.one(r"^largest induction score of any head: (\S+)$"),
        "all_heads": out.one(r"^ +with all heads: (\S+)$"),
        "one_induction_removed": out.one(r"^ +one induction head removed: copying loss (\S+)$"),
        "all_induction_removed": out.one(r"^ +all induction heads removed: copying loss (\S+)$"),
        "induction_heads": out.one(r"^induction heads \(score > 0.3\): (\[.*?\]);"),
        "previous_token_heads": out.one(r"previous-token heads in layer 0 \(score > 0.1\): (\[.*\])$"),
        "diffuse_head": out.one(r"^most diffuse: (layer \d+ head \d+), entropy"),
        "diffuse_entropy": out.one(r"^most diffuse: .+ entropy (\S+ nats)"),
        "diffuse_rise": out.one(r"^most diffuse: .+ loss rise without it (\S+ nats)$"),
        "sharp_rise": out.one(r"^ +sharpest: .+ loss rise without it (\S+ nats)$"),
    }


def lesson_07(out: StoredOutputs) -> dict[str, str]:
    p = torch.tensor(numbers(out.one(r"^p = (\[[^\]]+\])  q =")))
    q = torch.tensor(numbers(out.one(r"  q = (\[[^\]]+\])  residual =")))
    accepted = torch.minimum(p, q)  # drafted and kept
    resample_from_p = accepted + (1 - accepted.sum()) * p  # a rejection redrawn from p, not the residual

    def best(acceptance: float, draft_cost: float, verify_cost: float) -> tuple[int, float]:
        speedups = {k: predicted_speedup(acceptance, k, draft_cost, verify_cost) for k in range(1, 41)}
        k = max(speedups, key=speedups.get)
        return k, speedups[k]

    k, speedup = best(0.8, 0.1, 1.2)
    cheaper_k, _ = best(0.8, 0.02, 1.2)
    lower_k, _ = best(0.6, 0.1, 1.2)

    def listed(values: torch.Tensor) -> str:
        return "[" + ", ".join(f"{x:.2f}" for x in values.tolist()) + "]"

    return {
        "p": listed(p), "q": listed(q),
        "residual": listed(torch.tensor(numbers(out.one(r"  residual = (\[[^\]]+\])$")))),
        "accepted_part": listed(accepted), "rejected_share": f"{1 - accepted.sum():.2f}",
        "resample_from_p": listed(resample_from_p),
        "chi_square_ours": out.one(r"^speculative sampling: chi-square p-value (\S+)$"),
        "chi_square_draft": out.one(r"^sampling from the draft alone: chi-square p-value (\S+)$"),
        "best_k": str(k), "best_speedup": f"{speedup:.2f}x",
        "best_k_cheaper": str(cheaper_k), "best_k_lower_acceptance": str(lower_k),
        "slow_predicted": out.one(r"^ +slow draft: predicted (\S+x),"),
        "slow_measured": out.one(r"^ +slow draft: predicted \S+x, measured (\S+x)$"),
        "lookup_quoted": out.one(r"^ +a speech quoted back: prompt lookup (\S+x) plain$"),
        "lookup_own": out.one(r"^ +its own text quoted: prompt lookup (\S+x) plain$"),
        "lookup_fresh": out.one(r"^ +fresh text: prompt lookup (\S+x) plain$"),
    }


def lesson_08(out: StoredOutputs) -> dict[str, str]:
    def llama(kv_heads: int, window: int | None = None) -> LlamaConfig:  # the shape of Mistral 7B and Llama 3 8B
        return LlamaConfig(vocab_size=32000, context_length=8192, n_layer=32, n_head=32, n_kv_heads=kv_heads,
                           n_embd=4096, intermediate_size=14336, sliding_window=window)

    grouped, full = llama(8), llama(32)
    per_layer_kv = (parameter_count(full) - parameter_count(grouped)) // (full.n_layer * (32 - 8))  # per kv head
    mistral = llama(8, window=4096)
    width = out.number(r"^Llama 7B: +C = (\d+) gives F")
    gpt2_ms = out.one(r"^GPT-2 style +\S+ +\d+ +(\S+) ")
    llama_ms = out.one(r"^Llama style +\S+ +\d+ +(\S+) ")
    ffn = out.number(r"^Llama 7B: +C = \d+ gives F = (\d+)$")
    return {
        "rope_score": out.one(r"^  q at    3, k at    0: score (\S+)$"),
        "alibi_32": out.one(r"^ALiBi +32 tokens: (\S+) "),
        "alibi_256": out.one(r"^ALiBi .+256 tokens: (\S+)$"),
        "cache_ratio": f"{kv_cache_bytes(full, 4096) / kv_cache_bytes(grouped, 4096):.0f}",
        "kv_projection_full": f"{per_layer_kv * 32 / 1e6:.1f} million",
        "kv_projection_grouped": f"{per_layer_kv * 8 / 1e6:.1f} million",
        "parameters_full": f"{parameter_count(full) / 1e9:.2f}B",
        "parameters_grouped": f"{parameter_count(grouped) / 1e9:.2f}B",
        "mistral_reach": f"{mistral.n_layer * (mistral.sliding_window - 1):,}",
        "mistral_cache_window": f"{kv_cache_bytes(mistral, 8192, bytes_per_value=2) / 2**30:.2f} GiB",  # float16
        "mistral_cache_full": f"{kv_cache_bytes(grouped, 8192, bytes_per_value=2) / 2**30:.2f} GiB",
        "swiglu_exact": f"{2 / 3 * 4 * width:,.1f}",
        "swiglu_rounded": f"{ffn:,.0f}",
        "swiglu_multiple": f"{ffn / 256:.0f}",
        "slower_per_step": "Llama style" if float(llama_ms) > float(gpt2_ms) else "GPT-2 style",
        "gpt2_steps": out.one(r"^GPT-2 style +\S+ +(\d+) "),
        "llama_steps": out.one(r"^Llama style +\S+ +(\d+) "),
        "gpt2_ms": gpt2_ms,
        "llama_ms": llama_ms,
        "gpt2_bpb": out.one(r"^GPT-2 style +\S+ +\d+ +\S+ +(\S+) +\S+$"),
        "llama_bpb": out.one(r"^Llama style +\S+ +\d+ +\S+ +(\S+) +\S+$"),
    }


def lesson_09(out: StoredOutputs) -> dict[str, str]:
    sft_table = r"^two runs of .*\n.*\n.*\n"  # the table after the two SFT runs: header, then the base row
    column = r" +(\d+% ± \d+) +(\d+% ± \d+) "
    masked = re.search(sft_table + r" +SFT, answer-only loss" + column, out.text, re.MULTILINE)
    unmasked = re.search(sft_table + r".*\n +SFT, loss on every token" + column, out.text, re.MULTILINE)
    if not masked or not unmasked:
        raise ValueError("09_assistant: the SFT table after the two runs is not in the stored outputs")
    rank, width_in, width_out = 8, 768, 2304  # GPT-2 124M's c_attn at the question's rank
    rate, gap, disagreement = 0.6, 0.03, 0.2  # question 7
    new_tokens_take = r"the new tokens take \S+ of the probability on average, (\S+) at most"
    return {
        "zero_shot": out.one(r"^question format, 0 solved examples in the prompt: (\d+% ± \d+)"),
        "four_shot": out.one(r"^question format, 4 solved examples in the prompt: (\d+% ± \d+)"),
        "query_chance": out.one(r"^chance on these questions: (\d+%)"),
        "positions": out.one(r"^(\d+) positions, \d+ of them scored"),
        "scored": out.one(r"^\d+ positions, (\d+) of them scored"),
        "masked_choice": masked.group(1),
        "masked_ends": masked.group(2),
        "unmasked_choice": unmasked.group(1),
        "unmasked_ends": unmasked.group(2),
        "mean_rows_max": out.one(r"^ +mean rows: " + new_tokens_take),
        "random_rows_max": out.one(r"^random rows: " + new_tokens_take),
        "gpt2_lora": f"{rank * (width_in + width_out):,}",
        "gpt2_c_attn": f"{width_in * width_out:,}",
        "gpt2_fraction": f"{rank * (width_in + width_out) / (width_in * width_out):.2%}",
        "lora_count": out.one(r"^LoRA r=8 on \d+ matrices: ([\d,]+) trainable"),
        "lora_share": out.one(r"trainable parameters, ([\d.]+%) of full"),
        "dpo_kl": out.one(r"^step +40: .*KL (\S+) nats per token"),
        # 2 sqrt(v / N) < gap  <=>  N > 4 v / gap^2
        "unpaired_questions": f"{math.ceil(4 * 2 * rate * (1 - rate) / gap**2):,}",
        "paired_questions": f"{math.ceil(4 * disagreement / gap**2):,}",
    }


def lesson_10(out: StoredOutputs) -> dict[str, str]:
    return {
        "japanese_bytes": out.one(r"^ Japanese: +\d+ characters, +(\d+) bytes"),
        "japanese_tokens": out.one(r"^ Japanese: .+, +(\d+) tokens$"),
        "english_characters": out.one(r"^ +English: +(\d+) characters"),
        "english_tokens": out.one(r"^ +English: .+, +(\d+) tokens$"),
        "merges": out.one(r"^by hand: (\S+) merges;"),
        "bpt_1024": out.one(r"^ +1024 +(\S+) "),
        "bpt_16384": out.one(r"^ +16384 +(\S+) "),
        "tokens_1024": out.one(r"^ +1024 +\S+ +(\S+) "),
        "tokens_16384": out.one(r"^ +16384 +\S+ +(\S+) "),
    }


VALUES: dict[str, Callable[[StoredOutputs], dict[str, str]]] = {
    "01_causal_masking": lesson_01, "02_mini_gpt": lesson_02, "03_sampling_and_generate": lesson_03,
    "04_kv_cache": lesson_04, "05_training": lesson_05, "06_attention": lesson_06,
    "07_speculative_decoding": lesson_07, "08_modern_decoders": lesson_08, "09_assistant": lesson_09,
    "10_tokenizers": lesson_10,
}


def values_for(lesson: str) -> dict[str, str]:
    return VALUES[lesson](StoredOutputs(LESSONS / f"{lesson}.ipynb"))


def filled(text: str, values: dict[str, str], source: str) -> str:
    """``text`` with every marked value replaced by ``values``; every value must be used."""
    used = set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in values:
            raise ValueError(f"{source}: the value {name!r} is not defined in scripts/make_answers.py")
        used.add(name)
        return f"<!-- value: {name} -->{values[name]}<!-- /value -->"

    result = no_value_starts_a_line(MARKED.sub(replace, text))
    if unused := sorted(set(values) - used):
        raise ValueError(f"{source}: values defined but never used: {', '.join(unused)}")
    return result


def no_value_starts_a_line(text: str) -> str:
    """``text`` with the last word of the line before each line-starting value moved down in front of
    it (or, if that word is math, code or a value, the two lines joined): the same paragraphs, no raw HTML."""
    text = LAST_WORD_BEFORE_A_VALUE.sub(lambda m: f"\n{m['indent']}{m['word']} ", text)
    return LINE_BREAK_BEFORE_A_VALUE.sub(" ", text)


def differences(path: Path, values: dict[str, str]) -> list[str]:
    """Each marked value of ``path`` that is not what the lesson gives, as 'name: shown, should be'."""
    return [f"{path.name}: {m['name']} shows {m['value']!r}, the lesson gives {values.get(m['name'])!r}"
            for m in MARKED.finditer(path.read_text()) if values.get(m["name"]) != m["value"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an answer is out of date")
    args = parser.parse_args()
    stale = []
    for lesson in VALUES:
        path = ANSWERS / f"{lesson}.md"
        values = values_for(lesson)
        text = path.read_text()
        new_text = filled(text, values, path.name)
        if args.check:
            stale += differences(path, values)
            if no_value_starts_a_line(text) != text:
                stale.append(f"{path.name}: a marked value starts a line, which Markdown reads as raw HTML")
        elif new_text != text:
            write_atomically(path, new_text.encode())
            print(f"{path.relative_to(ROOT)}: updated")
    if stale:
        print("\n".join(stale) + "\nrun python scripts/make_answers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
