"""The fake-quantised twin used by quantisation-aware fine-tuning: exact in float, int8-like when quantising, and its
weights go back into the float architecture unchanged (so the converter makes the same kind of int8 model)."""

import numpy as np
import pytest

from edge_sca.errors import ModelError


@pytest.fixture(scope="module")
def model_c():
    """A small model of CancerNet-SCa-C's own blocks (stem conv, PEPE block, attention condenser, head): every
    layer type the twin knows, at a size that builds in seconds; BN statistics made non-trivial so folding is
    really tested."""
    import keras

    from edge_sca.contract import INPUT_NAME, OUTPUT_NAME
    from quantize.architectures import attention_condenser, conv, dwconv, pepe_block

    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 3), name=INPUT_NAME)
    x = conv(inp, 16, kernel=3, stride=2, name="stem")
    x = dwconv(x, name="stem_dw")
    x = pepe_block(x, 24, 2, name="b1")
    x = attention_condenser(x, name="b1_ac")
    x = conv(x, 32, name="head")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name=OUTPUT_NAME)(x))
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape), rng.normal(0, 0.1, m.shape),
                               rng.uniform(0.5, 2.0, v.shape)])
    return model


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(4).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def _margin(logits):
    return logits[:, 1] - logits[:, 0]


def test_twin_without_quantisation_is_the_float_model(model_c, pixels):
    from edge_sca.preprocess import to_float
    from quantize.fake_quant import activation_ranges, build_twin, float_logits

    ranges = activation_ranges(model_c, pixels)
    exact = float_logits(model_c, pixels)
    twin = build_twin(model_c, ranges, quantize=False)
    assert np.abs(np.asarray(twin(to_float(pixels))) - exact).max() < 1e-4
    quantised = np.asarray(build_twin(model_c, ranges, quantize=True)(to_float(pixels)))
    err = np.abs(_margin(quantised) - _margin(exact))
    assert 0 < err.max() < 0.5 * np.abs(_margin(exact)).max() + 0.5  # int8-sized error, not garbage
    assert all(lo <= 0 <= hi for lo, hi in ranges.values())


def test_write_back_of_an_untrained_twin_reproduces_the_weights(model_c):
    from quantize.fake_quant import build_twin, write_back

    ranges = dict.fromkeys([layer.name for layer in model_c.layers] + ["probs"], (0.0, 1.0))
    copy = write_back(build_twin(model_c, ranges), model_c)
    for a, b in zip(model_c.get_weights(), copy.get_weights(), strict=False):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_weights_are_quantised_per_channel_to_int8_levels(model_c):
    from quantize.fake_quant import _fake_quant_weights

    w = np.random.default_rng(5).normal(0, 1, (1, 1, 8, 4)).astype(np.float32)
    q = np.asarray(_fake_quant_weights(w))
    scale = np.abs(w).reshape(-1, 4).max(axis=0) / 127
    levels = q.reshape(-1, 4) / scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
    assert np.abs(levels).max() <= 127 + 1e-3


def test_unsupported_architectures_are_refused():
    import keras

    from quantize.fake_quant import check_supported

    inp = keras.Input((8, 8, 3))
    x = keras.layers.AveragePooling2D(2)(inp)
    out = keras.layers.Dense(2, activation="softmax", name="probs")(keras.layers.Flatten()(x))
    with pytest.raises(ModelError, match="AveragePooling2D.*--recipe ptq"):
        check_supported(keras.Model(inp, out))
