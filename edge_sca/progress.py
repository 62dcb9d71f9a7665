"""A dependency-free progress line for long steps (cache building, conversion, replay), through logging."""

from __future__ import annotations

import logging
import time


class Progress:
    """Logs `label: done/total (rate/s, eta)` at most every `every_s` seconds, and once at the end."""

    def __init__(self, total: int, label: str, logger: logging.Logger | None = None, every_s: float = 5.0):
        self.total, self.label, self.every_s = total, label, every_s
        self.log = logger or logging.getLogger("progress")
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log.info("%s: %d/%d (%.0f/s, %.0f s left)", self.label, self.done, self.total, rate, eta)
