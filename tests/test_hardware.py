import pytest
import torch

from course_utils import hardware
from course_utils.hardware import (
    BFLOAT16_MIN_SPEEDUP,
    bfloat16_matmul_speedup,
    choose_precision,
    lesson_device,
    resolve_device,
)


def measured(speedup: float):
    """A stand-in for the start-up measurement: always reports ``speedup``, records its calls."""
    calls = []

    def measure(width: int, device: torch.device) -> float:
        calls.append((width, device))
        return speedup

    measure.calls = calls
    return measure


def test_auto_picks_float32_where_bfloat16_is_slower():
    slow = measured(0.03)  # emulated bfloat16, as on a CPU with only AVX2
    choice = choose_precision("auto", "cpu", width=256, measure=slow)
    assert choice.precision == "float32" and choice.autocast_dtype is None
    assert "0.03x" in choice.reason
    assert slow.calls == [(256, torch.device("cpu"))]


def test_auto_picks_bfloat16_only_past_the_threshold():
    assert choose_precision("auto", measure=measured(BFLOAT16_MIN_SPEEDUP)).precision == "bfloat16"
    assert choose_precision("auto", measure=measured(2.5)).autocast_dtype is torch.bfloat16
    assert choose_precision("auto", measure=measured(BFLOAT16_MIN_SPEEDUP * 0.99)).precision == "float32"


def test_an_explicit_precision_is_honoured_without_measuring():
    never = measured(100.0)
    assert choose_precision("bfloat16", measure=measured(0.01)).precision == "bfloat16"
    assert choose_precision("float32", measure=never).precision == "float32"
    assert choose_precision("float32", measure=never).reason == "asked for"
    assert never.calls == []


def test_unknown_precision_and_device_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("float16")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


def test_device_auto_prefers_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_a_missing_accelerator_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' is not available on this machine; available: cpu"):
        resolve_device("cuda")


def test_accelerators_choose_without_measuring(monkeypatch):
    never = measured(100.0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_precision("auto", "mps", measure=never).precision == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_precision("auto", "cuda", measure=never).precision == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_precision("auto", "cuda", measure=never).precision == "float32"
    assert never.calls == []


def test_lessons_run_on_the_cpu_unless_course_device_says_otherwise(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert lesson_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert lesson_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        lesson_device()


def test_the_real_measurement_returns_a_positive_ratio():
    assert bfloat16_matmul_speedup(32, torch.device("cpu"), runs=1) > 0


def test_the_machine_line_names_the_cpu_and_the_kernels_torch_picked(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_name", lambda: "Some CPU 9000")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # as under --cpu avx2
    line = hardware.describe_machine()
    assert line.startswith("Some CPU 9000 (AVX2 kernels), ") and f"torch {torch.__version__}" in line
