"""The device environment a bundle carries: hashed lock files and the aarch64 wheels they name.

`requirements/device.in` is the one list of device dependencies. `make lock` compiles it, per target Python, into
`requirements/device-<tag>.lock` (tag `cp311` = Raspberry Pi OS bookworm, `cp313` = trixie): exact versions and
sha256 hashes of the aarch64 wheels, with numpy left to apt (the system's `python3-numpy`, which picamera2's
compiled helpers are built against). `make wheelhouse` downloads those wheels into `data/wheelhouse/<tag>/`, and
the bundle carries them as `wheelhouse/<tag>/*.whl`, so install.sh installs offline with
`pip install --no-index --require-hashes --no-deps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT
from edge_sca.fileio import sha256_file
from firmware_bridge.errors import BundleError

REQUIREMENTS_DIR = REPO_ROOT / "requirements"
DEVICE_IN = REQUIREMENTS_DIR / "device.in"
WHEELHOUSE_DIR = REPO_ROOT / "data" / "wheelhouse"
LOCK_GLOB = "device-cp*.lock"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s+--hash=sha256:(?P<sha>[0-9a-f]{64})"
                    r"\s+#\s+(?P<file>\S+\.whl)\s*$")
_HEADER = re.compile(r"^#\s*(?P<key>[a-z0-9_]+):\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    sha256: str
    wheel: str  # the file name of the aarch64 wheel the hash belongs to


@dataclass
class Lock:
    path: Path
    tag: str  # cp311, cp313
    header: dict[str, str]
    entries: list[LockEntry]

    @property
    def source_sha256(self) -> str:
        return self.header.get("source_sha256", "")


def lock_path(tag: str, requirements_dir: Path = REQUIREMENTS_DIR) -> Path:
    return requirements_dir / f"device-{tag}.lock"


def normalise(name: str) -> str:
    """PEP 503 name: `Typing_Extensions` -> `typing-extensions`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> Lock:
    """Parse a lock written by `make lock`; BundleError naming the line when it is malformed."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BundleError(f"cannot read the lock file {path} ({exc.strerror}); rebuild it with `make lock`") from exc
    header: dict[str, str] = {}
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            m = _HEADER.match(line)
            if m:
                header.setdefault(m["key"], m["value"])
            continue
        m = _ENTRY.match(line)
        if not m:
            raise BundleError(f"{path}:{n}: not `name==version --hash=sha256:... # wheel`; rebuild it with "
                              "`make lock`")
        entries.append(LockEntry(normalise(m["name"]), m["version"], m["sha"], m["file"]))
    tag = path.name.removeprefix("device-").removesuffix(".lock")
    if not entries:
        raise BundleError(f"{path}: no pinned wheels; rebuild it with `make lock`")
    return Lock(path, tag, header, entries)


def locks(requirements_dir: Path = REQUIREMENTS_DIR) -> list[Lock]:
    return [read_lock(p) for p in sorted(requirements_dir.glob(LOCK_GLOB))]


def check_wheels(lock: Lock, wheelhouse: Path) -> dict[str, Path]:
    """Archive path -> wheel for every lock entry; BundleError when a wheel is missing or its hash differs."""
    folder = wheelhouse / lock.tag
    out: dict[str, Path] = {}
    for e in lock.entries:
        wheel = folder / e.wheel
        if not wheel.is_file():
            raise BundleError(f"wheelhouse {folder} lacks {e.wheel} (from {lock.path.name}); fetch the wheels with "
                              "`make wheelhouse`, or bundle with --no-wheelhouse for a test bundle")
        if sha256_file(wheel) != e.sha256:
            raise BundleError(f"{wheel}: sha256 differs from {lock.path.name}; delete it and run `make wheelhouse`")
        out[f"wheelhouse/{lock.tag}/{e.wheel}"] = wheel
    return out


def bundle_files(with_wheels: bool = True, requirements_dir: Path = REQUIREMENTS_DIR,
                 wheelhouse: Path = WHEELHOUSE_DIR) -> dict[str, Path]:
    """What the bundle carries of the device environment: device.in, every lock, and (unless told not to) the
    verified wheels of every lock. BundleError when there is no lock."""
    found = locks(requirements_dir)
    if not found:
        raise BundleError(f"no {LOCK_GLOB} in {requirements_dir}; compile the locks with `make lock`")
    files = {"requirements/device.in": requirements_dir / "device.in"}
    for lock in found:
        files[f"requirements/{lock.path.name}"] = lock.path
        if with_wheels:
            files.update(check_wheels(lock, wheelhouse))
    return files
