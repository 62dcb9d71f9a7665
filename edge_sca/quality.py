"""The quality gate: a frame the model should not judge gets "retake" with a reason code, never a class.

Checks, in order: the frame's shape (aspect ratio beyond QUALITY_MAX_ASPECT_RATIO), too dark (mean luma),
saturated (fraction of pixels clipped to white in every channel), grayscale (mean saturation), not a dermoscopy
frame (edge_sca.input_checks on the frame statistics: a first stage clears typical dermoscopy on the cheaper half
of them, every other frame gets all of them and the full check), no lesion in view (the same statistics look like
plain skin), out of focus (the edge_sca.focus measure on the frame as captured), no lesion in view (contrast
between the darkest blurred pixels in the centre and their median). Fixed limits are the scanner's settings
([quality] in its settings file: edge_sca.settings.QualitySettings); the calibrated thresholds are in
models/input_checks.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from edge_sca.focus import sharpness
from edge_sca.frame_stats import SATURATION, first_stage
from edge_sca.input_checks import InputChecks, LearnedVerdict
from edge_sca.settings import QualitySettings

DEFAULT_LIMITS = QualitySettings()


class Retake(StrEnum):
    """Why a frame gets no decision: the code programs use (audit log, report, display); messages are for people."""

    ASPECT_RATIO = "aspect_ratio"
    TOO_DARK = "too_dark"
    SATURATED = "saturated"
    GRAYSCALE = "grayscale"
    OUT_OF_FOCUS = "out_of_focus"
    NOT_DERMOSCOPY = "not_dermoscopy"
    NO_LESION = "no_lesion"


@dataclass
class QualityResult:
    """`ok`, or the code and message of the first failed check, with the measures the decision was made on.

    `screen` holds the first stage's statistics (edge_sca.frame_stats.SCREEN_FEATURES), kept for the drift monitor;
    None when the gate stopped before computing them. `input_checks_ms` is what the learned checks took (the
    statistics and scores of one stage or both): the runtime reports it beside the invoke, whose tenth is its
    budget; None when they did not run. `learned` is their verdict (None when they did not run).
    """

    ok: bool
    code: Retake | None
    reason: str | None
    measures: dict = field(default_factory=dict)
    screen: np.ndarray | None = None
    input_checks_ms: float | None = None
    learned: LearnedVerdict | None = None


def aspect_ratio(rgb: np.ndarray) -> float:
    h, w = rgb.shape[:2]
    return max(h, w) / max(1, min(h, w))


def measure(pixels: np.ndarray, saturation_level: int = DEFAULT_LIMITS.saturation_level) -> dict:
    """The fixed-threshold measures of an RGB uint8 image (normally the 224x224 model input); a pixel counts as
    clipped when every channel is at or above `saturation_level`."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    # blown out to white; a single clipped channel is only a colour cast (common on real dermoscopes). One OpenCV
    # pass: numpy's all() over the 3 channels of every pixel costs more than the rest of the gate.
    level = (saturation_level,) * 3
    saturated = cv2.countNonZero(cv2.inRange(pixels, level, (255, 255, 255)))
    centre = _blurred_centre(gray)
    return {
        "brightness": float(gray.mean()),
        "saturated_fraction": saturated / (pixels.shape[0] * pixels.shape[1]),
        "lesion_contrast": float(np.median(centre) - np.percentile(centre, 2)),
    }


#: The lesion-contrast blur (sigma 3 on 8-bit pixels: a 19-tap kernel) reaches this many pixels to either side.
_CENTRE_BLUR_SIGMA, _CENTRE_BLUR_REACH = 3, 9


def _blurred_centre(gray: np.ndarray) -> np.ndarray:
    """The central two thirds of the blurred luminance, as float32. Only the centre and a margin the kernel's reach
    wide are blurred: the same values as blurring the whole frame and cropping (where the margin meets the frame's
    edge, the border is the frame's own), for half the work."""
    h, w = gray.shape
    y0, y1, x0, x1 = h // 6, h - h // 6, w // 6, w - w // 6
    r = _CENTRE_BLUR_REACH
    ys, xs = max(0, y0 - r), max(0, x0 - r)
    region = np.ascontiguousarray(gray[ys:min(h, y1 + r), xs:min(w, x1 + r)])
    blurred = cv2.GaussianBlur(region, (0, 0), _CENTRE_BLUR_SIGMA)
    return blurred[y0 - ys:y1 - ys, x0 - xs:x1 - xs].astype(np.float32)


def check_quality(frame: np.ndarray, pixels: np.ndarray, checks: InputChecks,
                  limits: QualitySettings = DEFAULT_LIMITS) -> QualityResult:
    """Pass, or the first failed check. `frame` is the RGB frame as captured, `pixels` its 224x224 model input,
    `limits` the fixed limits (the scanner's [quality] settings), `checks` the calibrated ones."""
    ratio = aspect_ratio(frame)
    if ratio > limits.max_aspect_ratio:
        return QualityResult(False, Retake.ASPECT_RATIO, f"aspect ratio {ratio:.1f}:1 is beyond "
                             f"{limits.max_aspect_ratio:g}:1 (shape {frame.shape[1]}x{frame.shape[0]}): "
                             "capture the lesion in a near-square frame", {"aspect_ratio": ratio})
    m = measure(pixels, limits.saturation_level) | {"aspect_ratio": ratio}
    if m["brightness"] < limits.min_brightness:
        return QualityResult(False, Retake.TOO_DARK, f"too dark (brightness {m['brightness']:.0f} < "
                             f"{limits.min_brightness:.0f}): turn the illumination up", m)
    if m["saturated_fraction"] > limits.max_saturated_fraction:
        return QualityResult(False, Retake.SATURATED, f"saturated ({m['saturated_fraction']:.0%} of pixels "
                             "clipped): lower the illumination or exposure", m)
    t0 = time.perf_counter()
    first = first_stage(pixels)
    features = first.screen
    m["saturation"] = float(features[SATURATION])
    if m["saturation"] < checks.min_saturation:
        return QualityResult(False, Retake.GRAYSCALE, f"grayscale or nearly (saturation {m['saturation']:.1f} < "
                             f"{checks.min_saturation:.1f}): the model needs the colour camera's frame", m, features)
    verdict = checks.judge(first)
    refused, no_lesion = verdict.refused, verdict.no_lesion
    took = (time.perf_counter() - t0) * 1e3
    m["screen_scores"] = [float(s) for s in verdict.screen_scores]
    m["screen_cleared"] = verdict.cleared
    if verdict.scores is not None:
        m["dermoscopy_scores"] = [float(s) for s in verdict.scores]
    if refused:
        return QualityResult(False, Retake.NOT_DERMOSCOPY, "not a dermoscopy frame (its colour, layout and "
                             "texture are unlike every dermoscopy image the check was fitted on): place the "
                             "dermoscope on the skin over the lesion", m, features, took, verdict)
    if no_lesion:
        return QualityResult(False, Retake.NO_LESION, "no lesion in view (the frame looks like skin without a "
                             "lesion): centre the lesion", m, features, took, verdict)
    m["sharpness"] = sharpness(frame)
    if m["sharpness"] < checks.min_sharpness:
        return QualityResult(False, Retake.OUT_OF_FOCUS, f"out of focus (sharpness {m['sharpness']:.3f} < "
                             f"{checks.min_sharpness:.3f}): press the dermoscope flat and refocus", m, features, took,
                             verdict)
    if m["lesion_contrast"] < limits.min_lesion_contrast:
        return QualityResult(False, Retake.NO_LESION, f"no lesion in view (contrast {m['lesion_contrast']:.1f} < "
                             f"{limits.min_lesion_contrast:.1f}): centre the lesion", m, features, took, verdict)
    return QualityResult(True, None, None, m, features, took, verdict)
