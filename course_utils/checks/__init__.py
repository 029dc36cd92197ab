"""Checkers for the exercise workbooks (``exercises/``, made by ``scripts/make_exercises.py``).

``checks.NAME(subject)`` checks the learner's function (or, for a marked method, its class)
against the library's own implementation on fixed inputs, smallest first, then on seeded random
ones. On the first input where they differ it raises ``ExerciseFailed`` with one message: the
input, what was expected, what came back, what differs, and where a hint is
(``checks.hint(name)``, one level per call). It never shows the solution's code, nor a hint
unasked. When every input agrees it prints one line.

One file per lesson (``lesson01`` ... ) holds that lesson's exercises as data (``Exercise``), around
the shared ``harness``, which the grader also uses to compare answers outside the learner's kernel.

Taught in: every lesson's workbook (``exercises/``).
"""

from __future__ import annotations

from ..hints import hint
from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08, lesson09, lesson10
from .harness import Exercise, ExerciseFailed, run_checks
from .models import first_differing_module

LESSONS = (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08, lesson09, lesson10)
EXERCISES: dict[str, Exercise] = {exercise.name: exercise for lesson in LESSONS for exercise in lesson.EXERCISES}


def exercises_of(lesson: str) -> list[Exercise]:
    """The exercises of lesson ``lesson`` ("01" ...), in the order the lesson marks them."""
    return [exercise for exercise in EXERCISES.values() if exercise.lesson == lesson]


# One name per exercise: checks.causal_mask(causal_mask_by_hand), as a workbook calls it.
token_log_probs = lesson01.TOKEN_LOG_PROBS
causal_mask = lesson01.CAUSAL_MASK
attention = lesson01.ATTENTION
split_heads = lesson02.SPLIT_HEADS
attention_module = lesson02.ATTENTION_MODULE
block_forward = lesson02.BLOCK_FORWARD
gpt_forward = lesson02.GPT_FORWARD
top_k = lesson03.TOP_K
top_p = lesson03.TOP_P
sampling_loop = lesson03.SAMPLING_LOOP
beam_search = lesson03.BEAM_SEARCH
repetition_penalty = lesson03.REPETITION_PENALTY
cached_attention_step = lesson04.CACHED_ATTENTION_STEP
shifted_causal_mask = lesson04.SHIFTED_CAUSAL_MASK
cached_generation = lesson04.CACHED_GENERATION
online_softmax = lesson04.ONLINE_SOFTMAX
next_token_windows = lesson05.NEXT_TOKEN_WINDOWS
training_step = lesson05.TRAINING_STEP
bits_per_byte = lesson05.BITS_PER_BYTE
previous_token_score = lesson06.PREVIOUS_TOKEN_SCORE
mean_distance = lesson06.MEAN_DISTANCE
attention_entropy = lesson06.ATTENTION_ENTROPY
induction_score = lesson06.INDUCTION_SCORE
residual_distribution = lesson07.RESIDUAL_DISTRIBUTION
speculative_step = lesson07.SPECULATIVE_STEP
greedy_acceptance = lesson07.GREEDY_ACCEPTANCE
apply_rope = lesson08.APPLY_ROPE
rms_norm = lesson08.RMS_NORM
swiglu = lesson08.SWIGLU
repeat_kv = lesson08.REPEAT_KV
label_mask = lesson09.LABEL_MASK
lora_forward = lesson09.LORA_FORWARD
dpo_loss = lesson09.DPO_LOSS
pair_counts = lesson10.PAIR_COUNTS
merge = lesson10.MERGE
train_bpe_by_hand = lesson10.TRAIN_BPE_BY_HAND
encode = lesson10.ENCODE

__all__ = ["EXERCISES", "Exercise", "ExerciseFailed", "exercises_of", "first_differing_module", "hint", "run_checks",
           *EXERCISES]
