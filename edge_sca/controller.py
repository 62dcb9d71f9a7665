"""What the run loop needs from the dermoscope's microcontroller (trigger, illumination, result display), and how
the loop gets a board back that went away.

`firmware_bridge.link.open_controller(port)` implements the Protocol over the serial link; the runtime only knows
this Protocol, so edge_sca never imports firmware_bridge at module level (the CLI's `--bridge` does it lazily).
A controller raises `edge_sca.errors.ControllerLost` when the board is unplugged or stops answering;
`reopen_with_backoff` then retries it until it answers again or a deadline passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edge_sca.errors import ControllerLost
from edge_sca.settings import BoardSettings

log = logging.getLogger(__name__)


@runtime_checkable
class ScannerController(Protocol):
    def wait_trigger(self, timeout_s: float) -> bool:
        """Block until the trigger is pressed (True) or `timeout_s` passes (False). Presses made while a capture
        was running are coalesced away, not queued. ControllerLost when the board is gone."""

    def set_illumination(self, mode: str, intensity: float) -> None:
        """Set the LED ring: mode 'polarised', 'non-polarised' or 'off'; intensity 0..1."""

    def show_result(self, decision) -> None:
        """Show a Decision (edge_sca.runtime.Decision) on the scanner's display."""

    def reopen(self) -> None:
        """Try once to open the board again; ControllerLost if it is still gone."""

    def close(self) -> None:
        """Release the link."""


@dataclass
class BoardOutages:
    """How often the board went away during a run, and for how long in all."""

    lost: int = 0
    reopened: int = 0
    offline_s: float = 0.0
    last_error: str = ""

    def to_dict(self) -> dict:
        return {"lost": self.lost, "reopened": self.reopened, "offline_s": round(self.offline_s, 3),
                "last_error": self.last_error}


class BoardGone(ControllerLost):
    """The board did not come back within the allowed time: the process exits (status 3) for systemd to restart."""


def reopen_with_backoff(controller: ScannerController, error: ControllerLost, outages: BoardOutages,
                        stop: threading.Event, heartbeat: Callable[[], None],
                        timeout_s: float = BoardSettings.timeout_s, backoff_s: float = BoardSettings.backoff_s,
                        max_backoff_s: float = BoardSettings.backoff_max_s,
                        clock: Callable[[], float] = time.monotonic) -> bool:
    """Reopen CONTROLLER after ERROR: True once it answers, False if `stop` is set first, BoardGone after timeout_s.

    `heartbeat` keeps being called while waiting (the service is alive and doing what it should: waiting for its
    board), so systemd's watchdog does not fire; the deadline here decides when to give up instead.
    """
    outages.lost += 1
    outages.last_error = str(error)
    log.warning("board lost: %s; reopening it (giving up after %g s)", error, timeout_s)
    start = clock()
    delay = backoff_s
    try:
        while True:
            heartbeat()
            if stop.wait(min(delay, max(0.0, start + timeout_s - clock()))):
                return False
            try:
                controller.reopen()
            except ControllerLost as exc:
                outages.last_error = str(exc)
                if clock() - start >= timeout_s:
                    raise BoardGone(f"the board has been gone for {clock() - start:.0f} s (last error: {exc}); "
                                    "exiting so that systemd restarts the service. Check the board's cable and "
                                    "power, or raise --board-timeout") from exc
                delay = min(delay * 2, max_backoff_s)
                continue
            outages.reopened += 1
            log.warning("board is back after %.1f s", clock() - start)
            return True
    finally:
        outages.offline_s += clock() - start
