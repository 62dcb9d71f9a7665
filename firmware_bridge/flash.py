"""Flash a verified bundle onto a scanner: over ssh/rsync (HOST) or into a mounted root file system (ROOT).

Layout on the scanner (PREFIX defaults to /opt/cancernet-sca):
    PREFIX/releases/<version>-<UTC time>/   one folder per installed release
    PREFIX/current -> releases/<...>        the active release (a relative symlink, switched atomically)
    PREFIX/venv/                            the device Python environment, shared by releases (install.sh)

A flash verifies the bundle, copies it into a new release folder, prepares it (install.sh), runs
`python -m edge_sca selftest` for each model there (HOST only), switches `current` (a symlink made under a temp
name, then renamed over it), and restarts the service. Any failure before the switch deletes the new folder;
a failed restart switches back, so the previous release stays current. The newest KEEP releases are kept.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.bundle import extract_verified, verify_bundle
from firmware_bridge.errors import FlashError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/opt/cancernet-sca"
RELEASE_RE = re.compile(r"^(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)-(?P<time>\d{8}T\d{6}\.\d{6}Z)$")
SERVICE = "cancernet-sca.service"


@dataclass
class FlashOptions:
    prefix: str = DEFAULT_PREFIX
    keep: int = 3
    ssh: str = "ssh -o BatchMode=yes"
    rsync: str = "rsync"
    python: str | None = None  # the scanner's Python; default PREFIX/venv/bin/python
    install_cmd: str = "sudo -n sh {release}/install.sh --prefix {prefix}"
    selftest_cmd: str = "cd {release} && PYTHONPATH={release} {python} -m edge_sca selftest --model {model}"
    restart_cmd: str = f"sudo -n systemctl restart {SERVICE}"
    timeout_s: float = 900.0
    notes: list[str] = field(default_factory=list)

    def fill(self, template: str, **values: str) -> str:
        base = {"prefix": self.prefix, "python": self.python or f"{self.prefix}/venv/bin/python"}
        return template.format(**{k: shlex.quote(v) for k, v in {**base, **values}.items()})


def release_key(name: str) -> str:
    """Install-order sort key of a release folder name ('' for names that are not releases)."""
    m = RELEASE_RE.match(name)
    return m.group("time") if m else ""


def new_release_name(version: str) -> str:
    now = time.time()
    return f"{version}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1e6):06d}Z"


class RootTarget:
    """A scanner's root file system mounted on this machine (an SD card): no commands run on the scanner."""

    kind = "root"

    def __init__(self, root: str | Path, opts: FlashOptions) -> None:
        self.root, self.opts = Path(root), opts
        if not self.root.is_dir():
            raise FlashError(f"root file system {self.root} not found; mount the SD card's root partition first")
        self.base = self.root / opts.prefix.lstrip("/")

    def releases(self) -> list[str]:
        d = self.base / "releases"
        return sorted((p.name for p in d.iterdir() if release_key(p.name)), key=release_key) if d.is_dir() else []

    def current(self) -> str | None:
        link = self.base / "current"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def upload(self, staging: Path, release: str) -> None:
        releases = self.base / "releases"
        releases.mkdir(parents=True, exist_ok=True)
        partial = releases / f"{release}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(staging, partial, symlinks=False)
        partial.rename(releases / release)

    def install(self, release: str) -> None:
        src = self.base / "releases" / release
        systemd = self.root / "etc/systemd/system"
        systemd.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "systemd" / SERVICE, systemd / SERVICE)
        wants = systemd / "multi-user.target.wants"
        wants.mkdir(exist_ok=True)
        if not (wants / SERVICE).is_symlink():
            (wants / SERVICE).symlink_to(f"/etc/systemd/system/{SERVICE}")
        config = self.root / "etc/cancernet-sca/edge_sca.env"
        if not config.exists():
            config.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "config/edge_sca.env", config)
        self.opts.notes.append(f"ROOT: unit and config installed; on first boot run `sudo sh {self.opts.prefix}/"
                               f"current/install.sh` on the scanner (creates the venv and the service user)")

    def selftest(self, release: str, models: list[str]) -> None:
        models = sorted(models, key=lambda m: "int8" not in m)
        self.opts.notes.append("ROOT: self-test skipped (the scanner's Python cannot run here); after boot run "
                               f"`{self.opts.prefix}/venv/bin/python -m edge_sca selftest --model "
                               f"{self.opts.prefix}/current/{models[0] if models else 'models/<model>.tflite'}`")

    def switch(self, release: str) -> None:
        tmp = self.base / ".current.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(f"releases/{release}")
        os.replace(tmp, self.base / "current")

    def remove(self, release: str) -> None:
        shutil.rmtree(self.base / "releases" / release, ignore_errors=True)

    def restart(self) -> None:
        self.opts.notes.append(f"ROOT: service not restarted; {SERVICE} starts the new release on the next boot")


class HostTarget:
    """A running scanner reached over ssh; files go over rsync. Both commands are configurable."""

    kind = "host"

    def __init__(self, host: str, opts: FlashOptions) -> None:
        if not re.match(r"^[A-Za-z0-9._@%-]+$", host) or host.startswith("-"):
            raise FlashError(f"host {host!r} should look like user@scanner")
        self.host, self.opts = host, opts
        self.prefix = opts.prefix

    def sh(self, script: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*shlex.split(self.opts.ssh), self.host, script]
        log.debug("ssh: %s", script)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.opts.timeout_s)
        except FileNotFoundError as exc:
            raise FlashError(f"ssh command {self.opts.ssh!r} not found; install openssh-client or pass --ssh") \
                from exc
        except subprocess.TimeoutExpired as exc:
            raise FlashError(f"{what} on {self.host} took over {self.opts.timeout_s:g} s") from exc
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise FlashError(f"{what} on {self.host} failed (exit {proc.returncode}): {tail}")
        return proc

    def releases(self) -> list[str]:
        out = self.sh(f"ls -1 {shlex.quote(self.prefix)}/releases 2>/dev/null || true", "listing releases").stdout
        return sorted((n for n in out.split() if release_key(n)), key=release_key)

    def current(self) -> str | None:
        out = self.sh(f"readlink {shlex.quote(self.prefix)}/current || true", "reading current").stdout.strip()
        return Path(out).name if out else None

    def upload(self, staging: Path, release: str) -> None:
        releases = f"{self.prefix}/releases"
        partial = f"{releases}/{release}.partial"
        self.sh(f"mkdir -p {shlex.quote(releases)} && rm -rf {shlex.quote(partial)}", "preparing the release folder")
        cmd = [*shlex.split(self.opts.rsync), "-a", "--delete", "-e", self.opts.ssh, f"{staging}/",
               f"{self.host}:{partial}/"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.opts.timeout_s)
        except FileNotFoundError as exc:
            raise FlashError(f"rsync command {self.opts.rsync!r} not found; install rsync or pass --rsync") from exc
        if proc.returncode != 0:
            self.sh(f"rm -rf {shlex.quote(partial)}", "cleaning up", check=False)
            raise FlashError(f"copying the release to {self.host} failed: {proc.stderr.strip()[-500:]}")
        self.sh(f"mv {shlex.quote(partial)} {shlex.quote(releases + '/' + release)}", "naming the release")

    def _path(self, release: str) -> str:
        return f"{self.prefix}/releases/{release}"

    def install(self, release: str) -> None:
        self.sh(self.opts.fill(self.opts.install_cmd, release=self._path(release)), "install.sh")

    def selftest(self, release: str, models: list[str]) -> None:
        for model in models:
            cmd = self.opts.fill(self.opts.selftest_cmd, release=self._path(release),
                                 model=f"{self._path(release)}/{model}")
            proc = self.sh(cmd, f"self-test of {model}")
            lines = proc.stdout.strip().splitlines() or ["passed"]
            summary = next((ln for ln in lines if "self-test" in ln), lines[-1])
            self.opts.notes.append(f"self-test {model}: {summary}")

    def switch(self, release: str) -> None:
        p = shlex.quote(self.prefix)
        self.sh(f"cd {p} && ln -sfn {shlex.quote('releases/' + release)} .current.tmp && mv -T .current.tmp current",
                "switching current")

    def remove(self, release: str) -> None:
        self.sh(f"rm -rf {shlex.quote(self._path(release))}", "removing the failed release", check=False)

    def restart(self) -> None:
        self.sh(self.opts.fill(self.opts.restart_cmd), "restarting the service")


Target = RootTarget | HostTarget


def flash(bundle: str | Path, public_key: str | Path, target: Target) -> dict:
    """Install BUNDLE as a new release on TARGET and make it current; FlashError (previous stays current) if not."""
    info, members = verify_bundle(bundle, public_key)
    release = new_release_name(info.version)
    previous = target.current()
    with tempfile.TemporaryDirectory(prefix="cancernet-flash-") as tmp:
        staging = extract_verified(members, Path(tmp) / "release")
        target.upload(staging, release)
    try:
        target.install(release)
        target.selftest(release, info.models)
        target.switch(release)
    except Exception as exc:
        target.remove(release)
        raise FlashError(f"{exc}; release {release} removed, {previous or 'nothing'} stays current") from exc
    try:
        target.restart()
    except Exception as exc:
        if previous:
            target.switch(previous)
            target.remove(release)
            _try_restart(target)
        raise FlashError(f"{exc}; switched back to {previous or 'nothing'}") from exc
    pruned = prune(target, target.opts.keep)
    return {"release": release, "version": info.version, "previous": previous, "target": target.kind,
            "models": info.models, "pruned": pruned, "notes": list(target.opts.notes)}


def _try_restart(target: Target) -> None:
    try:
        target.restart()
    except Exception as exc:  # reported through the FlashError raised by the caller
        log.error("restarting the previous release failed too: %s", exc)


def prune(target: Target, keep: int) -> list[str]:
    """Delete all but the newest KEEP releases, never the current one."""
    releases, current = target.releases(), target.current()
    doomed = [r for r in releases[:-keep] if r != current] if keep > 0 else []
    for r in doomed:
        target.remove(r)
    return doomed


def rollback(target: Target) -> dict:
    """Make the release installed before the current one current again, and restart the service."""
    releases, current = target.releases(), target.current()
    if current is None:
        raise FlashError("no current release on the scanner; flash one with `make flash`")
    older = [r for r in releases if release_key(r) < release_key(current)]
    if not older:
        raise FlashError(f"no release older than {current} is kept on the scanner; nothing to roll back to")
    target.switch(older[-1])
    target.restart()
    return {"from": current, "to": older[-1], "target": target.kind, "notes": list(target.opts.notes)}
