"""Drift against the float baseline: a shadow float .tflite runs on every Nth frame beside the int8 model.

Reports, as it goes, how often both give the same decision at the threshold and the running mean / max of
|p_int8 - p_float| for malignant, so int8 error on real device frames is watched, not assumed.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from edge_sca import config

log = logging.getLogger(__name__)


class DriftMonitor:
    """Running agreement and |delta p| between the deployed model and a shadow float model."""

    def __init__(self, shadow, threshold: float, every: int = config.SHADOW_EVERY):
        if every < 1:
            raise ValueError("shadow_every must be >= 1")
        self.shadow, self.threshold, self.every = shadow, threshold, every
        self.n = self.agree = 0
        self.mean = self.m2 = self.max = 0.0
        self._frame = 0

    def due(self) -> bool:
        """True on every Nth frame offered (the first included); call once per classified frame."""
        due = self._frame % self.every == 0
        self._frame += 1
        return due

    def compare(self, pixels: np.ndarray, p_deployed: float) -> float:
        """Run the shadow on these pixels, update the stats, return |delta p|."""
        p_float = float(self.shadow.predict(pixels)[0, config.MALIGNANT])
        return self.update(p_deployed, p_float)

    def update(self, p_deployed: float, p_float: float) -> float:
        delta = abs(p_deployed - p_float)
        self.n += 1
        self.agree += (p_deployed >= self.threshold) == (p_float >= self.threshold)
        d = delta - self.mean  # Welford: numerically stable running mean and variance
        self.mean += d / self.n
        self.m2 += d * (delta - self.mean)
        self.max = max(self.max, delta)
        log.debug("drift: n=%d |dp|=%.4f agreement=%.3f", self.n, delta, self.agree / self.n)
        return delta

    def summary(self) -> dict:
        if self.n == 0:
            return {"n": 0, "every": self.every}
        return {"n": self.n, "every": self.every, "agreement": self.agree / self.n,
                "mean_abs_delta": self.mean, "std_abs_delta": math.sqrt(self.m2 / self.n),
                "max_abs_delta": self.max}


def format_drift(s: dict) -> str:
    if not s.get("n"):
        return "drift: no frame compared with the float model yet"
    return (f"drift vs float (every {s['every']} frames, {s['n']} compared): agreement {s['agreement']:.1%}, "
            f"|delta p| mean {s['mean_abs_delta']:.4f}, max {s['max_abs_delta']:.4f}")
