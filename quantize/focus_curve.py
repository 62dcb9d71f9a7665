"""Calibrating the focus threshold: sharpness of ISIC images as they are and blurred at capture size.

Blurs: Gaussian sigma 1, 1.5, 2, 3 and motion blur (5 and 9 pixels, horizontal and diagonal), applied to each
image at its own resolution before the runtime's measure (edge_sca.focus). The threshold is chosen on the test split
between two bounds: it must refuse FOCUS_MIN_BLUR_REFUSED of the sigma-FOCUS_BLUR_SIGMA images and pass all but
FOCUS_MAX_REFUSED of the unblurred ones; when both hold, the geometric middle of that interval is taken. The val
split, every source, and ../shared/isic_extra are then measured at that threshold as held-out checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_sca.errors import ImageError
from edge_sca.focus import sharpness
from edge_sca.isic import Record
from edge_sca.policy import FOCUS_BLUR_SIGMA, FOCUS_MAX_REFUSED, FOCUS_MIN_BLUR_REFUSED
from edge_sca.preprocess import read_image
from edge_sca.progress import Progress

log = logging.getLogger(__name__)


def _motion(length: int, angle: float) -> Callable[[np.ndarray], np.ndarray]:
    k: np.ndarray = np.zeros((length, length), np.float32)
    k[length // 2] = 1.0
    if angle:
        centre = ((length - 1) / 2, (length - 1) / 2)
        k = cv2.warpAffine(k, cv2.getRotationMatrix2D(centre, angle, 1.0), (length, length))
    k /= k.sum()
    return lambda img: cv2.filter2D(img, -1, k)


def _gauss(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: cv2.GaussianBlur(img, (0, 0), sigma)


BLURS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sharp": lambda img: img, "gauss 1": _gauss(1.0), "gauss 1.5": _gauss(1.5), "gauss 2": _gauss(2.0),
    "gauss 3": _gauss(3.0), "motion 5 horizontal": _motion(5, 0.0), "motion 9 horizontal": _motion(9, 0.0),
    "motion 9 diagonal": _motion(9, 45.0),
}
TARGET = f"gauss {FOCUS_BLUR_SIGMA:g}"


def measure(records: list[Record], blurs: tuple[str, ...] = tuple(BLURS)) -> dict[str, np.ndarray]:
    """Sharpness of each record's image under each blur (NaN for an unreadable image)."""
    out = {b: np.full(len(records), np.nan) for b in blurs}
    progress = Progress(len(records), f"focus: {len(records)} images x {len(blurs)} blurs", log)
    for i, r in enumerate(records):
        try:
            img = read_image(r.path)
        except ImageError as exc:
            log.warning("%s (skipped)", exc)
            continue
        for b in blurs:
            out[b][i] = sharpness(BLURS[b](img))
        progress.update()
    return out


def choose_threshold(values: dict[str, np.ndarray]) -> tuple[float, dict]:
    """The threshold and how it was chosen (bounds, whether both targets could be met)."""
    sharp, target = values["sharp"], values[TARGET]
    sharp, target = sharp[~np.isnan(sharp)], target[~np.isnan(target)]
    low = float(np.quantile(target, FOCUS_MIN_BLUR_REFUSED))  # refuses that fraction of the blurred
    high = float(np.quantile(sharp, FOCUS_MAX_REFUSED))  # passes all but that fraction of the sharp
    feasible = low < high
    threshold = float(np.sqrt(low * high)) if feasible else high
    rule = {"blur_refused_bound": low, "sharp_pass_bound": high, "both_targets_met": feasible,
            "chosen": "geometric middle of the two bounds" if feasible else
            f"the sharp-pass bound (the {TARGET} target cannot also be met)"}
    return threshold, rule


def refused(values: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    return {b: float(np.mean(v[~np.isnan(v)] < threshold)) for b, v in values.items()}


def plot_curve(values: dict[str, np.ndarray], threshold: float, out: Path, title: str) -> None:
    """Fraction of images refused against the threshold, one line per blur, the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.geomspace(0.005, 5.0, 300)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for b, v in values.items():
        v = v[~np.isnan(v)]
        ax.plot(grid, [(v < t).mean() for t in grid], label=b, lw=2.2 if b in ("sharp", TARGET) else 1.2)
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.text(threshold * 1.05, 0.5, f"threshold {threshold:.3f}", rotation=90, va="center")
    ax.set_xscale("log")
    ax.set_xlabel("focus threshold (frames with lower sharpness are refused)")
    ax.set_ylabel("fraction of images refused")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
