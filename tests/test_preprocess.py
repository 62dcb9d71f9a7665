"""The one preprocessing function: RGB order, squash resize, the int8 contract, corrupt input."""

import cv2
import numpy as np
import pytest

from edge_sca.errors import ImageError
from edge_sca.preprocess import decode_image, load_preprocessed, preprocess, read_image, to_float, to_int8


def test_decode_gives_rgb(tmp_path):
    bgr = np.zeros((40, 60, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    rgb = read_image(path)
    assert rgb.shape == (40, 60, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_squash_resize_keeps_whole_image():
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, :100] = 200  # left third bright: after a squash (no crop) the left third is still bright
    out = preprocess(img)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[:, :70].mean() > 190 and out[:, 80:].mean() < 10


def test_int8_is_pixel_minus_128_exactly():
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    q = to_int8(pixels)
    assert q.dtype == np.int8 and q.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(q[0].astype(int), pixels.astype(int) - 128)
    # and dequantised with scale 1/255, zero point -128 it equals the float model's input
    np.testing.assert_allclose((q.astype(np.float32) + 128) / 255.0, to_float(pixels), atol=1e-7)


@pytest.mark.parametrize("data", [b"", b"not a jpeg at all", b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_corrupt_bytes_raise_a_clear_error(data):
    with pytest.raises(ImageError, match="x.jpg"):
        decode_image(data, "x.jpg")


def test_truncated_real_jpeg(tmp_path, isic_dir):
    data = (isic_dir / "ISIC_0000000.jpg").read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[:200])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_preprocessed(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "nope.jpg")


def test_rejects_non_rgb_arrays():
    with pytest.raises(ImageError, match="RGB uint8"):
        preprocess(np.zeros((10, 10), np.uint8))
