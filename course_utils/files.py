"""Writing files so that nothing half-written is ever left behind: write under a temporary name
in the same folder, then rename (a rename within one file system is atomic). The library's
checkpoints, model exports and corpus cache, and the scripts' generated files, all write
through here.

Taught in: no lesson; lesson 05's checkpoints are written through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex (``sha256sum``'s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_name_prefix(path: Path) -> str:
    """How the temporary files and folders written before renaming to ``path`` are named."""
    return f".{path.name}."


def remove_leftovers(path: Path) -> None:
    """Delete what a process killed mid-write left next to ``path`` (never ``path`` itself)."""
    for leftover in path.parent.glob(temporary_name_prefix(path) + "*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; once the block has written it, rename it over
    ``path``. If the block fails, ``path`` is untouched and the temporary file removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=temporary_name_prefix(path), dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``folder``; once the block has filled it, it
    replaces ``folder`` (and whatever was there). If the block fails, ``folder`` is untouched.

    The old folder is renamed aside before the new one is renamed into place, and deleted only
    after: nothing is deleted while it is still ``folder``, so a reader never lists a folder
    being emptied (deleting it first would). A process killed between the two renames leaves no
    ``folder``, only temporary names, which ``remove_leftovers`` clears."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temporary_name_prefix(folder), dir=folder.parent))
    aside = None
    try:
        yield staging
        staging.chmod(0o755)
        if folder.exists():
            aside = Path(tempfile.mkdtemp(prefix=temporary_name_prefix(folder), dir=folder.parent))
            os.replace(folder, aside / folder.name)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
