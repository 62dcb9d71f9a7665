"""Running aarch64 programs of an emulated root: qemu-user-static through binfmt_misc, inside a chroot.

The kernel hands every aarch64 executable to Debian's own binfmt entry for qemu (`/usr/lib/binfmt.d/
qemu-aarch64.conf`, flag F: the interpreter is opened once, so it works inside the chroot). A chroot makes the
root's paths the guest's paths (/opt/cancernet-sca, /usr/bin/python3), so install.sh and the venv behave as on
the Pi, and programs that start other programs (python3 -m venv runs ensurepip in a child) work. The chroot has
no /proc: the guest reads the root's own /proc/cpuinfo, a Pi's, written before each run (see targets.Cpu).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pi_target.errors import EmulatorUnavailable, PiTargetError
from pi_target.targets import Cpu

log = logging.getLogger(__name__)

QEMU = Path("/usr/bin/qemu-aarch64-static")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _is_root() -> bool:
    return os.geteuid() == 0


def binfmt_registered() -> bool:
    entry = BINFMT_DIR / "qemu-aarch64"
    try:
        text = entry.read_text()
    except OSError:
        return False
    flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), "")
    return text.startswith("enabled") and "F" in flags


def why_unavailable(root: Path | None = None) -> str | None:
    """Why aarch64 programs of ROOT cannot run here (None when they can); has no side effects."""
    if not QEMU.is_file():
        return f"{QEMU} is missing (Debian package qemu-user-static; `make pi-check` installs it as root)"
    if not binfmt_registered():
        return ("qemu-aarch64 is not registered with binfmt_misc (`make pi-check` registers Debian's entry as "
                "root)")
    if not _is_root():
        return "the emulated root runs in a chroot, which needs root"
    if root is not None and not (root / "usr/bin/python3").exists():
        return f"no emulated root at {root} (`make pi-check` builds it)"
    return None


def ensure_emulator(install: bool = True) -> None:
    """Install qemu-user-static and register its binfmt entry when missing; EmulatorUnavailable if that cannot
    be done here (not root, no apt-get, a kernel without binfmt_misc)."""
    if not QEMU.is_file():
        if not (install and _is_root() and shutil.which("apt-get")):
            raise EmulatorUnavailable(f"{QEMU} is missing: `sudo apt-get install qemu-user-static`, then run "
                                      "`make pi-check` again (as root: it registers the binfmt entry too)")
        _apt_install("qemu-user-static")
    if binfmt_registered():
        return
    if not _is_root():
        raise EmulatorUnavailable("qemu-aarch64 is not registered with binfmt_misc; run `make pi-check` as root "
                                  f"once (it writes Debian's {BINFMT_CONF} to {BINFMT_DIR}/register)")
    _register_binfmt()


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", package)
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EmulatorUnavailable(f"apt-get install {package} failed: {done.stderr.strip()[-300:]}")


def _register_binfmt() -> None:
    if not BINFMT_CONF.is_file():
        raise EmulatorUnavailable(f"{BINFMT_CONF} is missing; reinstall qemu-user-static")
    if not (BINFMT_DIR / "register").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise EmulatorUnavailable(f"cannot mount binfmt_misc at {BINFMT_DIR} ({done.stderr.strip()}); this "
                                      "kernel or container does not allow it")
    line = next(ln for ln in BINFMT_CONF.read_text().splitlines() if ln.startswith(":"))
    try:
        (BINFMT_DIR / "register").write_text(line)
    except OSError as exc:
        if not binfmt_registered():
            raise EmulatorUnavailable(f"registering qemu-aarch64 with binfmt_misc failed ({exc})") from exc
    log.info("registered qemu-aarch64 with binfmt_misc (%s)", BINFMT_CONF)


def guest_env(cpu: Cpu, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for the guest, as a Pi's root shell has it; QEMU_CPU picks the emulated core."""
    return {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": cpu.qemu, **(extra or {})}


def set_cpu(root: Path, cpu: Cpu) -> None:
    """Write the Pi's /proc/cpuinfo and CPU lists into the root (the chroot has no /proc or /sys of its own)."""
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text(cpu.cpuinfo())
    cpus = root / "sys/devices/system/cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0-3\n")


def run_guest(root: Path, argv: list[str], cpu: Cpu, cwd: str | None = None, env: dict[str, str] | None = None,
              timeout_s: float = 1800.0, check: bool = True, offline: bool = False) -> subprocess.CompletedProcess:
    """Run ARGV (guest paths) in the emulated root; PiTargetError with the output's tail when it fails.
    OFFLINE runs it in a network namespace of its own with no interfaces: a scanner without a network."""
    reason = why_unavailable(root)
    if reason:
        raise EmulatorUnavailable(reason)
    set_cpu(root, cpu)
    if cwd:
        argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]
    log.debug("guest (%s): %s", cpu.qemu, " ".join(argv))
    try:
        done = subprocess.run([*(["unshare", "--net"] if offline else []), "chroot", str(root), *argv],
                              env=guest_env(cpu, env), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PiTargetError(f"{' '.join(argv[:4])} under emulation took over {timeout_s:.0f} s") from exc
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise PiTargetError(f"{' '.join(argv)} failed under emulation (exit {done.returncode}):\n{tail}")
    return done


@contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """One emulated run per root at a time: each run writes the root's /proc/cpuinfo for its CPU."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PiTargetError(f"another emulated run is using {root} (a pi-check or the tests); wait for it") \
                from exc
        yield
