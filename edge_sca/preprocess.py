"""The one preprocessing function: training, calibration, evaluation and the device all call it.

Decode (size checked from the header first; huge images refused, large ones decoded reduced) -> RGB -> squash-resize
to 224x224 (no crop, like the original CancerNet-SCa code) -> uint8 HWC.
The float model takes pixel / 255; the int8 model takes pixel - 128 (scale 1/255, zero point -128),
so the device does no float maths before inference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sca.contract import INPUT_SIZE
from edge_sca.contract import PREPROCESS_VERSION as PREPROCESS_VERSION  # where it was; kept for importers
from edge_sca.errors import ImageError, ImageTooLargeError
from edge_sca.imageheader import image_size

#: Images whose header gives more pixels than this are refused before decoding (a 50 MP RGB image is 150 MB).
MAX_IMAGE_PIXELS = 50_000_000
#: Images with more pixels than this are decoded reduced (by 2, 4 or 8) straight to a smaller size: OpenCV's decoders
#: briefly hold two copies, so full decoding stays for frames up to a 16 MP camera's.
MAX_FULL_DECODE_PIXELS = 16_000_000
#: Files larger than this are refused before reading (no camera frame is this large).
MAX_IMAGE_BYTES = 100 * 1024 * 1024
#: How much of a file is read to find its size before decoding.
HEADER_BYTES = 1 << 20

cv2.setNumThreads(1)


def check_image_size(data: bytes, source: str = "<bytes>") -> tuple[int, int]:
    """(width, height) from the header; ImageTooLargeError past MAX_IMAGE_PIXELS, before anything is decoded."""
    w, h = image_size(data, source)
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(f"{source}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
                                 f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit (decoding it would take "
                                 f"{w * h * 3 / 2**20:.0f} MB); downscale it first")
    return w, h


def decode_flag(width: int, height: int) -> int:
    """IMREAD_COLOR, or the smallest IMREAD_REDUCED_COLOR_n that keeps the decoded image within MAX_FULL_DECODE_PIXELS.

    OpenCV's decoders briefly hold about two copies of what they decode, so a 49 MP image would cost 280 MB; decoded
    at half size it costs 180 MB (PNG) or 70 MB (JPEG). The model sees 224x224 either way.
    """
    for factor, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4)):
        if -(-width // factor) * -(-height // factor) <= MAX_FULL_DECODE_PIXELS:
            return flag
    return cv2.IMREAD_REDUCED_COLOR_8


def _to_rgb(bgr: np.ndarray | None, source: str) -> np.ndarray:
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] < 8 or bgr.shape[1] < 8:
        raise ImageError(f"{source}: not a decodable image (corrupt or truncated JPEG/PNG?); re-download or remove it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second copy of a large image


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode image bytes to an RGB uint8 HxWx3 array; ImageError naming `source` if corrupt or too large.

    The header's size is checked first: over MAX_IMAGE_PIXELS is refused, over MAX_FULL_DECODE_PIXELS decoded reduced.
    """
    if not data:
        raise ImageError(f"{source}: the file is empty; re-download or remove it")
    w, h = check_image_size(data, source)
    return _to_rgb(cv2.imdecode(np.frombuffer(data, dtype=np.uint8), decode_flag(w, h)), source)


def _read_header(path: Path, size: int) -> bytes:
    """The file's first megabyte, or all of it when its header reaches further (a JPEG with a large EXIF block)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        if size <= HEADER_BYTES:
            return head
        try:
            image_size(head, str(path))
            return head
        except ImageError:
            return head + f.read()


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8, checking its header first; OpenCV reads the file itself (never whole in
    memory beside the decoded image). Files over MAX_IMAGE_BYTES are refused unread."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageTooLargeError(f"{path}: {size / 2**20:.0f} MB, over the {MAX_IMAGE_BYTES / 2**20:.0f} MB "
                                     "limit for one image; downscale or recompress it")
        if size == 0:
            raise ImageError(f"{path}: the file is empty; re-download or remove it")
        w, h = check_image_size(_read_header(path, size), str(path))
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror}); check the path and permissions") from exc
    return _to_rgb(cv2.imread(str(path), decode_flag(w, h)), str(path))


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
