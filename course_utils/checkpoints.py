"""Training checkpoints on disk: written atomically behind a checksum of their bytes, read back
without unpickling arbitrary objects, and a checkpoint of another configuration told apart field
by field.

Taught in: lesson 05 (section 6, stop and resume); the ``Trainer`` writes and reads them.
"""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import torch

from .files import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


# A checkpoint file is this line with the SHA-256 of the rest, then torch.save's bytes.
CHECKSUM_HEADER = b"course_utils.train checkpoint sha256="


def save_atomically(obj: dict, path: Path) -> None:
    """``torch.save`` ``obj`` behind a line holding the checksum of its bytes, to a temporary file
    in the same folder, then rename over ``path``. A full disk says so, naming the folder (the
    previous file at ``path`` is intact)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    try:
        with atomic_path(path) as temporary:
            temporary.write_bytes(CHECKSUM_HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        message = (f"no space left on {path.parent} for {path.name} ({len(payload):,} bytes); the previous "
                   f"{path.name}, if any, is intact: free some space and resume")
        raise OSError(errno.ENOSPC, message) from error


class CheckpointError(ValueError):
    """A checkpoint file is truncated, foreign or from another configuration."""


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by ``save_atomically``, its checksum verified first (a flipped
    byte or a cut-short file is a ``CheckpointError``); never unpickles arbitrary objects."""
    data = path.read_bytes()
    if not data.startswith(CHECKSUM_HEADER):
        raise CheckpointError(f"{path} is not a course_utils training checkpoint (none written before checkpoints "
                              "carried a checksum is read: train into another --out)")
    header, _, payload = data.partition(b"\n")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(CHECKSUM_HEADER):]:
        raise CheckpointError(f"{path} fails its checksum: the file is damaged or cut short; delete it to train "
                              "from the start, or train into another --out")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, wrong format, disallowed pickle content
        reason = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{path} is not a readable training checkpoint ({reason})") from error
    if not isinstance(state, dict) or state.get("format") != "course_utils.train/1":
        raise CheckpointError(f"{path} is not a course_utils training checkpoint")
    return state


def configuration_differences(saved: dict, current: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(field, saved value, current value) of each field that differs, nested ones as ``model.n_layer``."""
    found = []
    for name in sorted(set(saved) | set(current)):
        mine, theirs = saved.get(name), current.get(name)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            found += configuration_differences(mine, theirs, f"{prefix}{name}.")
        elif mine != theirs:
            found.append((prefix + name, mine, theirs))
    return found
