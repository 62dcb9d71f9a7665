"""Cheap statistics of a frame's 224x224 pixels: what the "not a dermoscopy frame" check and the drift monitor see.

Two thumbnails, 56x56 and 28x28 (exact 2x2 box halvings: as good as INTER_AREA, several times cheaper), give
colour (Lab means and spreads, saturation, hues that skin and lesions do not have, how L, a and b vary together),
layout (a dermoscope's dark corners, a lesion in the centre, the border ring) and texture (band energies, how
axis-aligned, flat or peaked the gradients are). About thirty calls on arrays of a few thousand values, each into
OpenCV or numpy's C code: tens of microseconds, a few percent of an int8 invoke (see docs/input-checks.md).
"""

from __future__ import annotations

import cv2
import numpy as np

#: Order of the values `frame_features` returns; the parameters in models/input_checks.json are fitted on it.
FEATURE_NAMES: tuple[str, ...] = (
    "L_mean", "a_mean", "b_mean", "L_std", "a_std", "b_std", "S_mean", "S_std",
    "corr_L_a", "corr_L_b", "corr_a_b", "foreign_hue_fraction",
    "centre_minus_border_L", "centre_minus_border_S", "corners_minus_mean_L", "border_L_std", "border_S_std",
    "log_lap56", "log_lap28", "axis_alignment", "flat_fraction", "gradient_peakedness",
)
#: Index of the mean HSV saturation (0-255): the grayscale check reads it.
SATURATION = FEATURE_NAMES.index("S_mean")
#: Indices of the colour statistics the drift monitor follows.
COLOUR = tuple(FEATURE_NAMES.index(n) for n in ("L_mean", "a_mean", "b_mean"))

_SIDE = 28


def _masks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (central 14x14), border ring (outer 4 pixels) and corner (four 5x5) masks of a 28x28 thumbnail."""
    centre = np.zeros((_SIDE, _SIDE), np.uint8)
    centre[7:21, 7:21] = 1
    ring = np.ones((_SIDE, _SIDE), np.uint8)
    ring[4:-4, 4:-4] = 0
    corners = np.zeros((_SIDE, _SIDE), np.uint8)
    for ys in (slice(0, 5), slice(-5, None)):
        for xs in (slice(0, 5), slice(-5, None)):
            corners[ys, xs] = 1
    return centre, ring, corners


_CENTRE, _RING, _CORNERS = _masks()
_FOREIGN_LOW, _FOREIGN_HIGH = np.array([36, 61, 0], np.uint8), np.array([139, 255, 255], np.uint8)


def thumbnails(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """56x56 and 28x28 RGB thumbnails of a 224x224 image by exact 2x2 box averages (INTER_LINEAR at scale 1/2)."""
    t = cv2.resize(pixels, (112, 112), interpolation=cv2.INTER_LINEAR)
    t56 = cv2.resize(t, (56, 56), interpolation=cv2.INTER_LINEAR)
    return t56, cv2.resize(t56, (_SIDE, _SIDE), interpolation=cv2.INTER_LINEAR)


def _colour(t28: np.ndarray) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Colour statistics, plus the Lab and HSV thumbnails the layout statistics reuse."""
    lab = cv2.cvtColor(t28, cv2.COLOR_RGB2Lab)
    hsv = cv2.cvtColor(t28, cv2.COLOR_RGB2HSV)
    lab_mean, lab_std = cv2.meanStdDev(lab)
    hsv_mean, hsv_std = cv2.meanStdDev(hsv)
    flags = cv2.COVAR_NORMAL | cv2.COVAR_ROWS | cv2.COVAR_SCALE
    cov, _ = cv2.calcCovarMatrix(lab.reshape(-1, 3), None, flags)  # type: ignore[call-overload]
    sd = lab_std[:, 0] + 1e-3
    # greens, cyans, blues and violets with some saturation: hue 36-139 (of 180), saturation above 60
    foreign = cv2.countNonZero(cv2.inRange(hsv, _FOREIGN_LOW, _FOREIGN_HIGH)) / (_SIDE * _SIDE)
    return [lab_mean[0, 0], lab_mean[1, 0] - 128.0, lab_mean[2, 0] - 128.0, lab_std[0, 0], lab_std[1, 0],
            lab_std[2, 0], hsv_mean[1, 0], hsv_std[1, 0], cov[0, 1] / (sd[0] * sd[1]), cov[0, 2] / (sd[0] * sd[2]),
            cov[1, 2] / (sd[1] * sd[2]), foreign], lab, hsv


def _layout(lab: np.ndarray, hsv: np.ndarray, L_mean: float) -> list[float]:
    """Centre against border ring, dark corners, and how uneven the border ring is."""
    centre = cv2.mean(lab, mask=_CENTRE)[0]
    centre_s = cv2.mean(hsv, mask=_CENTRE)[1]
    ring_mean, ring_std = cv2.meanStdDev(lab, mask=_RING)
    ring_hsv_mean, ring_hsv_std = cv2.meanStdDev(hsv, mask=_RING)
    corners = cv2.mean(lab, mask=_CORNERS)[0]
    return [centre - ring_mean[0, 0], centre_s - ring_hsv_mean[1, 0], corners - L_mean, ring_std[0, 0],
            ring_hsv_std[1, 0]]


def _texture(t56: np.ndarray, lab: np.ndarray, L_std: float) -> list[float]:
    """Band energies relative to contrast, and the shape of the gradient distribution (text, charts, noise)."""
    g = cv2.cvtColor(t56, cv2.COLOR_RGB2GRAY)
    ax = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0))
    ay = np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))
    mag = ax + ay
    l1 = float(mag.sum()) + 1e-3
    n56 = float(g.size)
    spread = L_std + 1.0
    lap56 = cv2.norm(cv2.Laplacian(g, cv2.CV_32F), cv2.NORM_L1) / n56
    lap28 = cv2.norm(cv2.Laplacian(lab[:, :, 0], cv2.CV_32F), cv2.NORM_L1) / (_SIDE * _SIDE)
    return [np.log(lap56 / spread + 1e-3), np.log(lap28 / spread + 1e-3),
            2.0 * float(np.minimum(ax, ay).sum()) / l1, np.count_nonzero(mag < 1.0) / n56,
            float(cv2.norm(mag, cv2.NORM_L2SQR)) * n56 / (l1 * l1)]


def frame_features(pixels: np.ndarray) -> np.ndarray:
    """The FEATURE_NAMES values of one 224x224 RGB uint8 image, as float64."""
    t56, t28 = thumbnails(pixels)
    colour, lab, hsv = _colour(t28)
    return np.array(colour + _layout(lab, hsv, colour[0]) + _texture(t56, lab, colour[3]), dtype=np.float64)
