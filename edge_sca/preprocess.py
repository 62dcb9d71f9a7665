"""The one preprocessing function: training, calibration, evaluation and the device all call it.

Decode -> RGB -> squash-resize to 224x224 (no crop, like the original CancerNet-SCa code) -> uint8 HWC.
The float model takes pixel / 255; the int8 model takes pixel - 128 (scale 1/255, zero point -128),
so the device does no float maths before inference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sca.config import INPUT_SIZE
from edge_sca.errors import ImageError

#: Bumped whenever the bytes this module produces change (invalidates caches).
PREPROCESS_VERSION = 1

cv2.setNumThreads(1)


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode JPEG/PNG bytes to an RGB uint8 HxWx3 array; raise ImageError naming `source` if corrupt."""
    if not data:
        raise ImageError(f"{source}: the file is empty; re-download or remove it")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] < 8 or bgr.shape[1] < 8:
        raise ImageError(f"{source}: not a decodable image (corrupt or truncated JPEG/PNG?); re-download or remove it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror}); check the path and permissions") from exc
    return decode_image(data, str(path))


def preprocess(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Squash-resize an RGB uint8 image to size x size x 3 uint8 (area filter when shrinking)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"preprocess expects an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def load_preprocessed(path: str | Path, size: int = INPUT_SIZE) -> np.ndarray:
    """Read and preprocess one image file: what the camera path and the data cache both produce."""
    return preprocess(read_image(path), size)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the float model's input, pixel / 255, with a batch axis added if missing."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    return x[None] if x.ndim == 3 else x


def to_int8(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> the int8 model's input, pixel - 128, by flipping the top bit (no float maths)."""
    x = (pixels ^ np.uint8(0x80)).view(np.int8)
    return x[None] if x.ndim == 3 else x
