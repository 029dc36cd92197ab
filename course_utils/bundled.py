"""The bundled models' names, where their files are, and their checksums: what ``hub`` loads and
``doctor`` checks, with no dependency beyond the standard library, so that the doctor can report
on them when torch or transformers is missing or broken.

Taught in: no lesson; every lesson loads a bundled model through ``hub``.
"""

from __future__ import annotations

from pathlib import Path

from .files import sha256_of

ASSETS = Path(__file__).parent / "assets"
CHECKSUMS = ASSETS / "SHA256SUMS"
BUNDLED_MODELS = ("shakespeare-gpt", "shakespeare-gpt-draft")
DEFAULT_MODEL = "shakespeare-gpt"
DEFAULT_DRAFT_MODEL = "shakespeare-gpt-draft"


class ModelUnavailableError(OSError):
    """A model or tokenizer could not be found locally nor downloaded."""


def read_checksums(path: Path = CHECKSUMS) -> dict[str, str]:
    """{path relative to the assets folder: sha256} from a ``sha256sum``-format file."""
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            sums[name] = digest
    return sums


# Each bundled file found to match its checksum, with the (size, mtime) it had then: a file is
# hashed once per process, and again only if it changes.
_VERIFIED: dict[Path, tuple[int, int]] = {}


def damaged_files(name: str, assets: Path = ASSETS,
                  checksums: Path = CHECKSUMS) -> tuple[dict[str, str], list[str], list[str]]:
    """The bundled model ``name``'s files that ``checksums`` lists ({path relative to ``assets``:
    sha256}), and of those the missing ones and the ones whose SHA-256 differs."""
    listed = {relative: digest for relative, digest in read_checksums(checksums).items()
              if relative.startswith(name + "/")}
    missing, changed = [], []
    for relative, digest in listed.items():
        path = assets / relative
        if not path.is_file():
            missing.append(relative)
            continue
        stat = path.stat()
        if _VERIFIED.get(path) == (stat.st_size, stat.st_mtime_ns):
            continue
        if sha256_of(path) != digest:
            changed.append(relative)
        else:
            _VERIFIED[path] = (stat.st_size, stat.st_mtime_ns)
    return listed, missing, changed


def verify_bundled(name: str, assets: Path = ASSETS, checksums: Path = CHECKSUMS) -> None:
    """Check the bundled model ``name``'s files against ``SHA256SUMS``, which the course ships
    (and ``python -m course_utils doctor`` checks too): a missing, damaged or changed file raises
    ``ModelUnavailableError`` naming it and saying how to restore it, instead of loading a model
    that quietly generates nonsense."""
    listed, missing, changed = damaged_files(name, assets, checksums)
    if not listed:
        raise ModelUnavailableError(f"{checksums} lists no file of the bundled model {name!r}; reinstall the course")
    for relative in [*missing, *changed]:
        what = "is missing" if relative in missing else f"does not match its SHA-256 in {checksums.name}"
        raise ModelUnavailableError(
            f"{assets / relative} {what}: the file is damaged or was changed. "
            f"Restore it: `git checkout -- course_utils/assets/{relative}` in a clone of the course, "
            f"or reinstall the course."
        )
