"""systemd's notify protocol (sd_notify) on the standard library's socket: READY, WATCHDOG, STATUS, STOPPING.

The scanner's unit is `Type=notify` with `WatchdogSec=`: systemd counts the service as started only when it sends
READY=1 (after the self-test passed and the camera and board are open), and restarts it when the WATCHDOG=1 pings
from the frame loop stop. `flash` relies on this to switch only to a release that runs. Without NOTIFY_SOCKET (not
started by systemd) every call does nothing, so the same code runs from a shell.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: Pings go out at most this often relative to the watchdog interval (systemd's advice is half; a quarter leaves
#: room for one slow frame).
WATCHDOG_FRACTION = 0.25


def _socket_address(value: str | None) -> str | None:
    """NOTIFY_SOCKET as socket.connect takes it: a path, or an abstract name ('@x' -> '\\0x')."""
    if not value or value[0] not in "/@":
        return None
    return "\0" + value[1:] if value[0] == "@" else value


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """The watchdog interval systemd asks for, if it is meant for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6


class Notifier:
    """Sends sd_notify messages; `watchdog()` may be called as often as wanted (it rate-limits itself)."""

    def __init__(self, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.address = _socket_address(env.get("NOTIFY_SOCKET"))
        self.watchdog_s = _watchdog_seconds(env)
        self.clock = clock
        self.sent: list[str] = []
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; False when there is no systemd to tell or it is gone."""
        if self.address is None:
            return False
        message = "\n".join(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:  # systemd went away or the socket was never ours: nothing to report to
            log.debug("sd_notify %r failed: %s", message, exc)
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> None:
        """Ping the watchdog, at most every WATCHDOG_FRACTION of its interval; no-op without a watchdog."""
        if self.watchdog_s is None:
            return
        now = self.clock()
        if now - self._last_ping >= self.watchdog_s * WATCHDOG_FRACTION:
            self._last_ping = now
            self.send("WATCHDOG=1")
