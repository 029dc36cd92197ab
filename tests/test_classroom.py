"""The classroom pages' notebooks and command, without a browser (tests/browser/ opens them)."""

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
    command = classroom.voila_command(tmp_path, 8870, "0.0.0.0")
    assert command[1:4] == ["-m", "voila", str(tmp_path)]
    assert "--port=8870" in command and "--Voila.ip=0.0.0.0" in command and "--no-browser" in command
