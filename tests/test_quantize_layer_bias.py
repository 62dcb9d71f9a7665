"""Per-layer bias correction: only int32 biases change, and each layer's mean int8 error shrinks."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_pair():
    import keras

    from quantize.architectures import build_model
    from quantize.convert import convert

    keras.utils.set_random_seed(3)
    model = build_model("b", 64)
    probs = model.get_layer("probs")
    probs.set_weights([probs.get_weights()[0], np.array([0.1, -0.1], np.float32)])  # a zero bias is left out
    x = np.random.default_rng(3).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    return convert(model, "int8", x), convert(model, "float32"), x


def test_only_int32_biases_change_and_the_mean_layer_error_falls(tiny_pair):
    from tensorflow.lite.tools import flatbuffer_utils

    from quantize.layer_bias import _LINEAR_RANGE, _channel_shift, _interpreter, _layers, correct

    int8, float32, x = tiny_pair
    fixed, summary = correct(int8, float32, x)
    assert summary["layers"] > 40 and summary["images"] == len(x)
    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8))
    new = flatbuffer_utils.convert_bytearray_to_object(bytearray(fixed))
    biases = {b for _, _, _, b, _ in _layers(obj)}
    changed = {i for i, (t0, t1) in enumerate(zip(obj.subgraphs[0].tensors, new.subgraphs[0].tensors, strict=True))
               if bytes(bytearray(obj.buffers[t0.buffer].data if obj.buffers[t0.buffer].data is not None else []))
               != bytes(bytearray(new.buffers[t1.buffer].data if new.buffers[t1.buffer].data is not None else []))}
    assert changed and changed <= biases  # weights, scales and ops untouched

    f = _interpreter(float32)
    names = {d["name"]: d["index"] for d in f.get_tensor_details()}
    graph = obj.subgraphs[0]

    def mean_error(content: bytes) -> float:
        errors = []
        for k, _, _, _, out in _layers(obj):
            q = graph.tensors[out].quantization
            act = getattr(graph.operators[k].builtinOptions, "fusedActivationFunction", 0)
            shift, _ = _channel_shift(_interpreter(content), f, out, names[graph.tensors[out].name.decode()], x,
                                      _LINEAR_RANGE[act], float(q.scale[0]), int(q.zeroPoint[0]))
            errors.append(np.abs(shift).mean() / float(q.scale[0]))
        return float(np.mean(errors))

    assert mean_error(fixed) < 0.5 * mean_error(int8)  # in int8 steps, over every corrected layer


def test_refuses_models_with_nothing_in_common(tiny_pair):
    from quantize.layer_bias import correct

    int8, _, x = tiny_pair
    with pytest.raises(ValueError, match="no layer shared"):
        correct(int8, int8.replace(b"cancernet", b"xxxxxxxxx"), x)


def test_feed_quantizes_with_the_int8_inputs_own_range(tiny_pair, fed_input):
    pixels, fed = fed_input(tiny_pair[0])
    assert fed.dtype == np.int8 and np.array_equal(fed.astype(int), pixels.astype(int) - 128)
