"""The focus measure: how much fine detail a frame has relative to its coarser detail, in the worst direction.

Measured on the frame as captured (not on the 224x224 model input, where blur at a camera's resolution is mostly
averaged away): a FOCUS_CROP-pixel centre crop, after shrinking frames whose long side exceeds FOCUS_MAX_SIDE.
Fine energy is what a 1-pixel Gaussian removes, along each of four directions (motion blur removes it along one);
coarse energy is the next octave down. Their ratio hardly depends on the lesion's contrast, so one threshold serves
pale and dark lesions. `python -m quantize input-checks fit` chooses the threshold (docs/input-checks.md).
"""

from __future__ import annotations

import cv2
import numpy as np

#: The focus measure looks at a FOCUS_CROP x FOCUS_CROP centre crop of the frame, after shrinking frames whose long
#: side exceeds FOCUS_MAX_SIDE to it (so a 12 MP frame costs as little as a small one). Part of the measure's
#: definition: models/input_checks.json's focus threshold was fitted with these.
FOCUS_CROP = 224
FOCUS_MAX_SIDE = 448
_K = cv2.getGaussianKernel(7, 1.0).astype(np.float32)
_ONE = np.ones((1, 1), np.float32)
_DIAG = np.diag(_K.ravel()) / float(_K.sum())
_ANTI = np.ascontiguousarray(_DIAG[:, ::-1])
#: Added to the coarse energy (grey levels squared): keeps a flat or heavily blurred frame's ratio near zero.
_FLOOR = 1.0


def focus_view(rgb: np.ndarray, crop: int = FOCUS_CROP, max_side: int = FOCUS_MAX_SIDE) -> np.ndarray:
    """The grey centre crop the measure looks at: only the pixels needed are converted and shrunk."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    side = round(crop / scale)
    ch, cw = min(h, side), min(w, side)
    y, x = (h - ch) // 2, (w - cw) // 2
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y:y + ch, x:x + cw]), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(cw * scale)), max(1, round(ch * scale))), interpolation=cv2.INTER_AREA)
    return gray


def sharpness(rgb: np.ndarray) -> float:
    """Fine-over-coarse energy of the frame's centre, the smallest over four directions (higher is sharper)."""
    g = focus_view(rgb).astype(np.float32)
    fine = min(float(cv2.norm(g, blurred, cv2.NORM_L2SQR)) for blurred in (
        cv2.sepFilter2D(g, -1, _K, _ONE), cv2.sepFilter2D(g, -1, _ONE, _K),
        cv2.filter2D(g, -1, _DIAG), cv2.filter2D(g, -1, _ANTI)))
    half = cv2.pyrDown(cv2.GaussianBlur(g, (7, 7), 1.0))
    coarse = float(cv2.norm(half, cv2.GaussianBlur(half, (7, 7), 1.0), cv2.NORM_L2SQR)) / half.size
    return fine / g.size / (coarse + _FLOOR)
