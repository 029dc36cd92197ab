"""The classroom pages' notebooks and command, without a browser (tests/browser/ opens them)."""

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils import classroom


def test_every_page_is_a_one_cell_notebook_that_builds_its_widget(tmp_path):
    paths = classroom.write_pages(tmp_path, prompt="HAMLET.\nTo be", text="KING.\nHow now")
    assert [path.name for path in paths] == ["playground.ipynb", "attention.ipynb", "chat.ipynb"]
    playground, attention, chat = (nbformat.read(path, as_version=4) for path in paths)
    assert len(playground.cells) == len(attention.cells) == len(chat.cells) == 1
    assert "SamplingPlayground(model, tokenizer, 'HAMLET.\\nTo be')" in playground.cells[0].source
    assert "AttentionExplorer(model, tokenizer, 'KING.\\nHow now')" in attention.cells[0].source
    assert "ChatBox(model, tokenizer)" in chat.cells[0].source
    for notebook in (playground, attention, chat):
        compile(notebook.cells[0].source, "page", "exec")


def test_a_page_runs_and_displays_its_widget():
    from IPython.utils.capture import capture_output

    namespace: dict = {}
    try:
        with capture_output() as captured:
            exec(classroom.page_source("attention"), namespace)
    finally:
        torch.set_grad_enabled(True)  # the page turns gradients off, for this whole process
    # Outside a kernel, display() prints the widget's repr.
    assert captured.stdout.startswith("VBox(children=(Textarea(value='ROMEO.")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="page must be one of"):
        classroom.page_source("slides")
    with pytest.raises(SystemExit):
        classroom.main(["--port", "0"])


def test_the_command_serves_the_folder_on_the_port(tmp_path):
    command = classroom.voila_command(tmp_path, 8870, "0.0.0.0", token="secret")
    assert command[1:4] == ["-m", "voila", str(tmp_path)]
    assert "--port=8870" in command and "--Voila.ip=0.0.0.0" in command and "--no-browser" in command
    assert "--Voila.token=secret" in command


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "classroom.local"])
def test_a_host_other_machines_can_reach_needs_a_token(host):
    with pytest.raises(ValueError, match="pass a token"):
        classroom.voila_command(Path("pages"), 8870, host)
    for loopback in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert classroom.is_loopback(loopback)
    assert not classroom.is_loopback(host)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *arguments):
        return None


def _status(url: str) -> int:
    """The response's status (a redirect not followed); 0 while nothing listens."""
    try:
        return urllib.request.build_opener(_NoRedirect).open(url, timeout=60).status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0


def test_voila_takes_every_option_needs_the_token_and_culls_a_page_nobody_opened(tmp_path):
    """The real server, on a one-cell page: no option is "not recognized", a request without the
    token is refused, and the kernel of a view whose websocket never connects is culled."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('page')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "page.ipynb")
    port = _free_port()
    command = classroom.voila_command(tmp_path, port, "127.0.0.1", token="secret", cull_idle_seconds=2)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        page = f"http://127.0.0.1:{port}/voila/render/page.ipynb"
        deadline = time.monotonic() + 60
        while _status(page + "?token=secret") != 200:
            assert time.monotonic() < deadline and server.poll() is None, "Voila did not serve the page"
            time.sleep(0.5)
        assert _status(page) in (302, 403)  # no token: sent to the login page or refused
        time.sleep(8)  # idle for 2 s, checked every second
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "not recognized" not in output.lower() and "unrecognized" not in output.lower(), output
    assert "Culling 'idle' kernel" in output, output
