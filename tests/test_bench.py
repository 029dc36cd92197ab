import shutil

from conftest import make_random_gpt2
from course_utils.bench import generation_benchmark, main
from course_utils.hub import resolve


def test_generation_benchmark_prints_medians_and_ratios(tmp_path, capsys):
    folder = make_random_gpt2(tmp_path / "model", vocab_size=4096, n_positions=24, n_embd=32, n_layer=1, n_head=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{resolve('shakespeare-gpt')}/{name}", folder)
    medians = generation_benchmark(str(folder), runs=1, batch=2)
    assert set(medians) == {"ours, KV cache", "ours, no cache", "transformers generate()"}
    assert all(rate > 0 for rate in medians.values())
    printed = capsys.readouterr().out
    assert "threads" in printed and "KV cache vs no cache:" in printed and "vs transformers:" in printed


def test_bad_arguments_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["generation", "--runs", "0"])
    assert "--runs and --batch must be at least 1" in capsys.readouterr().err
