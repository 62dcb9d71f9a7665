"""edge_sca.fileio: streamed sha256, and atomic writes that leave the old file whole when writing fails."""

from __future__ import annotations

import hashlib

import pytest

from edge_sca.fileio import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file


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
