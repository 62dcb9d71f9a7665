"""Colour constancy (edge_sca/colour.py). A model trained with it: tests/test_train.py (one run serves both)."""

import numpy as np
import pytest

from edge_sca.colour import SHADES_OF_GRAY_P, colour_constancy, shades_of_gray
from edge_sca.preprocess import load_preprocessed


def _illuminant(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    return np.mean(x ** SHADES_OF_GRAY_P, axis=(0, 1)) ** (1.0 / SHADES_OF_GRAY_P)


@pytest.fixture(scope="module")
def lesion(isic_dir):
    from edge_sca.isic import load_isic_folder

    return load_preprocessed(load_isic_folder(isic_dir).subset("test")[0].path)


def test_a_colour_cast_is_removed(lesion):
    cast = np.clip(lesion.astype(np.float32) * (0.75, 0.95, 1.15), 0, 255).astype(np.uint8)  # a bluish light
    before, after = _illuminant(cast), _illuminant(shades_of_gray(cast))
    assert before.max() / before.min() > 1.15
    assert after.max() / after.min() < 1.03  # neutral within rounding and clipping
    # the same lesion under two lights comes out nearly the same
    other = np.clip(lesion.astype(np.float32) * (1.1, 0.9, 0.8), 0, 255).astype(np.uint8)
    gap = np.abs(shades_of_gray(cast).astype(int) - shades_of_gray(other).astype(int)).mean()
    assert gap < 0.25 * np.abs(cast.astype(int) - other.astype(int)).mean()


def test_a_neutral_image_is_left_alone_and_a_batch_is_each_image():
    grey = np.full((32, 32, 3), 120, np.uint8)
    grey[8:16] = 60
    assert np.abs(shades_of_gray(grey).astype(int) - grey).max() <= 1
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    assert np.array_equal(shades_of_gray(batch), np.stack([shades_of_gray(b) for b in batch]))
    black = np.zeros((8, 8, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)


def test_bad_input_and_unknown_methods_are_named():
    with pytest.raises(ValueError, match="uint8 RGB"):
        shades_of_gray(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        shades_of_gray(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="unknown; use one of none, shades_of_gray"):
        colour_constancy("retinex")
    x = np.zeros((4, 4, 3), np.uint8)
    assert colour_constancy("none")(x) is x


def test_batches_are_finished_after_augmentation():
    from quantize.augment import balanced_batches

    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(120, 30, (6, 32, 32, 3)) * (0.7, 1.0, 1.3), 0, 255).astype(np.uint8)
    y = np.array([0, 1] * 3)
    images, _ = next(balanced_batches(x, y, 4, seed=0, finish=shades_of_gray))
    for img in (images * 255.0 + 0.5).astype(np.uint8):
        ill = _illuminant(img)
        assert ill.max() / ill.min() < 1.05


def test_a_stack_is_corrected_in_chunks_as_a_whole():
    from edge_sca.colour import correct_all

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(correct_all("shades_of_gray", x, chunk=2), shades_of_gray(x))
    assert correct_all("none", x) is x
    assert correct_all("shades_of_gray", x[:0]).shape == (0, 16, 16, 3)
