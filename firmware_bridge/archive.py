"""Reading a signed bundle as a stream: the one verifier, used by `verify` on the workstation and by the
installer on the scanner (standard library plus `cryptography`, so it runs before the device's venv exists).

A bundle is a tar.gz whose first entry is BUNDLE.json (the index: format, name, version, compatible, models and
{path: {sha256, size}} for every other file) and whose second is BUNDLE.sig (Ed25519 over the index's exact
bytes). Nothing is trusted before the signature is checked, and nothing is held whole in memory: the index and
signature are read first (each bounded), the signature is checked, then every entry is hashed as it streams past
and must be a regular file that the index lists once with that size. The decompressed stream may not exceed what
the signed index declares (plus tar's own headers), so a decompression bomb stops early. Model manifests (small)
are kept and checked against their model's signed hash.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from edge_sca.errors import ModelError
from edge_sca.manifest_schema import check_manifest, manifest_path
from firmware_bridge import signing
from firmware_bridge.errors import BundleError

INDEX, SIGNATURE = "BUNDLE.json", "BUNDLE.sig"
#: Entries installed executable (everything else 0644).
EXECUTABLE = frozenset({"install.sh"})
#: The device kind every scanner reports; bundles say which kind and architecture they are for.
DEVICE_KIND = "cancernet-sca-scanner"
DEFAULT_COMPATIBLE = f"{DEVICE_KIND}/aarch64"
#: 2: adds `compatible`, index and signature first. Format 1 bundles predate on-device verification.
BUNDLE_FORMAT = 2
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
#: "<device kind>/<architecture>", e.g. cancernet-sca-scanner/aarch64.
COMPATIBLE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}/[a-z0-9_]{1,32}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_INDEX_BYTES = 4 << 20
MAX_SIGNATURE_BYTES = 1024
MAX_FILES = 20_000
#: The most a bundle may hold in all (the signed sizes); a scanner's SD card is the real limit.
MAX_BUNDLE_BYTES = 4 << 30
MAX_MANIFEST_BYTES = 8 << 20
#: Tar's own bytes around each entry (header, long-name and pax records, padding), allowed on top of the sizes.
TAR_OVERHEAD_PER_ENTRY = 4096
TAR_OVERHEAD = 1 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class BundleIndex:
    """The signed index: what the bundle is, for which device, and the hash and size of every file."""

    version: str
    compatible: str
    files: dict[str, FileEntry]
    models: list[str]
    raw: bytes
    signature: bytes = b""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def max_stream_bytes(self) -> int:
        return self.total_bytes + len(self.raw) + MAX_SIGNATURE_BYTES + \
            (len(self.files) + 2) * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD


def check_member_name(name: str) -> None:
    """BundleError for an absolute path, a `..` component, or anything but a plain relative path."""
    p = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"unsafe bundle entry {name!r}: absolute path; refusing the bundle")
    if any(part in ("..", ".", "") for part in name.split("/")) or "\\" in name or "\x00" in name:
        raise BundleError(f"unsafe bundle entry {name!r}: climbs out of the release folder or is malformed; "
                          f"refusing the bundle")


def version_key(version: str) -> tuple:
    """Order of versions: segment by segment, numbers numerically ('1.10' > '1.9'; '0.1.0+20261201...' is later
    than '0.1.0+20261130...'); a number sorts before text in the same place."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def parse_index(data: bytes, where: str, signature: bytes = b"") -> BundleIndex:
    """The index's fields, each checked; BundleError naming the first that is wrong."""
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{where}: {INDEX} is not JSON ({exc})") from exc
    if not isinstance(index, dict):
        raise BundleError(f"{where}: {INDEX} is not a JSON object")
    fmt = index.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"{where}: bundle format {fmt!r} is not {BUNDLE_FORMAT}: " + (
            "it is newer than this installer; flash with a newer firmware_bridge" if isinstance(fmt, int)
            and fmt > BUNDLE_FORMAT else "rebuild it with `make bundle` (older bundles carry no compatible string)"))
    version, compatible = index.get("version"), index.get("compatible")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BundleError(f"{where}: bad version {version!r} in {INDEX}")
    if not isinstance(compatible, str) or not COMPATIBLE_RE.match(compatible):
        raise BundleError(f"{where}: bad compatible string {compatible!r} in {INDEX} (want kind/architecture)")
    files = _parse_files(index.get("files"), where)
    models = index.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m in files for m in models):
        raise BundleError(f"{where}: {INDEX} lists models that are not among its files")
    for model in models:
        if manifest_path(model).as_posix() not in files:
            raise BundleError(f"{where}: model {model} has no manifest in the bundle; rebuild it with `make bundle`")
    return BundleIndex(version, compatible, files, list(models), bytes(data), signature)


def _parse_files(files: object, where: str) -> dict[str, FileEntry]:
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{where}: {INDEX} has no file list")
    if len(files) > MAX_FILES:
        raise BundleError(f"{where}: {INDEX} lists {len(files)} files, more than {MAX_FILES}")
    out: dict[str, FileEntry] = {}
    for name, entry in files.items():
        check_member_name(name)
        if name in (INDEX, SIGNATURE):
            raise BundleError(f"{where}: {INDEX} lists {name} as a file")
        sha, size = (entry.get("sha256"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        if not isinstance(sha, str) or not SHA256_RE.match(sha) or not isinstance(size, int) or size < 0 \
                or isinstance(size, bool):
            raise BundleError(f"{where}: {INDEX} entry {name!r} needs a sha256 and a size")
        out[name] = FileEntry(sha, size)
    total = sum(f.size for f in out.values())
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(f"{where}: the bundle declares {total / 1e9:.1f} GB, more than the "
                          f"{MAX_BUNDLE_BYTES / 1e9:.1f} GB a scanner release may hold")
    return out


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Bounded:
    """A read-only stream that refuses to yield more than `limit` bytes (the limit may be raised later)."""

    def __init__(self, raw: _Readable, limit: int, where: str) -> None:
        self.raw, self.limit, self.where, self.count = raw, limit, where, 0

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        data = self.raw.read(min(want, self.limit - self.count + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise BundleError(f"{self.where}: the archive holds more data than its signed list declares; "
                              "refusing the bundle")
        return data


class Sink(Protocol):
    """Where one entry's bytes go while they are hashed; closed after the last chunk."""

    def write(self, data: bytes, /) -> object: ...

    def close(self) -> None: ...


#: open_member(name, size) -> a Sink for the entry's bytes, or None to only hash them.
OpenMember = Callable[[str, int], "Sink | None"]


def read_bundle(source: BinaryIO, public_key: str | Path, where: str,
                on_index: Callable[[BundleIndex], None] | None = None,
                open_member: OpenMember | None = None) -> BundleIndex:
    """Verify the bundle streaming from SOURCE; on_index(index) runs once the signature checked out (before any
    file is read), open_member receives each file's bytes as they are hashed. BundleError on anything wrong,
    after which what open_member wrote must be thrown away."""
    try:
        gz = gzip.GzipFile(fileobj=source, mode="rb")
        stream = _Bounded(gz, MAX_INDEX_BYTES + MAX_SIGNATURE_BYTES + 4 * TAR_OVERHEAD_PER_ENTRY, where)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            index = _read_head(tar, public_key, where)
            stream.limit = index.max_stream_bytes
            if on_index is not None:
                on_index(index)
            manifests = _read_files(tar, index, where, open_member)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(f"{where} is not a readable tar.gz bundle or is damaged ({exc}); rebuild it with "
                          "`make bundle` or copy it again") from exc
    _check_manifests(index, manifests, where)
    return index


def _next_file(tar: tarfile.TarFile, where: str) -> tarfile.TarInfo | None:
    member = tar.next()
    if member is None:
        return None
    check_member_name(member.name)
    if member.issym() or member.islnk():
        raise BundleError(f"bundle entry {member.name!r} is a link (-> {member.linkname!r}); refusing the bundle")
    if not member.isfile():
        raise BundleError(f"bundle entry {member.name!r} is not a regular file; refusing the bundle")
    return member


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, where: str) -> bytes:
    if member.size > limit:
        raise BundleError(f"{where}: {member.name} is {member.size} bytes, more than {limit}; refusing the bundle")
    f = tar.extractfile(member)
    assert f is not None  # a regular file
    return f.read()


def _read_head(tar: tarfile.TarFile, public_key: str | Path, where: str) -> BundleIndex:
    """BUNDLE.json then BUNDLE.sig, the signature checked before the index is believed."""
    first = _next_file(tar, where)
    if first is None or first.name != INDEX:
        raise BundleError(f"{where}: the first entry is {first.name if first else 'missing'!r}, not {INDEX}; it is "
                          "not a signed bundle (or was made by an older `make bundle`: rebuild it)")
    index_bytes = _read_small(tar, first, MAX_INDEX_BYTES, where)
    second = _next_file(tar, where)
    if second is None or second.name != SIGNATURE:
        raise BundleError(f"{where}: {SIGNATURE} does not follow {INDEX}; it is not a signed bundle")
    signature = _read_small(tar, second, MAX_SIGNATURE_BYTES, where)
    signing.verify(public_key, index_bytes, signature)
    return parse_index(index_bytes, where, signature)


def _read_files(tar: tarfile.TarFile, index: BundleIndex, where: str,
                open_member: OpenMember | None) -> dict[str, bytes]:
    """Hash (and hand on) every remaining entry; the manifests' bytes, for _check_manifests."""
    seen: set[str] = set()
    manifests: dict[str, bytes] = {}
    wanted = {manifest_path(m).as_posix() for m in index.models}
    while (member := _next_file(tar, where)) is not None:
        name = member.name
        if name not in index.files:
            raise BundleError(f"{where}: {name} is not in the signed list; refusing the bundle")
        if name in seen:
            raise BundleError(f"bundle entry {name!r} appears twice; refusing the bundle")
        seen.add(name)
        entry = index.files[name]
        if member.size != entry.size:
            raise BundleError(f"{where}: {name} is {member.size} bytes, the signed list says {entry.size}; the "
                              "bundle was altered or damaged, refusing it")
        keep = name in wanted and entry.size <= MAX_MANIFEST_BYTES
        data = _stream_member(tar, member, open_member, keep)
        if data[0] != entry.sha256:
            raise BundleError(f"{where}: {name} does not match its signed sha256; the bundle was altered or "
                              "damaged, refusing it")
        if keep:
            manifests[name] = data[1]
    missing = sorted(set(index.files) - seen)
    if missing:
        raise BundleError(f"{where}: listed files missing: {', '.join(missing[:10])}; refusing the bundle")
    return manifests


def _stream_member(tar: tarfile.TarFile, member: tarfile.TarInfo, open_member: OpenMember | None,
                   keep: bool) -> tuple[str, bytes]:
    """(sha256, the bytes if keep) of one entry, read in chunks and written to open_member's file."""
    src = tar.extractfile(member)
    assert src is not None
    h, kept = hashlib.sha256(), bytearray()
    dst = open_member(member.name, member.size) if open_member else None
    try:
        while chunk := src.read(CHUNK):
            h.update(chunk)
            if dst is not None:
                dst.write(chunk)
            if keep:
                kept += chunk
    finally:
        if dst is not None:
            dst.close()
    return h.hexdigest(), bytes(kept)


def _check_manifests(index: BundleIndex, manifests: dict[str, bytes], where: str) -> None:
    """Every model's manifest is valid and names the model's signed sha256 (so the runtime will accept it)."""
    for model in index.models:
        name = manifest_path(model).as_posix()
        try:
            data = check_manifest(json.loads(manifests[name]), f"{where}: {name}")
        except KeyError as exc:
            raise BundleError(f"{where}: {name} is larger than {MAX_MANIFEST_BYTES} bytes") from exc
        except ValueError as exc:
            raise BundleError(f"{where}: {name} is not JSON ({exc})") from exc
        except ModelError as exc:
            raise BundleError(f"{exc}; refusing the bundle") from exc
        if data["sha256"] != index.files[model].sha256:
            raise BundleError(f"{where}: {name} gives sha256 {data['sha256'][:12]}... but {model} is "
                              f"{index.files[model].sha256[:12]}...: the manifest does not describe this model, "
                              "refusing the bundle (rebuild it with `make quantize` and `make bundle`)")
