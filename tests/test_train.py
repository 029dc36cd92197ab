import copy
from dataclasses import replace

import pytest
import torch

from course_utils.model import GPTConfig, MiniGPT
from course_utils.recipes import Distillation, distillation_hooks
from course_utils.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    build_model,
    learning_rate_at,
    load_checkpoint,
    random_batch,
)

TINY = TrainConfig(
    model=GPTConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1),
    batch_size=4, max_steps=12, warmup_steps=3, eval_interval=4, checkpoint_interval=5, precision="float32",
)
TOKENS = torch.randint(0, 64, (2000,), generator=torch.Generator().manual_seed(0))


def fake_eval(model):
    return float(sum(p.detach().sum() for p in model.parameters()))


def test_learning_rate_warms_up_then_decays_to_min_lr():
    config = TrainConfig(max_steps=100, warmup_steps=10, learning_rate=1e-3, min_lr=1e-4)
    rates = [learning_rate_at(step, config) for step in range(101)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[100] == pytest.approx(1e-4)


def test_targets_are_inputs_shifted_by_one():
    tokens = torch.arange(100)
    inputs, targets = random_batch(tokens, 3, 10, torch.Generator().manual_seed(0))
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert torch.equal(targets[:, -1], inputs[:, -1] + 1)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    straight = Trainer(TINY, TOKENS, tmp_path / "straight", eval_fn=fake_eval, progress=False)
    straight.run()

    first = Trainer(TINY, TOKENS, tmp_path / "resumed", eval_fn=fake_eval, progress=False)
    first.run(stop_after=7)  # stops between checkpoints: the checkpoint at step 7 is the last one
    del first
    resumed = Trainer(TINY, TOKENS, tmp_path / "resumed", eval_fn=fake_eval, progress=False)
    assert resumed.step == 7
    resumed.run()

    assert resumed.history["loss"] == pytest.approx(straight.history["loss"], abs=1e-6)
    assert resumed.history["val_bpb"] == pytest.approx(straight.history["val_bpb"], abs=1e-6)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert (a - b).abs().max() <= 1e-6, name


def test_truncated_or_foreign_checkpoints_fail_clearly(tmp_path):
    trainer = Trainer(TINY, TOKENS, tmp_path / "run", progress=False)
    trainer.run(stop_after=2)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="fails its checksum: the file is damaged or cut short"):
        load_checkpoint(checkpoint)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a course_utils training checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_from_another_configuration_is_refused(tmp_path):
    Trainer(TINY, TOKENS, tmp_path / "run", progress=False).run(stop_after=5)
    other = replace(TINY, model=replace(TINY.model, n_layer=TINY.model.n_layer + 1), batch_size=8)
    layers = TINY.model.n_layer
    with pytest.raises(CheckpointError, match=rf"another configuration \(batch_size {TINY.batch_size} there, 8 here, "
                                              rf"model.n_layer {layers} there, {layers + 1} here\)"):
        Trainer(other, TOKENS, tmp_path / "run", progress=False)


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(TINY, TOKENS, tmp_path / "run", progress=False)
    trainer.run(stop_after=5)
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"]

    def killed(obj, target):
        target.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(stop_after=10)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == before
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["checkpoint.pt"]


def test_distillation_loss_mixes_cross_entropy_and_kl():
    from course_utils.recipes import distillation_loss

    logits = torch.randn(2, 5, 11)
    teacher = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    cross_entropy = torch.nn.functional.cross_entropy(logits.view(-1, 11), targets.view(-1))
    assert torch.isclose(distillation_loss(logits, teacher, targets, 0.0), cross_entropy)
    assert distillation_loss(teacher, teacher, targets, 1.0).abs() < 1e-6  # KL of a model with itself
    p, log_p, log_q = teacher.softmax(-1), teacher.log_softmax(-1), logits.log_softmax(-1)
    kl = (p * (log_p - log_q)).sum(-1).mean()
    assert torch.isclose(distillation_loss(logits, teacher, targets, 1.0), kl, atol=1e-6)
    mixed = distillation_loss(logits, teacher, targets, 0.25)
    assert torch.isclose(mixed, 0.75 * cross_entropy + 0.25 * kl, atol=1e-6)


def distilled_trainer(config, teacher, out, distillation=None):
    """A Trainer distilling ``teacher`` into a fresh student, as ``recipes.main`` builds it."""
    torch.manual_seed(config.seed)
    student = build_model(config.model)
    batches, loss_fn = distillation_hooks(distillation or Distillation(teacher="t"), teacher, student, TOKENS, config)
    return Trainer(config, None, out, progress=False, model=student, batches=batches, loss_fn=loss_fn)


def test_a_distilled_run_minimises_the_kl_to_its_teacher_through_the_hooks(tmp_path):
    config = replace(TINY, model=replace(TINY.model, dropout=0.0), max_steps=4, warmup_steps=1)
    torch.manual_seed(config.seed)
    twin = build_model(config.model)  # the student's own starting weights: nothing to learn
    assert distilled_trainer(config, twin, tmp_path / "twin").train_step() < 1e-6
    teacher = MiniGPT(config.model)
    with torch.no_grad():  # sharp predictions (the head is tied to wte): far from the student's near-uniform ones
        teacher.wte.weight.mul_(30)
    trainer = distilled_trainer(config, teacher, tmp_path / "run")
    trainer.run()
    assert trainer.step == 4 and trainer.history["loss"][0] > 0.1
    assert trainer.history["loss"][-1] < trainer.history["loss"][0]
    with pytest.raises(ValueError, match="weight must be in"):
        Distillation(teacher="t", weight=0.0)



def test_a_draft_learns_from_the_teachers_own_greedy_texts(tmp_path):
    from course_utils import generate
    from course_utils.recipes import TEACHER_PROMPT_TOKENS, teacher_greedy_texts

    model = replace(TINY.model, context_length=40, dropout=0.0)
    teacher = MiniGPT(model).eval()
    texts = teacher_greedy_texts(teacher, TOKENS, 3, 40, torch.Generator().manual_seed(TINY.seed), batch_size=2)
    assert texts.shape == (3, 40)
    for row in texts:  # a training window, then exactly the teacher's greedy continuation of it
        prompt = row[None, :TEACHER_PROMPT_TOKENS]
        assert torch.equal(generate(teacher, prompt, 40 - TEACHER_PROMPT_TOKENS)[0], row)
    config = TrainConfig(model=model, batch_size=4, max_steps=3, warmup_steps=1, precision="float32")
    trainer = distilled_trainer(config, teacher, tmp_path / "run",
                                Distillation(teacher="t", teacher_texts=3, teacher_text_fraction=0.5))
    seen = []
    trainer.model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    trainer.run()
    rows = {tuple(row.tolist()) for row in texts}
    assert all(sum(tuple(row.tolist()) in rows for row in batch) == 2 for batch in seen)  # half of each batch
    with pytest.raises(ValueError, match="teacher_text_fraction > 0 needs teacher_texts"):
        Distillation(teacher="t", teacher_text_fraction=0.5)
    with pytest.raises(ValueError, match="teacher_text_fraction must be in"):
        Distillation(teacher="t", teacher_texts=3, teacher_text_fraction=1.5)

KILLED_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import TINY, TOKENS
from course_utils.train import Trainer

trainer = Trainer(TINY, TOKENS, Path({out!r}), progress=False)
trainer.run(stop_after=5)  # a good checkpoint at step 5
write_bytes = Path.write_bytes

def slow_write_bytes(self, data):  # half the checkpoint written, then a stall: the process is killed in there
    write_bytes(self, data[: len(data) // 2])
    print("writing", flush=True)
    time.sleep(60)

Path.write_bytes = slow_write_bytes
trainer.run(stop_after=10)
"""


def test_a_process_killed_while_writing_leaves_the_previous_checkpoint(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    code = KILLED_WRITER.format(tests=str(Path(__file__).parent), out=str(out))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.kill()  # SIGKILL: no finally clause, no clean-up in the child
        process.wait()
    assert len(list(out.iterdir())) == 2  # the checkpoint and the half-written temporary file
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    resumed = Trainer(TINY, TOKENS, out, progress=False)
    assert resumed.step == 5
    assert [p.name for p in out.iterdir()] == ["checkpoint.pt"]  # the stale temporary file is gone


def test_the_trainer_says_which_precision_and_device_it_uses(tmp_path, capsys):
    trainer = Trainer(TINY, TOKENS, tmp_path / "run", progress=True, device="cpu")
    assert trainer.device == torch.device("cpu") and trainer.precision.precision == "float32"
    assert "training on cpu in float32 (asked for)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


def test_bfloat16_training_runs_under_autocast(tmp_path, monkeypatch):
    entered = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, dtype=None, enabled=True):
        entered.append((device_type, dtype, enabled))
        return real_autocast(device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    for precision in ("bfloat16", "float32"):
        config = TrainConfig(model=TINY.model, batch_size=2, max_steps=1, warmup_steps=0, precision=precision)
        Trainer(config, TOKENS, tmp_path / precision, progress=False).run()
    assert entered == [("cpu", torch.bfloat16, True), ("cpu", torch.bfloat16, False)]


def test_resuming_an_auto_run_in_another_precision_is_stated(tmp_path, monkeypatch, capsys):
    from course_utils import train
    from course_utils.hardware import PrecisionChoice

    auto = TrainConfig(model=TINY.model, batch_size=4, max_steps=12, warmup_steps=3, checkpoint_interval=5)
    monkeypatch.setattr(train, "choose_precision", lambda *args: PrecisionChoice("bfloat16", "auto: fast here"))
    Trainer(auto, TOKENS, tmp_path / "run", progress=False).run(stop_after=5)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["precision"] == "bfloat16"
    monkeypatch.setattr(train, "choose_precision", lambda *args: PrecisionChoice("float32", "auto: slow here"))
    resumed = Trainer(auto, TOKENS, tmp_path / "run", progress=False)
    said = capsys.readouterr().out
    assert resumed.step == 5 and "was trained in bfloat16; this machine continues in float32" in said
    # An explicit precision is part of the configuration: another one is refused outright.
    Trainer(TINY, TOKENS, tmp_path / "explicit", progress=False).run(stop_after=5)
    with pytest.raises(CheckpointError, match="another configuration"):
        Trainer(replace(TINY, precision="bfloat16"), TOKENS, tmp_path / "explicit", progress=False)


@pytest.mark.parametrize("teacher", [False, True], ids=["cross-entropy", "distillation"])
def test_four_micro_batches_of_four_give_the_weights_of_one_batch_of_sixteen(tmp_path, teacher):
    # No dropout: its random masks would differ between one draw for 16 rows and four for 4.
    config = replace(TINY, model=replace(TINY.model, dropout=0.0), batch_size=16, max_steps=6, warmup_steps=2,
                     grad_clip=0.5)
    runs = {}
    for micro_batch, accumulation in ((16, 1), (4, 4)):
        run = replace(config, batch_size=micro_batch, gradient_accumulation_steps=accumulation)
        if teacher:  # the distillation loss is a mean over tokens too
            torch.manual_seed(1)
            trainer = distilled_trainer(run, MiniGPT(config.model), tmp_path / f"run{micro_batch}",
                                        Distillation(teacher="t", weight=0.5))
        else:
            trainer = Trainer(run, TOKENS, tmp_path / f"run{micro_batch}", progress=False)
        losses = [trainer.train_step() for _ in range(config.max_steps)]
        runs[micro_batch] = (losses, trainer.model.state_dict())
    (big_losses, big), (small_losses, small) = runs[16], runs[4]
    assert max(abs(a - b) for a, b in zip(big_losses, small_losses)) < 1e-5
    assert max((big[name] - small[name]).abs().max().item() for name in big) < 1e-5


def test_gradient_accumulation_steps_must_be_positive():
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be a positive integer"):
        replace(TINY, gradient_accumulation_steps=0)


def test_the_command_line_refuses_an_accumulation_that_does_not_divide_the_batch():
    from course_utils.recipes import main

    with pytest.raises(SystemExit) as exit_:
        main(["--preset", "shakespeare-gpt", "--gradient-accumulation-steps", "3"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("option,value", [("--max-steps", "0"), ("--max-steps", "-1"), ("--minutes", "0"),
                                          ("--gradient-accumulation-steps", "-4"), ("--threads", "-1"),
                                          ("--max-steps", "ten")])
def test_a_bad_argument_is_a_usage_error_naming_it(option, value, capsys):
    """argparse's exit 2 and a line naming the option, never a traceback, and 0 is not 'not given'."""
    from course_utils.recipes import main

    with pytest.raises(SystemExit) as exit_:
        main(["--preset", "shakespeare-gpt", option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: must be a positive" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, monkeypatch):
    """Refused before the corpus is even read (a read-only folder once failed at the first save,
    150 s in); here the folder's parent is a file, which even root cannot write into."""
    from course_utils import recipes

    monkeypatch.setattr(recipes, "load_corpus", lambda: pytest.fail("work started before the check"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        recipes.main(["--preset", "shakespeare-gpt", "--out", str(tmp_path / "a-file" / "run")])
    assert exit_.value.code == 2 and "cannot be written" in capsys.readouterr().err


def test_the_model_cards_command_reproduces_the_run():
    """Every override that changes what is trained is in the card's command, which parses back to
    the same configuration."""
    from course_utils.recipes import _configured, _parser, reproduce_command

    argv = ["--preset", "shakespeare-gpt-draft", "--max-steps", "7", "--minutes", "2.5", "--precision", "float32",
            "--gradient-accumulation-steps", "2", "--teacher", "runs/x/model", "--out", "elsewhere", "--threads", "1"]
    command = reproduce_command(argv)
    assert command == ("python -m course_utils.train --preset shakespeare-gpt-draft --max-steps 7 --minutes 2.5 "
                       "--precision float32 --gradient-accumulation-steps 2 --teacher runs/x/model")
    parser = _parser()
    assert _configured(parser.parse_args(command.split()[3:]), parser) == _configured(parser.parse_args(argv), parser)


def test_the_model_cards_commands_run(tmp_path):
    """The card's two commands, run as a learner would paste them: its training command trains
    (and writes a card naming itself again), and its evaluate line scores the exported folder to
    the bits per byte in metrics.json. compare-gpt is not bundled, so the evaluate line must name
    the folder (it once said ``--model compare-gpt``, which fails). About two minutes."""
    import json
    import re
    import subprocess
    import sys

    from course_utils.recipes import reproduce_command

    out = tmp_path / "run"
    command = reproduce_command(["--preset", "compare-gpt", "--max-steps", "1"])
    subprocess.run([sys.executable, *command.split()[1:], "--out", str(out)], check=True, capture_output=True)
    card = (out / "model" / "README.md").read_text()
    assert f"    {command}\n" in card
    evaluate_line = re.search(r"Reproduce with `(python -m course_utils\.evaluate [^`]+)`", card).group(1)
    assert evaluate_line == f"python -m course_utils.evaluate --model {out / 'model'}"
    scored = subprocess.run([sys.executable, *evaluate_line.split()[1:]], check=True, capture_output=True, text=True)
    printed = float(re.search(r": ([0-9.]+) bits per byte", scored.stdout).group(1))
    assert printed == json.loads((out / "model" / "metrics.json").read_text())["validation_bits_per_byte"]


def test_a_time_budget_stops_the_run_and_drives_the_decay(tmp_path, monkeypatch):
    config = replace(TINY, max_steps=1000, max_minutes=0.5, checkpoint_interval=1000)
    assert learning_rate_at(500, config, elapsed=0.0) > learning_rate_at(500, config, elapsed=15.0)
    assert learning_rate_at(5, config, elapsed=30.0) == pytest.approx(config.min_lr)
    clock = iter(range(0, 10_000, 3))  # every step "takes" 3 s
    monkeypatch.setattr("course_utils.train.time.perf_counter", lambda: next(clock))
    trainer = Trainer(config, TOKENS, tmp_path / "run", eval_fn=fake_eval, progress=False)
    trainer.run()
    assert trainer.step == 10 and trainer.elapsed == 30  # 10 steps of 3 s fill 0.5 minutes
    assert trainer.history["eval_step"][-1] == 10  # evaluated at the end, as at max_steps
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 10
    with pytest.raises(ValueError, match="max_minutes"):
        replace(TINY, max_minutes=0)


def test_sequences_can_be_shorter_than_the_context(tmp_path):
    config = replace(TINY, sequence_length=6)
    trainer = Trainer(config, TOKENS, tmp_path / "run", progress=False)
    seen = []
    original = trainer.model.forward
    trainer.model.forward = lambda ids, targets=None, **kw: (seen.append(ids.shape), original(ids, targets, **kw))[1]
    trainer.train_step()
    assert seen == [(4, 6)]
    with pytest.raises(ValueError, match="sequence_length"):
        replace(TINY, sequence_length=17)


def test_side_by_side_runs_get_equal_time(tmp_path, monkeypatch):
    from course_utils.train import train_side_by_side

    fast = replace(TINY, max_steps=1000, max_minutes=1.0, checkpoint_interval=1000)
    slow = replace(fast, model=replace(TINY.model, n_layer=2))
    trainers = [Trainer(fast, TOKENS, tmp_path / "fast", progress=False),
                Trainer(slow, TOKENS, tmp_path / "slow", progress=False)]
    now = [0.0]
    steps_taken = []

    def fake_clock():
        return now[0]

    def timed(trainer, seconds):
        original = trainer.train_step

        def step():  # the clock advances while a step runs: 2 s for one model, 5 s for the other
            now[0] += seconds
            steps_taken.append(trainer is trainers[0])
            return original()
        trainer.train_step = step

    timed(trainers[0], 2.0)
    timed(trainers[1], 5.0)
    monkeypatch.setattr("course_utils.train.time.perf_counter", fake_clock)
    train_side_by_side(trainers)
    assert [t.step for t in trainers] == [30, 12] and [t.elapsed for t in trainers] == [60, 60]
    assert steps_taken[:4] == [True, False, True, True]  # always the one behind in time
    with pytest.raises(ValueError, match="time budget"):
        train_side_by_side([Trainer(TINY, TOKENS, tmp_path / "none", progress=False)])


def test_side_by_side_runs_until_each_has_its_steps_in_equal_time(tmp_path, monkeypatch):
    from course_utils.train import train_side_by_side

    fast = replace(TINY, max_steps=1000, checkpoint_interval=1000)
    slow = replace(fast, model=replace(TINY.model, n_layer=2))
    trainers = [Trainer(fast, TOKENS, tmp_path / "fast", progress=False),
                Trainer(slow, TOKENS, tmp_path / "slow", progress=False)]
    now = [0.0]
    for trainer, seconds in zip(trainers, (2.0, 5.0)):
        def step(original=trainer.train_step, seconds=seconds):
            now[0] += seconds
            return original()
        trainer.train_step = step
    monkeypatch.setattr("course_utils.train.time.perf_counter", lambda: now[0])
    train_side_by_side(trainers, steps=4)
    # the slow run's 4 steps take 20 s; the fast one, stepped whenever it is behind in time, took 8 in 16 s
    assert [t.step for t in trainers] == [8, 4] and [t.elapsed for t in trainers] == [16, 20]
    for wrong in (0, 1.5):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            train_side_by_side(trainers, steps=wrong)
    with pytest.raises(ValueError, match="max_steps"):
        train_side_by_side(trainers, steps=2000)


def test_the_trainer_trains_a_model_it_did_not_build_and_refuses_a_mismatched_one(tmp_path):
    torch.manual_seed(3)
    given = MiniGPT(TINY.model)
    before = given.wte.weight.detach().clone()
    trainer = Trainer(TINY, TOKENS, tmp_path / "given", progress=False, model=given)
    trainer.run(stop_after=2)
    assert trainer.model is given and not torch.equal(given.wte.weight, before)
    built = Trainer(TINY, TOKENS, tmp_path / "built", progress=False)
    built.run(stop_after=2)  # same data and optimizer; only the starting weights differ
    assert not torch.equal(built.model.wte.weight, given.wte.weight)
    other = MiniGPT(GPTConfig(vocab_size=TINY.model.vocab_size, context_length=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="must match"):
        Trainer(TINY, TOKENS, tmp_path / "other", progress=False, model=other)


def test_every_training_path_takes_the_same_step():
    """The Trainer (and through it the copying model and fine-tuning) and the benchmark all go
    through training_step: one micro-batch of it in float32 is lesson 05's five lines; N
    micro-batches give the gradient of their mean."""
    from course_utils.train import make_optimizer, training_step

    torch.manual_seed(0)
    first = MiniGPT(replace(TINY.model, dropout=0.0))  # no dropout: the two ways draw no random numbers
    second = copy.deepcopy(first)
    inputs, targets = random_batch(TOKENS, 4, 16, torch.Generator().manual_seed(1))
    training_step(first, make_optimizer(first, TINY), [(inputs, targets)], grad_clip=0.5)
    optimizer = make_optimizer(second, TINY)
    loss = second(inputs, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(second.parameters(), 0.5)
    optimizer.step()
    optimizer.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    halves = copy.deepcopy(second)
    whole = copy.deepcopy(second)
    two_halves = [(inputs[:2], targets[:2]), (inputs[2:], targets[2:])]
    training_step(halves, torch.optim.SGD(halves.parameters(), lr=0.1), two_halves, grad_clip=None)
    training_step(whole, torch.optim.SGD(whole.parameters(), lr=0.1), [(inputs, targets)], grad_clip=None)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(halves.parameters(), whole.parameters()))
    with pytest.raises(ValueError, match="micro_batches must hold"):
        training_step(whole, torch.optim.SGD(whole.parameters(), lr=0.1), [])


def test_fine_tuning_trains_the_given_model_in_place_with_its_schedule(tmp_path):
    from course_utils.train import fine_tuning_trainer

    model = MiniGPT(replace(TINY.model, dropout=0.0))
    before = model.wte.weight.detach().clone()
    trainer = fine_tuning_trainer(model, lambda n, generator: random_batch(TOKENS, n, 16, generator), tmp_path,
                                  steps=4, learning_rate=2e-3, batch_size=2)
    config = trainer.config
    assert (config.batch_size, config.warmup_steps, config.min_lr, config.precision) == (2, 4, 2e-4, "float32")
    trainer.run()
    assert trainer.model is model and trainer.step == 4 and not torch.equal(model.wte.weight, before)
    longer = fine_tuning_trainer(model, trainer.batches, tmp_path / "long", steps=80, learning_rate=1e-3)
    assert longer.config.warmup_steps == 10


def test_python_m_course_utils_train_runs_the_command():
    """The bundled models' cards name ``python -m course_utils.train``: it is ``recipes.main``."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "course_utils.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--preset" in result.stdout and "compare-llama" in result.stdout


def test_a_flipped_byte_in_a_checkpoint_is_caught_on_resume(tmp_path):
    """64 flipped bytes once resumed, with Adam's exp_avg_sq off by 2e10: now the checksum refuses
    even one."""
    Trainer(TINY, TOKENS, tmp_path / "run", progress=False).run(stop_after=3)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its checksum"):
        Trainer(TINY, TOKENS, tmp_path / "run", progress=False)


def test_a_full_disk_says_so_and_names_the_folder(tmp_path, monkeypatch):
    """Once torch's "[enforce fail at inline_container.cc:672]"; the previous checkpoint stays."""
    import errno
    from pathlib import Path

    trainer = Trainer(TINY, TOKENS, tmp_path / "run", progress=False)
    trainer.run(stop_after=2)

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match=rf"no space left on {tmp_path / 'run'} for checkpoint.pt"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
