"""Image size limits: headers read without decoding, huge images refused before they cost memory."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_sca.cameras import ReplayCamera
from edge_sca.errors import ImageError, ImageTooLargeError
from edge_sca.imageheader import image_size
from edge_sca.preprocess import MAX_IMAGE_PIXELS, decode_flag, decode_image
from quantize.big_images import peak_memory, write_black_png

needs_proc = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory needs Linux /proc")


def _peak(path: Path) -> dict:
    return peak_memory(path)


def test_small_png_writer_makes_a_valid_png(tmp_path):
    write_black_png(tmp_path / "x.png", 300, 131)
    img = cv2.imread(str(tmp_path / "x.png"))
    assert img.shape == (131, 300, 3) and img.max() == 0


@needs_proc
def test_20000_square_png_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    write_black_png(path, 20000, 20000)
    assert path.stat().st_size < 3_000_000  # small on disk, 1.2 GB decoded
    r = _peak(path)
    assert "20000x20000 is 400 megapixels, over the 50 MP limit" in r["result"]
    assert r["peak_increase_mb"] < 30, r  # only the file was read


@needs_proc
@pytest.mark.slow
def test_largest_allowed_image_costs_under_300_mb(tmp_path):
    path = tmp_path / "big.png"
    write_black_png(path, 7000, 7000)  # 49 MP, just under the limit: decoded at half size
    r = _peak(path)
    assert r["result"] == [224, 224, 3]
    assert r["peak_increase_mb"] < 300, r


def test_reduced_decoding_above_16_mp():
    assert decode_flag(4056, 3040) == cv2.IMREAD_COLOR  # a 12 MP Pi HQ camera frame: full
    assert decode_flag(7000, 7000) == cv2.IMREAD_REDUCED_COLOR_2


def test_header_sizes_of_every_format():
    img = np.zeros((37, 91, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm"):
        data = cv2.imencode(ext, img)[1].tobytes()
        assert image_size(data, ext) == (91, 37), ext
    progressive = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert image_size(progressive) == (91, 37)


def test_huge_jpeg_header_is_refused():
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)  # claims 30000x30000
    with pytest.raises(ImageTooLargeError, match="900 megapixels"):
        decode_image(bytes(data), "claims.jpg")


@pytest.mark.parametrize("data, match", [(b"GIF89a" + b"\0" * 20, "unknown header"),
                                         (b"\x89PNG\r\n\x1a\n\0\0", "truncated or corrupt")])
def test_unknown_or_cut_headers_are_clear_errors(data, match):
    with pytest.raises(ImageError, match=match):
        decode_image(data, "x.img")


def test_replay_counts_too_large_images_and_goes_on(tmp_path):
    write_black_png(tmp_path / "a_huge.png", 10000, 8000)
    cv2.imwrite(str(tmp_path / "b_ok.png"), np.full((64, 64, 3), 128, np.uint8))
    cam = ReplayCamera(tmp_path)
    assert cam.read().source_id == "b_ok" and cam.skipped == {"too large": 1}
    assert MAX_IMAGE_PIXELS < 10000 * 8000
