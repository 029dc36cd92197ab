"""The lessons' widgets as web pages for a classroom projector, without the lessons around them.

    python -m course_utils.classroom                 # serves the pages with Voila, offline
    python -m course_utils.classroom --port 8870 --prompt "HAMLET.\\nTo be, or not"
    python -m course_utils.classroom --host 0.0.0.0    # the room's machines too, with a token

Three pages: ``playground`` (the sampling playground of lesson 03) and ``attention`` (the attention
explorer of lesson 06), on the model ``COURSE_MODEL`` picks, and ``chat`` (lesson 09's chat box), on
the bundled model fine-tuned for the next-speaker task as the page opens (about 10 s). Each is a
one-cell notebook written to a temporary folder and rendered by Voila, which shows the widgets and
hides the code.

Each page view starts a kernel (about 470 MB with the model). Voila shuts it down when the page
closes; a kernel whose page never connected, or went away without closing, is culled once idle
for ``--cull-idle-seconds`` (default 120), while an open page keeps its kernel however long it
sits idle. Served on any address but the loopback one, the pages need a token (printed in their
URLs), since anyone who can reach the port could otherwise run the pages' kernels.

Taught in: no lesson; it serves lesson 03's playground, lesson 06's explorer and lesson 09's chat box.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

DEFAULT_PROMPT = "JULIET.\nO Romeo, Romeo! wherefore art thou"  # lesson 03's playground prompt
DEFAULT_TEXT = ("ROMEO.\nBut soft, what light through yonder window breaks?\n"  # lesson 06's line
                "It is the east, and Juliet is the sun.")
PAGES = ("playground", "attention", "chat")
DEFAULT_CULL_IDLE_SECONDS = 120


def page_source(page: str, prompt: str = DEFAULT_PROMPT, text: str = DEFAULT_TEXT) -> str:
    """The code of the one cell that builds ``page``'s widget on the course model."""
    if page == "chat":  # lesson 09's chat box, on the bundled model tuned when the page opens
        return "\n".join([
            "from IPython.display import display",
            "from course_utils.chat import tuned_chat_model",
            "from course_utils.chat_box import ChatBox",
            "model, tokenizer = tuned_chat_model()",
            "display(ChatBox(model, tokenizer).widget)",
        ])
    if page == "playground":
        widget = f"SamplingPlayground(model, tokenizer, {prompt!r}).widget"
        module, name = "course_utils.playground", "SamplingPlayground"
    elif page == "attention":
        widget = f"AttentionExplorer(model, tokenizer, {text!r}).widget"
        module, name = "course_utils.attention_explorer", "AttentionExplorer"
    else:
        raise ValueError(f"page must be one of {PAGES}, got {page!r}")
    return "\n".join([
        "from IPython.display import display",
        "import torch",
        "from course_utils import MiniGPT, load_model",
        f"from {module} import {name}",
        "torch.set_grad_enabled(False)",
        "hf_model, tokenizer = load_model()",
        "model = MiniGPT.from_hf(hf_model).eval()",
        f"display({widget})",
    ])


def write_pages(folder: Path, prompt: str = DEFAULT_PROMPT, text: str = DEFAULT_TEXT) -> list[Path]:
    """Write ``<page>.ipynb`` for every page into ``folder``; returns their paths."""
    paths = []
    for page in PAGES:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(page_source(page, prompt, text))])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = folder / f"{page}.ipynb"
        nbformat.write(notebook, path)
        paths.append(path)
    return paths


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost``, 127.x.x.x, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume other machines can reach it
        return False


def voila_command(folder: Path, port: int, host: str = "127.0.0.1", token: str = "",
                  cull_idle_seconds: int = DEFAULT_CULL_IDLE_SECONDS) -> list[str]:
    """The command that serves ``folder``'s pages at ``http://host:port/voila/render/<page>.ipynb``
    (with ``?token=<token>`` when ``token`` is given): a failing page shows its traceback, and a
    kernel idle for ``cull_idle_seconds`` with no page connected is shut down (checked every
    ``cull_idle_seconds // 4`` seconds, at least 1)."""
    if not is_loopback(host) and not token:
        raise ValueError(f"host={host!r} lets other machines connect: pass a token")
    if not isinstance(cull_idle_seconds, int) or cull_idle_seconds < 1:
        raise ValueError(f"cull_idle_seconds must be a positive integer, got {cull_idle_seconds!r}")
    return [sys.executable, "-m", "voila", str(folder), "--no-browser", f"--port={port}", f"--Voila.ip={host}",
            f"--Voila.token={token}", "--VoilaConfiguration.show_tracebacks=True",
            f"--MappingKernelManager.cull_idle_timeout={cull_idle_seconds}",
            f"--MappingKernelManager.cull_interval={max(1, cull_idle_seconds // 4)}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils classroom", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8866, help="port to serve on (default 8866)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 lets other machines in the room connect")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the playground's prompt")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the attention explorer's text")
    parser.add_argument("--token", default="",
                        help="the pages' token (default: none on the loopback address, a random one on any other)")
    parser.add_argument("--cull-idle-seconds", type=int, default=DEFAULT_CULL_IDLE_SECONDS,
                        help="shut down a kernel with no page connected after this long idle (default 120)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if args.cull_idle_seconds < 1:
        parser.error(f"--cull-idle-seconds must be a positive integer, got {args.cull_idle_seconds}")
    token = args.token or ("" if is_loopback(args.host) else secrets.token_urlsafe(16))
    query = f"?token={token}" if token else ""
    # Stopped by Ctrl-C or SIGTERM, stop Voila (and so its kernels) first, then remove the folder.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="course-classroom-") as folder:
        write_pages(Path(folder), args.prompt, args.text)
        for page in PAGES:
            print(f"{page}: http://{args.host}:{args.port}/voila/render/{page}.ipynb{query}", flush=True)
        voila = subprocess.Popen(voila_command(Path(folder), args.port, args.host, token, args.cull_idle_seconds))
        try:
            voila.wait()
        except KeyboardInterrupt:
            voila.terminate()
            try:
                voila.wait(timeout=20)
            except subprocess.TimeoutExpired:
                voila.kill()
                voila.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
