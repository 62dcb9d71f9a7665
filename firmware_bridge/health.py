"""Is the scanner's service up? Read from `systemctl show`, for the health gate of `flash --host`.

The unit is Type=notify: systemd counts it as started (ActiveState=active, SubState=running) only after the runtime
sent READY=1, which it does once its self-test passed and its camera and board are open. `systemctl restart`
therefore returns only when the new release is ready, or fails; flash then checks the service stays up (same main
PID, no restart) for a settle time, since a release can crash on its first frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ServiceState(enum.Enum):
    READY = "ready"
    STARTING = "starting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServiceStatus:
    state: ServiceState
    main_pid: int
    restarts: int
    detail: str  # ActiveState/SubState as systemd said it, for messages

    def same_run(self, other: ServiceStatus) -> bool:
        """Both READY, and the service neither restarted nor changed its main process in between."""
        return self.state is other.state is ServiceState.READY and self.main_pid == other.main_pid \
            and self.restarts == other.restarts


def parse_show(text: str) -> ServiceStatus:
    """ServiceStatus from `systemctl show -p ActiveState -p SubState -p MainPID -p NRestarts UNIT`."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    active, sub = props.get("ActiveState", ""), props.get("SubState", "")
    if active == "active" and sub == "running":
        state = ServiceState.READY
    elif active == "activating" and sub != "auto-restart":
        state = ServiceState.STARTING
    elif active == "failed" or sub == "auto-restart":
        state = ServiceState.FAILED
    else:
        state = ServiceState.STOPPED
    return ServiceStatus(state, _int(props.get("MainPID")), _int(props.get("NRestarts")), f"{active}/{sub}")


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
