"""Real Chromium driving the lessons' widgets: servers, the browser, and what a learner reads.

Chromium comes from the system (Debian's ``chromium`` package, or ``CHROMIUM=/path``), driven by
Python Playwright; Playwright's own browser download is never used. Without Chromium the tests
are skipped with one line saying how to enable them, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from course_utils.doctor import chromium_executable

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
HOW_TO_ENABLE = "install Chromium (Debian: apt-get install chromium) and `pip install -e .[dev]`, or set CHROMIUM=/path"
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed"
    if chromium_executable() is None:
        return "no Chromium found"
    return None


MISSING = _missing()
SKIPPING = MISSING is not None and os.environ.get("CI") != "true"  # in CI the browser fixture fails instead


def pytest_ignore_collect(collection_path, config):
    """Without Chromium, collect no browser test (and say so once, below)."""
    if SKIPPING and collection_path.name.startswith("test_"):
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    if SKIPPING:
        terminalreporter.write_line(f"browser tests skipped: {MISSING}; to run them, {HOW_TO_ENABLE}")


def pytest_sessionfinish(session, exitstatus):
    if SKIPPING and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    if MISSING is not None:
        pytest.fail(f"browser tests cannot run in CI: {MISSING}; .ci/run must {HOW_TO_ENABLE}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
          timeout: float = 90.0) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends; waits until ``ready_url`` answers 200."""
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                  env={**os.environ, **SERVER_ENV, **(env or {})}, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(ready_url, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2:4]} did not start; its log:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield server
        finally:
            stop(server)


def stop(server: subprocess.Popen) -> None:
    """Stop a server and everything it started: SIGTERM lets it shut its kernels down (they run in
    sessions of their own), then SIGKILL for whatever is left of its process group."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab on a free local port with a token, serving a scratch folder (the lessons are
    copied there, so running them never writes into the repo). Yields (base URL, token, folder)."""
    folder = tmp_path_factory.mktemp("lab")
    settings = tmp_path_factory.mktemp("lab-settings")
    # Render every cell (JupyterLab may otherwise leave cells off screen out of the page), and do
    # not ask about news: a fresh user's settings, nothing from the real user's.
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}
                           }.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
               "--LabApp.extension_manager=readonly"]  # no extension searches on PyPI
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    env = {"JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(settings / "runtime")}
    with serve(command, f"http://127.0.0.1:{port}/api/status?token={token}", folder.parent / "lab.log", env):
        yield f"http://127.0.0.1:{port}", token, folder


@pytest.fixture(scope="session")
def classroom(tmp_path_factory) -> Iterator[str]:
    """``python -m course_utils.classroom`` (the README's command) on a free port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "course_utils.classroom", f"--port={port}"]
    with serve(command, f"http://127.0.0.1:{port}/", tmp_path_factory.mktemp("voila") / "voila.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def course_model():
    """The course's default model in this process, to compute what the page should show."""
    from course_utils import MiniGPT, load_model

    hf_model, tokenizer = load_model()
    return MiniGPT.from_hf(hf_model).eval(), tokenizer
