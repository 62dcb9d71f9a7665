"""Colour constancy (edge_sca/colour.py) and a model trained with it: recorded, applied when scored, not converted."""

import json

import numpy as np
import pytest

from edge_sca.colour import SHADES_OF_GRAY_P, colour_constancy, shades_of_gray
from edge_sca.errors import ModelError
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


def test_a_model_trained_with_it_records_it_is_scored_with_it_and_is_not_converted(tiny_isic, tmp_path):
    from quantize.cli import main
    from quantize.evaluate import load_scorer, load_source_model

    args = ["train", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path), "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "4", "--seed", "1", "-q", "--colour-constancy", "shades_of_gray"]
    assert main(args) == 0
    model = tmp_path / "cancernet_sca_b.keras"
    assert json.loads(model.with_suffix(".json").read_text())["config"]["colour_constancy"] == "shades_of_gray"
    with pytest.raises(ModelError, match="colour constancy 'shades_of_gray'.*not a model to convert"):
        load_source_model(model)
    # scoring applies it: the score of an image equals the plain model's score of the corrected image
    from edge_sca.isic import load_isic_folder
    from quantize.train import predict_keras

    x = np.stack([load_preprocessed(r.path) for r in load_isic_folder(tiny_isic).subset("val")[:2]])
    scorer = load_scorer(model)
    plain = predict_keras(__import__("keras").models.load_model(model, compile=False), shades_of_gray(x))
    assert np.allclose(scorer.p_malignant(x), plain, atol=1e-6)
    weights = load_scorer(tmp_path / "checkpoints" / "cancernet_sca_b" / "best.weights.h5")
    assert np.allclose(weights.p_malignant(x), plain, atol=1e-5)


def test_a_stack_is_corrected_in_chunks_as_a_whole():
    from edge_sca.colour import correct_all

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(correct_all("shades_of_gray", x, chunk=2), shades_of_gray(x))
    assert correct_all("none", x) is x
    assert correct_all("shades_of_gray", x[:0]).shape == (0, 16, 16, 3)
