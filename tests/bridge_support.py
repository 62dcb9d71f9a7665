"""Helpers for the deploy tests: a stand-in scanner root (its own key and compatible string) and bundle edits."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from firmware_bridge import signing
from firmware_bridge.archive import DEFAULT_COMPATIBLE, INDEX, SIGNATURE

PREFIX = "/opt/cancernet-sca"


def scanner_root(path: Path, public_key: Path | None, compatible: str = DEFAULT_COMPATIBLE) -> Path:
    """A folder laid out like a scanner's root partition, trusting PUBLIC_KEY (none: not provisioned)."""
    etc = path / "etc/cancernet-sca"
    etc.mkdir(parents=True)
    if public_key is not None:
        (etc / "bundle-signing.pub").write_bytes(public_key.read_bytes())
    (etc / "compatible").write_text(compatible + "\n")
    return path


def repack(src: Path, dst: Path, edit) -> Path:
    """Copy SRC's entries into DST after edit(list of [TarInfo, bytes]) changed them."""
    with tarfile.open(src, "r:gz") as tar:
        entries = [[m, tar.extractfile(m).read() if m.isfile() else b""] for m in tar.getmembers()]
    edit(entries)
    with tarfile.open(dst, "w:gz") as out:
        for m, data in entries:
            if m.isfile():
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
            else:
                out.addfile(m)
    return dst


def entry(entries, name):
    return next(e for e in entries if e[0].name == name)


def resign(entries, key, change_index) -> None:
    """Edit BUNDLE.json with change_index(index) and sign it with the real key (an insider's bundle)."""
    idx = entry(entries, INDEX)
    index = json.loads(idx[1])
    change_index(index)
    idx[1] = json.dumps(index).encode()
    entry(entries, SIGNATURE)[1] = signing.sign(key, idx[1])


def replace_file(entries, name: str, data: bytes, key) -> None:
    """Put DATA in place of NAME and re-sign the index so that it lists DATA's hash."""
    entry(entries, name)[1] = data
    resign(entries, key, lambda ix: ix["files"].__setitem__(
        name, {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
