"""Files written so that a crash or power cut never leaves half of one, and files hashed without reading them whole.

Every artifact the package writes (models, manifests, training records, reports, the image cache, the scanner's
release files) goes through `atomic_path` or `atomic_open`: the data lands in a temporary file beside the target,
is fsynced, and is renamed over the target, so a reader sees the old file or the new one, never a torn one.
Standard library only: the scanner's installer uses it before the device's Python environment exists.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed in `chunk`-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (a no-op where the folder cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to fsync a directory; the rename itself has happened
        pass
    finally:
        os.close(fd)


def _temporary(path: Path, suffix: str = "") -> Path:
    """The temporary name beside `path`: ends in `.tmp<pid>` (plus `suffix`), so globs such as `*.tflite` never
    pick up a leftover."""
    return path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")


def _rename_into_place(tmp: Path, path: Path, sync_dir: bool) -> None:
    """Rename the finished temporary over `path` (deleting it if that fails); with `sync_dir`, make it durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`, on error delete it.

    For writers that need a file name (numpy memmaps, Keras `save`). `suffix` is appended to the temporary name
    for writers that insist on an extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _rename_into_place(tmp, path, sync_dir=True)


@contextmanager
def atomic_open(path: str | Path, mode: int | None = None, sync_dir: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` when the block ends: a new temporary file beside it (created with
    O_EXCL | O_NOFOLLOW, so a link left there is never written through), fsynced and renamed over `path`; on
    error it is deleted and `path` is untouched.

    `mode`: the file's permission bits whatever the umask (None: the umask decides). `sync_dir=False` leaves the
    folder's fsync to the caller (an installer that syncs the whole file system once at the end). The folder must
    exist: its mode is the caller's business.
    """
    path = Path(path)
    tmp = _temporary(path)
    tmp.unlink(missing_ok=True)  # a crashed writer's leftover under this pid (a link is removed, not followed)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # the umask may have taken bits away
        with os.fdopen(fd, "wb") as f:
            fd = -1  # the file object owns it now
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    _rename_into_place(tmp, path, sync_dir)


def atomic_symlink(path: str | Path, target: str | Path, sync_dir: bool = True) -> None:
    """Point the link `path` at `target` atomically: a temporary link renamed over `path`, so a reader always
    finds the old target or the new one."""
    path = Path(path)
    tmp = _temporary(path)
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    _rename_into_place(tmp, path, sync_dir)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename), making its folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (temporary file, fsync, rename), making its folder if needed."""
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_between_markers(path: str | Path, begin: str, end: str, body: str) -> bool:
    """Rewrite the text between two marker lines of a document (a generated table); True when the file changed.

    ValueError when a marker is missing, so the caller can say which command owns the markers.
    """
    path = Path(path)
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} lacks the {begin} / {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{body}\n{end}{tail}"
    if new != text:
        atomic_write_text(path, new)
    return new != text
