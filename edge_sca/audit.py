"""The audit log: one JSON line per decision, on disk before the decision is shown.

Each line is written on an O_APPEND descriptor until every byte is out (a short `os.write` is continued) and
fsynced; only then does `write` return, so a decision is never shown without its line. When a write fails (full disk,
I/O error) the partial line is cut off again (ftruncate to the size before it), so the log stays readable, and
AuditError stops the run. A crash or a power cut can at worst tear the last line. Reopening terminates a torn tail
with a newline (so the next record starts on a line of its own) and `read_audit` skips and counts lines that do not
parse. Files rotate by size:
`audit.jsonl` -> `audit.jsonl.1` -> ... up to `backups`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_sca.errors import EdgeScaError
from edge_sca.fileio import fsync_dir
from edge_sca.settings import AuditSettings

log = logging.getLogger(__name__)

#: The audit log is readable by its owner and group only, whatever the umask (it records every decision).
AUDIT_MODE = 0o640


class AuditError(EdgeScaError):
    """The audit log cannot be written: the runtime stops rather than decide without a record."""


def _write_all(fd: int, line: bytes) -> None:
    """os.write until every byte is written; a write that makes no progress is an error (full disk)."""
    view = memoryview(line)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, f"short write: {len(line) - len(view)} of {len(line)} bytes written")
        view = view[n:]


class AuditLog:
    """Append-only, fsynced, size-rotated JSON-lines log."""

    def __init__(self, path: str | Path, max_bytes: int = AuditSettings.max_bytes,
                 backups: int = AuditSettings.backups):
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.fd: int | None = None
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log ({exc.strerror}); check the path and "
                             "free space") from exc

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, AUDIT_MODE)
        try:
            os.fchmod(self.fd, AUDIT_MODE)
        except PermissionError:  # another user's file: its owner decides its mode
            log.warning("%s: cannot set mode %o (not its owner)", self.path, AUDIT_MODE)
        size = os.fstat(self.fd).st_size
        if size and not self._ends_with_newline(size):
            log.warning("%s: last line is torn (crash mid-write?); it will be skipped on read", self.path)
            os.write(self.fd, b"\n")
            os.fsync(self.fd)

    def _ends_with_newline(self, size: int) -> bool:
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) == b"\n"

    def write(self, record: dict) -> None:
        """Append one whole record and fsync it; rotates first if the line would overflow the file.

        AuditError (and the partial line removed) when any byte cannot be written or synced.
        """
        line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=float) + "\n").encode()
        try:
            fd = self._ready(len(line))
            start = os.fstat(fd).st_size
        except OSError as exc:
            raise AuditError(f"{self.path}: audit log cannot be opened or rotated ({exc.strerror}); free space or "
                             "fix the disk before scanning again") from exc
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError as exc:
            self._cut_back(fd, start)
            raise AuditError(f"{self.path}: audit write failed ({exc.strerror or exc}); the decision was not shown. "
                             "Free space or fix the disk before scanning again") from exc
        self.written += 1

    def _ready(self, length: int) -> int:
        """The open descriptor, after rotating when `length` more bytes would overflow the file."""
        if self.fd is None:
            self._open()
        assert self.fd is not None
        if os.fstat(self.fd).st_size + length > self.max_bytes:
            self._rotate()
        assert self.fd is not None
        return self.fd

    def _cut_back(self, fd: int, size: int) -> None:
        """Remove a partial line, so the log ends with a whole record; logged when even that fails."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            log.error("%s: could not remove a partial audit line (%s); read_audit will skip it", self.path, exc)

    def _rotate(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        fsync_dir(self.path.parent)
        self._open()
        fsync_dir(self.path.parent)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AuditRead:
    """Records that parsed, and how many lines were torn or corrupt (skipped)."""

    records: list[dict] = field(default_factory=list)
    torn: int = 0


def read_audit(path: str | Path, include_rotated: bool = False) -> AuditRead:
    """Read an audit log (oldest rotated file first with `include_rotated`), skipping torn lines."""
    path = Path(path)
    files = [path]
    if include_rotated:
        rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
        files = sorted(rotated, key=lambda p: -int(p.suffix[1:])) + files
    out = AuditRead()
    for f in files:
        if not f.exists():
            continue
        for lineno, raw in enumerate(f.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                out.records.append(rec)
            except ValueError:
                out.torn += 1
                log.warning("%s line %d: torn or corrupt audit line skipped", f, lineno)
    return out
