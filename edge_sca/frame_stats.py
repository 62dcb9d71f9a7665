"""Cheap statistics of a frame's 224x224 pixels: what the "not a dermoscopy frame" check and the drift monitor see.

Two thumbnails, 56x56 and 28x28 (exact 2x2 box halvings: as good as INTER_AREA, several times cheaper), give
- colour: Lab means and spreads, saturation, hues that skin and lesions do not have, how L, a and b vary together,
  whether a and b follow from L alone (a tinted grayscale picture), and how concentrated the hue is;
- layout: a dermoscope's dark corners and round vignette, a lesion in the centre (the centre and spread of the pixels
  darker than the median), the border ring, and the dark and light tails of the luminance;
- texture: band energies, how axis-aligned, flat or peaked the gradients are, how strongly oriented they are locally
  (fur, grass, hair), and how evenly the gradient energy is spread over the frame.
A few dozen calls on arrays of a few thousand values, each into OpenCV or numpy's C code (see docs/input-checks.md
for the cost against an int8 invoke).
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
    "orientation_coherence", "energy_evenness",
    "ab_unexplained_by_L", "hue_concentration", "hue_cos", "hue_sin", "chroma_mean",
    "ring0_L", "ring1_L", "ring2_L", "ring3_L", "vignette_asymmetry", "dark_offset", "dark_spread",
    "dark_tail", "light_tail",
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


def _radial_masks() -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """Rings by distance from the centre (in half-sides: 0.35, 0.7, 1, corners) and the four outer quadrants, with
    each pixel's x and y in half-sides (for the dark pixels' centre and spread)."""
    yy, xx = (np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float32) + 0.5 - _SIDE / 2) / (_SIDE / 2)
    r, ang = np.hypot(xx, yy), np.arctan2(yy, xx)
    rings = [(r < 0.35), (r >= 0.35) & (r < 0.7), (r >= 0.7) & (r < 1.0), (r >= 1.0)]
    quadrants = [(ang >= a) & (ang < a + np.pi / 2) & (r >= 0.75) for a in (-np.pi, -np.pi / 2, 0, np.pi / 2)]
    return ([m.astype(np.uint8) for m in rings], [m.astype(np.uint8) for m in quadrants], xx.ravel(), yy.ravel())


_RINGS, _QUADRANTS, _X, _Y = _radial_masks()
_LOG_BLOCKS = float(np.log(64))
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


def _radial(lab: np.ndarray, L_mean: float, L_std: float) -> list[float]:
    """The luminance profile from centre to corners, how unevenly the outer quadrants are lit (a dermoscope's
    vignette is round), where the darker-than-median pixels sit and how spread they are (a lesion: central, compact),
    and the dark and light tails of the luminance, all relative to its spread."""
    L = lab[:, :, 0]
    spread = L_std + 1.0
    rings = [(cv2.mean(L, mask=m)[0] - L_mean) / spread for m in _RINGS]
    quadrants = np.array([cv2.mean(L, mask=m)[0] for m in _QUADRANTS])
    flat = L.ravel().astype(np.float32)
    ordered = np.sort(flat)
    n = len(ordered)
    low, median, high = float(ordered[int(0.02 * n)]), float(ordered[n // 2]), float(ordered[int(0.98 * n)])
    w = np.maximum(0.0, median - flat)
    w *= w
    total = float(w.sum()) + 1e-3
    cx, cy = float(w @ _X) / total, float(w @ _Y) / total
    dark_spread = float(np.sqrt(float(w @ ((_X - cx) ** 2 + (_Y - cy) ** 2)) / total))
    return rings + [float(quadrants.std()) / spread, float(np.hypot(cx, cy)), dark_spread, (median - low) / spread,
                    (high - median) / spread]


def _hue(lab: np.ndarray) -> list[float]:
    """How much of a and b the luminance alone explains (per 16-level band of L: a grayscale picture through a
    colour ramp is explained entirely), how concentrated the Lab hue is, its mean direction, and the mean chroma."""
    v = lab.reshape(-1, 3).astype(np.float32)
    L, a, b = v[:, 0], v[:, 1] - 128.0, v[:, 2] - 128.0
    band = (L * (1 / 16)).astype(np.int64)
    count = np.bincount(band, minlength=16) + 1e-9
    ra = a - (np.bincount(band, a, 16) / count)[band]
    rb = b - (np.bincount(band, b, 16) / count)[band]
    da, db = a - a.mean(), b - b.mean()
    unexplained = np.log((float(ra @ ra + rb @ rb) + 1.0) / (float(da @ da + db @ db) + 1.0))
    chroma = float(np.sqrt(a * a + b * b).sum()) + 1e-3
    sa, sb = float(a.sum()), float(b.sum())
    resultant = float(np.hypot(sa, sb))
    return [unexplained, resultant / chroma, sa / (resultant + 1e-6), sb / (resultant + 1e-6), chroma / len(L)]


def _texture(t56: np.ndarray, lab: np.ndarray, L_std: float) -> list[float]:
    """Band energies relative to contrast, and the shape of the gradient distribution (text, charts, noise)."""
    g = cv2.cvtColor(t56, cv2.COLOR_RGB2GRAY)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    ax, ay = np.abs(gx), np.abs(gy)
    mag = ax + ay
    l1 = float(mag.sum()) + 1e-3
    n56 = float(g.size)
    spread = L_std + 1.0
    lap56 = cv2.norm(cv2.Laplacian(g, cv2.CV_32F), cv2.NORM_L1) / n56
    lap28 = cv2.norm(cv2.Laplacian(lab[:, :, 0], cv2.CV_32F), cv2.NORM_L1) / (_SIDE * _SIDE)
    return [np.log(lap56 / spread + 1e-3), np.log(lap28 / spread + 1e-3),
            2.0 * float(np.minimum(ax, ay).sum()) / l1, np.count_nonzero(mag < 1.0) / n56,
            float(cv2.norm(mag, cv2.NORM_L2SQR)) * n56 / (l1 * l1)] + _orientation(gx, gy)


def _orientation(gx: np.ndarray, gy: np.ndarray) -> list[float]:
    """Local orientation coherence from the smoothed structure tensor (near 1: strokes all one way, as in fur, grass
    or hair; skin and lesions are less ordered), and how evenly the gradient energy spreads over 8x8 blocks."""
    jxx, jyy, jxy = cv2.split(cv2.GaussianBlur(cv2.merge([gx * gx, gy * gy, gx * gy]), (0, 0), 1.5))
    trace = jxx + jyy
    coherence = cv2.sumElems(cv2.magnitude(jxx - jyy, 2.0 * jxy))[0] / (cv2.sumElems(trace)[0] + 1e-3)
    blocks = cv2.resize(trace, (8, 8), interpolation=cv2.INTER_AREA).ravel().astype(np.float64) + 1e-3 / 49
    p = blocks / blocks.sum()
    return [coherence, float(-(p @ np.log(p))) / _LOG_BLOCKS]


def frame_features(pixels: np.ndarray) -> np.ndarray:
    """The FEATURE_NAMES values of one 224x224 RGB uint8 image, as float64."""
    t56, t28 = thumbnails(pixels)
    colour, lab, hsv = _colour(t28)
    return np.array(colour + _layout(lab, hsv, colour[0]) + _texture(t56, lab, colour[3]) + _hue(lab)
                    + _radial(lab, colour[0], colour[3]), dtype=np.float64)
