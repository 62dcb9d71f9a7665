"""The device environment (one list, hashed locks, an offline wheelhouse, install.sh's venv) and the emulated Pi
target: Arm outputs held to the self-test's bound. Emulated tests skip with a reason outside CI when qemu or the
cached root is missing, and fail under CI (where `make pi-check` runs before the tests)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_sca.contract import SELFTEST_MAX_DELTA
from edge_sca.devpaths import MODELS_DIR, REPO_ROOT
from edge_sca.fileio import sha256_file
from firmware_bridge.errors import BundleError
from firmware_bridge.wheelhouse import DEVICE_IN, bundle_files, locks, normalise, read_lock
from pi_target.targets import CPUS, REPORT_DIR, TARGETS

DEPLOY = REPO_ROOT / "firmware_bridge" / "deploy"
PARITY_REPORT = REPORT_DIR / "bookworm" / "pi-check.json"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the emulated Pi target (`make pi-check` before the tests): {reason}")
    pytest.skip(reason)


def _names(requirements: Path) -> dict[str, str]:
    out = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
            out[normalise(name)] = line
    return out


# --- one list, compiled into current locks -----------------------------------------------------------------------

def test_every_target_has_a_lock_compiled_from_the_current_device_in():
    found = {lock.tag: lock for lock in locks()}
    assert set(found) == {t.tag for t in TARGETS.values()}
    wanted = _names(DEVICE_IN)
    for lock in found.values():
        assert lock.source_sha256 == sha256_file(DEVICE_IN), f"{lock.path.name} is stale: run `make lock`"
        pinned = {e.name for e in lock.entries}
        assert set(wanted) <= pinned
        assert "numpy" not in pinned  # apt's numpy, never the venv's
        assert all(e.wheel.endswith(".whl") and ("aarch64" in e.wheel or "-none-any" in e.wheel) for e in lock.entries)


def test_workstation_validates_with_the_device_litert():
    """The workstation's LiteRT pin is the device's: the self-test references are computed with the same runtime."""
    assert _names(DEVICE_IN)["ai-edge-litert"] == _names(REPO_ROOT / "requirements/workstation.txt")[
        "ai-edge-litert"]


def test_malformed_lock_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "device-cp311.lock"
    bad.write_text("# source_sha256: abc\nnumpy>=1\n")
    with pytest.raises(BundleError, match=r"device-cp311.lock:2: not `name==version"):
        read_lock(bad)


# --- the bundle carries the lock and verified wheels --------------------------------------------------------------

def _fake_env(tmp_path: Path, tag: str = "cp311") -> tuple[Path, Path, Path]:
    """A requirements folder with device.in and one lock naming one real (tiny, pure-Python) wheel."""
    req, house = tmp_path / "requirements", tmp_path / "wheelhouse"
    req.mkdir(parents=True)
    (house / tag).mkdir(parents=True)
    (req / "device.in").write_text("scanner-probe\n")
    wheel = house / tag / "scanner_probe-1.0-py3-none-any.whl"
    _write_wheel(wheel)
    (req / f"device-{tag}.lock").write_text(
        f"# source_sha256: {sha256_file(req / 'device.in')}\n"
        f"scanner-probe==1.0 --hash=sha256:{sha256_file(wheel)}  # {wheel.name}\n")
    return req, house, wheel


def _write_wheel(path: Path) -> None:
    files = {"scanner_probe/__init__.py": b"VALUE = 42\n",
             "scanner_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: scanner-probe\nVersion: 1.0\n",
             "scanner_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  b"Tag: py3-none-any\n"}
    record = "".join(f"{n},sha256={_urlsafe(d)},{len(d)}\n" for n, d in files.items())
    record += "scanner_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr("scanner_probe-1.0.dist-info/RECORD", record)


def _urlsafe(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_bundle_files_carry_verified_wheels_and_refuse_altered_ones(tmp_path):
    req, house, wheel = _fake_env(tmp_path)
    files = bundle_files(True, req, house)
    assert files["wheelhouse/cp311/" + wheel.name] == wheel
    assert {"requirements/device.in", "requirements/device-cp311.lock"} <= set(files)
    assert not any(a.startswith("wheelhouse/") for a in bundle_files(False, req, house))
    wheel.write_bytes(wheel.read_bytes() + b"x")
    with pytest.raises(BundleError, match="sha256 differs"):
        bundle_files(True, req, house)
    wheel.unlink()
    with pytest.raises(BundleError, match="make wheelhouse"):
        bundle_files(True, req, house)


# --- install.sh's venv section, offline, on this machine's python3 ------------------------------------------------

def _install(release: Path, prefix: Path, fake_numpy: Path) -> subprocess.CompletedProcess:
    """install.sh with this interpreter's base Python as the scanner's `python3`, and pip kept off the network."""
    bin_dir = release.parent / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(fake_numpy),
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    return subprocess.run(["sh", str(release / "install.sh"), "--prefix", str(prefix), "--no-system"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_install_sh_builds_the_venv_offline_from_the_lock(tmp_path):
    """No network, exact hashes, apt's numpy kept (a stand-in numpy outside the venv here), nothing redone while
    the lock is unchanged, and a changed lock without a wheelhouse refused clearly with the working venv kept."""
    host_tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    release = tmp_path / "release"
    req, house, _ = _fake_env(release, host_tag)
    (release / "install.sh").write_bytes((DEPLOY / "install.sh").read_bytes())
    house.rename(release / "wheelhouse")
    fake_numpy = tmp_path / "system"
    (fake_numpy / "numpy").mkdir(parents=True)
    (fake_numpy / "numpy" / "__init__.py").write_text("__version__ = '1.24.2'\n")
    prefix = tmp_path / "opt"
    done = _install(release, prefix, fake_numpy)
    assert done.returncode == 0, done.stderr
    py = prefix / "venv/bin/python"
    probe = subprocess.run([str(py), "-c", "import scanner_probe; print(scanner_probe.VALUE)"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(fake_numpy)}, check=False)
    assert probe.stdout.strip() == "42"
    stamp = (prefix / "venv/.lock.sha256").read_text().strip()
    assert stamp == sha256_file(req / f"device-{host_tag}.lock")
    mtime = py.lstat().st_mtime_ns
    assert _install(release, prefix, fake_numpy).returncode == 0 and py.lstat().st_mtime_ns == mtime  # no-op
    (req / f"device-{host_tag}.lock").write_text((req / f"device-{host_tag}.lock").read_text() + "\n")
    shutil.rmtree(release / "wheelhouse")
    refused = _install(release, prefix, fake_numpy)
    assert refused.returncode == 1 and "no wheelhouse" in refused.stderr
    assert (prefix / "venv/bin/python").exists()  # the working venv is untouched


# --- the emulated target ------------------------------------------------------------------------------------------

def test_cpuinfo_is_a_pis_and_the_benchmark_says_it_is_emulated(monkeypatch):
    from benchmarks.device_bench import _load_notes
    from benchmarks.machine import emulation

    text = CPUS["pi4"].cpuinfo()
    assert text.count("processor\t:") == 4 and "CPU part\t: 0xd08" in text
    assert "asimddp" in CPUS["pi5"].cpuinfo() and "asimddp" not in text  # Pi 5 has int8 dot product, Pi 4 not
    monkeypatch.delenv("QEMU_CPU", raising=False)
    monkeypatch.delenv("QEMU_LD_PREFIX", raising=False)
    assert emulation(text) == "qemu-user -cpu cortex-a72" and emulation("processor : 0\n") is None
    monkeypatch.setenv("QEMU_CPU", "cortex-a76")
    assert "NOT device figures" in _load_notes({"emulated": emulation(""), "load_average": None, "cores": 2})[0]


def test_emulator_reports_why_it_cannot_run(monkeypatch, tmp_path):
    from pi_target import emulator

    monkeypatch.setattr(emulator, "QEMU", tmp_path / "no-qemu")
    assert "qemu-user-static" in emulator.why_unavailable()
    with pytest.raises(emulator.EmulatorUnavailable, match="apt-get install qemu-user-static"):
        emulator.ensure_emulator(install=False)


def _current_models() -> dict[str, str]:
    return {m.name: sha256_file(m) for m in sorted(MODELS_DIR.glob("*.tflite"))}


def test_arm_outputs_within_the_selftest_bound_in_the_pi_check_report():
    """`make pi-check`'s parity: every shipped model, 200+ ISIC test images, emulated aarch64 LiteRT vs x86."""
    if not PARITY_REPORT.is_file():
        _skip_or_fail(f"no {PARITY_REPORT.relative_to(REPO_ROOT)}: run `make pi-check`")
    report = json.loads(PARITY_REPORT.read_text())
    parity = report.get("parity") or {}
    stale = sorted(n for n, s in _current_models().items() if parity.get("models", {}).get(n, {}).get("sha256") != s)
    if stale:
        _skip_or_fail(f"the pi-check report predates models/{', '.join(stale)}: run `make pi-check`")
    assert parity["images"]["n"] >= 200 or os.environ.get("CI"), "the committed parity must cover 200+ images"
    for cpu in parity["cpus"].values():
        assert set(cpu["models"]) == set(_current_models())
        for name, r in cpu["models"].items():
            assert r["max_abs_delta_p"] <= SELFTEST_MAX_DELTA, (cpu["qemu_cpu"], name, r)


def test_docs_table_is_the_reports(tmp_path):
    """README and docs/pi-target.md carry the table of the committed report (CI's own pi-check run rewrites the
    working copy, so either version counts)."""
    from pi_target.docs import BEGIN, END, table_from_report

    if not PARITY_REPORT.is_file():
        _skip_or_fail("no pi-check report to compare docs/pi-target.md with: run `make pi-check`")
    wants = {table_from_report(PARITY_REPORT).strip()}
    committed = subprocess.run(["git", "show", f"HEAD:{PARITY_REPORT.relative_to(REPO_ROOT)}"],
                               cwd=REPO_ROOT, capture_output=True, check=False)
    if committed.returncode == 0:
        (tmp_path / PARITY_REPORT.name).write_bytes(committed.stdout)
        wants.add(table_from_report(tmp_path / PARITY_REPORT.name).strip())
    for doc in ("docs/pi-target.md", "README.md"):
        body = (REPO_ROOT / doc).read_text().split(BEGIN, 1)[1].split(END, 1)[0].strip()
        assert body in wants, f"{doc}'s Arm-vs-x86 table is not the report's: run `python -m pi_target docs`"


@pytest.mark.isic
@pytest.mark.slow
def test_emulated_invoke_of_the_shipped_int8_models_matches_x86(isic_dir, tmp_path):
    """A small emulated run of its own (whatever is in models/ now): 4 ISIC test images through every int8 model
    under aarch64 LiteRT on a Pi 4 core, held to the self-test's bound against x86."""
    from pi_target import parity
    from pi_target.check import VENV_PYTHON
    from pi_target.emulator import root_lock, why_unavailable

    target = TARGETS["bookworm"]
    reason = why_unavailable(target.root) or (None if (target.root / VENV_PYTHON.lstrip("/")).exists() else
                                              "the emulated root has no device venv (`make pi-check` installs it)")
    if reason:
        _skip_or_fail(reason)
    models = sorted(m for m in MODELS_DIR.glob("*_int8.tflite"))
    stage = target.root / "tmp/pytest-models"
    stage.mkdir(parents=True, exist_ok=True)
    for m in models:
        for f in (m, m.with_name(m.stem + ".manifest.json")):
            (stage / f.name).write_bytes(f.read_bytes())
    from edge_sca.preprocess import load_preprocessed

    pixels = np.stack([load_preprocessed(r.path) for r in parity.test_images(isic_dir, 4)])
    with root_lock(target.root):
        arm, _ = parity.guest_probs(target.root, VENV_PYTHON, "/opt/cancernet-sca/current",
                                    [f"/tmp/pytest-models/{m.name}" for m in models], pixels, CPUS["pi4"], workers=1,
                                    work="/tmp/pytest-parity")
    shutil.rmtree(stage)
    x86 = parity.host_probs(models, pixels)
    for m in models:
        r = parity.compare(x86[m.name], arm[m.name], 0.5)
        assert r["passed"], (m.name, r)
