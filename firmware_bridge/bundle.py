"""The deploy bundle: one signed, versioned tar.gz holding everything a scanner release needs.

Layout (flat, regular files only):
    BUNDLE.json                 format, version, created, models, and {path: {sha256, size}} for every other file
    BUNDLE.sig                  Ed25519 signature of BUNDLE.json's exact bytes
    models/*.tflite + *.manifest.json
    edge_sca/**.py              the runtime
    benchmarks/*.py             the on-device benchmark (`python benchmarks/device_bench.py` in the release)
    firmware_bridge/{__init__,errors,protocol,link}.py   the serial link for `edge_sca run --bridge`
    requirements/device.txt, systemd/cancernet-sca.service, config/edge_sca.env, install.sh

Verification trusts nothing in the archive before it has checked it: every entry must be a regular file with a
relative, non-climbing path, listed exactly once; then the signature; then every hash and size.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_sca.config import REPO_ROOT
from edge_sca.errors import ModelError
from edge_sca.manifest import load_manifest, manifest_path
from firmware_bridge import signing
from firmware_bridge.errors import BundleError

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
INDEX, SIGNATURE = "BUNDLE.json", "BUNDLE.sig"
BRIDGE_FILES = ("__init__.py", "errors.py", "protocol.py", "link.py")
DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"
#: Archive path -> source under DEPLOY_DIR.
DEPLOY_FILES = {"install.sh": "install.sh", "systemd/cancernet-sca.service": "cancernet-sca.service",
                "config/edge_sca.env": "edge_sca.env"}
EXECUTABLE = {"install.sh"}
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MAX_MEMBER_BYTES = 512 * 1024 * 1024


@dataclass
class BundleInfo:
    path: Path
    version: str
    files: dict[str, dict]
    models: list[str]
    index: dict

    def to_dict(self) -> dict:
        return {"path": str(self.path), "version": self.version, "files": len(self.files), "models": self.models,
                "bytes": sum(f["size"] for f in self.files.values())}


def package_version(repo_root: Path = REPO_ROOT) -> str:
    import tomllib

    try:
        return tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.0.0"


def default_version(repo_root: Path = REPO_ROOT) -> str:
    return f"{package_version(repo_root)}+{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"


def collect_files(models_dir: Path, repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    """Archive path -> source file for everything the bundle carries; BundleError when no model qualifies."""
    files: dict[str, Path] = {}
    for name in _model_files(models_dir):
        files[f"models/{name}"] = models_dir / name
    for src in sorted((repo_root / "edge_sca").rglob("*.py")):
        if "__pycache__" not in src.parts:
            files[src.relative_to(repo_root).as_posix()] = src
    for src in sorted((repo_root / "benchmarks").glob("*.py")):
        files[src.relative_to(repo_root).as_posix()] = src
    for name in BRIDGE_FILES:
        files[f"firmware_bridge/{name}"] = repo_root / "firmware_bridge" / name
    files["requirements/device.txt"] = repo_root / "requirements" / "device.txt"
    for arc, src in DEPLOY_FILES.items():
        files[arc] = DEPLOY_DIR / src
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"cannot bundle, missing: {', '.join(missing)}")
    return files


def _model_files(models_dir: Path) -> list[str]:
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
        if manifest.sha256 != _sha256_file(model):
            raise BundleError(f"{model}: sha256 does not match its manifest; re-export it with `make quantize`")
        names += [model.name, mpath.name]
    if not names:
        raise BundleError(f"no .tflite model with a manifest in {models_dir}; build them with `make quantize`")
    return names


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_bundle(models_dir: str | Path, key: str | Path, out_dir: str | Path = "dist", version: str | None = None,
                repo_root: Path = REPO_ROOT) -> BundleInfo:
    """Collect, hash, sign and pack: writes OUT_DIR/cancernet-sca-VERSION.tar.gz."""
    version = version or default_version(repo_root)
    if not VERSION_RE.match(version):
        raise BundleError(f"version {version!r} may hold only letters, digits and . _ + - (max 64)")
    files = collect_files(Path(models_dir), repo_root)
    datas = {arc: src.read_bytes() for arc, src in files.items()}
    entries = {arc: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for arc, d in sorted(datas.items())}
    index = {"format": BUNDLE_FORMAT, "name": "cancernet-sca", "version": version,
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "models": sorted(a for a in entries if a.startswith("models/") and a.endswith(".tflite")),
             "files": entries}
    index_bytes = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    signature = signing.sign(key, index_bytes)
    out = Path(out_dir) / f"cancernet-sca-{version}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for arc, data in [(INDEX, index_bytes), (SIGNATURE, signature), *sorted(datas.items())]:
            _add_bytes(tar, arc, data, 0o755 if arc in EXECUTABLE else 0o644)
    tmp.replace(out)
    return BundleInfo(out, version, entries, index["models"], index)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def check_member_name(name: str) -> None:
    """BundleError for an absolute path, a `..` component, or anything but a plain relative path."""
    p = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"unsafe bundle entry {name!r}: absolute path; refusing the bundle")
    if any(part in ("..", ".", "") for part in name.split("/")) or "\\" in name or "\x00" in name:
        raise BundleError(f"unsafe bundle entry {name!r}: climbs out of the release folder or is malformed; "
                          f"refusing the bundle")


def _read_members(archive: Path) -> dict[str, bytes]:
    """Every entry's bytes, after checking each is a safe regular file named once."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {archive} not found; make one with `make bundle`") from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is not a readable tar.gz bundle ({exc})") from exc
    out: dict[str, bytes] = {}
    try:
        with tar:
            for m in tar:
                check_member_name(m.name)
                if m.issym() or m.islnk():
                    raise BundleError(f"bundle entry {m.name!r} is a link (-> {m.linkname!r}); refusing the bundle")
                if not m.isfile():
                    raise BundleError(f"bundle entry {m.name!r} is not a regular file; refusing the bundle")
                if m.name in out:
                    raise BundleError(f"bundle entry {m.name!r} appears twice; refusing the bundle")
                if m.size > MAX_MEMBER_BYTES:
                    raise BundleError(f"bundle entry {m.name!r} is implausibly large ({m.size} bytes)")
                out[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive} is damaged ({exc}); rebuild it with `make bundle`") from exc
    return out


def verify_bundle(archive: str | Path, public_key: str | Path) -> tuple[BundleInfo, dict[str, bytes]]:
    """Check structure, signature and every hash; return the info and the verified file contents."""
    archive = Path(archive)
    members = _read_members(archive)
    if INDEX not in members or SIGNATURE not in members:
        raise BundleError(f"{archive} lacks {INDEX} or {SIGNATURE}; it is not a signed bundle")
    index_bytes, signature = members.pop(INDEX), members.pop(SIGNATURE)
    signing.verify(public_key, index_bytes, signature)
    try:
        index = json.loads(index_bytes)
        files, version = index["files"], index["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{archive}: {INDEX} is malformed ({exc})") from exc
    if index.get("format", 0) > BUNDLE_FORMAT:
        raise BundleError(f"{archive}: bundle format {index['format']} is newer than this tool; update it")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BundleError(f"{archive}: bad version {version!r} in {INDEX}")
    for name in files:
        check_member_name(name)
    _check_hashes(archive, files, members)
    return BundleInfo(archive, version, files, list(index.get("models", [])), index), members


def _check_hashes(archive: Path, files: dict, members: dict[str, bytes]) -> None:
    extra, missing = sorted(set(members) - set(files)), sorted(set(files) - set(members))
    if extra:
        raise BundleError(f"{archive}: files not in the signed list: {', '.join(extra)}; refusing the bundle")
    if missing:
        raise BundleError(f"{archive}: listed files missing: {', '.join(missing)}; refusing the bundle")
    for name, data in members.items():
        want = files[name]
        if hashlib.sha256(data).hexdigest() != want.get("sha256") or len(data) != want.get("size"):
            raise BundleError(f"{archive}: {name} does not match its signed sha256; the bundle was altered or "
                              f"damaged, refusing it")


def extract_verified(members: dict[str, bytes], dest: str | Path) -> Path:
    """Write verified contents under DEST (which must not exist yet), install.sh executable."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    root = dest.resolve()
    for name, data in sorted(members.items()):
        target = (dest / name).resolve()
        if root not in target.parents:
            raise BundleError(f"bundle entry {name!r} would land outside {dest}; refusing")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if name in EXECUTABLE else 0o644)
    return dest
