"""edge_sca.fileio: streamed sha256, and atomic writes that leave the old file whole when writing fails."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from edge_sca.fileio import atomic_open, atomic_path, atomic_symlink, atomic_write_bytes, atomic_write_text, sha256_file


def test_sha256_file_matches_hashlib_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "model.tflite"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    atomic_write_text(tmp_path / "m.json", "{}\n")
    assert (tmp_path / "m.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["m.json", "model.tflite", "sub"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path, suffix=".json") as tmp:
        assert tmp.name.endswith(".json") and tmp.parent == tmp_path and tmp != path
        tmp.write_text("half a rec")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_atomic_open_sets_the_mode_and_never_writes_through_a_link_left_at_its_temporary_name(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("keep")
    path = tmp_path / "release.json"
    path.write_text("old")
    # a planted link where the temporary file would go must be replaced, not followed
    (tmp_path / f"release.json.tmp{os.getpid()}").symlink_to(outside)
    old_umask = os.umask(0o077)
    try:
        with atomic_open(path, 0o644, sync_dir=False) as f:
            f.write(b"new")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new" and outside.read_text() == "keep"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "release.json"]


def test_atomic_open_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "index.json"
    path.write_text("old")
    with pytest.raises(OSError), atomic_open(path) as f:
        f.write(b"half")
        raise OSError("card full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_atomic_symlink_repoints_a_link(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    atomic_symlink(tmp_path / "current", "a")
    atomic_symlink(tmp_path / "current", "b")
    assert os.readlink(tmp_path / "current") == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "current"]
