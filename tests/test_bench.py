import re
import shutil

import pytest
import torch

from conftest import make_random_gpt2
from course_utils import bench
from course_utils.bench import generation_benchmark, main
from course_utils.hub import resolve
from course_utils.speculative import DRAFT_THREADS


def test_generation_benchmark_prints_medians_and_ratios(tmp_path, capsys):
    folder = make_random_gpt2(tmp_path / "model", vocab_size=4096, n_positions=24, n_embd=32, n_layer=1, n_head=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{resolve('shakespeare-gpt')}/{name}", folder)
    medians = generation_benchmark(str(folder), runs=1, batch=2)
    assert set(medians) == {"ours, preallocated cache", "ours, growing cache", "ours, no cache",
                            "transformers generate()"}
    assert all(rate > 0 for rate in medians.values())
    printed = capsys.readouterr().out
    assert "threads" in printed and "KV cache vs no cache:" in printed
    assert "vs growing cache:" in printed and "vs transformers:" in printed


def test_bad_arguments_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["generation", "--runs", "0"])
    assert "--runs, --batch and --steps must be at least 1" in capsys.readouterr().err


def test_step_timer_records_one_time_per_generated_token_in_both_loops(tmp_path):
    import torch

    from course_utils import MiniGPT, generate
    from course_utils.measure import StepTimer, transformers_generate_exactly

    hf_model = __import__("transformers").GPT2LMHeadModel.from_pretrained(
        make_random_gpt2(tmp_path / "m", vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    prompt = torch.tensor([[1, 2, 3]])
    ours, theirs = StepTimer(), StepTimer()
    generate(MiniGPT.from_hf(hf_model), prompt, 7, stopping_criteria=[ours])
    transformers_generate_exactly(hf_model, prompt, 7, stopping_criteria=[theirs])
    for timer in (ours, theirs):
        assert len(timer.times) == 7
        assert timer.times == sorted(timer.times)


def test_transformers_generate_exactly_goes_on_where_eos_would_end_the_text(tmp_path):
    from transformers import GPT2LMHeadModel

    from course_utils.measure import transformers_generate_exactly

    hf_model = GPT2LMHeadModel.from_pretrained(
        make_random_gpt2(tmp_path / "m", vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    prompt = torch.tensor([[1, 2, 3]])
    first = int(hf_model(prompt).logits[0, -1].argmax())
    hf_model.generation_config.eos_token_id = first  # greedy's first new token now ends the text
    plain = hf_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=7, do_sample=False,
                              pad_token_id=first)
    assert plain.shape[1] == 3 + 1
    exact = transformers_generate_exactly(hf_model, prompt, 7)
    assert exact.shape == (1, 3 + 7) and first not in exact[0, 3:].tolist()


def test_count_flops_counts_fused_attention_and_matches_the_formula():
    import torch

    from course_utils import GPTConfig, MiniGPT
    from course_utils.kv_cache import PreallocatedKVCache, multiply_adds_per_token
    from course_utils.measure import count_flops

    config = GPTConfig(vocab_size=64, context_length=40, n_layer=2, n_head=2, n_embd=32)
    mini = MiniGPT(config).eval()
    ids = torch.randint(0, 64, (1, 30))
    cache = PreallocatedKVCache(30)
    with torch.no_grad():
        mini(ids[:, :-1], cache=cache)
        step = count_flops(lambda: mini(ids[:, -1:], cache=cache))
        full = count_flops(lambda: mini(ids))
    assert sum(step.values()) == 2 * multiply_adds_per_token(config, n_past=29)
    assert step["attention"] == 2 * 2 * 30 * 32 * 2  # layers x (scores + weighted sum) x 30 keys x C x 2 flops
    # the fused causal kernel is charged for the whole T x T square, as torch counts it
    assert full["attention"] == 2 * 2 * 30 * 30 * 32 * 2


def test_memory_bandwidth_and_median_seconds_are_positive():
    from course_utils.measure import memory_bandwidth
    from course_utils.timing import median_seconds

    calls = []
    assert median_seconds(lambda: calls.append(1), runs=3) >= 0
    assert len(calls) == 4  # one warm-up, three timed
    assert memory_bandwidth(megabytes=8, runs=1) > 0



def test_bytes_written_counts_new_tensors_not_views_or_in_place_updates():
    import torch.nn.functional as F

    from course_utils.measure import bytes_written
    from course_utils.model import attend

    x = torch.ones(4, 5)
    assert bytes_written(lambda: (x.t(), x.view(20), x.mul_(2))).total == 0  # nothing new
    counted = bytes_written(lambda: (x @ x.t(), x + 1))
    assert counted.total == (4 * 4 + 4 * 5) * 4 and counted.largest == 4 * 5 * 4 and counted.largest_shape == (4, 5)
    q, k, v = (torch.randn(1, 2, 64, 8) for _ in range(3))
    square = 2 * 64 * 64 * 4  # one (1, 2, 64, 64) float32 matrix
    assert bytes_written(lambda: attend(q, k, v, return_attention=True)).largest == square
    fused = bytes_written(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert fused.largest == 2 * 64 * 8 * 4  # the output alone: the fused kernel's tiles are never tensors


def test_interleaved_step_seconds_times_every_token_in_interleaved_rounds():
    from course_utils.measure import interleaved_step_seconds
    from course_utils.timing import WARMUP_CALLS

    order = []

    def way(name, tokens):
        def run(timer, steps):
            order.append(name)
            for _ in range(tokens or steps):
                timer(torch.zeros(1, 1, dtype=torch.long), None)
        return run

    seconds = interleaved_step_seconds({"a": way("a", 0), "b": way("b", 0)}, steps=5, runs=3)
    assert order == ["a", "b"] * (WARMUP_CALLS + 3)
    assert all(len(rounds) == 3 and all(len(r) == 5 and min(r) >= 0 for r in rounds) for rounds in seconds.values())
    with pytest.raises(ValueError, match="'short' generated 4 tokens, not steps=5"):
        interleaved_step_seconds({"short": way("short", 4)}, steps=5, runs=1)

def test_training_benchmark_times_both_models_and_the_ablations(capsys):
    import torch

    from course_utils import GPTConfig
    from course_utils.bench import training_benchmark
    from course_utils.train import TrainConfig

    config = TrainConfig(model=GPTConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, n_embd=16),
                         batch_size=2, max_steps=10, warmup_steps=1, precision="bfloat16")
    threads = torch.get_num_threads()
    medians = training_benchmark(config, runs=1, steps=1)
    assert set(medians) == {"MiniGPT", "transformers GPT2LMHeadModel", "MiniGPT, float32",
                            "MiniGPT, unfused attention", "MiniGPT, for-each AdamW", "MiniGPT, 1 thread"}
    assert all(rate > 0 for rate in medians.values())
    assert torch.get_num_threads() == threads  # the one-thread way restores the setting
    assert "MiniGPT vs transformers:" in capsys.readouterr().out


TINY_TRAINING = dict(vocab_size=64, context_length=16, n_layer=1, n_head=2, n_embd=16)


def test_training_benchmark_reports_its_precision_and_the_other_ones_rate(capsys):
    from course_utils.bench import training_benchmark
    from course_utils.model import GPTConfig
    from course_utils.train import TrainConfig

    config = TrainConfig(model=GPTConfig(**TINY_TRAINING), batch_size=8, precision="float32")
    medians = training_benchmark(config, runs=1, steps=1)
    printed = capsys.readouterr().out
    assert "precision: float32 (asked for)" in printed
    assert "MiniGPT, bfloat16" in medians and "gain over bfloat16" in printed
    assert all(rate > 0 for rate in medians.values())


def test_an_emulated_bfloat16_is_timed_briefly(monkeypatch, capsys):
    from course_utils import bench
    from course_utils.model import GPTConfig
    from course_utils.train import TrainConfig

    monkeypatch.setattr(bench, "is_emulated_bfloat16", lambda *args: True)
    config = TrainConfig(model=GPTConfig(**TINY_TRAINING), batch_size=16, precision="float32")
    medians = bench.training_benchmark(config, runs=2, steps=2)
    printed = capsys.readouterr().out
    assert "MiniGPT, bfloat16: emulated in software here, so timed with 1 step of 2 x 16 tokens" in printed
    assert medians["MiniGPT, bfloat16"] > 0


def test_the_speculative_benchmark_times_every_way_and_checks_the_tokens(capsys):
    from course_utils.bench import speculative_benchmark

    medians = speculative_benchmark("shakespeare-gpt", "shakespeare-gpt-draft", runs=1, new_tokens=6,
                                    draft_lengths=(2,))
    assert set(medians) == {"ours, plain (cached)", "ours, speculative K=2", "ours, speculative default (K=5)",
                            "ours, prompt lookup (5)", "transformers generate()", "transformers assisted",
                            "transformers assisted, K=5 constant"}
    assert all(rate > 0 for rate in medians.values())
    printed = capsys.readouterr().out
    assert "every way of ours gave the plain tokens" in printed
    assert re.search(r"speculative K=2 vs ours plain: [0-9.]+x   predicted [0-9.]+x", printed)
    assert "ours plain vs transformers generate():" in printed


def test_the_speculative_benchmark_without_transformers_times_only_ours(capsys):
    from course_utils.bench import speculative_benchmark

    medians = speculative_benchmark("shakespeare-gpt", "shakespeare-gpt-draft", runs=1, new_tokens=6,
                                    draft_lengths=(5,), with_transformers=False)
    assert set(medians) == {"ours, plain (cached)", "ours, speculative default (K=5)", "ours, prompt lookup (5)"}
    printed = capsys.readouterr().out
    assert re.search(r"speculative default \(K=5\) vs ours plain: [0-9.]+x   predicted [0-9.]+x", printed)
    assert "transformers" not in printed.split("every way of ours gave the plain tokens")[1]


@pytest.mark.parametrize("text, lengths", [("1-8", tuple(range(1, 9))), ("5", (5,)), ("8,3,5", (3, 5, 8))])
def test_draft_lengths_are_read_as_a_range_or_a_list(text, lengths):
    assert bench.draft_lengths(text) == lengths


@pytest.mark.parametrize("text", ["0-3", "x", "", "3-", "5,-1"])
def test_bad_draft_lengths_are_refused_by_name(text, capsys):
    with pytest.raises(SystemExit):
        main(["speculative", "--draft-lengths", text])
    assert "--draft-lengths takes a range 'A-B' or a list '3,5,8'" in capsys.readouterr().err


def test_busy_processes_run_while_the_block_runs_and_are_gone_after(monkeypatch):
    import subprocess

    from course_utils import timing

    started = []
    real_popen = subprocess.Popen
    monkeypatch.setattr(timing.subprocess, "Popen", lambda *args, **kwargs: started.append(real_popen(*args, **kwargs))
                        or started[-1])
    with timing.busy_processes(2):
        assert len(started) == 2 and all(process.poll() is None for process in started)
    assert all(process.poll() is not None for process in started)


def test_a_negative_busy_count_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["speculative", "--busy", "-1"])
    assert "--busy must be 0 or more" in capsys.readouterr().err


def test_cached_pass_seconds_times_each_chunk_size_and_leaves_the_model_usable():
    import pytest
    import torch

    from course_utils import GPTConfig, MiniGPT
    from course_utils.measure import cached_pass_seconds

    model = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    context = torch.randint(0, 50, (1, 10))
    seconds = cached_pass_seconds(model, context, [1, 3], runs=2)
    assert sorted(seconds) == [1, 3] and all(value > 0 for value in seconds.values())
    with pytest.raises(ValueError, match="every chunk size must be positive"):
        cached_pass_seconds(model, context, [0, 2])


def test_weight_matrices_count_a_tied_embedding_once():
    from course_utils import GPTConfig, MiniGPT
    from course_utils.measure import weight_matrices

    config = GPTConfig(vocab_size=50, context_length=16, n_layer=2, n_head=2, n_embd=8)
    matrices = weight_matrices(MiniGPT(config))
    assert len(matrices) == 4 * config.n_layer + 1  # c_attn, c_proj, c_fc, c_proj per block; the LM head
    assert sum(matrix.numel() for matrix in matrices) == config.n_layer * 12 * 8 * 8 + 50 * 8


@pytest.mark.parametrize("name,group", [("aten::addmm", "matrix products"), ("aten::mm", "matrix products"),
                                        ("aten::add", "elementwise arithmetic"),
                                        ("aten::topk", "sampling and stopping"),
                                        ("aten::t", "views and indexing"), ("aten::to", "cache writes and copies"),
                                        ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
                                        ("aten::native_layer_norm", "norms and activations"),
                                        ("aten::triu", "other operations")])
def test_operations_fall_in_their_group_by_exact_name(name, group):
    """By the whole name: "aten::t" is a view, while "aten::topk" (which starts with it) is sampling."""
    from course_utils.measure import operation_group

    assert operation_group(name) == group


def test_decode_floor_and_the_breakdown_of_a_step():
    from course_utils import GPTConfig, MiniGPT, generate
    from course_utils.measure import decode_floor, step_breakdown, step_paths_breakdown

    model = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    context = torch.randint(0, 50, (1, 10))
    floor = decode_floor(model, context, runs=3, bandwidth=10.0)
    assert floor.step > 0 and floor.module_step > 0 and floor.gemvs > 0 and floor.split_gemvs > 0
    assert floor.step_over_gemvs == floor.step / floor.gemvs
    assert floor.step_over_split_gemvs == floor.step / floor.split_gemvs
    assert floor.weight_bytes == 4 * (12 * 16 * 16 + 50 * 16) and floor.copy == floor.weight_bytes / 10e9
    with torch.no_grad():
        breakdown = step_breakdown(lambda: generate(model, context, 5), steps=5, runs=2)
    assert breakdown["matrix products"] > 0 and breakdown["attention"] > 0
    assert breakdown["Python between operations"] >= 0
    assert "other operations" in breakdown
    paths = step_paths_breakdown(model, context, steps=4, runs=2)
    assert set(paths) == {"modules", "step"} and set(paths["modules"]) == set(paths["step"]) == set(breakdown)
    for path in paths.values():  # each path multiplies and attends
        assert path["matrix products"] > 0 and path["attention"] > 0


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_a_split_gemv_gives_f_linears_values(parts):
    """Split by output rows (or whole, where the parts do not divide them), the same dot products."""
    from course_utils.measure import split_gemv

    torch.manual_seed(parts)
    vector = torch.randn(1, 48)
    for out_features in (96, 97):  # 97: no even split
        matrix = torch.randn(out_features, 48)
        got = split_gemv(vector, matrix, parts)
        assert got.shape == (1, out_features)
        torch.testing.assert_close(got, torch.nn.functional.linear(vector, matrix))
    transposed = torch.randn(48, 96).t()  # not contiguous: split from a copy
    torch.testing.assert_close(split_gemv(vector, transposed, parts), vector @ transposed.t())


def test_the_floor_report_prints_both_tables(tmp_path, capsys):
    from course_utils.bench import floor_report

    folder = make_random_gpt2(tmp_path / "model", vocab_size=4096, n_positions=24, n_embd=32, n_layer=1, n_head=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{resolve('shakespeare-gpt')}/{name}", folder)
    floors = floor_report([str(folder)], runs=1, steps=8, draft_name=str(folder))
    assert floors[str(folder)].gemvs > 0 and floors[f"{folder}, drafting"].gemvs > 0  # the draft, as it drafts too
    printed = capsys.readouterr().out
    assert "Python between operations" in printed and "step/GEMVs" in printed and "copy bandwidth" in printed
    assert "step/split" in printed and f"{folder} modules" in printed and f"{folder} step" in printed
    assert re.search(rf"{re.escape(str(folder))}, drafting +{DRAFT_THREADS} ", printed)  # its threads named


def test_compiled_step_times_both_and_measures_their_difference():
    from course_utils import GPTConfig, MiniGPT
    from course_utils.measure import compiled_step

    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=2, n_head=2, n_embd=16)).eval()
    result = compiled_step(model, torch.randint(0, 50, (1, 10)), runs=2)
    assert result.eager > 0 and result.compiled > 0 and result.compile_seconds > 0
    assert 0 <= result.largest_difference < 1e-4  # the same model: at most rounding apart


def test_a_step_that_cannot_be_compiled_says_why(monkeypatch):
    from course_utils import GPTConfig, MiniGPT
    from course_utils.measure import compiled_step

    def no_compiler(*args, **kwargs):
        raise OSError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    model = MiniGPT(GPTConfig(vocab_size=50, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
    with pytest.raises(RuntimeError, match="torch.compile could not compile the step here: OSError: no C"):
        compiled_step(model, torch.randint(0, 50, (1, 4)), runs=1)
