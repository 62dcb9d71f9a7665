"""The quality gate: a frame the model should not judge gets "retake" with the reason, never a class.

Measured on the 224x224 RGB pixels the model sees, so the thresholds do not depend on the camera's resolution.
Checks, in order: too dark (mean luma), saturated (fraction of pixels clipped to white in every channel), out of
focus (variance of the Laplacian of the luma), no lesion in view (contrast between the darkest blurred pixels in
the centre and their median: plain skin is nearly flat there). Thresholds live in edge_sca.config (QUALITY_*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_sca import config


@dataclass
class QualityResult:
    """`ok` or the reason to retake, with the measures the decision was made on."""

    ok: bool
    reason: str | None
    measures: dict = field(default_factory=dict)


def measure(pixels: np.ndarray) -> dict:
    """The four measures of an RGB uint8 image (normally the 224x224 model input)."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    # blown out to white; a single clipped channel is only a colour cast (common on real dermoscopes)
    saturated = (pixels >= config.QUALITY_SATURATION_LEVEL).all(axis=2)
    h, w = gray.shape
    centre = cv2.GaussianBlur(gray, (0, 0), 3)[h // 6: h - h // 6, w // 6: w - w // 6].astype(np.float32)
    return {
        "brightness": float(gray.mean()),
        "saturated_fraction": float(saturated.mean()),
        "sharpness": float(cv2.Laplacian(gray, cv2.CV_64F).var()),
        "lesion_contrast": float(np.median(centre) - np.percentile(centre, 2)),
    }


def check_quality(pixels: np.ndarray) -> QualityResult:
    """Pass, or the first failed check as a reason a user can act on."""
    m = measure(pixels)
    if m["brightness"] < config.QUALITY_MIN_BRIGHTNESS:
        return QualityResult(False, f"too dark (brightness {m['brightness']:.0f} < "
                                    f"{config.QUALITY_MIN_BRIGHTNESS:.0f}): turn the illumination up", m)
    if m["saturated_fraction"] > config.QUALITY_MAX_SATURATED_FRACTION:
        return QualityResult(False, f"saturated ({m['saturated_fraction']:.0%} of pixels clipped): lower the "
                                    "illumination or exposure", m)
    if m["sharpness"] < config.QUALITY_MIN_SHARPNESS:
        return QualityResult(False, f"out of focus (sharpness {m['sharpness']:.1f} < "
                                    f"{config.QUALITY_MIN_SHARPNESS:.1f}): press the dermoscope flat and refocus", m)
    if m["lesion_contrast"] < config.QUALITY_MIN_LESION_CONTRAST:
        return QualityResult(False, f"no lesion in view (contrast {m['lesion_contrast']:.1f} < "
                                    f"{config.QUALITY_MIN_LESION_CONTRAST:.1f}): centre the lesion", m)
    return QualityResult(True, None, m)
