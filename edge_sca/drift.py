"""Float-vs-int8 drift: how far the int8 model's p(malignant) moves from the float model's on the same images.

`compare_outputs` is the one comparison: the drift report of `make quantize`, the benchmark's accuracy section and
the runtime's shadow float model all call it. Both models decide at ONE threshold, the deployed model's manifest's,
so a flip is a change of the decision the device would make. Malignant-to-benign flips are the dangerous ones (a
missed cancer).

On the device a shadow float .tflite runs on every Nth frame beside the int8 model (`DriftMonitor`), so int8
error on real device frames is watched, not assumed.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import asdict, dataclass

import numpy as np

from edge_sca.contract import MALIGNANT
from edge_sca.settings import ModelSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftSummary:
    """Agreement, flips by direction and |p_int8 - p_float| of one comparison, at one threshold."""

    n: int
    threshold: float
    agreement: float  # fraction of images where both decide the same
    benign_to_malignant: int
    malignant_to_benign: int  # float said malignant, int8 says benign: the dangerous direction
    malignant_to_benign_index: tuple[int, ...]  # positions of those images in the inputs
    mean_abs_delta_p: float
    std_abs_delta_p: float
    p95_abs_delta_p: float
    max_abs_delta_p: float
    now_wrong: int | None = None  # flips that make int8 disagree with the label (labels given)
    now_right: int | None = None  # flips that make int8 agree with the label

    def to_dict(self) -> dict:
        return asdict(self)


def compare_outputs(p_float: np.ndarray, p_int8: np.ndarray, threshold: float,
                    labels: np.ndarray | None = None) -> DriftSummary:
    """Compare p(malignant) of the float and the int8 model on the same images, both decided at `threshold`."""
    p_f, p_q = np.asarray(p_float, np.float64), np.asarray(p_int8, np.float64)
    if p_f.shape != p_q.shape or p_f.ndim != 1 or not len(p_f):
        raise ValueError(f"compare_outputs needs two equal, non-empty 1-D arrays, got {p_f.shape} and {p_q.shape}")
    d_f, d_q = p_f >= threshold, p_q >= threshold
    flipped, delta = d_f != d_q, np.abs(p_q - p_f)
    wrong = right = None
    if labels is not None:
        truth = np.asarray(labels).astype(bool)
        wrong, right = int(np.sum(flipped & (d_q != truth))), int(np.sum(flipped & (d_q == truth)))
    return DriftSummary(
        n=len(p_f), threshold=float(threshold), agreement=float(np.mean(~flipped)),
        benign_to_malignant=int(np.sum(~d_f & d_q)), malignant_to_benign=int(np.sum(d_f & ~d_q)),
        malignant_to_benign_index=tuple(int(i) for i in np.flatnonzero(d_f & ~d_q)),
        mean_abs_delta_p=float(delta.mean()), std_abs_delta_p=float(delta.std()),
        p95_abs_delta_p=float(np.percentile(delta, 95)), max_abs_delta_p=float(delta.max()),
        now_wrong=wrong, now_right=right)


class DriftMonitor:
    """The deployed model against a shadow float model on every Nth frame, summarised by `compare_outputs`.

    Keeps the compared pairs (16 bytes per compared frame: a million frames at every 10th is 1.6 MB).
    """

    def __init__(self, shadow, threshold: float, every: int = ModelSettings.shadow_every):
        if every < 1:
            raise ValueError("shadow_every must be >= 1")
        self.shadow, self.threshold, self.every = shadow, threshold, every
        self._deployed, self._float = array("d"), array("d")
        self._frame = 0

    @property
    def n(self) -> int:
        return len(self._deployed)

    def due(self) -> bool:
        """True on every Nth frame offered (the first included); call once per classified frame."""
        due = self._frame % self.every == 0
        self._frame += 1
        return due

    def shadow_p(self, pixels: np.ndarray, p_deployed: float) -> float:
        """Run the shadow float model on these pixels, record the pair, return its p(malignant)."""
        p_float = float(self.shadow.predict(pixels)[0, MALIGNANT])
        self.update(p_deployed, p_float)
        return p_float

    def update(self, p_deployed: float, p_float: float) -> float:
        """Record one pair; returns |delta p|."""
        self._deployed.append(p_deployed)
        self._float.append(p_float)
        delta = abs(p_deployed - p_float)
        log.debug("drift: n=%d |dp|=%.4f", self.n, delta)
        return delta

    def summary(self) -> dict:
        if self.n == 0:
            return {"n": 0, "every": self.every}
        s = compare_outputs(np.frombuffer(self._float), np.frombuffer(self._deployed), self.threshold)
        return {"n": s.n, "every": self.every, "agreement": s.agreement, "mean_abs_delta": s.mean_abs_delta_p,
                "std_abs_delta": s.std_abs_delta_p, "max_abs_delta": s.max_abs_delta_p,
                "benign_to_malignant": s.benign_to_malignant, "malignant_to_benign": s.malignant_to_benign}


def format_drift(s: dict) -> str:
    if not s.get("n"):
        return "drift: no frame compared with the float model yet"
    return (f"drift vs float (every {s['every']} frames, {s['n']} compared): agreement {s['agreement']:.1%}, "
            f"|delta p| mean {s['mean_abs_delta']:.4f}, max {s['max_abs_delta']:.4f}")
