"""Bias correction: the classifier-bias edit shifts the logit exactly, and the pipeline records what it did."""

import numpy as np
import pytest

from quantize.bias_correction import logit_margin, measure_shift, with_logit_shift


def test_measure_shift_is_the_mean_logit_difference():
    p_float = np.array([0.1, 0.5, 0.9])
    p_int8 = 1 / (1 + np.exp(-(logit_margin(p_float) + 0.2)))
    assert measure_shift(p_float, p_int8) == pytest.approx(0.2)
    assert np.isfinite(logit_margin(np.array([0.0, 1.0]))).all()  # int8 can output exactly 0 or 1


def test_measure_shift_needs_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        measure_shift(np.array([0.1, 0.2]), np.array([0.1]))


def test_with_logit_shift_moves_only_the_malignant_logit():
    from edge_sca.preprocess import to_float
    from quantize.architectures import build_model

    model = build_model("b", 64)
    x = to_float(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    before = model.predict_on_batch(x)[:, 1]
    after = with_logit_shift(model, 0.7).predict_on_batch(x)[:, 1]
    np.testing.assert_allclose(logit_margin(after), logit_margin(before) - 0.7, atol=1e-4)
    np.testing.assert_allclose(model.predict_on_batch(x)[:, 1], before)  # the original model is untouched


def test_with_logit_shift_needs_a_two_class_probs_layer():
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="probs")(inputs))
    with pytest.raises(ValueError, match="2 classes"):
        with_logit_shift(model, 0.1)
