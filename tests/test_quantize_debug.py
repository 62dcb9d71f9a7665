"""Tensor names, per-layer diagnosis and keep-float on a small Keras model (seconds, not minutes)."""

import keras
import numpy as np
import pytest

from quantize.convert import convert, tensor_types_and_ops


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="input_1")
    x = keras.layers.Conv2D(8, 3, activation="relu6", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu6", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="probs")(x)
    calib = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    calib[0, 0, 0], calib[0, 0, 1] = 0, 255  # span the full pixel range, as real calibration sets do
    return keras.Model(inputs, outputs), calib


def test_random_models_carry_the_checkpoint_tensor_names(random_models, io_names):
    from edge_sca.interpreter import interpreter_class

    for variant in ("float32", "int8"):
        data = random_models[variant].read_bytes()
        assert io_names(data) == ("input_1", "probs")
        interp = interpreter_class()[0](model_content=data)
        assert interp.get_signature_list() == {"serving_default": {"inputs": ["input_1"], "outputs": ["probs"]}}


def test_layer_errors_rank_layers_and_keep_float_leaves_them_in_float(small, io_names):
    from quantize.convert import check_int8_input
    from quantize.debug import layer_errors, worst_layers

    model, calib = small
    rows = layer_errors(model, calib, n_images=4)
    assert len(rows) >= 3 and {"tensor_name", "op_name", "rmse_over_scale"} <= set(rows[0])
    scores = [r["rmse_over_scale"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    keep = worst_layers(rows, 1)
    full = convert(model, "int8", calib)
    mixed = convert(model, "int8", calib, keep_float=keep)
    assert "float32" not in tensor_types_and_ops(full)[0]
    dtypes, ops = tensor_types_and_ops(mixed)
    assert "float32" in dtypes and "DEQUANTIZE" in ops  # the kept layer runs in float
    assert io_names(mixed) == ("input_1", "probs")
    check_int8_input(mixed)  # the device still feeds pixel - 128


def test_unknown_variant_and_missing_calibration_are_refused(small):
    model, _ = small
    with pytest.raises(ValueError, match="unknown variant"):
        convert(model, "int4")
    with pytest.raises(ValueError, match="calibration"):
        convert(model, "int8", calib_pixels=np.zeros((0, 32, 32, 3), np.uint8))


def test_keep_float_with_an_unknown_layer_says_so(small):
    from edge_sca.errors import ModelError

    model, calib = small
    with pytest.raises(ModelError, match="python -m quantize debug"):
        convert(model, "int8", calib, keep_float=["no/such/layer"])
