"""The scanner's side of a flash, through `flash --root` on a stand-in root partition: verification against the
scanner's own key, compatible and version checks, history-driven rollback and pruning, re-checked rollbacks,
free space, interrupted and failed installs cleaned up, symlinks out of the root, odd roots, explicit modes."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bridge_support import PREFIX, repack, replace_file, scanner_root

from edge_sca.settings import load_settings
from firmware_bridge import releases as releases_mod
from firmware_bridge import rootfs, signing
from firmware_bridge.bundle import DEPLOY_DIR, make_bundle
from firmware_bridge.errors import BundleError, FlashError
from firmware_bridge.flash import FlashOptions, RootTarget, flash, rollback
from firmware_bridge.releases import ReleaseStore


@pytest.fixture
def keys(tmp_path):
    return signing.keygen(tmp_path / "keys" / "signing.key")


@pytest.fixture
def fake_bundle(tmp_path, keys, write_fake_model):
    """fake_bundle(version): a bundle signed with `keys`, its one model file holding b'model VERSION'."""
    def make(version: str, **kw) -> Path:
        d = tmp_path / f"models-{version}"
        write_fake_model(d, "cancernet_sca_b_int8", f"model {version}".encode())
        return make_bundle(d, keys[0], tmp_path / "dist", version=version, **kw).path
    return make


@pytest.fixture
def root(tmp_path, keys):
    return scanner_root(tmp_path / "rootfs", keys[1])


def base_of(root: Path) -> Path:
    return root / PREFIX.lstrip("/")


def current_of(root: Path) -> str:
    link = base_of(root) / "current"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: on the card and on the Pi
    return Path(os.readlink(link)).name


def history_of(root: Path) -> list[str]:
    return (base_of(root) / "history").read_text().split()


def release_dirs(root: Path) -> list[str]:
    d = base_of(root) / "releases"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def staged(root: Path) -> list[str]:
    d = base_of(root) / "staging"
    return sorted(p.name for p in d.iterdir() if p.name != ".lock") if d.is_dir() else []


def flash_root(bundle, keys, root, **opts):
    return flash(bundle, keys[1], RootTarget(root, FlashOptions(**opts)))


def rollback_root(root):
    return rollback(RootTarget(root, FlashOptions()))


def test_flash_root_installs_switches_and_rolls_back(root, keys, fake_bundle):
    first = flash_root(fake_bundle("1.0"), keys, root)
    assert current_of(root) == first["release"] and first["previous"] is None
    assert any("self-test skipped" in n for n in first["notes"])
    assert any("not restarted" in n for n in first["notes"])
    rel = base_of(root) / "releases" / first["release"]
    assert (rel / "models/cancernet_sca_b_int8.tflite").read_bytes() == b"model 1.0"
    assert json.loads((rel / "BUNDLE.json").read_bytes())["version"] == "1.0" and (rel / "BUNDLE.sig").is_file()
    assert (root / "etc/systemd/system/cancernet-sca.service").is_file()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/cancernet-sca.service") == \
        "/etc/systemd/system/cancernet-sca.service"
    settings = root / "etc/cancernet-sca/scanner.toml"  # the default settings file, installed when absent
    assert settings.read_bytes() == (DEPLOY_DIR / "scanner.toml").read_bytes()
    assert load_settings(settings).board.port == "/dev/ttyACM0"
    edited = settings.read_text().replace('#source = "picamera2"', 'source = "synthetic"')
    settings.write_text(edited)  # a site's edit survives the next flash, like a conffile

    second = flash_root(fake_bundle("1.1"), keys, root)
    assert current_of(root) == second["release"] and second["previous"] == first["release"]
    assert settings.read_text() == edited and load_settings(settings).camera.source == "synthetic"
    assert not any("edge_sca.env" in n for n in second["notes"])
    assert history_of(root) == [first["release"], second["release"]]
    back = rollback_root(root)
    assert (back["from"], back["to"]) == (second["release"], first["release"])
    assert current_of(root) == first["release"] and history_of(root) == [first["release"]]
    with pytest.raises(FlashError, match="only release in the scanner's history"):
        rollback_root(root)
    assert staged(root) == []


def test_rollback_and_pruning_follow_what_was_current(root, keys, fake_bundle):
    """Flash A, B, C; roll back twice (to A); flash D: A (known good) is kept and the next rollback goes to A,
    not to C, which had been rolled back. Flash A, B; roll back; flash C; roll back: lands on A, not B."""
    a, b, c = (flash_root(fake_bundle(v), keys, root, keep=3)["release"] for v in ("1.0", "1.1", "1.2"))
    assert rollback_root(root)["to"] == b and rollback_root(root)["to"] == a
    d = flash_root(fake_bundle("1.3"), keys, root, keep=3)
    assert d["previous"] == a and a in release_dirs(root) and b in d["pruned"]
    assert history_of(root) == [a, d["release"]]
    assert rollback_root(root)["to"] == a

    root2 = scanner_root(root.parent / "rootfs2", keys[1])
    a, b = (flash_root(fake_bundle(v), keys, root2)["release"] for v in ("2.0", "2.1"))
    assert rollback_root(root2)["to"] == a
    c = flash_root(fake_bundle("2.2"), keys, root2)["release"]
    r = rollback_root(root2)
    assert (r["from"], r["to"]) == (c, a) and current_of(root2) == a  # not b, which had been rolled back


def test_keep_prunes_but_never_current_or_previous(root, keys, fake_bundle):
    done = [flash_root(fake_bundle(f"3.{i}"), keys, root, keep=2) for i in range(4)]
    assert release_dirs(root) == sorted(d["release"] for d in done[-2:])
    assert done[2]["pruned"] == [done[0]["release"]]
    with pytest.raises(FlashError, match="at least 2"):
        ReleaseStore(root).prune(1)


def test_the_scanner_checks_against_its_own_key(tmp_path, keys, fake_bundle):
    """The workstation's key says yes; the scanner trusts another key: refused there, nothing installed."""
    _, other_pub = signing.keygen(tmp_path / "other.key")
    root = scanner_root(tmp_path / "r", other_pub)
    with pytest.raises(FlashError, match="bad signature"):
        flash_root(fake_bundle("1.0"), keys, root)
    assert release_dirs(root) == [] and staged(root) == [] and not (base_of(root) / "current").exists()
    assert sorted(p.name for p in base_of(root).iterdir()) == ["staging"]  # only the (empty) staging folder


def test_a_scanner_without_a_key_refuses_and_install_key_is_trust_on_first_use(tmp_path, keys, fake_bundle):
    root = scanner_root(tmp_path / "r", None)
    with pytest.raises(FlashError, match="no bundle-signing key .*--install-key"):
        flash_root(fake_bundle("1.0"), keys, root)
    r = flash_root(fake_bundle("1.0"), keys, root, install_key=True)
    assert (root / "etc/cancernet-sca/bundle-signing.pub").read_bytes() == keys[1].read_bytes()
    assert any("installed at" in n for n in r["notes"])
    _, other_pub = signing.keygen(tmp_path / "other.key")
    with pytest.raises(FlashError, match="already trusts another key"):
        RootTarget(root, FlashOptions()).install_key(other_pub)
    assert (root / "etc/cancernet-sca/bundle-signing.pub").read_bytes() == keys[1].read_bytes()


def test_another_devices_bundle_and_a_downgrade_are_refused(root, keys, fake_bundle):
    with pytest.raises(FlashError, match="bundle is for cancernet-sca-scanner/x86_64, this scanner is "
                                         "cancernet-sca-scanner/aarch64"):
        flash_root(fake_bundle("1.0", compatible="cancernet-sca-scanner/x86_64"), keys, root)
    flash_root(fake_bundle("2.0"), keys, root)
    with pytest.raises(FlashError, match="older than the current release .*--allow-downgrade"):
        flash_root(fake_bundle("1.9"), keys, root)
    assert len(release_dirs(root)) == 1
    r = flash_root(fake_bundle("1.9"), keys, root, allow_downgrade=True)
    assert r["version"] == "1.9" and any("downgrade from 2.0 to 1.9" in n for n in r["notes"])


def test_compatible_comes_from_the_roots_own_binaries(tmp_path, keys):
    root = scanner_root(tmp_path / "r", keys[1])
    (root / "etc/cancernet-sca/compatible").unlink()
    with pytest.raises(FlashError, match="cannot tell what device"):
        ReleaseStore(root).compatible()
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3").write_bytes(Path(sys.executable).resolve().read_bytes()[:64])
    assert ReleaseStore(root).compatible() == f"cancernet-sca-scanner/{os.uname().machine}"


def test_rollback_rechecks_the_release_it_switches_to(root, keys, fake_bundle):
    a = flash_root(fake_bundle("1.0"), keys, root)["release"]
    flash_root(fake_bundle("1.1"), keys, root)
    rel = base_of(root) / "releases" / a
    (rel / "edge_sca/__pycache__").mkdir()
    (rel / "edge_sca/__pycache__/x.pyc").write_bytes(b"cache")  # a cache Python may write: removed, not refused
    script = rel / "edge_sca/preprocess.py"
    script.write_text(script.read_text() + "\n# changed on the card\n")
    with pytest.raises(FlashError, match=r"no longer matches its signed hashes \(edge_sca/preprocess.py changed"):
        rollback_root(root)
    assert current_of(root) != a
    script.write_text(script.read_text().replace("\n# changed on the card\n", ""))
    (rel / "planted.py").write_text("evil")
    with pytest.raises(FlashError, match="planted.py is not in the signed list"):
        rollback_root(root)
    (rel / "planted.py").unlink()
    assert rollback_root(root)["to"] == a and not (rel / "edge_sca/__pycache__").exists()


def test_free_space_is_checked_before_copying(root, keys, fake_bundle, monkeypatch):
    monkeypatch.setattr(rootfs, "free_bytes", lambda path: 10 << 20)
    with pytest.raises(FlashError, match=r"not enough space .* needs 6\d\.\d MB .* 10\.5 MB are free"):
        flash_root(fake_bundle("1.0"), keys, root)
    assert release_dirs(root) == [] and staged(root) == []


def test_a_full_card_mid_copy_leaves_nothing_behind(root, keys, fake_bundle, monkeypatch):
    first = flash_root(fake_bundle("1.0"), keys, root)["release"]
    written = {"n": 0}
    real_write = releases_mod._ReleaseFile.write

    def write(self, data):
        written["n"] += 1
        if written["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(releases_mod._ReleaseFile, "write", write)
    with pytest.raises(FlashError, match="No space left on device.*free space"):
        flash_root(fake_bundle("1.1"), keys, root)
    assert release_dirs(root) == [first] and staged(root) == [] and current_of(root) == first


def test_ctrl_c_during_an_install_leaves_nothing_behind(root, keys, fake_bundle, monkeypatch):
    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(releases_mod._ReleaseFile, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        flash_root(fake_bundle("1.0"), keys, root)
    assert release_dirs(root) == [] and staged(root) == []


def test_leftovers_of_killed_flashes_are_removed(root, keys, fake_bundle):
    (base_of(root) / "staging/1.0-20260101T000000.000000Z.partial/edge_sca").mkdir(parents=True)
    (base_of(root) / "releases/0.9-20250101T000000.000000Z.partial").mkdir(parents=True)  # the old layout's
    r = flash_root(fake_bundle("1.0"), keys, root)
    assert staged(root) == [] and release_dirs(root) == [r["release"]]
    assert any("leftovers of an interrupted flash" in n for n in r["notes"])


def test_one_operation_at_a_time(root, keys, fake_bundle):
    flash_root(fake_bundle("1.0"), keys, root)
    with open(base_of(root) / "staging/.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(FlashError, match="another flash or rollback is running"):
            flash_root(fake_bundle("1.1"), keys, root)


def test_symlinks_out_of_the_root_are_refused(root, keys, fake_bundle, tmp_path):
    outside = tmp_path / "outside"
    (outside / "cancernet-sca").mkdir(parents=True)
    (root / "opt").symlink_to(outside)  # absolute: on this machine it leads out of the card
    with pytest.raises(FlashError, match="opt is a symlink to .*outside, which leads out of the scanner's root"):
        flash_root(fake_bundle("1.0"), keys, root)
    assert list((outside / "cancernet-sca").iterdir()) == []
    (root / "opt").unlink()

    target = tmp_path / "host-unit"
    target.write_text("this machine's file")
    unit = root / "etc/systemd/system/cancernet-sca.service"
    unit.parent.mkdir(parents=True)
    unit.symlink_to(target)  # a link at the destination is replaced, never written through
    flash_root(fake_bundle("1.0"), keys, root)
    assert target.read_text() == "this machine's file" and not unit.is_symlink()


def test_odd_roots_give_clear_errors(tmp_path, keys, fake_bundle, monkeypatch):
    root = scanner_root(tmp_path / "r", keys[1])
    (root / "opt").write_text("not a folder")
    with pytest.raises(FlashError, match="opt is a file, not a folder"):
        flash_root(fake_bundle("1.0"), keys, root)
    (root / "opt").unlink()

    def read_only(path, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(rootfs.os, "mkdir", read_only)
    with pytest.raises(FlashError, match="Read-only file system.*remount it read-write"):
        flash_root(fake_bundle("1.0"), keys, root)


def test_modes_are_explicit_whatever_the_umask(root, keys, fake_bundle):
    old = os.umask(0)
    try:
        r = flash_root(fake_bundle("1.0"), keys, root)
    finally:
        os.umask(old)
    for p in [root / "etc", *root.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir() or p.name == "install.sh":
            assert mode == 0o755, p
        else:
            assert mode == 0o644, p
    assert (base_of(root) / "releases" / r["release"] / "install.sh").exists()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "firmware_bridge", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_flash_rollback_and_refusals_are_one_line(root, keys, fake_bundle, tmp_path):
    good = [fake_bundle(v) for v in ("8.0", "8.1")]
    common = ["--root", str(root), "--public-key", str(keys[1])]
    outs = []
    for b in good:
        p = run_cli("flash", "--bundle", str(b), *common, "--json")
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout))
    p = run_cli("rollback", *common, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["to"] == outs[0]["release"], p.stderr

    bad = repack(good[1], tmp_path / "bad.tar.gz", lambda es: replace_file(
        es, "models/cancernet_sca_b_int8.tflite", b"TFL3 a different model", keys[0]))
    # (the edit re-signed the index, as an insider could: only the manifest check can refuse it)
    for args, message in [(["flash", "--bundle", str(bad), *common], "does not describe this model"),
                          (["flash", "--bundle", str(good[0]), *common, "--keep", "0"], "at least 2"),
                          (["flash", "--bundle", str(good[0]), "--root", str(root), "--host", "pi@x"],
                           "exactly one of --host")]:
        p = run_cli(*args)
        assert p.returncode == 2 and message in p.stderr.splitlines()[-1] and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("usage:") or p.stderr.count("\n") == 1  # argparse's usage, or one line
    assert current_of(root) == outs[0]["release"]
    (root / "opt").rename(root / "opt.away")
    (root / "opt").write_text("x")
    p = run_cli("flash", "--bundle", str(good[0]), *common)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_scanner_cli_status_and_unverifiable_install(root, keys, fake_bundle, tmp_path):
    flash_root(fake_bundle("1.0"), keys, root)
    p = run_cli("scanner", "status", "--root", str(root), "--json")
    assert p.returncode == 0, p.stderr
    status = json.loads(p.stdout)
    assert status["version"] == "1.0" and status["compatible"] == "cancernet-sca-scanner/aarch64"
    assert status["public_key"] is True and len(status["history"]) == 1
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    p = run_cli("scanner", "install", str(tmp_path / "junk.tar.gz"), "--root", str(root))
    assert p.returncode == 2 and "not a readable tar.gz" in p.stderr and "Traceback" not in p.stderr
    with pytest.raises(BundleError), open(tmp_path / "junk.tar.gz", "rb") as junk:
        ReleaseStore(root).install(junk, "junk")
