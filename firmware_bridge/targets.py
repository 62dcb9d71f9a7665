"""Where `flash` installs: a scanner's root file system mounted here (RootTarget: an SD card) or a running scanner
over ssh (HostTarget). Both drive the same ReleaseStore: in-process on the card, as the installer zip
(agent.py) on the scanner, fed the bundle on stdin. So the bundle is verified where it is installed, against the
key found there, and the workstation's own check is only a fast first refusal.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from firmware_bridge.errors import FlashError
from firmware_bridge.health import ServiceStatus, parse_show
from firmware_bridge.releases import DEFAULT_PREFIX, ETC, ReleaseStore
from firmware_bridge.rootfs import FILE_MODE

log = logging.getLogger(__name__)

SERVICE = "cancernet-sca.service"
AGENT = "installer.pyz"
#: The scanner's settings file in ETC (edge_sca.settings.DEFAULT_PATH), installed only when absent.
SETTINGS_FILE = "scanner.toml"
SEPARATOR = "--- cancernet-sca flash ---"


@dataclass
class FlashOptions:
    prefix: str = DEFAULT_PREFIX  # the install folder as the scanner sees it
    keep: int = 3
    allow_downgrade: bool = False
    install_key: bool = False
    ssh: str = "ssh -o BatchMode=yes"
    sudo: str = "sudo -n"  # for the installer's upload on the scanner
    agent_cmd: str = "sudo -n python3 {agent}"
    python: str | None = None  # the scanner's device Python; default PREFIX/venv/bin/python
    install_cmd: str = "sudo -n sh {release}/install.sh --prefix {prefix}"
    selftest_cmd: str = "cd {release} && PYTHONPATH={release} {python} -m edge_sca selftest --model-file {model}"
    #: Type=notify: returns once the service sent READY, non-zero if it failed or took over ready_timeout_s.
    restart_cmd: str = f"sudo -n timeout {{ready_timeout}} systemctl restart {SERVICE}"
    health_cmd: str = f"systemctl show -p ActiveState -p SubState -p MainPID -p NRestarts {SERVICE}"
    ready_timeout_s: float = 120.0
    settle_s: float = 5.0
    timeout_s: float = 900.0
    root: str = "/"  # where the scanner's root is for the commands over ssh ('/', except in tests)
    notes: list[str] = field(default_factory=list)

    @property
    def host_prefix(self) -> str:
        return str(Path(self.root) / self.prefix.lstrip("/"))

    def fill(self, template: str, **values: str) -> str:
        base = {"prefix": self.host_prefix, "python": self.python or f"{self.host_prefix}/venv/bin/python",
                "agent": f"{self.host_prefix}/{AGENT}", "ready_timeout": f"{self.ready_timeout_s:g}",
                "root": self.root}
        return template.format(**{k: shlex.quote(v) for k, v in {**base, **values}.items()})


class RootTarget:
    """A scanner's root file system mounted on this machine (an SD card): nothing runs on the scanner, so there
    is no self-test or health check here; the service starts the new release on the next boot."""

    kind = "root"

    def __init__(self, root: str | Path, opts: FlashOptions) -> None:
        self.opts = opts
        self.store = ReleaseStore(root, opts.prefix)
        self.fs = self.store.fs

    def prepare(self) -> None:
        """Nothing to send: the installer runs here, on the card's files and with the card's key."""

    def install_key(self, public_key: Path) -> dict:
        return self.store.install_key(public_key.read_bytes())

    def install(self, bundle: Path) -> dict:
        with open(bundle, "rb") as f:
            result = self.store.install(f, str(bundle), self.opts.allow_downgrade)
        self.opts.notes += result["notes"]
        return result

    def setup(self, release: str) -> None:
        """The system part of install.sh that can be done offline: the unit (enabled) and, if absent, the
        settings file (a site's edited one is never overwritten)."""
        src = self.store.base / "releases" / release
        systemd = self.fs.make_dirs(self.fs.path("etc/systemd/system"))
        self.fs.write_bytes(systemd / SERVICE, (src / "systemd" / SERVICE).read_bytes(), FILE_MODE)
        wants = self.fs.make_dirs(systemd / "multi-user.target.wants")
        if not (wants / SERVICE).is_symlink():
            self.fs.symlink(wants / SERVICE, f"/etc/systemd/system/{SERVICE}")
        settings = self.fs.path(f"{ETC}/{SETTINGS_FILE}")
        if not settings.exists():
            self.fs.make_dirs(settings.parent)
            self.fs.write_bytes(settings, (src / "config" / SETTINGS_FILE).read_bytes(), FILE_MODE)
        if self.fs.path(f"{ETC}/edge_sca.env").exists():
            self.opts.notes.append(f"ROOT: {ETC}/edge_sca.env is no longer read: move any options you changed "
                                   f"into {ETC}/{SETTINGS_FILE} (docs/deploy.md, section 7), then delete it")
        self.opts.notes.append(f"ROOT: unit and settings file installed; on first boot run `sudo sh {self.opts.prefix}/"
                               f"current/install.sh` on the scanner (creates the venv and the service user)")

    def selftest(self, release: str, models: list[str]) -> None:
        models = sorted(models, key=lambda m: "int8" not in m)
        self.opts.notes.append("ROOT: self-test skipped (the scanner's Python cannot run here); after boot run "
                               f"`{self.opts.prefix}/venv/bin/python -m edge_sca selftest --model-file "
                               f"{self.opts.prefix}/current/{models[0] if models else 'models/<model>.tflite'}`")

    def activate(self, release: str) -> None:
        self.store.activate(release)

    def restart_and_wait(self) -> str:
        self.opts.notes.append(f"ROOT: service not restarted; {SERVICE} starts the new release on the next boot "
                               "(if it fails there, `rollback` goes back)")
        return "not started (mounted card)"

    def revert(self, release: str) -> dict:
        return self.store.revert(release)

    def remove(self, release: str) -> None:
        self.store.remove(release)

    def prune(self, keep: int) -> list[str]:
        return self.store.prune(keep)

    def rollback(self) -> dict:
        return self.store.rollback()


class HostTarget:
    """A running scanner reached over ssh (configurable, as are sudo and the service commands)."""

    kind = "host"

    def __init__(self, host: str, opts: FlashOptions) -> None:
        if not re.match(r"^[A-Za-z0-9._@%-]+$", host) or host.startswith("-"):
            raise FlashError(f"host {host!r} should look like user@scanner")
        self.host, self.opts = host, opts

    def sh(self, script: str, what: str, check: bool = True, stdin: IO[bytes] | bytes | None = None,
           timeout_s: float | None = None) -> subprocess.CompletedProcess:
        cmd = [*shlex.split(self.opts.ssh), self.host, script]
        log.debug("ssh: %s", script)
        feed: dict[str, Any] = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
        limit = timeout_s or self.opts.timeout_s
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=limit, **feed)
        except FileNotFoundError as exc:
            raise FlashError(f"ssh command {self.opts.ssh!r} not found; install openssh-client or pass --ssh") \
                from exc
        except subprocess.TimeoutExpired as exc:
            raise FlashError(f"{what} on {self.host} took over {limit:g} s") from exc
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if check and proc.returncode != 0:
            raise FlashError(f"{what} on {self.host} failed (exit {proc.returncode}): {_tail(out + err)}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def agent(self, args: str, what: str, stdin: IO[bytes] | bytes | None = None) -> Any:
        """Run the installer on the scanner; its JSON answer, or FlashError with its own one-line message."""
        cmd = (f"{self.opts.fill(self.opts.agent_cmd)} {args} --root {shlex.quote(self.opts.root)} "
               f"--prefix {shlex.quote(self.opts.prefix)} --json")
        proc = self.sh(cmd, what, check=False, stdin=stdin)
        if proc.returncode != 0:
            errors = [ln[len("error: "):] for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
            detail = errors[-1] if errors else f"exit {proc.returncode}: {_tail(proc.stdout + proc.stderr)}"
            raise FlashError(f"{what} on {self.host}: {detail}")
        try:
            return json.loads(proc.stdout)
        except ValueError as exc:
            raise FlashError(f"{what} on {self.host}: unexpected answer {_tail(proc.stdout)!r}") from exc

    def prepare(self) -> None:
        """Send the installer (agent.py's zip) to PREFIX/installer.pyz on the scanner."""
        from firmware_bridge.agent import build_agent

        p, tmp = self.opts.host_prefix, f"{self.opts.host_prefix}/.{AGENT}"
        script = (f"umask 022 && mkdir -p {shlex.quote(p)} && cat > {shlex.quote(tmp)} && "
                  f"mv {shlex.quote(tmp)} {shlex.quote(p + '/' + AGENT)}")
        self.sh(f"{self.opts.sudo} sh -c {shlex.quote(script)}".strip(), "sending the installer", stdin=build_agent())

    def install_key(self, public_key: Path) -> dict:
        return self.agent("install-key -", "installing the bundle-signing key", stdin=public_key.read_bytes())

    def install(self, bundle: Path) -> dict:
        with open(bundle, "rb") as f:
            result = self.agent("install -" + (" --allow-downgrade" if self.opts.allow_downgrade else ""),
                                "verifying and installing the bundle", stdin=f)
        self.opts.notes += result.get("notes", [])
        return result

    def _path(self, release: str) -> str:
        return f"{self.opts.host_prefix}/releases/{release}"

    def setup(self, release: str) -> None:
        self.sh(self.opts.fill(self.opts.install_cmd, release=self._path(release)), "install.sh")

    def selftest(self, release: str, models: list[str]) -> None:
        for model in models:
            cmd = self.opts.fill(self.opts.selftest_cmd, release=self._path(release),
                                 model=f"{self._path(release)}/{model}")
            proc = self.sh(cmd, f"self-test of {model}")
            lines = proc.stdout.strip().splitlines() or ["passed"]
            summary = next((ln for ln in lines if "self-test" in ln), lines[-1])
            self.opts.notes.append(f"self-test {model}: {summary}")

    def activate(self, release: str) -> None:
        self.agent(f"activate {shlex.quote(release)}", "switching current")

    def _service_twice(self) -> tuple[ServiceStatus, ServiceStatus]:
        """The service's state now and settle_s later (one ssh round trip)."""
        probe = self.opts.fill(self.opts.health_cmd)
        out = self.sh(f"{probe} && echo {shlex.quote(SEPARATOR)} && sleep {self.opts.settle_s:g} && {probe}",
                      "reading the service's state").stdout
        first, _, second = out.partition(SEPARATOR)
        return parse_show(first), parse_show(second)

    def restart_and_wait(self) -> str:
        """Restart the service; FlashError unless it reports READY in time and then stays up for settle_s."""
        t0 = time.monotonic()
        proc = self.sh(self.opts.fill(self.opts.restart_cmd), "restarting the service", check=False,
                       timeout_s=self.opts.ready_timeout_s + 30)
        if proc.returncode != 0:
            raise FlashError(f"{SERVICE} did not report READY within {self.opts.ready_timeout_s:g} s "
                             f"(exit {proc.returncode}: {_tail(proc.stdout + proc.stderr) or 'no output'}); see "
                             f"`journalctl -u {SERVICE}` on the scanner")
        ready_s = time.monotonic() - t0
        first, second = self._service_twice()
        if not first.same_run(second):
            raise FlashError(f"{SERVICE} reported READY, then did not stay up for {self.opts.settle_s:g} s "
                             f"({first.detail} pid {first.main_pid} -> {second.detail} pid {second.main_pid}); "
                             f"see `journalctl -u {SERVICE}` on the scanner")
        return f"ready after {ready_s:.1f} s, up for {self.opts.settle_s:g} s"

    def revert(self, release: str) -> dict:
        return self.agent(f"revert {shlex.quote(release)}", "switching back")

    def remove(self, release: str) -> None:
        self.agent(f"remove {shlex.quote(release)}", "removing the failed release")

    def prune(self, keep: int) -> list[str]:
        return self.agent(f"prune --keep {int(keep)}", "pruning old releases")["pruned"]

    def rollback(self) -> dict:
        return self.agent("rollback", "rolling back")


Target = RootTarget | HostTarget


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
