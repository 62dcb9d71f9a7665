"""The deploy files: the unit's hardening as systemd itself rates it, the installer zip that `flash --host` runs
on the scanner needing nothing beyond the standard library and `cryptography`, and the audit log's mode."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
from bridge_support import scanner_root

from firmware_bridge import signing
from firmware_bridge.agent import MODULES, build_agent
from firmware_bridge.bundle import DEPLOY_DIR, DEPLOY_FILES, make_bundle
from firmware_bridge.flash import FlashOptions, RootTarget, flash

UNIT = DEPLOY_DIR / "cancernet-sca.service"


def test_unit_is_health_gated_and_hardened():
    unit = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "RestartPreventExitStatus=2", "UMask=0027",
                 "PrivateNetwork=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "DevicePolicy=closed",
                 "StateDirectory=cancernet-sca", "CapabilityBoundingSet=\n", "MemoryMax="):
        assert line in unit, line
    # its settings come from the TOML file install.sh provides, no longer from an environment string
    assert re.search(r"^ExecStart=/opt/cancernet-sca/venv/bin/python -m edge_sca run --config "
                     r"/etc/cancernet-sca/scanner.toml$", unit, re.M)
    assert "EnvironmentFile" not in unit and "EDGE_SCA_ARGS" not in unit
    allowed = re.findall(r"^DeviceAllow=(\S+)", unit, re.M)
    assert allowed and all(a.startswith("char-") and any(k in a for k in ("video", "media", "dma_heap", "tty"))
                           for a in allowed)  # camera and serial devices only


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed "
                    "(apt install systemd) to rate the unit")
def test_unit_exposure_is_at_most_2_5():
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.5, out.stdout


AGENT_CHECK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"numpy", "cv2", "serial", "ai_edge_litert", "tensorflow", "tflite_runtime"}:
            raise ImportError(f"{name} is not on a fresh scanner")
sys.meta_path.insert(0, Block())
zip_path = sys.argv[1]
sys.path.insert(0, zip_path)
from firmware_bridge.scanner_cli import main
codes = [main(["install", sys.argv[2], "--root", sys.argv[3]]), main(["status", "--root", sys.argv[3], "--json"])]
ours = {n: getattr(m, "__file__", "") for n, m in sys.modules.items() if n.split(".")[0] in ("edge_sca",
        "firmware_bridge")}
outside = sorted(n for n, f in ours.items() if not f.startswith(zip_path))
sys.exit(f"not from the zip: {outside}" if outside else max(codes))
"""


def test_installer_zip_runs_with_the_standard_library_and_cryptography(tmp_path, write_fake_model):
    keys = signing.keygen(tmp_path / "k" / "signing.key")
    write_fake_model(tmp_path / "m", "cancernet_sca_b_int8", b"model")
    bundle = make_bundle(tmp_path / "m", keys[0], tmp_path / "dist", version="1.0").path
    root = scanner_root(tmp_path / "root", keys[1])
    agent = tmp_path / "installer.pyz"
    agent.write_bytes(build_agent())
    assert build_agent() == agent.read_bytes()  # deterministic
    done = subprocess.run([sys.executable, "-c", AGENT_CHECK, str(agent), str(bundle), str(root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified and installed 1.0-" in done.stdout and '"releases": [' in done.stdout
    assert len(list((root / "opt/cancernet-sca/releases").iterdir())) == 1
    assert len(MODULES) == len(set(MODULES))


def test_audit_log_is_0640_whatever_the_umask(tmp_path):
    from edge_sca.audit import AuditLog

    old = os.umask(0)
    try:
        with AuditLog(tmp_path / "audit.jsonl") as log:
            log.write({"decision": "benign"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o640


def _namespace_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_install_sh_installs_the_settings_file_once_and_keeps_a_sites_edit(tmp_path):
    """install.sh itself, with /etc replaced by an empty folder in a private mount namespace (useradd and systemctl
    stood in for): the first run installs the bundle's scanner.toml, a later run keeps the site's edited file."""
    if not _namespace_works():
        if os.environ.get("CI"):
            pytest.fail("CI is set but `unshare -rm` (user and mount namespaces) is not available")
        pytest.skip("`unshare -rm` (user and mount namespaces) is not available here")
    release = tmp_path / "release"
    for arc, name in DEPLOY_FILES.items():  # the files at the paths the bundle gives them
        (release / arc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY_DIR / name, release / arc)
    stubs, etc = tmp_path / "stubs", tmp_path / "etc"
    stubs.mkdir()
    (etc / "systemd/system").mkdir(parents=True)  # as on any systemd machine
    for tool in ("useradd", "systemctl"):
        (stubs / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {tmp_path}/calls\n")
        (stubs / tool).chmod(0o755)
    script = 'mount --bind "$1" /etc && PATH="$2:$PATH" sh "$3/install.sh" --no-venv --prefix "$4"'

    def install() -> subprocess.CompletedProcess:
        return subprocess.run(["unshare", "-rm", "sh", "-c", script, "_", str(etc), str(stubs), str(release),
                               str(tmp_path / "opt")], capture_output=True, text=True, timeout=60)

    done = install()
    assert done.returncode == 0, done.stdout + done.stderr
    settings = etc / "cancernet-sca/scanner.toml"
    assert settings.read_bytes() == (DEPLOY_DIR / "scanner.toml").read_bytes()
    assert stat.S_IMODE(settings.stat().st_mode) == 0o644
    assert (etc / "systemd/system/cancernet-sca.service").read_bytes() == UNIT.read_bytes()
    assert "systemctl daemon-reload" in (tmp_path / "calls").read_text()
    edited = settings.read_text().replace('port = "/dev/ttyACM0"', 'port = "/dev/ttyUSB0"')
    settings.write_text(edited)
    (etc / "cancernet-sca/edge_sca.env").write_text("EDGE_SCA_ARGS='--camera synthetic'\n")  # the old file
    done = install()
    assert done.returncode == 0, done.stdout + done.stderr
    assert settings.read_text() == edited  # the site's edit is kept, like a conffile
    assert "edge_sca.env is no longer read" in done.stderr and "scanner.toml" in done.stderr


def test_a_card_flash_notes_the_old_environment_file(tmp_path, write_fake_model):
    keys = signing.keygen(tmp_path / "k" / "signing.key")
    write_fake_model(tmp_path / "m", "cancernet_sca_b_int8", b"model")
    bundle = make_bundle(tmp_path / "m", keys[0], tmp_path / "dist", version="1.0").path
    root = scanner_root(tmp_path / "root", keys[1])
    (root / "etc/cancernet-sca/edge_sca.env").write_text("EDGE_SCA_ARGS='--camera synthetic'\n")
    result = flash(bundle, keys[1], RootTarget(root, FlashOptions()))
    assert any("edge_sca.env is no longer read" in n for n in result["notes"])
    assert (root / "etc/cancernet-sca/scanner.toml").read_bytes() == (DEPLOY_DIR / "scanner.toml").read_bytes()
