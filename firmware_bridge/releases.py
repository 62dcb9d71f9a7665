"""The scanner's releases: install a bundle verified on the scanner, switch `current`, keep a history, roll
back, prune. The same code runs on the scanner (`python -m firmware_bridge scanner ...`, which `flash --host`
sends over ssh) and on a mounted SD card (`flash --root`). Standard library plus `cryptography` only.

Layout under ROOT (PREFIX defaults to /opt/cancernet-sca):
    PREFIX/releases/<version>-<UTC time>/   one folder per release, with its BUNDLE.json and BUNDLE.sig
    PREFIX/current -> releases/<...>        the active release (a relative symlink, switched atomically)
    PREFIX/history                          the releases that were current, oldest first, one per line; the
                                            last is current, a rollback removes it. Rollback and pruning follow
                                            this file, not install order.
    PREFIX/staging/                         a bundle being unpacked (and .lock); nothing outside it is written
                                            before the whole bundle verified. Emptied by every install.
    /etc/cancernet-sca/bundle-signing.pub   the key bundles must be signed with: the scanner's own
    /etc/cancernet-sca/compatible           optional: this device's compatible string (default: DEVICE_KIND/the
                                            architecture of ROOT's /usr/bin/python3)
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edge_sca.fileio import fsync_dir, sha256_file
from firmware_bridge import signing
from firmware_bridge.archive import (
    COMPATIBLE_RE,
    DEVICE_KIND,
    EXECUTABLE,
    INDEX,
    SIGNATURE,
    BundleIndex,
    OpenMember,
    Sink,
    parse_index,
    read_bundle,
    version_key,
)
from firmware_bridge.errors import BundleError, FlashError
from firmware_bridge.rootfs import DIR_MODE, EXEC_MODE, FILE_MODE, RootFS, fs_errors, sync_filesystem

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/opt/cancernet-sca"
ETC = "etc/cancernet-sca"
PUBLIC_KEY = f"{ETC}/bundle-signing.pub"
COMPATIBLE_FILE = f"{ETC}/compatible"
HISTORY, STAGING, LOCK = "history", "staging", ".lock"
RELEASE_RE = re.compile(r"^(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)-(?P<time>\d{8}T\d{6}\.\d{6}Z)$")
#: Free space an install needs beyond the release itself: the larger of these.
SPACE_MARGIN_BYTES = 64 << 20
SPACE_MARGIN_FRACTION = 0.10
#: The current and the previous release are always kept, so fewer than this is refused.
MIN_KEEP = 2
#: ELF e_machine -> architecture name (as `uname -m` says it).
ELF_MACHINES = {183: "aarch64", 40: "armv7l", 62: "x86_64", 3: "i686", 243: "riscv64"}
ELF_CANDIDATES = ("usr/bin/python3", "bin/sh", "usr/bin/sh")


def release_key(name: str) -> str:
    """Install-order sort key of a release folder name ('' for names that are not releases)."""
    m = RELEASE_RE.match(name)
    return m.group("time") if m else ""


def new_release_name(version: str) -> str:
    now = time.time()
    return f"{version}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1e6):06d}Z"


def space_needed(release_bytes: int) -> int:
    return release_bytes + max(SPACE_MARGIN_BYTES, int(release_bytes * SPACE_MARGIN_FRACTION))


class _ReleaseFile:
    """One file of a release being unpacked (flushed to the card with the rest: rootfs.sync_filesystem)."""

    def __init__(self, fd: int) -> None:
        self._f = os.fdopen(fd, "wb")

    def write(self, data: bytes, /) -> int:
        return self._f.write(data)

    def close(self) -> None:
        self._f.close()


class _Staging:
    """The release being unpacked: its name and partial folder, once the signed index said what it is."""

    name = ""
    partial: Path | None = None


class ReleaseStore:
    """The releases under ROOT/PREFIX; the methods that change anything hold PREFIX/staging/.lock."""

    def __init__(self, root: str | Path = "/", prefix: str = DEFAULT_PREFIX) -> None:
        self.fs = RootFS(root)
        self.prefix = prefix
        self.base = self.fs.path(prefix)
        self.notes: list[str] = []

    # --- what is there ------------------------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        return self.fs.path(Path(self.prefix, *parts))

    def releases(self) -> list[str]:
        """Release folders, oldest install first."""
        d = self._dir("releases")
        if not d.is_dir():
            return []
        return sorted((p.name for p in d.iterdir() if release_key(p.name) and p.is_dir()), key=release_key)

    def current(self) -> str | None:
        link = self._dir("current")
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def history(self) -> list[str]:
        """What was current, oldest first, ending with the current release; mended after an interrupted switch
        (the `current` link is the truth) and without releases whose folders are gone."""
        existing, cur = set(self.releases()), self.current()
        try:
            hist = [r for r in self._dir(HISTORY).read_text().split() if r in existing]
        except FileNotFoundError:  # a scanner flashed before the history existed: install order up to current
            hist = [r for r in self.releases() if cur and release_key(r) <= release_key(cur)]
        if cur is None or cur not in existing:
            return []
        if cur in hist:
            return hist[:len(hist) - hist[::-1].index(cur)]
        return [*hist, cur]

    def version_of(self, release: str | None) -> str | None:
        """The version in a release's BUNDLE.json (None for a release installed before verification existed)."""
        if release is None:
            return None
        try:
            return parse_index(self._dir("releases", release, INDEX).read_bytes(), release).version
        except (OSError, BundleError):
            return None

    def public_key(self) -> Path:
        key = self.fs.path(PUBLIC_KEY)
        if not key.is_file():
            raise FlashError(f"the scanner has no bundle-signing key at {key}: it verifies every bundle against its "
                             "own key. Install it once with `flash ... --install-key` (copies keys/bundle-signing.pub)"
                             " or `sudo install -m 0644 bundle-signing.pub /etc/cancernet-sca/` on the scanner")
        return key

    def compatible(self) -> str:
        """This device's compatible string: ETC/compatible, else DEVICE_KIND/<architecture of ROOT>."""
        f = self.fs.path(COMPATIBLE_FILE)
        if f.is_file():
            text = f.read_text().strip()
            if not COMPATIBLE_RE.match(text):
                raise FlashError(f"{f} holds {text!r}, not a compatible string like {DEVICE_KIND}/aarch64")
            return text
        arch = elf_arch(self.fs)
        if arch is None:
            raise FlashError(f"cannot tell what device {self.fs.root} is: no {', '.join(ELF_CANDIDATES)} to read its "
                             f"architecture from. Is it the scanner's root partition? Else write the compatible "
                             f"string (e.g. {DEVICE_KIND}/aarch64) to {f}")
        return f"{DEVICE_KIND}/{arch}"

    def status(self) -> dict:
        hist = self.history()
        try:
            compatible: str | None = self.compatible()
        except FlashError:
            compatible = None
        return {"prefix": self.prefix, "releases": self.releases(), "current": self.current(),
                "previous": hist[-2] if len(hist) > 1 else None, "history": hist,
                "version": self.version_of(self.current()), "compatible": compatible,
                "public_key": self.fs.path(PUBLIC_KEY).is_file(), "free_bytes": self.fs.free_bytes(self.base)}

    # --- locking and leftovers ----------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold PREFIX/staging/.lock: one flash, rollback or prune at a time on a scanner."""
        staging = self.fs.make_dirs(self._dir(STAGING))
        with fs_errors("locking the release folder", self.fs.root):
            fd = os.open(staging / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FlashError(f"another flash or rollback is running on this scanner ({staging / LOCK} is "
                                 "held); wait for it to finish") from None
            yield
        finally:
            os.close(fd)

    def _clean_leftovers(self) -> list[str]:
        """Remove what interrupted installs left (under the lock, so none is running)."""
        gone = []
        staging = self._dir(STAGING)
        for p in sorted(staging.iterdir()) if staging.is_dir() else []:
            if p.name != LOCK:
                self.fs.remove_tree(p)
                gone.append(f"{STAGING}/{p.name}")
        releases = self._dir("releases")
        for p in sorted(releases.glob("*.partial")) if releases.is_dir() else []:  # the pre-staging layout's
            self.fs.remove_tree(p)
            gone.append(f"releases/{p.name}")
        if gone:
            self.notes.append(f"removed leftovers of an interrupted flash: {', '.join(gone)}")
        return gone

    # --- install ------------------------------------------------------------------------------------------
    def install(self, source: BinaryIO, where: str, allow_downgrade: bool = False) -> dict:
        """Verify the bundle streaming from SOURCE against the scanner's key and unpack it as a new release
        (not current yet). Nothing outside PREFIX/staging is written until every file checked out."""
        key, device = self.public_key(), self.compatible()
        with self.locked():
            self._clean_leftovers()
            current = self.current()
            current_version = self.version_of(current)
            staging = _Staging()

            def on_index(index: BundleIndex) -> None:
                self._check_compatible(index, device)
                self._check_version(index, current, current_version, allow_downgrade)
                self._check_space(index)
                staging.name = new_release_name(index.version)
                staging.partial = self.fs.make_dirs(self._dir(STAGING, f"{staging.name}.partial"))

            try:
                with fs_errors(f"unpacking {where}", self.fs.root):
                    index = read_bundle(source, key, where, on_index, self._opener(staging))
                    assert staging.partial is not None  # on_index ran
                    self.fs.write_bytes(staging.partial / INDEX, index.raw)
                    self.fs.write_bytes(staging.partial / SIGNATURE, index.signature)
                    sync_filesystem(staging.partial)
                    releases = self.fs.make_dirs(self._dir("releases"))
                    os.replace(staging.partial, releases / staging.name)
                    fsync_dir(releases)
            except BaseException:
                if staging.partial is not None:
                    self.fs.remove_tree(staging.partial)
                raise
        log.info("installed %s as release %s", where, staging.name)
        return {"release": staging.name, "version": index.version, "compatible": index.compatible,
                "models": index.models, "bytes": index.total_bytes, "current": current,
                "current_version": current_version, "notes": list(self.notes)}

    def _opener(self, staging: _Staging) -> OpenMember:
        def open_member(name: str, size: int) -> Sink:
            assert staging.partial is not None
            path = staging.partial / name
            self.fs.make_dirs(path.parent)
            mode = EXEC_MODE if name in EXECUTABLE else FILE_MODE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            os.fchmod(fd, mode)
            return _ReleaseFile(fd)
        return open_member

    def _check_compatible(self, index: BundleIndex, device: str) -> None:
        if index.compatible != device:
            raise FlashError(f"the bundle is for {index.compatible}, this scanner is {device}: refusing another "
                             f"device's bundle. Build one for it with `make bundle ARGS='--compatible {device}'`")

    def _check_version(self, index: BundleIndex, current: str | None, current_version: str | None,
                       allow_downgrade: bool) -> None:
        if current_version is None or version_key(index.version) >= version_key(current_version):
            return
        if not allow_downgrade:
            raise FlashError(f"bundle version {index.version} is older than the current release {current} "
                             f"(version {current_version}); refusing a downgrade. Pass --allow-downgrade if you "
                             "mean it, or `rollback` to a release the scanner kept")
        self.notes.append(f"downgrade from {current_version} to {index.version} (--allow-downgrade)")

    def _check_space(self, index: BundleIndex) -> None:
        need, free = space_needed(index.total_bytes), self.fs.free_bytes(self.base)
        if free < need:
            raise FlashError(f"not enough space on {self.fs.root}: the release needs {need / 1e6:.1f} MB "
                             f"({index.total_bytes / 1e6:.1f} MB plus a margin), {free / 1e6:.1f} MB are free. "
                             "Free space, or remove old releases (`flash --keep 2` prunes to the current and "
                             "previous)")

    # --- switching ----------------------------------------------------------------------------------------
    def _switch(self, release: str | None) -> None:
        link = self._dir("current")
        if release is None:
            self.fs.remove_tree(link)
        else:
            self.fs.symlink(link, f"releases/{release}")

    def _write_history(self, hist: list[str]) -> None:
        self.fs.write_bytes(self._dir(HISTORY), "".join(f"{r}\n" for r in hist).encode())

    def activate(self, release: str) -> dict:
        """Make RELEASE current and add it to the history."""
        _check_name(release)
        with self.locked():
            if not self._dir("releases", release, INDEX).is_file():
                raise FlashError(f"no verified release {release!r} on the scanner (releases: "
                                 f"{', '.join(self.releases()) or 'none'})")
            hist, previous = self.history(), self.current()
            self._switch(release)
            self._write_history(hist if hist[-1:] == [release] else [*hist, release])
        return {"release": release, "previous": previous}

    def rollback(self) -> dict:
        """Make the release that was current before the current one current again, after re-checking its
        signature and every hash; the rolled-back release leaves the history (so a later rollback skips it)."""
        with self.locked():
            hist, cur = self.history(), self.current()
            if cur is None:
                raise FlashError("no current release on the scanner; flash one with `make flash`")
            if len(hist) < 2:
                raise FlashError(f"{cur} is the only release in the scanner's history; nothing to roll back to")
            self.verify_release(hist[-2])
            self._switch(hist[-2])
            self._write_history(hist[:-1])
        return {"from": cur, "to": hist[-2]}

    def revert(self, release: str) -> dict:
        """Undo activate(RELEASE) after it failed its health check: the previous release (re-checked) becomes
        current again and RELEASE is deleted."""
        _check_name(release)
        with self.locked():
            hist, cur = self.history(), self.current()
            if cur != release:
                raise FlashError(f"{release} is not the current release ({cur}); nothing to revert")
            previous = hist[-2] if len(hist) > 1 else None
            if previous is not None:
                self.verify_release(previous)
            self._switch(previous)
            self._write_history(hist[:-1])
            self.fs.remove_tree(self._dir("releases", release))
        return {"from": release, "to": previous, "removed": release}

    def remove(self, release: str) -> None:
        """Delete a release that is not current (a failed or interrupted one)."""
        _check_name(release)
        with self.locked():
            if release == self.current():
                raise FlashError(f"{release} is the current release; roll back first")
            hist = self.history()
            self.fs.remove_tree(self._dir("releases", release))
            self._write_history([r for r in hist if r != release])

    def prune(self, keep: int) -> list[str]:
        """Keep KEEP releases: the current and previous always, then the most recently current ones, then the
        newest of those never (or no longer) in the history; delete the rest."""
        if keep < MIN_KEEP:
            raise FlashError(f"--keep {keep}: at least {MIN_KEEP} releases are kept (the current and the previous)")
        with self.locked():
            hist, releases = self.history(), self.releases()
            ranked = list(dict.fromkeys(reversed(hist))) + [r for r in reversed(releases) if r not in hist]
            keepers = set(ranked[:keep]) | set(hist[-2:])
            doomed = [r for r in releases if r not in keepers]
            for r in doomed:
                self.fs.remove_tree(self._dir("releases", r))
            if doomed:
                self._write_history([r for r in hist if r not in doomed])
        return doomed

    # --- checks -------------------------------------------------------------------------------------------
    def verify_release(self, release: str) -> BundleIndex:
        """Re-check an installed release: its BUNDLE.json signed by the scanner's key, every file present with
        its signed hash, nothing else there (Python's __pycache__ folders, which it may write, are removed)."""
        d = self._dir("releases", release)
        try:
            index_bytes, sig = (d / INDEX).read_bytes(), (d / SIGNATURE).read_bytes()
        except FileNotFoundError as exc:
            raise FlashError(f"release {release} has no {INDEX}/{SIGNATURE} (installed before the scanner verified "
                             "bundles, or damaged); it cannot be checked, so it is not made current. Flash a "
                             "bundle instead") from exc
        try:
            signing.verify(self.public_key(), index_bytes, sig)
        except BundleError as exc:
            raise FlashError(f"release {release}: {exc}; not making it current") from exc
        index = parse_index(index_bytes, str(d), sig)
        problems = _compare_tree(d, index)
        if problems:
            raise FlashError(f"release {release} no longer matches its signed hashes ({'; '.join(problems[:5])}); "
                             "not making it current. Flash a bundle instead")
        return index

    def install_key(self, data: bytes) -> dict:
        """Trust on first use: store DATA as the scanner's bundle-signing key, if it has none yet."""
        signing.load_public_bytes(data, "the key to install")
        path = self.fs.path(PUBLIC_KEY)
        if path.is_file():
            if path.read_bytes().strip() == data.strip():
                return {"public_key": str(path), "installed": False}
            raise FlashError(f"the scanner already trusts another key ({path}); it is never replaced by flash. If "
                             "you rotated keys, replace it by hand (releases signed by the old key can then no "
                             "longer be rolled back to)")
        self.fs.make_dirs(path.parent, DIR_MODE)
        self.fs.write_bytes(path, data, FILE_MODE)
        return {"public_key": str(path), "installed": True}


def _check_name(release: str) -> None:
    if not RELEASE_RE.match(release):
        raise FlashError(f"{release!r} is not a release name (<version>-<UTC time>)")


def _compare_tree(d: Path, index: BundleIndex) -> list[str]:
    """What differs between folder D and the signed index (missing, changed, unlisted or non-regular files)."""
    problems, seen = [], set()
    for folder, dirs, files in os.walk(d):
        for cache in [x for x in dirs if x == "__pycache__"]:
            shutil.rmtree(Path(folder, cache))
            dirs.remove(cache)
        for name in files + [x for x in dirs if Path(folder, x).is_symlink()]:
            p = Path(folder, name)
            rel = p.relative_to(d).as_posix()
            if rel in (INDEX, SIGNATURE):
                continue
            if p.is_symlink() or not p.is_file():
                problems.append(f"{rel} is not a regular file")
            elif rel not in index.files:
                problems.append(f"{rel} is not in the signed list")
            else:
                seen.add(rel)
                if sha256_file(p) != index.files[rel].sha256:
                    problems.append(f"{rel} changed")
    problems += [f"{rel} is missing" for rel in sorted(set(index.files) - seen)]
    return problems


def elf_arch(fs: RootFS) -> str | None:
    """The architecture of ROOT's userland, from the ELF header of its Python (or shell)."""
    for rel in ELF_CANDIDATES:
        try:
            with open(fs.path(rel), "rb") as f:
                head = f.read(20)
        except (OSError, FlashError):
            continue
        if len(head) == 20 and head[:4] == b"\x7fELF":
            machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
            if machine in ELF_MACHINES:
                return ELF_MACHINES[machine]
    return None
