"""Signed bundles: keygen, make, verify, and refusal of tampered, traversing and link entries."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from firmware_bridge import signing
from firmware_bridge.bundle import INDEX, SIGNATURE, extract_verified, make_bundle, verify_bundle
from firmware_bridge.errors import BundleError


@pytest.fixture
def keys(tmp_path):
    return signing.keygen(tmp_path / "keys" / "signing.key")


@pytest.fixture
def models(tmp_path, write_fake_model):
    d = tmp_path / "models"
    write_fake_model(d, "cancernet_sca_b_int8", b"TFL3 int8 bytes" * 10)
    write_fake_model(d, "cancernet_sca_b_float32", b"TFL3 float bytes" * 20)
    (d / "orphan.tflite").write_bytes(b"no manifest")  # skipped with a warning
    return d


@pytest.fixture
def bundle(tmp_path, keys, models):
    return make_bundle(models, keys[0], tmp_path / "dist", version="1.2.3-test")


def test_keygen_modes_and_refuses_to_overwrite(keys):
    priv, pub = keys
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleError, match="exists"):
        signing.keygen(priv)
    signing.keygen(priv, force=True)
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600


def test_world_readable_private_key_is_refused(keys):
    os.chmod(keys[0], 0o644)
    with pytest.raises(BundleError, match="chmod 600"):
        signing.sign(keys[0], b"x")


def test_bundle_contents_and_verify(bundle, keys):
    info, members = verify_bundle(bundle.path, keys[1])
    assert info.version == "1.2.3-test"
    assert bundle.path.name == "cancernet-sca-1.2.3-test.tar.gz"
    assert info.models == ["models/cancernet_sca_b_float32.tflite", "models/cancernet_sca_b_int8.tflite"]
    names = set(members)
    for needed in ("models/cancernet_sca_b_int8.manifest.json", "edge_sca/__init__.py", "edge_sca/preprocess.py",
                   "firmware_bridge/link.py", "firmware_bridge/protocol.py", "requirements/device.txt",
                   "systemd/cancernet-sca.service", "config/edge_sca.env", "install.sh",
                   "benchmarks/device_bench.py"):
        assert needed in names
    assert "models/orphan.tflite" not in names
    assert not any("__pycache__" in n or n.startswith("quantize/") for n in names)
    for name, data in members.items():
        assert info.files[name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_extract_verified(bundle, keys, tmp_path):
    _, members = verify_bundle(bundle.path, keys[1])
    out = extract_verified(members, tmp_path / "rel")
    assert os.access(out / "install.sh", os.X_OK)
    assert (out / "firmware_bridge/protocol.py").read_bytes() == Path("firmware_bridge/protocol.py").read_bytes()
    with pytest.raises(FileExistsError):
        extract_verified(members, out)
    # the benchmark runs from the release folder with only what the bundle carries (no quantize, no TensorFlow)
    done = subprocess.run([sys.executable, "benchmarks/device_bench.py", "--help"], cwd=out, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""}, timeout=120)
    assert done.returncode == 0 and "on-device benchmark" in done.stdout, done.stderr


def test_no_models_and_bad_manifest_hash(tmp_path, keys, write_fake_model):
    with pytest.raises(BundleError, match="no .tflite model with a manifest"):
        make_bundle(tmp_path, keys[0], tmp_path / "dist")
    d = tmp_path / "m"
    write_fake_model(d, "x_int8", b"abc")
    (d / "x_int8.tflite").write_bytes(b"abd")
    with pytest.raises(BundleError, match="does not match its manifest"):
        make_bundle(d, keys[0], tmp_path / "dist")
    with pytest.raises(BundleError, match="may hold only"):
        make_bundle(d, keys[0], tmp_path / "dist", version="../1")


# --- tampering: rebuild the archive with one change -------------------------------------------------------------

def repack(src: Path, dst: Path, edit) -> Path:
    """Copy SRC's entries into DST after edit(list of [TarInfo, bytes]) changed them."""
    with tarfile.open(src, "r:gz") as tar:
        entries = [[m, tar.extractfile(m).read()] for m in tar.getmembers()]
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


def add_file(entries, name, data=b"evil", key=None):
    info = tarfile.TarInfo(name)
    entries.append([info, data])
    if key is not None:
        resign(entries, key, lambda ix: ix["files"].__setitem__(
            name, {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))


def add_link(entries, name, target, kind, key):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    entries.append([info, b""])
    resign(entries, key, lambda ix: ix["files"].__setitem__(name, {"sha256": hashlib.sha256(b"").hexdigest(),
                                                                   "size": 0}))


def flip_file(entries):
    e = entry(entries, "edge_sca/preprocess.py")
    e[1] = e[1].replace(b"def ", b"def  ", 1)


CASES = {
    "changed file": (flip_file, "does not match its signed sha256"),
    "changed index": (lambda es: entry(es, INDEX).__setitem__(1, entry(es, INDEX)[1].replace(b"1.2.3", b"9.9.9")),
                      "bad signature"),
    "unlisted file": (lambda es: add_file(es, "edge_sca/extra.py"), "not in the signed list"),
    "missing file": (lambda es: es.remove(entry(es, "install.sh")), "listed files missing"),
    "no signature": (lambda es: es.remove(entry(es, SIGNATURE)), "not a signed bundle"),
    "duplicate": (lambda es: es.append(list(entry(es, "install.sh"))), "appears twice"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_bundle_is_refused(case, bundle, keys, tmp_path):
    edit, message = CASES[case]
    bad = repack(bundle.path, tmp_path / "bad.tar.gz", edit)
    with pytest.raises(BundleError, match=message):
        verify_bundle(bad, keys[1])


def test_other_key_is_refused(bundle, tmp_path):
    _, other_pub = signing.keygen(tmp_path / "other.key")
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(bundle.path, other_pub)


UNSAFE = {
    "absolute": (lambda es, k: add_file(es, "/etc/cron.d/evil", key=k), "absolute path"),
    "dotdot": (lambda es, k: add_file(es, "../../outside.py", key=k), "climbs out"),
    "inner dotdot": (lambda es, k: add_file(es, "edge_sca/../../x.py", key=k), "climbs out"),
    "symlink": (lambda es, k: add_link(es, "edge_sca/link.py", "/etc/shadow", tarfile.SYMTYPE, k), "is a link"),
    "hardlink": (lambda es, k: add_link(es, "edge_sca/hard.py", "install.sh", tarfile.LNKTYPE, k), "is a link"),
    "directory": (lambda es, k: es.append([_dir("edge_sca"), b""]), "not a regular file"),
}


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_entries_are_refused_even_when_signed(case, bundle, keys, tmp_path):
    edit, message = UNSAFE[case]
    bad = repack(bundle.path, tmp_path / "bad.tar.gz", lambda es: edit(es, keys[0]))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bad, keys[1])
    assert not (tmp_path / "outside.py").exists()


def test_not_a_bundle(tmp_path, keys):
    (tmp_path / "x.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(BundleError, match="not a readable tar.gz"):
        verify_bundle(tmp_path / "x.tar.gz", keys[1])
    with pytest.raises(BundleError, match="not found"):
        verify_bundle(tmp_path / "missing.tar.gz", keys[1])


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "firmware_bridge", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_cli_keygen_bundle_verify(tmp_path, models):
    key = tmp_path / "k" / "bundle-signing.key"
    p = run_cli("keygen", "--key", str(key), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["public_key"] == str(key.with_suffix(".pub"))
    p = run_cli("bundle", "--models", str(models), "--key", str(key), "--out-dir", str(tmp_path / "d"),
                "--version", "0.9", "--json")
    assert p.returncode == 0, p.stderr
    path = json.loads(p.stdout)["path"]
    p = run_cli("verify", path, "--public-key", str(key.with_suffix(".pub")))
    assert p.returncode == 0 and "OK, version 0.9" in p.stdout
    _, other = signing.keygen(tmp_path / "other.key")
    p = run_cli("verify", path, "--public-key", str(other))
    assert p.returncode == 2 and p.stderr.startswith("error: bad signature") and "Traceback" not in p.stderr
