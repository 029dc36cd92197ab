"""course_utils.post_training: chat template, answer-only targets, LoRA and the DPO loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import GPTConfig, MiniGPT, load_tokenizer
from course_utils.post_training import (
    CHAT_TOKENS,
    IGNORE_INDEX,
    LoRALinear,
    add_chat_tokens,
    add_lora,
    answer_log_probs,
    answer_only_batch,
    dpo_loss,
    merge_lora,
    render_chat,
    trainable_parameters,
    unmerge_lora,
)

CONVERSATION = [
    {"role": "system", "content": "Answer as a player would."},
    {"role": "user", "content": "Who says 'To be, or not to be'?"},
    {"role": "assistant", "content": "HAMLET"},
    {"role": "user", "content": "And in which play?"},
]


def small_model(vocab_size: int = 4096) -> MiniGPT:
    torch.manual_seed(0)
    return MiniGPT(GPTConfig(vocab_size=vocab_size, context_length=64, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.fixture
def chat_tokenizer_and_model():
    tokenizer, model = load_tokenizer(), small_model()
    ids = add_chat_tokens(tokenizer, model)
    return tokenizer, model, ids


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("turns", [1, 3, 4])
def test_our_rendering_is_what_transformers_renders_from_the_stored_template(
    chat_tokenizer_and_model, add_generation_prompt, turns
):
    tokenizer, _, _ = chat_tokenizer_and_model
    messages = CONVERSATION[:turns]
    ours = render_chat(messages, add_generation_prompt)
    theirs = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert ours == theirs
    assert ours.endswith("<|assistant|>\n") == add_generation_prompt


def test_chat_tokens_are_single_special_tokens_and_the_old_logits_do_not_move():
    tokenizer, model = load_tokenizer(), small_model()
    ids = torch.randint(0, 4096, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids)
    old_rows = model.wte.weight.detach().clone()
    new_ids = add_chat_tokens(tokenizer, model)
    assert new_ids == list(range(4096, 4096 + len(CHAT_TOKENS))) and model.config.vocab_size == 4096 + len(CHAT_TOKENS)
    encoded = tokenizer.encode(render_chat(CONVERSATION[:2], add_generation_prompt=True))
    assert sum(token in new_ids for token in encoded) == 5  # two roles, two ends, the generation prompt
    assert tokenizer.decode(encoded, skip_special_tokens=True).startswith("\nAnswer as a player would.")
    with torch.no_grad():
        after = model(ids)
    assert torch.equal(after[..., :4096], before)  # old rows unchanged: old tokens' logits unchanged
    assert model.lm_head.weight is model.wte.weight  # still tied
    assert torch.allclose(model.wte.weight[4096:], old_rows.mean(dim=0).expand(len(CHAT_TOKENS), -1))


def test_bad_messages_are_refused_with_the_rule():
    with pytest.raises(ValueError, match=r"messages\[0\] must be"):
        render_chat([{"role": "narrator", "content": "x"}])
    with pytest.raises(ValueError, match=r"messages\[1\]\['content'\] must be a string"):
        render_chat([{"role": "user", "content": "x"}, {"role": "assistant", "content": 3}])


def test_answer_only_targets_score_the_answer_and_nothing_else():
    pairs = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 14]), ([3], [4])]
    inputs, targets = answer_only_batch(pairs, pad_token_id=0)
    assert inputs.tolist() == [[5, 6, 7, 8], [10, 11, 12, 13], [3, 0, 0, 0]]
    ignored = IGNORE_INDEX
    assert targets.tolist() == [[ignored, ignored, 8, 9], [11, 12, 13, 14], [4, ignored, ignored, ignored]]
    model = small_model(vocab_size=32)
    with torch.no_grad():
        loss = model(inputs, targets)
        logits = model(inputs)
    by_hand = [F.cross_entropy(logits[0, 2:4], torch.tensor([8, 9]), reduction="sum"),
               F.cross_entropy(logits[1, 0:4], torch.tensor([11, 12, 13, 14]), reduction="sum"),
               F.cross_entropy(logits[2, 0:1], torch.tensor([4]), reduction="sum")]
    assert loss.item() == pytest.approx((sum(by_hand) / 7).item(), rel=1e-6)  # mean over the 7 answer tokens
    assert answer_log_probs(model, inputs, targets).tolist() == pytest.approx([-value.item() for value in by_hand],
                                                                               rel=1e-5)
    _, every_target = answer_only_batch(pairs, pad_token_id=0, score_prompt=True)
    assert every_target.tolist() == [[6, 7, 8, 9], [11, 12, 13, 14], [4, ignored, ignored, ignored]]
    with pytest.raises(ValueError, match="each non-empty"):
        answer_only_batch([([1], [])], pad_token_id=0)


def test_lora_starts_as_the_base_model_counts_its_parameters_and_merges_exactly():
    model = small_model(vocab_size=64)
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base_logits = model(ids)
    base_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    wrapped = add_lora(model, rank=4, alpha=8)
    assert len(wrapped) == 8  # four linear layers in each of two blocks
    # each adapted (in, out) layer adds r (in + out): c_attn 32->96, c_proj 32->32, c_fc 32->128, c_proj 128->32
    assert trainable_parameters(model) == 2 * 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    with torch.no_grad():
        assert torch.equal(model(ids), base_logits)  # B = 0 at the start
        for layer in model.modules():
            if isinstance(layer, LoRALinear):
                layer.lora_B.normal_(generator=torch.Generator().manual_seed(3))
        adapted = model(ids)
        merge_lora(model)
        merged = model(ids)
        unmerge_lora(model)
    assert (adapted - base_logits).abs().max() > 1e-2
    assert (merged - adapted).abs().max() < 1e-5
    restored = {name.replace("base.", ""): p for name, p in model.named_parameters() if "lora_" not in name}
    assert all(torch.allclose(restored[name], weight, atol=1e-6) for name, weight in base_weights.items())
    with pytest.raises(ValueError, match="rank must be an integer in"):
        LoRALinear(torch.nn.Linear(8, 4), rank=5, alpha=1)
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_lora(small_model(vocab_size=64), rank=2, alpha=2, targets=("nothing",))


def test_the_dpo_loss_on_hand_computed_cases():
    # beta 0.5; the policy moved +0.5 on the chosen and -0.5 on the rejected answer: rewards +-0.25
    loss, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]),
                                      torch.tensor([-1.5]), beta=0.5)
    assert chosen.item() == pytest.approx(0.25) and rejected.item() == pytest.approx(-0.25)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    # the policy equal to the reference: every reward 0, the loss log 2
    same = torch.tensor([-3.0, -7.0])
    loss, chosen, rejected = dpo_loss(same, same + 1, same, same + 1)
    assert loss.item() == pytest.approx(math.log(2)) and not chosen.any() and not rejected.any()
    # a batch is the mean of its rows; the gradient pushes the chosen up and the rejected down
    policy_chosen = torch.tensor([-4.0, -2.0], requires_grad=True)
    policy_rejected = torch.tensor([-3.0, -5.0], requires_grad=True)
    loss, _, _ = dpo_loss(policy_chosen, policy_rejected, torch.tensor([-4.0, -2.0]), torch.tensor([-3.0, -4.0]),
                          beta=1.0)
    expected = (math.log(2) + math.log(1 + math.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert (policy_chosen.grad < 0).all() and (policy_rejected.grad > 0).all()
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(same, same, same, same, beta=0)


def test_the_trainer_trains_on_answer_only_batches_and_with_a_loss_of_its_own(tmp_path):
    from course_utils.train import TrainConfig, Trainer

    config = TrainConfig(model=GPTConfig(vocab_size=32, context_length=16, n_layer=1, n_head=2, n_embd=16),
                         batch_size=8, max_steps=60, warmup_steps=5, learning_rate=1e-2, min_lr=1e-3,
                         eval_interval=60, checkpoint_interval=60, precision="float32")
    pairs = [([1, 2, 3 + k % 5], [20 + k % 5, 31]) for k in range(40)]  # the answer follows from the prompt

    def batches(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, len(pairs), (n,), generator=generator).tolist()
        return answer_only_batch([pairs[row] for row in rows], pad_token_id=0)

    trainer = Trainer(config, None, tmp_path / "sft", progress=False, device="cpu", batches=batches)
    inputs, targets = answer_only_batch(pairs[:5], pad_token_id=0)
    with torch.no_grad():
        before = -answer_log_probs(trainer.model, inputs, targets).mean().item()
    trainer.run()
    with torch.no_grad():
        after = -answer_log_probs(trainer.model.eval(), inputs, targets).mean().item()
    assert after < before / 4, (before, after)

    seen = []

    def recording_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(inputs.shape)
        return trainer_with_loss.model(inputs, targets) * 0.5

    trainer_with_loss = Trainer(replace_steps(config, 2), None, tmp_path / "own", progress=False, device="cpu",
                                batches=batches, loss_fn=recording_loss)
    trainer_with_loss.run()
    assert seen == [torch.Size([8, 4])] * 2
    with pytest.raises(ValueError, match="exactly one of train_tokens"):
        Trainer(config, torch.zeros(100, dtype=torch.long), tmp_path / "both", progress=False, batches=batches)


def replace_steps(config, steps: int):
    from dataclasses import replace

    return replace(config, max_steps=steps, warmup_steps=1)


def test_speeches_and_next_speaker_examples_from_a_scene():
    from course_utils.post_training import NextSpeakerExample, next_speaker_examples, speeches

    scene = ("ACT I.\n\nBer.\nWho's there?\n\nFran.\nNay, answer me.\nStand, and unfold yourself.\n\n"
             "Ber.\nLong live the king!\n\nHor.\nFriends to this ground.\n\nFran.\nBernardo?\n\n"
             "Mar.\nHolla!\n\n[Exit.]\n\nHor.\nA piece of him.")
    assert speeches(scene)[:4] == [("", ""), ("Ber", "Who's there?"), ("Fran", "Nay, answer me."),
                                   ("Ber", "Long live the king!")]
    examples = next_speaker_examples({"scene": scene}, max_chars=8)
    # Ber Fran Ber Hor -> Fran (three speakers, Fran among them); Fran Ber Hor Fran -> Mar is not
    # among them; the stage direction breaks every later window.
    assert examples == [NextSpeakerExample("Ber.\nWho's th\n\nFran.\nNay, ans\n\nBer.\nLong liv\n\nHor.\nFriends ",
                                           ("Ber", "Fran", "Ber", "Hor"), "Fran")]
    assert examples[0].names == ("Ber", "Fran", "Hor") and examples[0].others == ("Ber", "Hor")
    assert next_speaker_examples({"scene": scene}, length=3, min_speakers=2)[0].speakers == ("Fran", "Ber", "Hor")
    with pytest.raises(ValueError, match="min_speakers"):
        next_speaker_examples({"scene": scene}, length=3, min_speakers=4)


def test_the_simple_rules_pick_by_position_and_frequency():
    from course_utils.post_training import SPEAKER_RULES, NextSpeakerExample

    example = NextSpeakerExample("", ("A", "B", "C", "B", "A", "C"), "B")
    picks = {name: rule(example) for name, rule in SPEAKER_RULES.items()}
    # A, B and C speak twice each: the most frequent is the first of them to speak.
    assert picks == {"the last speaker": "C", "the speaker before the last": "A",
                     "the first speaker of the excerpt": "A", "the most frequent speaker": "A",
                     "the most frequent, not the last": "A"}
    assert SPEAKER_RULES["the most frequent, not the last"](NextSpeakerExample("", ("C", "B", "C"), "B")) == "B"


def test_choice_log_probs_scores_each_choice_with_and_without_a_shared_prefix():
    from course_utils.post_training import choice_log_probs

    model = small_model(vocab_size=32)
    questions = [([3, 4, 5], [[6], [7, 8], [9]]), ([10, 11], [[12, 13], [14]])]
    scores = choice_log_probs(model, questions)
    assert [tuple(score.shape) for score in scores] == [(3,), (2,)]
    with torch.no_grad():
        for (prompt, answers), score in zip(questions, scores):
            for answer, value in zip(answers, score):
                log_probs = F.log_softmax(model(torch.tensor([prompt + answer[:-1]])), -1)[0]
                by_hand = sum(log_probs[len(prompt) - 1 + k, token] for k, token in enumerate(answer))
                assert value.item() == pytest.approx(by_hand.item(), abs=1e-5)
    prefix = [1, 2]
    with_prefix = choice_log_probs(model, questions, shared_prefix=prefix)
    spelled_out = choice_log_probs(model, [(prefix + prompt, answers) for prompt, answers in questions])
    for cached, direct in zip(with_prefix, spelled_out):
        assert torch.allclose(cached, direct, atol=1e-5)


def test_rates_carry_their_standard_errors_and_paired_differences_are_tighter():
    from course_utils.post_training import paired_difference, rate_and_error

    rate, error = rate_and_error(torch.tensor([True] * 60 + [False] * 40))
    assert rate == pytest.approx(0.6) and error == pytest.approx(math.sqrt(0.6 * 0.4 / 100))
    first = torch.tensor([True] * 60 + [False] * 40)
    second = first.clone()
    second[:5] = False  # the same questions, five more wrong
    difference, paired_error = paired_difference(first, second)
    assert difference == pytest.approx(0.05)
    unpaired = math.sqrt(rate_and_error(first)[1] ** 2 + rate_and_error(second)[1] ** 2)
    assert paired_error < unpaired / 2
    with pytest.raises(ValueError, match="at least one"):
        rate_and_error(torch.tensor([], dtype=torch.bool))
    with pytest.raises(ValueError, match="same N"):
        paired_difference(first, second[:50])


def test_the_preference_report_of_a_model_against_itself_and_against_another():
    from course_utils.post_training import preference_report

    reference = small_model(vocab_size=32)
    questions = [([3, 4], [5, 6], [[7]]), ([8], [9], [[10, 11], [20]]), ([12, 13, 14], [15], [[16]])]
    same = preference_report(reference, reference, questions, beta=0.1)
    assert same["margin"] == 0 and same["KL"] == pytest.approx(0, abs=1e-7)
    torch.manual_seed(1)
    other = MiniGPT(reference.config).eval()
    report = preference_report(other, reference, questions, beta=0.1)
    triples = [(prompt, chosen, wrong) for prompt, chosen, rejected in questions for wrong in rejected]  # 4 pairs
    with torch.no_grad():
        inputs, targets = answer_only_batch([(p, c) for p, c, _ in triples] + [(p, r) for p, _, r in triples], 0)
        scores = answer_log_probs(other, inputs, targets)
        reference_scores = answer_log_probs(reference, inputs, targets)
        chosen_rows = [0, 1, 3]  # each question's chosen answer once
        log_p = F.log_softmax(other(inputs), -1)[chosen_rows]
        log_q = F.log_softmax(reference(inputs), -1)[chosen_rows]
    rewards = 0.1 * (scores - reference_scores)
    assert report["win rate"] == pytest.approx(float((scores[:4] > scores[4:]).float().mean()))
    assert report["margin"] == pytest.approx(float((rewards[:4] - rewards[4:]).mean()), abs=1e-6)
    scored = targets[chosen_rows] != IGNORE_INDEX
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)[scored]
    assert report["KL"] == pytest.approx(float(kl.mean()), rel=1e-5) and report["KL"] > 0
    with pytest.raises(ValueError, match="at least one"):
        preference_report(other, reference, [([3], [4], [])], beta=0.1)
