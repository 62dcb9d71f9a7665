"""A stand-in for `systemctl restart` / `systemctl show` of one Type=notify service, for the flash tests.

    python fake_systemctl.py restart STATE_DIR TIMEOUT_S -- COMMAND   (returns once COMMAND sent READY=1)
    python fake_systemctl.py show STATE_DIR
    python fake_systemctl.py stop STATE_DIR

`restart` stops the previous service process, starts COMMAND (a shell command) with NOTIFY_SOCKET and
WATCHDOG_USEC set, exactly as systemd does, and waits: exit 0 when READY=1 arrives, 1 when the process exits or
TIMEOUT_S passes first (it is then killed), as `systemctl restart` does for a Type=notify unit. The process keeps
running after READY; `show` reports it active/running while it lives and failed once it has exited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited


def stop(state: Path) -> None:
    pid_file = state / "main.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def restart(state: Path, timeout_s: float, command: str) -> int:
    state.mkdir(parents=True, exist_ok=True)
    stop(state)
    sock_path = state / "notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "30000000"}
    with open(state / "service.log", "ab") as log:
        proc = subprocess.Popen(["sh", "-c", command], env=env, stdout=log, stderr=log, start_new_session=True)
    (state / "main.pid").write_text(str(proc.pid))
    with open(state / "restarts.log", "a") as f:
        f.write(command + "\n")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                if b"READY=1" in sock.recv(4096).split(b"\n"):
                    return 0
            except TimeoutError:
                pass
            if proc.poll() is not None:
                print(f"Job for cancernet-sca.service failed because the control process exited with error code "
                      f"(status {proc.returncode}).", file=sys.stderr)
                return 1
        print("Job for cancernet-sca.service failed because a timeout was exceeded.", file=sys.stderr)
        stop(state)
        return 1
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)


def show(state: Path) -> None:
    pid_file = state / "main.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    up = pid and _alive(pid)
    print(f"ActiveState={'active' if up else 'failed'}\nSubState={'running' if up else 'failed'}\n"
          f"MainPID={pid if up else 0}\nNRestarts=0")


if __name__ == "__main__":
    what, state_dir = sys.argv[1], Path(sys.argv[2])
    if what == "restart":
        sys.exit(restart(state_dir, float(sys.argv[3]), " ".join(sys.argv[5:])))
    elif what == "show":
        show(state_dir)
    else:
        stop(state_dir)
