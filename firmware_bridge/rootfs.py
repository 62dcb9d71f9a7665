"""A scanner's root file system as the installer writes it: "/" on the scanner, or its SD card mounted here.

Every path is checked to stay inside the root once symlinks are resolved: on a mounted card an absolute link
(`opt -> /opt`) points into *this* machine, so it is refused, never followed. Folders are made 0755 and files
0644 (or as asked) whatever the umask; a file is written under a temporary name, fsynced and renamed into place,
so a link or a half-written file at the destination is replaced, not written through. An OSError becomes a
FlashError that names the path and what to do (a full card, a read-only card, a file where a folder belongs).
Standard library only (and edge_sca.fileio, which is too): this runs on the scanner before its Python
environment exists.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edge_sca.fileio import atomic_open, atomic_symlink, fsync_dir
from firmware_bridge.errors import FlashError

DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755


class RootFS:
    """Paths under ROOT that provably stay under ROOT, and the writes the installer needs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FlashError(f"root file system {self.root} not found or not a folder; mount the SD card's root "
                             "partition there first")
        self.real = os.path.realpath(self.root)

    def path(self, rel: str | Path) -> Path:
        """ROOT/rel, refused (FlashError) when a symlink on the way leads out of ROOT."""
        p = self.root / str(rel).lstrip("/")
        self.check_inside(p)
        return p

    def check_inside(self, p: Path) -> None:
        real = os.path.realpath(p)
        if real == self.real or real.startswith(self.real.rstrip("/") + "/"):
            return
        link = _first_link_out(self.root, p, self.real)
        raise FlashError(f"{link} is a symlink to {os.readlink(link) if link.is_symlink() else '?'}, which leads "
                         f"out of the scanner's root {self.root}; refusing to write outside it. Make it a folder "
                         "or a relative link inside the root")

    def make_dirs(self, p: Path, mode: int = DIR_MODE) -> Path:
        """Create P and its missing parents (under ROOT) with MODE; FlashError for a file in the way."""
        self.check_inside(p)
        missing = []
        q = p
        while not q.exists() and not q.is_symlink():
            missing.append(q)
            q = q.parent
        if not q.is_dir():
            raise FlashError(f"{q} is a file, not a folder; is {self.root} the scanner's root partition? Move it "
                             "away and flash again")
        for d in reversed(missing):
            with fs_errors(f"creating {d}", self.root):
                os.mkdir(d, mode)
                os.chmod(d, mode)  # the umask may have taken bits away
            self.check_inside(d)
        return p

    @contextmanager
    def create(self, p: Path, mode: int = FILE_MODE) -> Iterator[BinaryIO]:
        """Write P atomically (edge_sca.fileio.atomic_open: never through a link, fsynced, renamed over P on
        success); the folder is synced with the whole file system at the end of an install."""
        self.check_inside(p.parent)
        with fs_errors(f"writing {p}", self.root), atomic_open(p, mode, sync_dir=False) as f:
            yield f

    def write_bytes(self, p: Path, data: bytes, mode: int = FILE_MODE) -> None:
        with self.create(p, mode) as f:
            f.write(data)

    def symlink(self, p: Path, target: str) -> None:
        """Point the link P at TARGET atomically (a temporary link renamed over P)."""
        self.check_inside(p.parent)
        with fs_errors(f"linking {p}", self.root):
            atomic_symlink(p, target)

    def remove_tree(self, p: Path) -> None:
        """Delete P (a folder or file) if present; a symlink is removed itself, never followed."""
        self.check_inside(p.parent)
        with fs_errors(f"removing {p}", self.root):
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.exists():
                shutil.rmtree(p)

    def free_bytes(self, p: Path) -> int:
        """Bytes free for writing at P (its nearest existing folder)."""
        while not p.exists():
            p = p.parent
        return free_bytes(p)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def sync_filesystem(path: Path) -> None:
    """Flush everything written to PATH's file system to the card: syncfs(2), one call for a whole release (a
    fsync per file costs a device flush each); a fsync of every file and folder where syncfs is missing."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs is not None and _syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(Path(folder, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def _load_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, ImportError):
        return None


_syncfs = _load_syncfs()


def _first_link_out(root: Path, p: Path, real_root: str) -> Path:
    """The first component of P (below ROOT) whose resolution leaves ROOT, for the error message."""
    q = root
    for part in p.relative_to(root).parts:
        q = q / part
        r = os.path.realpath(q)
        if q.is_symlink() and not (r == real_root or r.startswith(real_root.rstrip("/") + "/")):
            return q
    return p


_HINTS = {
    errno.ENOSPC: "no space left on the device; free space (or let flash prune old releases with a lower --keep) "
                  "and try again",
    errno.EDQUOT: "disk quota exceeded; free space and try again",
    errno.EROFS: "the file system is read-only; remount it read-write (on an SD card, check its lock switch)",
    errno.EACCES: "permission denied; run it as root (sudo) or fix the owner of the folder",
    errno.EPERM: "operation not permitted; run it as root (sudo) or fix the owner of the folder",
    errno.ENOTDIR: "a file stands where a folder belongs; is the root the scanner's root partition?",
    errno.EEXIST: "something is already there; move it away and try again",
}


def describe(exc: OSError, what: str, root: Path) -> str:
    hint = _HINTS.get(exc.errno or 0, "check the card and try again")
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{what} under {root} failed: {exc.strerror or exc}{where}; {hint}"


@contextmanager
def fs_errors(what: str, root: Path) -> Iterator[None]:
    """Turn an OSError inside the block into a FlashError that says what failed and what to do."""
    try:
        yield
    except OSError as exc:
        raise FlashError(describe(exc, what, root)) from exc
