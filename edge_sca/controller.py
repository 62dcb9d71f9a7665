"""What the run loop needs from the dermoscope's microcontroller (trigger, illumination, result display).

`firmware_bridge.link.open_controller(port)` implements it over the serial link; the runtime only knows this
Protocol, so edge_sca never imports firmware_bridge at module level (the CLI's `--bridge` does it lazily).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ScannerController(Protocol):
    def wait_trigger(self, timeout_s: float) -> bool:
        """Block until the trigger is pressed (True) or `timeout_s` passes (False)."""

    def set_illumination(self, mode: str, intensity: float) -> None:
        """Set the LED ring: mode 'polarised', 'non-polarised' or 'off'; intensity 0..1."""

    def show_result(self, decision) -> None:
        """Show a Decision (edge_sca.runtime.Decision) on the scanner's display."""

    def close(self) -> None:
        """Release the link."""
