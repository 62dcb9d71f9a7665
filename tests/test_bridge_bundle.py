"""Signed bundles: keygen, make, verify (the scanner's own streaming check), and refusal of tampered, traversing
and link entries, undeclared data, manifests that do not describe their model, and bounded memory on big ones."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from bridge_support import entry, repack, replace_file, resign

from firmware_bridge import signing
from firmware_bridge.archive import DEFAULT_COMPATIBLE, INDEX, SIGNATURE, version_key
from firmware_bridge.bundle import make_bundle, verify_bundle
from firmware_bridge.errors import BundleError
from firmware_bridge.releases import ReleaseStore


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
    return make_bundle(models, keys[0], tmp_path / "dist", version="1.2.3-test", with_wheels=False)


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
    info = verify_bundle(bundle.path, keys[1])
    assert info.version == "1.2.3-test" and info.index.compatible == DEFAULT_COMPATIBLE
    assert bundle.path.name == "cancernet-sca-1.2.3-test.tar.gz"
    assert info.models == ["models/cancernet_sca_b_float32.tflite", "models/cancernet_sca_b_int8.tflite"]
    names = set(info.index.files)
    for needed in ("models/cancernet_sca_b_int8.manifest.json", "edge_sca/__init__.py", "edge_sca/preprocess.py",
                   "firmware_bridge/link.py", "firmware_bridge/protocol.py", "firmware_bridge/releases.py",
                   "firmware_bridge/scanner_cli.py", "requirements/device.in", "requirements/device-cp311.lock",
                   "systemd/cancernet-sca.service", "config/scanner.toml", "install.sh", "benchmarks/device_bench.py"):
        assert needed in names
    assert "models/orphan.tflite" not in names
    assert not any("__pycache__" in n or n.startswith("quantize/") for n in names)
    with tarfile.open(bundle.path) as tar:  # the scanner reads the index and its signature before anything else
        assert tar.getnames()[:2] == [INDEX, SIGNATURE]
        for m in tar.getmembers()[2:]:
            assert info.index.files[m.name].sha256 == hashlib.sha256(tar.extractfile(m).read()).hexdigest()


def test_installed_release_runs_the_benchmark(bundle, keys, tmp_path):
    """What the bundle carries is enough to run the benchmark from the release folder (no quantize, no TF)."""
    root = tmp_path / "root"
    (root / "etc/cancernet-sca").mkdir(parents=True)
    (root / "etc/cancernet-sca/bundle-signing.pub").write_bytes(keys[1].read_bytes())
    (root / "etc/cancernet-sca/compatible").write_text(DEFAULT_COMPATIBLE)
    store = ReleaseStore(root)
    with open(bundle.path, "rb") as f:
        release = store.install(f, "bundle")["release"]
    out = root / "opt/cancernet-sca/releases" / release
    assert os.access(out / "install.sh", os.X_OK)
    assert (out / "firmware_bridge/protocol.py").read_bytes() == Path("firmware_bridge/protocol.py").read_bytes()
    assert (out / INDEX).is_file() and (out / SIGNATURE).is_file()  # kept, so the release can be re-checked
    done = subprocess.run([sys.executable, "benchmarks/device_bench.py", "--help"], cwd=out, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""}, timeout=120)
    assert done.returncode == 0 and "on-device benchmark" in done.stdout, done.stderr


def test_no_models_and_bad_manifest_hash(tmp_path, keys, write_fake_model):
    with pytest.raises(BundleError, match="no .tflite model with a manifest"):
        make_bundle(tmp_path, keys[0], tmp_path / "dist", with_wheels=False)
    d = tmp_path / "m"
    write_fake_model(d, "x_int8", b"abc")
    (d / "x_int8.tflite").write_bytes(b"abd")
    with pytest.raises(BundleError, match="does not match its manifest"):
        make_bundle(d, keys[0], tmp_path / "dist", with_wheels=False)
    with pytest.raises(BundleError, match="may hold only"):
        make_bundle(d, keys[0], tmp_path / "dist", version="../1", with_wheels=False)


# --- tampering: rebuild the archive with one change -------------------------------------------------------------

def add_file(entries, name, data=b"evil", key=None):
    info = tarfile.TarInfo(name)
    entries.append([info, data])
    if key is not None:  # an insider's bundle: the extra entry is listed and signed
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
    e[1] = e[1].replace(b"def ", b"def\t", 1)  # same size: only the hash can tell


def _move_index_last(entries):
    entries.append(entries.pop(0))


CASES = {
    "changed file": (flip_file, "does not match its signed sha256"),
    "index not first": (_move_index_last, "not BUNDLE.json"),
    "trailing data": (lambda es: es.append([tarfile.TarInfo("zzz"), b"\0" * 100]), "not in the signed list"),
    "changed index": (lambda es: entry(es, INDEX).__setitem__(1, entry(es, INDEX)[1].replace(b"1.2.3", b"9.9.9")),
                      "bad signature"),
    "unlisted file": (lambda es: add_file(es, "edge_sca/extra.py"), "not in the signed list"),
    "missing file": (lambda es: es.remove(entry(es, "install.sh")), "listed files missing"),
    "no signature": (lambda es: es.remove(entry(es, SIGNATURE)), "not a signed bundle"),
    "grown file": (lambda es: entry(es, "install.sh").__setitem__(1, entry(es, "install.sh")[1] + b"#"),
                   "the signed list says"),
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


def _edit_manifest(change):
    def edit(entries, key):
        name = "models/cancernet_sca_b_int8.manifest.json"
        manifest = json.loads(entry(entries, name)[1])
        change(manifest)
        replace_file(entries, name, json.dumps(manifest).encode(), key)
    return edit


SIGNED_BUT_WRONG = {
    # signed by the real key, so only the manifest checks can catch them
    "manifest of another model": (lambda es, k: replace_file(es, "models/cancernet_sca_b_int8.tflite",
                                                             b"TFL3 another model", k),
                                  "does not describe this model"),
    "threshold 1.5": (_edit_manifest(lambda m: m.update(threshold=1.5)), "threshold 1.5 is not a number in"),
    "threshold text": (_edit_manifest(lambda m: m.update(threshold="high")), "threshold 'high' is not a number"),
    "unknown manifest format": (_edit_manifest(lambda m: m.update(format="one")), "not a known format"),
    "old bundle format": (lambda es, k: resign(es, k, lambda ix: ix.update(format=1)), "older bundles"),
    "no compatible string": (lambda es, k: resign(es, k, lambda ix: ix.pop("compatible")), "bad compatible"),
    "oversized claim": (lambda es, k: resign(es, k, lambda ix: ix["files"]["install.sh"].update(size=5 << 30)),
                        "more than the"),
}


@pytest.mark.parametrize("case", list(SIGNED_BUT_WRONG))
def test_signed_bundle_with_a_bad_manifest_or_index_is_refused(case, bundle, keys, tmp_path):
    edit, message = SIGNED_BUT_WRONG[case]
    bad = repack(bundle.path, tmp_path / "bad.tar.gz", lambda es: edit(es, keys[0]))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bad, keys[1])


def test_undeclared_data_stops_before_it_is_all_read(bundle, keys, tmp_path):
    """A decompression bomb: one entry claims a small size in the index, but the archive streams far more (a
    second copy of the entry under its header) - reading stops at the signed total, not at the bomb's end."""
    big = b"\0" * (64 << 20)

    def bomb(entries):
        info = tarfile.TarInfo("edge_sca/__init__.py")
        entries.insert(2, [info, big])

    bad = repack(bundle.path, tmp_path / "bomb.tar.gz", bomb)
    with pytest.raises(BundleError, match="signed list says|more data than its signed list"):
        verify_bundle(bad, keys[1])


@pytest.mark.slow
def test_verification_streams_in_bounded_memory(tmp_path, keys, write_fake_model):
    """Two 32 MiB zero-filled models (tens of KB compressed): verifying and installing them holds a few MB, not the
    members (the old verifier read every member into memory: 675 MB resident for two 300 MB ones)."""
    models = tmp_path / "big"
    models.mkdir()
    size = 32 << 20
    zero_sha = hashlib.sha256(bytes(size)).hexdigest()
    for stem in ("cancernet_sca_b_int8", "cancernet_sca_b_float32"):
        with open(models / f"{stem}.tflite", "wb") as f:
            f.truncate(size)  # sparse: zeros without the disk
        write_fake_model.manifest(models, stem, zero_sha)
    made = make_bundle(models, keys[0], tmp_path / "dist", version="9.0", with_wheels=False)
    assert made.index.total_bytes > 2 * size
    root = tmp_path / "root"
    (root / "etc/cancernet-sca").mkdir(parents=True)
    (root / "etc/cancernet-sca/bundle-signing.pub").write_bytes(keys[1].read_bytes())
    (root / "etc/cancernet-sca/compatible").write_text(DEFAULT_COMPATIBLE)
    tracemalloc.start()
    try:
        verify_bundle(made.path, keys[1])
        _, peak_verify = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with open(made.path, "rb") as f:
            ReleaseStore(root).install(f, "big bundle")
        _, peak_install = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak traced memory: verify {peak_verify / 1e6:.1f} MB, install {peak_install / 1e6:.1f} MB "
          f"for {made.index.total_bytes / 1e6:.0f} MB of members")
    assert peak_verify < 12e6 and peak_install < 12e6  # each member alone is 33.5 MB


def test_version_order():
    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3")
    assert version_key("0.1.0+20261201000000") > version_key("0.1.0+20261130235959")
    assert version_key("2.0") == version_key("2.0")


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
    p = run_cli("bundle", "--models-dir", str(models), "--key", str(key), "--out-dir", str(tmp_path / "d"),
                "--version", "0.9", "--no-wheelhouse", "--json")
    assert p.returncode == 0, p.stderr
    path = json.loads(p.stdout)["path"]
    p = run_cli("verify", path, "--public-key", str(key.with_suffix(".pub")))
    assert p.returncode == 0 and "OK, version 0.9" in p.stdout
    _, other = signing.keygen(tmp_path / "other.key")
    p = run_cli("verify", path, "--public-key", str(other))
    assert p.returncode == 2 and p.stderr.startswith("error: bad signature") and "Traceback" not in p.stderr
