"""Flashing a running scanner over ssh, through stand-ins that run locally: ssh (a shell), sudo (none) and
systemctl (fake_systemctl.py, which starts the release's service with NOTIFY_SOCKET as systemd does). The
installer zip verifies on the 'scanner' against its own key; a release that does not report READY, or does not
stay up, is switched back; failures and Ctrl-C leave the previous release current and nothing behind."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import fake_systemctl
import pytest
from bridge_support import PREFIX, scanner_root

from firmware_bridge import signing
from firmware_bridge.bundle import make_bundle
from firmware_bridge.errors import FlashError
from firmware_bridge.flash import FlashOptions, HostTarget, flash, rollback

FAKE_SSH = """
while [ "${1#-}" != "$1" ]; do case "$1" in -o|-p|-i) shift 2 ;; *) shift ;; esac; done   # ssh's options
printf '%s\\n' "$2" >> "$0.log"
exec sh -c "$2"   # as user@host would; stdin (the bundle) passes through
"""

#: The scanner's service as the stand-in systemd runs it: the release's own sd_notify module says READY, unless
#: the release's model says otherwise ('crash': the real runtime, which refuses the fake model and exits 2 before
#: READY; 'flaky': READY, then a crash).
SERVICE = """
import os, sys, time
current = sys.argv[1]
model = open(os.path.join(current, "models/cancernet_sca_b_int8.tflite"), "rb").read()
if b"crash" in model:
    os.chdir(current)
    os.execv(sys.executable, [sys.executable, "-m", "edge_sca", "run", "--model-file",
                              "models/cancernet_sca_b_int8.tflite", "--camera", "synthetic"])
sys.path.insert(0, current)
from edge_sca.sdnotify import Notifier
Notifier().ready("up")
time.sleep(0.3 if b"flaky" in model else 300)
sys.exit(1)
"""


@pytest.fixture
def keys(tmp_path):
    return signing.keygen(tmp_path / "keys" / "signing.key")


@pytest.fixture
def fake_bundle(tmp_path, keys, write_fake_model):
    """fake_bundle(version, model=...): a bundle signed with `keys`; its model file holds b'model VERSION'."""
    def make(version: str, model: bytes | None = None) -> Path:
        d = tmp_path / f"models-{version}"
        write_fake_model(d, "cancernet_sca_b_int8", model or f"model {version}".encode())
        return make_bundle(d, keys[0], tmp_path / "dist", version=version, with_wheels=False).path
    return make


@pytest.fixture
def scanner(tmp_path, keys):
    """The scanner's root (trusting `keys`), with ssh and systemctl stand-ins; stops the service afterwards."""
    root = scanner_root(tmp_path / "scanner", keys[1])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh.sh").write_text(FAKE_SSH)
    (bin_dir / "service.py").write_text(SERVICE)
    state = root / "run/fake-systemd"
    yield {"root": root, "ssh": f"sh {bin_dir / 'ssh.sh'}", "log": bin_dir / "ssh.sh.log",
           "state": state, "service": bin_dir / "service.py"}
    fake_systemctl.stop(state)


def host_target(scanner, **overrides) -> HostTarget:
    fake = Path(fake_systemctl.__file__)
    prefix = scanner["root"] / PREFIX.lstrip("/")
    opts = FlashOptions(root=str(scanner["root"]), ssh=scanner["ssh"], sudo="", python=sys.executable,
                        agent_cmd="{python} {agent}",
                        install_cmd="sh {release}/install.sh --prefix {prefix} --no-venv --no-system",
                        selftest_cmd="true",
                        restart_cmd=f"{sys.executable} {fake} restart {scanner['state']} {{ready_timeout}} -- "
                                    f"{sys.executable} {scanner['service']} {prefix}/current",
                        health_cmd=f"{sys.executable} {fake} show {scanner['state']}",
                        ready_timeout_s=20, settle_s=0.5, keep=3)
    for k, v in overrides.items():
        setattr(opts, k, v)
    return HostTarget("pi@scanner", opts)


def prefix_of(scanner) -> Path:
    return scanner["root"] / PREFIX.lstrip("/")


def current_of(scanner) -> str:
    return Path((prefix_of(scanner) / "current").readlink()).name


def releases_of(scanner) -> list[str]:
    return sorted(p.name for p in (prefix_of(scanner) / "releases").iterdir())


def service_runs(scanner) -> list[str]:
    return (scanner["state"] / "restarts.log").read_text().splitlines()


def test_flash_host_verifies_on_the_scanner_and_waits_for_ready(scanner, keys, fake_bundle, tmp_path):
    r = flash(fake_bundle("3.0"), keys[1], host_target(scanner, selftest_cmd="test -f {model} && echo PASS"))
    assert current_of(scanner) == r["release"] and r["ready"].startswith("ready after")
    assert any(n.startswith("self-test models/cancernet_sca_b_int8.tflite: PASS") for n in r["notes"])
    log = scanner["log"].read_text()
    assert "installer.pyz install - " in log and "rsync" not in log  # the archive itself, on stdin
    release = prefix_of(scanner) / "releases" / r["release"]
    assert (release / "BUNDLE.json").is_file() and (release / "BUNDLE.sig").is_file()
    assert len(service_runs(scanner)) == 1
    assert not list((prefix_of(scanner) / "staging").glob("*.partial"))


def test_a_failure_before_the_switch_keeps_the_previous_current(scanner, keys, fake_bundle):
    first = flash(fake_bundle("4.0"), keys[1], host_target(scanner))
    bad = host_target(scanner, selftest_cmd="echo 'self-test FAIL' >&2; exit 1")
    with pytest.raises(FlashError, match=f"self-test FAIL.*removed, {first['release']} stays current"):
        flash(fake_bundle("4.1"), keys[1], bad)
    assert current_of(scanner) == first["release"] and releases_of(scanner) == [first["release"]]
    assert len(service_runs(scanner)) == 1  # never restarted


def test_a_release_that_does_not_come_up_is_switched_back(scanner, keys, fake_bundle):
    """The release crash-loops before READY (the real runtime refusing its model), or dies right after READY:
    flash switches back, restarts the previous release, waits for it, and says so."""
    target = host_target(scanner)
    first = flash(fake_bundle("5.0"), keys[1], target)
    for version, model, why in [("5.1", b"crash", "did not report READY"), ("5.2", b"flaky", "did not stay up")]:
        with pytest.raises(FlashError, match=f"{why}.*switched back to {first['release']} and restarted it: "
                                             "ready"):
            flash(fake_bundle(version, model=model), keys[1], target)
        assert current_of(scanner) == first["release"] and releases_of(scanner) == [first["release"]]
        assert _show(scanner)["ActiveState"] == "active"  # the previous release runs again
    assert len(service_runs(scanner)) == 5
    assert target.agent("status", "status")["history"] == [first["release"]]


def _show(scanner) -> dict:
    out = subprocess.run([sys.executable, fake_systemctl.__file__, "show", str(scanner["state"])],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_ctrl_c_during_the_self_test_leaves_no_release_behind(scanner, keys, fake_bundle, monkeypatch):
    """... and a later rollback (over ssh: re-checked on the scanner, restarted, READY) never lands on it."""
    target = host_target(scanner)
    with pytest.raises(FlashError, match="no current release"):
        rollback(target)
    first = flash(fake_bundle("6.0"), keys[1], target)

    def interrupted(self, release, models):
        raise KeyboardInterrupt

    monkeypatch.setattr(HostTarget, "selftest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        flash(fake_bundle("6.1"), keys[1], target)
    assert releases_of(scanner) == [first["release"]] and current_of(scanner) == first["release"]
    monkeypatch.undo()
    second = flash(fake_bundle("6.2"), keys[1], target)
    r = rollback(target)
    assert (r["from"], r["to"]) == (second["release"], first["release"]) and r["ready"].startswith("ready")
    assert (prefix_of(scanner) / "history").read_text().split() == [first["release"]]
    assert len(service_runs(scanner)) == 3


def test_the_scanner_refuses_a_bundle_its_own_key_did_not_sign(scanner, keys, fake_bundle, tmp_path):
    _, other_pub = signing.keygen(tmp_path / "other.key")
    shutil.copy(other_pub, scanner["root"] / "etc/cancernet-sca/bundle-signing.pub")
    with pytest.raises(FlashError, match="verifying and installing the bundle on pi@scanner: bad signature"):
        flash(fake_bundle("7.0"), keys[1], host_target(scanner))
    assert not (prefix_of(scanner) / "releases").exists()
    assert [p.name for p in (prefix_of(scanner) / "staging").iterdir()] == [".lock"]


def test_host_name_is_checked():
    with pytest.raises(FlashError, match="user@scanner"):
        HostTarget("-oProxyCommand=x", FlashOptions())


# --- the real self-test and the real runtime (needs the random-weight models, hence the ISIC folder) ------------

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
def test_flash_host_with_real_selftest_and_runtime(random_models, tmp_path, keys, scanner, monkeypatch):
    """`python -m edge_sca selftest` runs from the new release folder, then the release's own `edge_sca run` is
    started as the service and must send READY (self-test passed, camera open). A bundle whose reference vectors
    disagree fails its self-test and leaves the good release current; so does a release that refuses the
    scanner's settings file (the self-test reads it too)."""
    prefix = prefix_of(scanner)
    service = (f"cd {prefix}/current && PYTHONPATH=. exec {sys.executable} -m edge_sca run --model "
               "models/cancernet_sca_b_int8.tflite --camera synthetic --threads 1")
    fake = Path(fake_systemctl.__file__)
    target = host_target(scanner, selftest_cmd=FlashOptions().selftest_cmd, ready_timeout_s=60,
                         restart_cmd=f"{sys.executable} {fake} restart {scanner['state']} {{ready_timeout}} -- "
                                     f"{shlex.quote(service)}")
    good = make_bundle(_models_dir(random_models, tmp_path, False), keys[0], tmp_path / "dist", version="7.0")
    r = flash(good.path, keys[1], target)
    assert current_of(scanner) == r["release"] and r["ready"].startswith("ready")
    assert sum("self-test" in n and "PASS" in n for n in r["notes"]) == 2, r["notes"]
    broken = make_bundle(_models_dir(random_models, tmp_path, True), keys[0], tmp_path / "dist", version="7.1")
    with pytest.raises(FlashError, match="self-test of models/.*failed"):
        flash(broken.path, keys[1], target)
    assert current_of(scanner) == r["release"]
    settings = tmp_path / "scanner.toml"
    settings.write_text("[board]\ntimeout = 30\n")  # a key this release does not know
    monkeypatch.setenv("CANCERNET_SCA_CONFIG", str(settings))
    again = make_bundle(tmp_path / "good", keys[0], tmp_path / "dist", version="7.2")
    with pytest.raises(FlashError, match=r"self-test of models/.*failed \(exit 2\).*unknown key 'timeout'"):
        flash(again.path, keys[1], target)
    assert current_of(scanner) == r["release"]
