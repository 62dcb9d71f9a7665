"""Errors of the deploy and serial-link layer: EdgeScaError subclasses, so every CLI prints them as one line."""

from edge_sca.errors import ControllerLost, EdgeScaError


class BridgeError(EdgeScaError):
    """Base class of firmware_bridge errors."""


class FrameError(BridgeError):
    """A serial frame was rejected; `reason` is the counter it goes to (crc, cobs, truncated, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"frame rejected ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


class LinkError(BridgeError):
    """The serial port is missing, or the board does not answer or refuses a request."""


class BoardLost(LinkError, ControllerLost):
    """The board's port vanished or the board stopped answering: the run loop reopens it (exit status 3 when it
    never comes back, so systemd restarts the service)."""


class BundleError(BridgeError):
    """A bundle or key is missing, malformed, tampered with, or unsafe to extract."""


class FlashError(BridgeError):
    """Installing a release on the scanner failed; the previous release stays current."""
