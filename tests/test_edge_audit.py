"""Audit log: one fsynced JSON line per decision, torn last lines skipped, rotation by size."""

from __future__ import annotations

import errno
import json
import os

import pytest

from edge_sca.audit import AuditError, AuditLog, read_audit


def _rec(i: int) -> dict:
    return {"i": i, "decision": "benign", "probs": [0.9, 0.1], "frame_sha256": f"{i:064x}"}


def test_write_and_read_back(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(3):
            log.write(_rec(i))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["i"] == 1
    got = read_audit(path)
    assert [r["i"] for r in got.records] == [0, 1, 2] and got.torn == 0


def test_torn_last_line_is_skipped_and_next_record_is_intact(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        for i in range(3):
            log.write(_rec(i))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # crash mid-write of the third line
    got = read_audit(path)
    assert [r["i"] for r in got.records] == [0, 1] and got.torn == 1
    with AuditLog(path) as log:  # restart after the crash
        log.write(_rec(3))
    got = read_audit(path)
    assert [r["i"] for r in got.records] == [0, 1, 3] and got.torn == 1


def test_garbage_line_is_counted_not_fatal(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"i": 0}\n[1, 2]\n\x00\x00\x00\n{"i": 1}\n')
    got = read_audit(path)
    assert [r["i"] for r in got.records] == [0, 1] and got.torn == 2


def test_rotation_by_size_keeps_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    line_len = len(json.dumps(_rec(0), sort_keys=True, separators=(",", ":"))) + 1
    with AuditLog(path, max_bytes=line_len * 4, backups=2) as log:
        for i in range(14):
            log.write(_rec(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= line_len * 4 for p in tmp_path.iterdir())
    got = read_audit(path, include_rotated=True)
    assert [r["i"] for r in got.records] == list(range(4, 14))  # files of 4: the oldest file fell off


class _Disk:
    """os.write stand-in: passes `allow` writes through, then writes only `short` bytes of a call, then ENOSPC."""

    def __init__(self, allow: int, short: int | None = None):
        self.allow, self.short, self.calls = allow, short, 0
        self.real = os.write

    def __call__(self, fd: int, data) -> int:
        self.calls += 1
        if self.calls <= self.allow:
            return self.real(fd, data)
        if self.short is not None and self.calls == self.allow + 1:
            return self.real(fd, bytes(data[: self.short]))
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("short", [None, 7], ids=["enospc", "short-write-then-enospc"])
def test_full_disk_raises_and_leaves_only_whole_lines(tmp_path, monkeypatch, short):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write(_rec(0))
    monkeypatch.setattr(os, "write", _Disk(allow=0, short=short))
    with pytest.raises(AuditError, match="audit write failed .*No space left on device.*not shown"):
        log.write(_rec(1))
    monkeypatch.undo()
    assert path.read_bytes().endswith(b"\n")
    got = read_audit(path)
    assert [r["i"] for r in got.records] == [0] and got.torn == 0
    log.write(_rec(2))  # the disk has space again: the log goes on cleanly
    assert [r["i"] for r in read_audit(path).records] == [0, 2]


def test_a_short_write_is_continued(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:5])))  # 5 bytes per call, never fails
    with AuditLog(path) as log:
        log.write(_rec(0))
    assert [r["i"] for r in read_audit(path).records] == [0]
