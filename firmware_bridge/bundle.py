"""The deploy bundle: one signed, versioned tar.gz holding everything a scanner release needs.

Layout (flat, regular files only; BUNDLE.json and BUNDLE.sig come first so the scanner can check the signature
before it reads anything else):
    BUNDLE.json                 format, name, version, compatible (device kind/architecture), created, models,
                                and {path: {sha256, size}} for every other file
    BUNDLE.sig                  Ed25519 signature of BUNDLE.json's exact bytes
    models/*.tflite + *.manifest.json
    models/input_checks.json    the fitted input checks (focus, grayscale, not-dermoscopy, drift reference)
    edge_sca/**.py              the runtime
    benchmarks/*.py             the on-device benchmark (`python benchmarks/device_bench.py` in the release)
    firmware_bridge/...         the serial link for `edge_sca run --bridge`, and the scanner-side installer
    requirements/device.in + device-<tag>.lock, wheelhouse/<tag>/*.whl   the device environment (wheelhouse.py)
    systemd/cancernet-sca.service, config/scanner.toml (the default settings file), install.sh

Making a bundle streams every file (hashing, then packing), so its size costs no memory. Verification lives in
archive.py, shared with the scanner: `verify` here runs exactly the check the scanner runs at install.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from edge_sca.contract import INPUT_CHECKS_FILE
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import ModelError
from edge_sca.fileio import atomic_path, sha256_file
from edge_sca.manifest_schema import manifest_path
from firmware_bridge import signing, wheelhouse
from firmware_bridge.archive import (
    BUNDLE_FORMAT,
    COMPATIBLE_RE,
    DEFAULT_COMPATIBLE,
    EXECUTABLE,
    INDEX,
    SIGNATURE,
    VERSION_RE,
    BundleIndex,
    check_member_name,
    parse_index,
    read_bundle,
)
from firmware_bridge.errors import BundleError

log = logging.getLogger(__name__)

#: Bundles carry the wheelhouse unless told not to; the test suite turns this off (tests/conftest.py), so its
#: many small bundles never pack tens of MB of wheels. `make pi-check` bundles the real one.
WITH_WHEELS_DEFAULT = True

__all__ = ["INDEX", "SIGNATURE", "BundleInfo", "check_member_name", "collect_files", "make_bundle",
           "verify_bundle"]

#: firmware_bridge modules a release carries: the serial link, and the scanner-side installer (agent.MODULES).
BRIDGE_FILES = ("__init__.py", "__main__.py", "cli.py", "errors.py", "protocol.py", "link.py", "signing.py",
                "archive.py", "rootfs.py", "releases.py", "scanner_cli.py")
DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"
#: Archive path -> source under DEPLOY_DIR.
DEPLOY_FILES = {"install.sh": "install.sh", "systemd/cancernet-sca.service": "cancernet-sca.service",
                "config/scanner.toml": "scanner.toml"}


@dataclass
class BundleInfo:
    path: Path
    index: BundleIndex

    @property
    def version(self) -> str:
        return self.index.version

    @property
    def models(self) -> list[str]:
        return self.index.models

    def to_dict(self) -> dict:
        return {"path": str(self.path), "version": self.version, "compatible": self.index.compatible,
                "files": len(self.index.files), "models": self.models, "bytes": self.index.total_bytes}


def package_version(repo_root: Path = REPO_ROOT) -> str:
    import tomllib

    try:
        return tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.0.0"


def default_version(repo_root: Path = REPO_ROOT) -> str:
    return f"{package_version(repo_root)}+{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"


def collect_files(models_dir: Path, repo_root: Path = REPO_ROOT, with_wheels: bool = True) -> dict[str, Path]:
    """Archive path -> source file for everything the bundle carries; BundleError when no model qualifies.
    `with_wheels=False` leaves the wheelhouse out (test bundles: install.sh then refuses to build a venv)."""
    files: dict[str, Path] = {}
    for name in _model_files(models_dir):
        files[f"models/{name}"] = models_dir / name
    files[f"models/{INPUT_CHECKS_FILE}"] = _input_checks_file(models_dir, repo_root)
    for src in sorted((repo_root / "edge_sca").rglob("*.py")):
        if "__pycache__" not in src.parts:
            files[src.relative_to(repo_root).as_posix()] = src
    for src in sorted((repo_root / "benchmarks").glob("*.py")):
        files[src.relative_to(repo_root).as_posix()] = src
    for name in BRIDGE_FILES:
        files[f"firmware_bridge/{name}"] = repo_root / "firmware_bridge" / name
    files.update(wheelhouse.bundle_files(with_wheels, repo_root / "requirements", repo_root / "data" / "wheelhouse"))
    for arc, name in DEPLOY_FILES.items():
        files[arc] = DEPLOY_DIR / name
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"cannot bundle, missing: {', '.join(missing)}")
    return files


def _input_checks_file(models_dir: Path, repo_root: Path) -> Path:
    """The fitted input checks the runtime refuses to start without: the models folder's, else the repository's."""
    for candidate in (models_dir / INPUT_CHECKS_FILE, repo_root / "models" / INPUT_CHECKS_FILE):
        if candidate.is_file():
            return candidate
    raise BundleError(f"no {INPUT_CHECKS_FILE} in {models_dir}: the scanner needs it for its input checks; run "
                      "`python -m quantize input-checks fit`")


def _model_files(models_dir: Path) -> list[str]:
    from edge_sca.manifest import load_manifest  # numpy: only when making a bundle

    if not models_dir.is_dir():
        raise BundleError(f"models folder {models_dir} not found; build models with `make quantize` or pass --models")
    names = []
    for model in sorted(models_dir.glob("*.tflite")):
        mpath = manifest_path(model)
        if not mpath.is_file():
            log.warning("skipping %s: no manifest beside it", model.name)
            continue
        try:
            manifest = load_manifest(mpath)
        except ModelError as exc:
            raise BundleError(f"cannot bundle {model.name}: {exc}") from exc
        if manifest.sha256 != sha256_file(model):
            raise BundleError(f"{model}: sha256 does not match its manifest; re-export it with `make quantize`")
        names += [model.name, mpath.name]
    if not names:
        raise BundleError(f"no .tflite model with a manifest in {models_dir}; build them with `make quantize`")
    return names


def make_bundle(models_dir: str | Path, key: str | Path, out_dir: str | Path = "dist", version: str | None = None,
                repo_root: Path = REPO_ROOT, compatible: str = DEFAULT_COMPATIBLE,
                with_wheels: bool | None = None) -> BundleInfo:
    """Collect, hash, sign and pack: writes OUT_DIR/cancernet-sca-VERSION.tar.gz (index and signature first).
    WITH_WHEELS (default WITH_WHEELS_DEFAULT: yes) packs the aarch64 wheelhouse."""
    with_wheels = WITH_WHEELS_DEFAULT if with_wheels is None else with_wheels
    version = version or default_version(repo_root)
    if not VERSION_RE.match(version):
        raise BundleError(f"version {version!r} may hold only letters, digits and . _ + - (max 64)")
    if not COMPATIBLE_RE.match(compatible):
        raise BundleError(f"compatible {compatible!r} should be device-kind/architecture, e.g. {DEFAULT_COMPATIBLE}")
    files = collect_files(Path(models_dir), repo_root, with_wheels)
    entries: dict[str, dict[str, Any]] = {arc: {"sha256": sha256_file(src), "size": src.stat().st_size}
                                          for arc, src in sorted(files.items())}
    index = {"format": BUNDLE_FORMAT, "name": "cancernet-sca", "version": version, "compatible": compatible,
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "models": sorted(a for a in entries if a.startswith("models/") and a.endswith(".tflite")),
             "files": entries}
    index_bytes = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    signature = signing.sign(key, index_bytes)
    out = Path(out_dir) / f"cancernet-sca-{version}.tar.gz"
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        _add(tar, INDEX, io.BytesIO(index_bytes), len(index_bytes))
        _add(tar, SIGNATURE, io.BytesIO(signature), len(signature))
        for arc, src in sorted(files.items()):
            with open(src, "rb") as f:
                _add(tar, arc, f, entries[arc]["size"])
    return BundleInfo(out, parse_index(index_bytes, str(out), signature))


def _add(tar: tarfile.TarFile, name: str, fileobj: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, int(time.time())
    info.mode = 0o755 if name in EXECUTABLE else 0o644
    tar.addfile(info, fileobj)


def verify_bundle(archive: str | Path, public_key: str | Path) -> BundleInfo:
    """The scanner's own check, run here: structure, signature, every hash, the manifests (archive.read_bundle)."""
    archive = Path(archive)
    try:
        with open(archive, "rb") as f:
            return BundleInfo(archive, read_bundle(f, public_key, str(archive)))
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {archive} not found; make one with `make bundle`") from exc
    except IsADirectoryError as exc:
        raise BundleError(f"{archive} is a folder, not a bundle .tar.gz") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {archive} ({exc.strerror or exc})") from exc
