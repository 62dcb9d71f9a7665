"""Cheap statistics of a frame's 224x224 pixels: what the "not a dermoscopy frame" check and the drift monitor see.

Two thumbnails, 56x56 and 28x28 (exact 2x2 box halvings: as good as INTER_AREA, several times cheaper), give
- colour: Lab means and spreads, saturation, hues that skin and lesions do not have, how L, a and b vary together,
  whether a and b follow from L alone (a tinted grayscale picture), and how concentrated the hue is;
- layout: a dermoscope's dark corners and round vignette, a lesion in the centre (the centre and spread of the pixels
  darker than the median), the border ring, and the dark and light tails of the luminance;
- texture: band energies, how axis-aligned, flat or peaked the gradients are, how strongly oriented they are locally
  (fur, grass, hair), and how evenly the gradient energy is spread over the frame.

The check runs on every frame and its budget is a tenth of an int8 invoke on one thread. On arrays this small each
numpy or OpenCV call costs about as much as its work, so the code makes few calls:
- one matrix product gives every sum and sum of products of the 28x28 pixels' L, a, b and S over the frame and
  every sum over each region (the region masks ride along as constant channels); the values are 8-bit integers, so
  these sums are exact and spreads and correlations come from them without cancellation;
- the luminance quantiles are read off its cumulative histogram;
- the structure tensor's anisotropy is one 2-channel blur of (gx + i gy)^2, and its trace's blurred 8x8 block means
  one fixed linear map;
- what follows is plain Python arithmetic on a few dozen floats.
The definitions are those models/input_checks.json was fitted on: a rewrite must reproduce them (golden values in
tests/frame_features_golden.json). See docs/input-checks.md for the cost against an int8 invoke.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
#: The statistics of the first stage (`first_stage`): colour, layout and rings, in FEATURE_NAMES order. The input
#: checks' screen and the drift monitor read only these, so most frames never pay for the second stage.
SCREEN_FEATURES: tuple[str, ...] = FEATURE_NAMES[:17] + FEATURE_NAMES[29:34]
_N_COLOUR_LAYOUT = 17
#: Index of the mean HSV saturation (0-255) in either tuple: the grayscale check reads it.
SATURATION = FEATURE_NAMES.index("S_mean")
#: Indices (in either tuple) of the colour statistics the drift monitor follows.
COLOUR = tuple(FEATURE_NAMES.index(n) for n in ("L_mean", "a_mean", "b_mean"))
#: Where each SCREEN_FEATURES value sits in FEATURE_NAMES.
SCREEN_COLUMNS = tuple(FEATURE_NAMES.index(n) for n in SCREEN_FEATURES)

_SIDE = 28
_N = _SIDE * _SIDE
#: Columns of the per-pixel values (`_pixel_values`): L, a, b, S, then the region masks from _REGION on.
_L, _A, _B, _S, _REGION = range(5)
#: Regions (mask columns): all pixels, centre, border ring, corners, rings 0-3 by distance, outer quadrants 0-3.
_ALL, _CENTRE, _RING, _CORNERS, _RING0, _QUADRANT0 = 0, 1, 2, 3, 4, 8


def _regions() -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 masks (28 x 28 x 12, channels _ALL ... _QUADRANT0) of the regions of a 28x28 thumbnail, and each pixel's
    1, x, y and x^2 + y^2 in half-sides (784 x 4: the weighted centre and spread of the dark pixels in one product).

    Regions: the central 14x14, the border ring (outer 4 pixels), the four 5x5 corners, rings by distance from the
    centre (in half-sides: 0.35, 0.7, 1, corners) and the four outer quadrants (beyond 0.75). The distances and
    angles are computed in float32, as the fit's masks were (a pixel on a boundary stays on its side)."""
    centre = np.zeros((_SIDE, _SIDE), bool)
    centre[7:21, 7:21] = True
    ring = np.ones((_SIDE, _SIDE), bool)
    ring[4:-4, 4:-4] = False
    corners = np.zeros((_SIDE, _SIDE), bool)
    for ys in (slice(0, 5), slice(-5, None)):
        for xs in (slice(0, 5), slice(-5, None)):
            corners[ys, xs] = True
    yy, xx = (np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float32) + 0.5 - _SIDE / 2) / (_SIDE / 2)
    r, ang = np.hypot(xx, yy), np.arctan2(yy, xx)
    rings = [(r < 0.35), (r >= 0.35) & (r < 0.7), (r >= 0.7) & (r < 1.0), (r >= 1.0)]
    quadrants = [(ang >= a) & (ang < a + np.pi / 2) & (r >= 0.75) for a in (-np.pi, -np.pi / 2, 0, np.pi / 2)]
    masks = np.stack([np.ones_like(centre), centre, ring, corners, *rings, *quadrants], axis=2)
    x, y = xx.ravel().astype(np.float64), yy.ravel().astype(np.float64)
    xy = np.stack([np.ones(_N), x, y, x * x + y * y], axis=1)
    return masks.astype(np.uint8), xy


_MASKS, _XY = _regions()
#: Pixels per region.
_COUNTS: list[float] = _MASKS.reshape(_N, -1).sum(axis=0).astype(float).tolist()
#: OpenCV's 8-bit Lab puts neutral a and b at 128.
_NEUTRAL = 128.0
_FOREIGN_LOW, _FOREIGN_HIGH = np.array([36, 61, 0], np.uint8), np.array([139, 255, 255], np.uint8)
#: Ranks of the 2%, 50% and 98% luminance quantiles among the 784 pixels.
_QUANTILES = [int(0.02 * _N), _N // 2, int(0.98 * _N)]
_LOG_BLOCKS = math.log(64)


def _block_map() -> np.ndarray:
    """The 8 x 56 matrix M with M @ X @ M.T = the 8x8 INTER_AREA block means of a 56x56 X after the structure
    tensor's Gaussian blur (sigma 1.5, OpenCV's default border). Both are linear, separable and the same along either
    axis, and a blur keeps a constant row constant, so blurring and block-averaging an image whose row j is all ones
    gives M's column j in every column."""
    m = np.zeros((8, 56))
    for j in range(56):
        impulse = np.zeros((56, 56), np.float64)
        impulse[j, :] = 1.0
        blocks = cv2.resize(cv2.GaussianBlur(impulse, (0, 0), 1.5), (8, 8), interpolation=cv2.INTER_AREA)
        m[:, j] = blocks[:, 0]
    return m


_BLOCKS = _block_map()
_BLOCKS_T = np.ascontiguousarray(_BLOCKS.T)


def thumbnails(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """56x56 and 28x28 RGB thumbnails of a 224x224 image by exact 2x2 box averages (INTER_LINEAR at scale 1/2)."""
    t = cv2.resize(pixels, (112, 112), interpolation=cv2.INTER_LINEAR)
    t56 = cv2.resize(t, (56, 56), interpolation=cv2.INTER_LINEAR)
    return t56, cv2.resize(t56, (_SIDE, _SIDE), interpolation=cv2.INTER_LINEAR)


def _pixel_values(lab: np.ndarray, hsv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 28x28 L, a, b, S image (OpenCV's 8-bit scales), and its pixels as float64 rows of L, a, b, S followed by
    the region masks (784 x 16): the masks ride along as constant channels, so that one product of the first four
    columns with all sixteen gives every sum of products over the frame and every sum over each region. These sums
    of integers (below 2^53) are exact whatever the order of summation, so means, spreads and covariances come from
    them without cancellation."""
    lab_s = cv2.merge([lab, hsv[:, :, 1]])
    return lab_s, cv2.merge([lab_s, _MASKS]).reshape(_N, -1).astype(np.float64)


def _mean_sd(n: float, total: float, squares: float) -> tuple[float, float]:
    """Mean and (population) standard deviation of n values from their exact sum and sum of squares."""
    return total / n, math.sqrt(max(n * squares - total * total, 0.0)) / n


def _colour(products: list[list[float]], hsv: np.ndarray) -> list[float]:
    """Lab means and spreads, saturation, the L / a / b correlations, and the share of foreign hues."""
    s = [row[_REGION + _ALL] for row in products]
    (L, L_sd), (a, a_sd), (b, b_sd), (S, S_sd) = (_mean_sd(_N, s[i], products[i][i]) for i in (_L, _A, _B, _S))
    sd = [L_sd + 1e-3, a_sd + 1e-3, b_sd + 1e-3]
    corr = [(_N * products[i][j] - s[i] * s[j]) / (_N * _N * sd[i] * sd[j]) for i, j in ((_L, _A), (_L, _B), (_A, _B))]
    # greens, cyans, blues and violets with some saturation: hue 36-139 (of 180), saturation above 60
    foreign = cv2.countNonZero(cv2.inRange(hsv, _FOREIGN_LOW, _FOREIGN_HIGH)) / _N
    return [L, a - _NEUTRAL, b - _NEUTRAL, L_sd, a_sd, b_sd, S, S_sd, *corr, foreign]


def _region_mean(products: list[list[float]], value: int, region: int) -> float:
    """Mean of L, a, b or S (`value`) over a region, from its exact sum."""
    return products[value][_REGION + region] / _COUNTS[region]


def _layout(products: list[list[float]], lab_s: np.ndarray, L_mean: float) -> list[float]:
    """Centre against border ring, dark corners, and how uneven the border ring is."""
    ring_mean, ring_sd = cv2.meanStdDev(lab_s, mask=_MASKS[:, :, _RING])
    return [_region_mean(products, _L, _CENTRE) - ring_mean[_L, 0], _region_mean(products, _S, _CENTRE)
            - ring_mean[_S, 0], _region_mean(products, _L, _CORNERS) - L_mean, ring_sd[_L, 0], ring_sd[_S, 0]]


def _texture(t56: np.ndarray, L28: np.ndarray, L_std: float) -> list[float]:
    """Band energies relative to contrast, and the shape of the gradient distribution (text, charts, noise). The
    3x3 Sobel gradients and Laplacians of 8-bit images are integers, computed exactly in int16."""
    g = cv2.cvtColor(t56, cv2.COLOR_RGB2GRAY)
    gradient = cv2.merge(cv2.spatialGradient(g))  # (gx, gy): the 3x3 Sobel, OpenCV's default border
    absolute = np.abs(gradient)
    ax, ay = absolute[:, :, 0], absolute[:, :, 1]
    mag = ax + ay
    n56 = float(g.size)
    l1 = cv2.sumElems(mag)[0] + 1e-3
    spread = L_std + 1.0
    lap56 = cv2.norm(cv2.Laplacian(g, cv2.CV_16S), cv2.NORM_L1) / n56
    lap28 = cv2.norm(cv2.Laplacian(L28, cv2.CV_16S), cv2.NORM_L1) / _N
    return [math.log(lap56 / spread + 1e-3), math.log(lap28 / spread + 1e-3),
            2.0 * cv2.sumElems(np.minimum(ax, ay))[0] / l1, (n56 - cv2.countNonZero(mag)) / n56,
            cv2.norm(mag, cv2.NORM_L2SQR) * n56 / (l1 * l1)] + _orientation(gradient)


def _orientation(gradient: np.ndarray) -> list[float]:
    """Local orientation coherence from the smoothed structure tensor (near 1: strokes all one way, as in fur, grass
    or hair; skin and lesions are less ordered), and how evenly the gradient energy spreads over 8x8 blocks.

    With g = gx + i gy, g^2 = (gx^2 - gy^2) + 2i gx gy and |g^2| = gx^2 + gy^2: the blurred tensor's anisotropy is
    the blur of g^2 and its trace the blur of |g^2|, so one 2-channel blur gives the coherence, and the trace's
    blurred 8x8 block means are a fixed linear map (`_BLOCKS`) of |g^2|."""
    g = gradient.astype(np.float32).view(np.complex64)
    square = g * g
    anisotropy = float(np.abs(cv2.GaussianBlur(square.view(np.float32), (0, 0), 1.5).view(np.complex64)).sum())
    energy = _BLOCKS @ np.abs(square)[:, :, 0] @ _BLOCKS_T
    energy_sum = float(energy.sum())  # the blurred trace's sum is 49 times its 7x7 block means' sum
    blocks = energy + 1e-3 / 49
    total = energy_sum + 64e-3 / 49
    # the entropy of blocks / total: log total - sum(blocks log blocks) / total
    evenness = (math.log(total) - float(np.vdot(blocks, np.log(blocks))) / total) / _LOG_BLOCKS
    return [anisotropy / (49.0 * energy_sum + 1e-3), evenness]


def _hue(band: np.ndarray, v: np.ndarray, products: list[list[float]]) -> list[float]:
    """How much of a and b the luminance alone explains (per 16-level band of L: a grayscale picture through a
    colour ramp is explained entirely), how concentrated the Lab hue is, its mean direction, and the mean chroma.
    A band's residual sum of squares is its sum of squares less (its sum)^2 / its count: no per-pixel residuals.
    The chroma is computed, not looked up: a table of every (a, b) is 512 KB, and after an invoke has evicted it
    each of the 784 look-ups is a cache miss (on a Raspberry Pi, whose L2 is 1 MB, one from memory)."""
    count = np.maximum(np.bincount(band, minlength=16), 1)  # an empty band's sums are 0
    sa, sb = np.bincount(band, v[:, _A], 16), np.bincount(band, v[:, _B], 16)
    s = [row[_REGION + _ALL] for row in products]
    squares = products[_A][_A] + products[_B][_B]
    residual = squares - float((sa * sa + sb * sb) @ (1.0 / count))
    total = squares - (s[_A] * s[_A] + s[_B] * s[_B]) / _N
    unexplained = math.log((max(residual, 0.0) + 1.0) / (max(total, 0.0) + 1.0))
    chroma = float(np.hypot(v[:, _A] - _NEUTRAL, v[:, _B] - _NEUTRAL).sum()) + 1e-3
    sum_a, sum_b = s[_A] - _NEUTRAL * _N, s[_B] - _NEUTRAL * _N
    resultant = math.hypot(sum_a, sum_b)
    return [unexplained, resultant / chroma, sum_a / (resultant + 1e-6), sum_b / (resultant + 1e-6), chroma / _N]


def _rings(products: list[list[float]], L_mean: float, L_std: float) -> list[float]:
    """The luminance profile from centre to corners and how unevenly the outer quadrants are lit (a dermoscope's
    vignette is round), relative to the luminance's spread: sums the one matrix product already holds."""
    spread = L_std + 1.0
    rings = [(_region_mean(products, _L, i) - L_mean) / spread for i in range(_RING0, _RING0 + 4)]
    quadrants = [_region_mean(products, _L, i) for i in range(_QUADRANT0, _QUADRANT0 + 4)]
    q_mean = sum(quadrants) / 4
    return rings + [math.sqrt(sum((q - q_mean) ** 2 for q in quadrants) / 4) / spread]


def _dark(v: np.ndarray, L8: np.ndarray, L_std: float) -> list[float]:
    """Where the darker-than-median pixels sit and how spread they are (a lesion: central, compact), and the dark
    and light tails of the luminance, relative to its spread. The quantiles are order statistics of the 8-bit L,
    read off its cumulative histogram (no sort)."""
    spread = L_std + 1.0
    low, median, high = np.searchsorted(np.bincount(L8, minlength=256).cumsum(), _QUANTILES, side="right").tolist()
    w = np.maximum(median - v[:, _L], 0.0)
    w_sum, wx, wy, wr2 = ((w * w) @ _XY).tolist()
    total = w_sum + 1e-3
    cx, cy = wx / total, wy / total
    # sum w ((x - cx)^2 + (y - cy)^2) = sum w r^2 - 2 |c|^2 total + |c|^2 (total - 1e-3)
    dark_spread = math.sqrt(max(wr2 - (cx * cx + cy * cy) * (total + 1e-3), 0.0) / total)
    return [math.hypot(cx, cy), dark_spread, (median - low) / spread, (high - median) / spread]


@dataclass
class FirstStage:
    """What the first stage computed: the SCREEN_FEATURES values (`screen`), and what the second stage reuses."""

    screen: np.ndarray
    t56: np.ndarray
    L8: np.ndarray
    v: np.ndarray
    products: list[list[float]]


def first_stage(pixels: np.ndarray) -> FirstStage:
    """The SCREEN_FEATURES of one 224x224 RGB uint8 image: everything the thumbnails' one matrix product and a
    masked spread give (colour, layout, rings), about half the cost of all the statistics."""
    t56, t28 = thumbnails(pixels)
    lab = cv2.cvtColor(t28, cv2.COLOR_RGB2Lab)
    hsv = cv2.cvtColor(t28, cv2.COLOR_RGB2HSV)
    lab_s, v = _pixel_values(lab, hsv)
    products = (v[:, :_REGION].T @ v).tolist()  # [value][value]: sums of products; [value][_REGION + region]: sums
    colour = _colour(products, hsv)
    L_mean, L_std = colour[0], colour[3]
    screen = colour + _layout(products, lab_s, L_mean) + _rings(products, L_mean, L_std)
    return FirstStage(np.array(screen, dtype=np.float64), t56, lab[:, :, 0].ravel(), v, products)


def complete(first: FirstStage) -> np.ndarray:
    """All FEATURE_NAMES values, from the first stage and the second (texture, hue, dark pixels)."""
    s = first.screen.tolist()
    L_std, L8 = s[3], first.L8
    texture = _texture(first.t56, L8.reshape(_SIDE, _SIDE), L_std)
    hue = _hue(np.right_shift(L8, 4), first.v, first.products)
    return np.array(s[:_N_COLOUR_LAYOUT] + texture + hue + s[_N_COLOUR_LAYOUT:] + _dark(first.v, L8, L_std),
                    dtype=np.float64)


def frame_features(pixels: np.ndarray) -> np.ndarray:
    """The FEATURE_NAMES values of one 224x224 RGB uint8 image, as float64."""
    return complete(first_stage(pixels))
