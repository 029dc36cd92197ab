"""course_utils.files: nothing half-written is left behind."""

from __future__ import annotations

import pytest

from course_utils.files import atomic_folder, atomic_path, remove_leftovers, write_atomically


def test_write_atomically_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_atomically(target, "new")
    write_atomically(tmp_path / "bytes.bin", b"\x00\x01")
    assert target.read_text() == "new" and (tmp_path / "bytes.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bytes.bin", "out.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with atomic_folder(folder) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["new.txt"]
    with pytest.raises(RuntimeError), atomic_folder(folder) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in folder.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_remove_leftovers_deletes_only_temporaries_of_that_path(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_text("real")
    (tmp_path / ".checkpoint.pt.abc123").write_text("left by a killed process")
    (tmp_path / ".checkpoint.pt.dir").mkdir()
    (tmp_path / ".other.pt.abc").write_text("another file's")
    remove_leftovers(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abc", "checkpoint.pt"]
