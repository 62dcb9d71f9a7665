"""Flashing: to a mounted root file system, and to a 'host' through stand-in ssh/rsync commands that run locally;
self-test, install and restart failures keep the previous release current; rollback; pruning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from firmware_bridge import signing
from firmware_bridge.bundle import make_bundle
from firmware_bridge.errors import BundleError, FlashError
from firmware_bridge.flash import FlashOptions, HostTarget, RootTarget, flash, release_key, rollback

PREFIX = "/opt/cancernet-sca"

FAKE_SSH = """
import subprocess, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):          # ssh options such as -o BatchMode=yes
    args = args[2:] if args[0] in ("-o", "-p", "-i") else args[1:]
host, script = args[0], args[1]
with open(sys.argv[0] + ".log", "a") as log:
    log.write(script + "\\n")
sys.exit(subprocess.run(["sh", "-c", script]).returncode)
"""

FAKE_RSYNC = """
import shutil, sys
src, dst = sys.argv[-2], sys.argv[-1].split(":", 1)[1]
shutil.copytree(src, dst, dirs_exist_ok=True)
"""


@pytest.fixture
def stand_ins(tmp_path):
    """ssh and rsync commands that act on this machine (the 'scanner' is a folder under tmp_path)."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "ssh.py").write_text(FAKE_SSH)
    (d / "rsync.py").write_text(FAKE_RSYNC)
    return {"ssh": f"{sys.executable} {d / 'ssh.py'}", "rsync": f"{sys.executable} {d / 'rsync.py'}",
            "log": d / "ssh.py.log"}


@pytest.fixture
def keys(tmp_path):
    return signing.keygen(tmp_path / "keys" / "signing.key")


@pytest.fixture
def fake_bundle(tmp_path, keys, write_fake_model):
    """fake_bundle(version): a bundle signed with `keys`, its one model file holding b'model VERSION'."""
    def make(version: str) -> Path:
        d = tmp_path / f"models-{version}"
        write_fake_model(d, "cancernet_sca_b_int8", f"model {version}".encode())
        return make_bundle(d, keys[0], tmp_path / "dist", version=version).path
    return make


def host_target(tmp_path, stand_ins, **overrides) -> HostTarget:
    prefix = tmp_path / "scanner" / PREFIX.lstrip("/")
    opts = FlashOptions(prefix=str(prefix), ssh=stand_ins["ssh"], rsync=stand_ins["rsync"], python=sys.executable,
                        install_cmd="sh {release}/install.sh --prefix {prefix} --no-venv --no-system",
                        restart_cmd="echo restarted >> {prefix}/restarts.log", keep=3)
    for k, v in overrides.items():
        setattr(opts, k, v)
    return HostTarget("pi@scanner", opts)


def current_of(prefix: Path) -> str:
    link = prefix / "current"
    assert link.is_symlink()
    assert not os.path.isabs(os.readlink(link))  # relative: works on the mounted card and on the Pi
    return Path(os.readlink(link)).name


# --- ROOT ---------------------------------------------------------------------------------------------------------

def test_flash_root_installs_switches_and_rolls_back(tmp_path, keys, fake_bundle):
    root = tmp_path / "rootfs"
    root.mkdir()
    base = root / PREFIX.lstrip("/")
    first = flash(fake_bundle("1.0"), keys[1], RootTarget(root, FlashOptions()))
    assert current_of(base) == first["release"] and first["previous"] is None
    assert first["release"].startswith("1.0-") and release_key(first["release"])
    assert any("self-test skipped" in n for n in first["notes"])
    assert any("not restarted" in n for n in first["notes"])
    rel = base / "releases" / first["release"]
    assert (rel / "models/cancernet_sca_b_int8.tflite").read_bytes() == b"model 1.0"
    assert (root / "etc/systemd/system/cancernet-sca.service").is_file()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/cancernet-sca.service") == \
        "/etc/systemd/system/cancernet-sca.service"
    config = root / "etc/cancernet-sca/edge_sca.env"
    config.write_text("EDGE_SCA_ARGS='--camera synthetic'\n")  # a local edit survives the next flash

    second = flash(fake_bundle("1.1"), keys[1], RootTarget(root, FlashOptions()))
    assert current_of(base) == second["release"] and second["previous"] == first["release"]
    assert config.read_text() == "EDGE_SCA_ARGS='--camera synthetic'\n"
    assert not (base / ".current.tmp").exists()

    back = rollback(RootTarget(root, FlashOptions()))
    assert back == {**back, "from": second["release"], "to": first["release"]}
    assert current_of(base) == first["release"]
    with pytest.raises(FlashError, match="no release older"):
        rollback(RootTarget(root, FlashOptions()))


def test_flash_root_keeps_last_n(tmp_path, keys, fake_bundle):
    root = tmp_path / "rootfs"
    root.mkdir()
    done = [flash(fake_bundle(f"2.{i}"), keys[1], RootTarget(root, FlashOptions(keep=2)))
            for i in range(4)]
    left = sorted(p.name for p in (root / PREFIX.lstrip("/") / "releases").iterdir())
    assert left == sorted(d["release"] for d in done[-2:])
    assert done[2]["pruned"] == [done[0]["release"]]


def test_flash_refuses_unverified_bundle_before_touching_the_target(tmp_path, keys, fake_bundle):
    root = tmp_path / "rootfs"
    root.mkdir()
    _, other = signing.keygen(tmp_path / "other.key")
    with pytest.raises(BundleError, match="bad signature"):
        flash(fake_bundle("1.0"), other, RootTarget(root, FlashOptions()))
    assert list(root.iterdir()) == []
    with pytest.raises(FlashError, match="not found"):
        RootTarget(tmp_path / "not-mounted", FlashOptions())


# --- HOST through stand-in ssh/rsync --------------------------------------------------------------------------

def test_flash_host_runs_install_selftest_restart(tmp_path, keys, stand_ins, fake_bundle):
    target = host_target(tmp_path, stand_ins, selftest_cmd="cd {release} && test -f {model} && echo PASS {model}")
    r = flash(fake_bundle("3.0"), keys[1], target)
    prefix = Path(target.opts.prefix)
    assert current_of(prefix) == r["release"]
    assert (prefix / "restarts.log").read_text() == "restarted\n"
    assert any(n.startswith("self-test models/cancernet_sca_b_int8.tflite: PASS") for n in r["notes"])
    log = stand_ins["log"].read_text()
    assert "install.sh" in log and "mv -T .current.tmp current" in log
    assert not list((prefix / "releases").glob("*.partial"))


@pytest.mark.parametrize("failing", ["install_cmd", "selftest_cmd"])
def test_flash_host_failure_keeps_previous_current(tmp_path, keys, stand_ins, failing, fake_bundle):
    ok = host_target(tmp_path, stand_ins, selftest_cmd="true")
    first = flash(fake_bundle("4.0"), keys[1], ok)
    bad = host_target(tmp_path, stand_ins, **{"selftest_cmd": "true", failing: "echo 'self-test FAIL' >&2; exit 1"})
    with pytest.raises(FlashError, match=f"{first['release']} stays current") as exc:
        flash(fake_bundle("4.1"), keys[1], bad)
    assert "self-test FAIL" in str(exc.value)
    prefix = Path(ok.opts.prefix)
    assert current_of(prefix) == first["release"]
    assert [p.name for p in (prefix / "releases").iterdir()] == [first["release"]]
    assert (prefix / "restarts.log").read_text() == "restarted\n"  # only the first flash restarted


def test_flash_host_restart_failure_switches_back(tmp_path, keys, stand_ins, fake_bundle):
    first = flash(fake_bundle("5.0"), keys[1], host_target(tmp_path, stand_ins,
                                                                              selftest_cmd="true"))
    flaky = host_target(tmp_path, stand_ins, selftest_cmd="true",
                        restart_cmd="test -f {prefix}/once || { touch {prefix}/once; exit 1; }")
    with pytest.raises(FlashError, match=f"switched back to {first['release']}"):
        flash(fake_bundle("5.1"), keys[1], flaky)
    prefix = Path(flaky.opts.prefix)
    assert current_of(prefix) == first["release"]
    assert [p.name for p in (prefix / "releases").iterdir()] == [first["release"]]


def test_rollback_over_host(tmp_path, keys, stand_ins, fake_bundle):
    target = host_target(tmp_path, stand_ins, selftest_cmd="true")
    with pytest.raises(FlashError, match="no current release"):
        rollback(target)
    a = flash(fake_bundle("6.0"), keys[1], target)
    b = flash(fake_bundle("6.1"), keys[1], target)
    r = rollback(target)
    assert (r["from"], r["to"]) == (b["release"], a["release"])
    assert current_of(Path(target.opts.prefix)) == a["release"]
    assert (Path(target.opts.prefix) / "restarts.log").read_text().count("restarted") == 3


def test_host_name_is_checked(tmp_path, stand_ins):
    with pytest.raises(FlashError, match="user@scanner"):
        host_target(tmp_path, stand_ins).__class__("-oProxyCommand=x", FlashOptions())


# --- the real self-test (needs the random-weight models, hence the ISIC folder) -----------------------------------

def _models_dir(random_models, tmp_path, break_refs: bool) -> Path:
    d = tmp_path / ("broken" if break_refs else "good")
    d.mkdir()
    for variant in ("int8", "float32"):
        src = random_models[variant]
        shutil.copy(src, d / src.name)
        manifest = json.loads(src.with_name(src.stem + ".manifest.json").read_text())
        if break_refs:  # the device would now disagree with the 'workstation' by >= 0.5
            for ref in manifest["reference_vectors"]:
                p = ref["expected_probs"]
                ref["expected_probs"] = [0.0, 1.0] if p[0] > 0.5 else [1.0, 0.0]
        (d / (src.stem + ".manifest.json")).write_text(json.dumps(manifest))
    return d


@pytest.mark.slow
def test_flash_host_with_real_selftest(random_models, tmp_path, keys, stand_ins):
    """`python -m edge_sca selftest` runs from the new release folder: a good bundle passes, one whose reference
    vectors disagree fails and leaves the good release current."""
    target = host_target(tmp_path, stand_ins)
    good = make_bundle(_models_dir(random_models, tmp_path, False), keys[0], tmp_path / "dist", version="7.0")
    r = flash(good.path, keys[1], target)
    assert current_of(Path(target.opts.prefix)) == r["release"]
    assert sum("self-test" in n and "PASS" in n for n in r["notes"]) == 2, r["notes"]
    broken = make_bundle(_models_dir(random_models, tmp_path, True), keys[0], tmp_path / "dist", version="7.1")
    with pytest.raises(FlashError, match="self-test of models/.*failed"):
        flash(broken.path, keys[1], target)
    assert current_of(Path(target.opts.prefix)) == r["release"]


def test_cli_flash_and_rollback_root(tmp_path, keys, fake_bundle):
    root = tmp_path / "rootfs"
    root.mkdir()
    bundles = [fake_bundle(v) for v in ("8.0", "8.1")]
    common = ["--root", str(root), "--public-key", str(keys[1]), "--json"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "firmware_bridge", *a], capture_output=True, text=True,
                                    timeout=120)
    outs = []
    for b in bundles:
        p = run("flash", "--bundle", str(b), *common)
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout))
    p = run("rollback", *common)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["to"] == outs[0]["release"]
    p = run("flash", "--bundle", str(bundles[0]), "--root", str(root), "--host", "pi@x")
    assert p.returncode == 2 and "exactly one of --host" in p.stderr
    assert textwrap.dedent(p.stderr).count("\n") == 1  # one line, no traceback
