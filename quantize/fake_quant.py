"""A fake-quantised twin of a float CancerNet-SCa model: the int8 arithmetic TFLite will run, simulated in float.

Why: quantisation-aware fine-tuning needs a model whose forward pass makes the errors the int8 .tflite makes,
with gradients that pass through the rounding (straight-through estimator). tfmot does not support Keras 3, so
the twin is built here, layer by layer, from the same rules the TFLite converter applies:

- BatchNormalization is folded into the convolution before it (inference statistics, as the converter does), and
  the folded kernel is quantised per output channel, symmetric, to [-127, 127] (scale = max |w| / 127).
- Activations are quantised per tensor, asymmetric int8 (`fake_quant_with_min_max_vars`), at the tensors the
  int8 graph materialises: after a conv (+ folded BN) and its fused ReLU/ReLU6, after an add (and its fused ReLU),
  after multiply, mean, resize and the classifier's matmul. The ranges are the float model's min / max on the
  calibration images, as the converter's calibration measures them. Sigmoid's output is fixed at scale 1/256.
- Max-pooling keeps its input's quantisation (TFLite requires it), so it adds no error and is not simulated.

The twin owns copies of the weights it trains (kernels, biases, BN gamma / beta; BN statistics stay frozen), and
`write_back` puts them into a copy of the float architecture, which the ordinary converter then turns into the
same fully-integer int8 model as post-training quantisation: same ops, same I/O, only the weights differ.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_sca.contract import INPUT_NAME, OUTPUT_NAME
from edge_sca.errors import ModelError
from edge_sca.preprocess import to_float

log = logging.getLogger(__name__)

#: Output range of TFLite's int8 LOGISTIC (scale 1/256, zero point -128).
SIGMOID_RANGE = (0.0, 255.0 / 256.0)
#: Layer types the twin knows how to simulate (CancerNet-SCa-B and -C use exactly these).
SUPPORTED = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "MaxPooling2D",
             "Activation", "Resizing", "Multiply", "GlobalAveragePooling2D", "Dense"}
_FUSED_ACTIVATIONS = ("ReLU",)


def _kind(layer) -> str:
    return type(layer).__name__


def check_supported(model) -> None:
    """Refuse, naming the layers, an architecture the twin cannot simulate faithfully."""
    bad = sorted({_kind(layer) for layer in model.layers} - SUPPORTED)
    if bad:
        raise ModelError(f"quantisation-aware fine-tuning supports CancerNet-SCa's layers only; {model.name} has "
                         f"{', '.join(bad)}. Use the post-training recipe (--recipe ptq) for this model")
    for layer in model.layers:
        if _kind(layer) == "Activation" and layer.get_config()["activation"] not in ("sigmoid", "linear"):
            raise ModelError(f"{layer.name}: activation {layer.get_config()['activation']!r} is not simulated; "
                             "use --recipe ptq for this model")


def consumers(model) -> dict[str, list]:
    """Layer name -> the layers that take its output."""
    producer = {id(layer.output): layer.name for layer in model.layers}
    out: dict[str, list] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        if _kind(layer) == "InputLayer":
            continue
        for t in _as_list(layer.input):
            out[producer[id(t)]].append(layer)
    return out


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _only(consumer_list: list, kind: str):
    return consumer_list[0] if len(consumer_list) == 1 and _kind(consumer_list[0]) == kind else None


def boundary_layers(model) -> list[str]:
    """Names of the layers whose output is an int8 tensor of its own in the converted graph (see module doc)."""
    cons = consumers(model)
    names = []
    for layer in model.layers:
        kind, after = _kind(layer), cons[layer.name]
        if kind in ("Conv2D", "DepthwiseConv2D"):
            if _only(after, "BatchNormalization") is None and _only(after, "ReLU") is None:
                names.append(layer.name)
        elif kind in ("BatchNormalization", "Add"):
            if _only(after, "ReLU") is None:
                names.append(layer.name)
        elif kind in ("ReLU", "Multiply", "GlobalAveragePooling2D", "Resizing"):
            names.append(layer.name)
    return names


def activation_ranges(model, pixels: np.ndarray, batch: int = 16) -> dict[str, tuple[float, float]]:
    """Min / max of every boundary tensor (and of the classifier's logits) over `pixels`, 0 always included.

    This is the statistic the converter's calibration collects, so the twin quantises where TFLite will.
    """
    import keras

    names = boundary_layers(model)
    dense = model.get_layer(OUTPUT_NAME)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names] + [dense.input])
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    lo = dict.fromkeys(names + [OUTPUT_NAME], 0.0)
    hi = dict(lo)
    for i in range(0, len(pixels), batch):
        outs = probe.predict_on_batch(to_float(np.asarray(pixels[i:i + batch])))
        outs = list(outs[:-1]) + [np.asarray(outs[-1]) @ kernel + bias]
        for n, o in zip(names + [OUTPUT_NAME], outs, strict=False):
            lo[n], hi[n] = min(lo[n], float(np.min(o))), max(hi[n], float(np.max(o)))
    return {n: (lo[n], hi[n]) for n in lo}


def converter_ranges(tflite_bytes: bytes, model,
                     fallback: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The activation ranges the converter actually chose, read from an int8 .tflite of `model`.

    Calibration statistics are not the whole story: the converter gives every ReLU6 output [0, 6] and widens a
    residual branch's range to its sum's, so the twin copies the grids of a real conversion. Tensors are matched
    by the Keras layer name the converter puts first in each op's output name; `fallback` (measured ranges)
    covers any it cannot match.
    """
    import re

    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=tflite_bytes)
    outputs = {op["outputs"][0] for op in interp._get_ops_details()}  # noqa: SLF001 - the only op listing
    found: dict[str, tuple[float, float]] = {}
    for t in interp.get_tensor_details():
        match = re.match(r"[^/;]+/(.+?)(?:_\d+)?/", t["name"].split(";")[0])
        if t["index"] not in outputs or not match or match.group(1) not in fallback:
            continue
        scale, zero = t["quantization"]
        if scale:
            found.setdefault(match.group(1), ((-128 - zero) * scale, (127 - zero) * scale))
    missing = sorted(set(fallback) - set(found))
    if missing:
        log.info("twin: %d tensors not found in the converted model, using calibration min/max: %s", len(missing),
                 ", ".join(missing[:5]))
    return {name: found.get(name, rng) for name, rng in fallback.items()}


def _fake_quant_weights(w, channel_axis_last: bool = True):
    """Per-output-channel symmetric int8 (narrow range), straight-through gradient."""
    import tensorflow as tf

    flat = tf.reshape(w, [-1, tf.shape(w)[-1]]) if channel_axis_last else w
    amax = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -amax, amax, num_bits=8, narrow_range=True)


def _fake_quant_act(x, rng: tuple[float, float] | None):
    import tensorflow as tf

    if rng is None:
        return x
    return tf.quantization.fake_quant_with_min_max_vars(x, rng[0], rng[1], num_bits=8, narrow_range=False)


def _layers_module():
    import keras

    class QuantConv(keras.layers.Layer):
        """Conv2D / DepthwiseConv2D (+ folded BatchNormalization) with int8 per-channel weights."""

        def __init__(self, conv, bn=None, out_range=None, quantize: bool = True, **kwargs):
            super().__init__(name=f"q_{conv.name}", **kwargs)
            self.conv_name, self.bn_name = conv.name, bn.name if bn is not None else None
            self.depthwise = _kind(conv) == "DepthwiseConv2D"
            self.strides, self.padding = conv.strides, conv.padding.upper()
            self.out_range, self.quantize = out_range, quantize
            k = conv.get_weights()
            self.kernel = self.add_weight(shape=k[0].shape, initializer=keras.initializers.Constant(k[0]),
                                          name="kernel")
            self.bias = (self.add_weight(shape=k[1].shape, initializer=keras.initializers.Constant(k[1]), name="bias")
                         if len(k) > 1 else None)
            self.bn = None
            if bn is not None:
                gamma, beta, mean, var = bn.get_weights()
                self.gamma = self.add_weight(shape=gamma.shape, initializer=keras.initializers.Constant(gamma),
                                             name="gamma")
                self.beta = self.add_weight(shape=beta.shape, initializer=keras.initializers.Constant(beta),
                                            name="beta")
                self.bn = (mean.astype(np.float32), (1.0 / np.sqrt(var + bn.epsilon)).astype(np.float32))

        def folded(self):
            """Kernel and bias as the converter folds them (BN with its inference statistics)."""
            import tensorflow as tf

            kernel, bias = self.kernel, self.bias
            if self.bn is None:
                return kernel, bias if bias is not None else 0.0
            mean, inv_std = self.bn
            factor = self.gamma * inv_std
            kernel = kernel * tf.reshape(factor, [1, 1, -1, 1]) if self.depthwise else kernel * factor
            folded_bias = self.beta - factor * mean
            if bias is not None:
                folded_bias = folded_bias + factor * bias
            return kernel, folded_bias

        def call(self, x):
            import tensorflow as tf

            kernel, bias = self.folded()
            if self.depthwise:
                shape = tf.shape(kernel)
                flat = tf.reshape(kernel, [shape[0], shape[1], -1])  # TFLite's channel axis: in x multiplier
                if self.quantize:
                    flat = _fake_quant_weights(flat)
                y = tf.nn.depthwise_conv2d(x, tf.reshape(flat, shape), [1, *self.strides, 1], self.padding)
            else:
                if self.quantize:
                    kernel = _fake_quant_weights(kernel)
                y = tf.nn.conv2d(x, kernel, [1, *self.strides, 1], self.padding)
            y = y + bias
            return _fake_quant_act(y, self.out_range) if self.quantize else y

    class QuantDense(keras.layers.Layer):
        """The classifier's matmul with per-channel int8 weights; returns the (quantised) logits, no softmax."""

        def __init__(self, dense, out_range=None, quantize: bool = True, **kwargs):
            super().__init__(name=f"q_{dense.name}", **kwargs)
            self.dense_name, self.out_range, self.quantize = dense.name, out_range, quantize
            k, b = dense.get_weights()
            self.kernel = self.add_weight(shape=k.shape, initializer=keras.initializers.Constant(k), name="kernel")
            self.bias = self.add_weight(shape=b.shape, initializer=keras.initializers.Constant(b), name="bias")

        def call(self, x):
            kernel = _fake_quant_weights(self.kernel) if self.quantize else self.kernel
            y = keras.ops.matmul(x, kernel) + self.bias
            return _fake_quant_act(y, self.out_range) if self.quantize else y

    class QuantAct(keras.layers.Layer):
        """Fake quantisation of one activation tensor with a fixed (calibrated) range."""

        def __init__(self, rng, quantize: bool = True, **kwargs):
            super().__init__(**kwargs)
            self.rng, self.quantize = rng, quantize

        def call(self, x):
            return _fake_quant_act(x, self.rng) if self.quantize else x

    return QuantConv, QuantDense, QuantAct


def build_twin(model, ranges: dict[str, tuple[float, float]], quantize: bool = True):
    """The fake-quantised twin of `model` (logits out); `quantize=False` gives the float model's logits exactly."""
    import keras

    check_supported(model)
    QuantConv, QuantDense, QuantAct = _layers_module()
    cons = consumers(model)
    inp = keras.Input(shape=model.input.shape[1:], name=INPUT_NAME)
    tensors = {id(model.inputs[0]): inp}
    for layer in model.layers:
        kind = _kind(layer)
        if kind == "InputLayer":
            continue
        ins = [tensors[id(t)] for t in _as_list(layer.input)]
        x = ins if isinstance(layer.input, (list, tuple)) else ins[0]
        if kind in ("Conv2D", "DepthwiseConv2D"):
            bn = _only(cons[layer.name], "BatchNormalization")
            last = bn if bn is not None else layer
            fused_act = _only(cons[last.name], "ReLU") is not None
            out = QuantConv(layer, bn, None if fused_act else ranges[last.name], quantize)(x)
            tensors[id(layer.output)] = out
            if bn is not None:
                tensors[id(bn.output)] = out
            continue
        if kind == "BatchNormalization":
            if id(layer.output) not in tensors:
                raise ModelError(f"{layer.name}: a BatchNormalization that follows no convolution cannot be folded")
            continue
        if kind == "Dense":
            if layer.name != OUTPUT_NAME:
                raise ModelError(f"{layer.name}: only the '{OUTPUT_NAME}' classifier may be a Dense layer")
            tensors[id(layer.output)] = QuantDense(layer, ranges[OUTPUT_NAME], quantize)(x)
            continue
        out = layer(x)
        if kind == "Activation" and layer.get_config()["activation"] == "sigmoid":
            out = QuantAct(SIGMOID_RANGE, quantize, name=f"q_{layer.name}")(out)
        elif layer.name in ranges and kind != "BatchNormalization":
            out = QuantAct(ranges[layer.name], quantize, name=f"q_{layer.name}")(out)
        tensors[id(layer.output)] = out
    return keras.Model(inp, tensors[id(model.output)], name=f"{model.name}_twin")


def write_back(twin, model):
    """A copy of the float `model` carrying the twin's trained kernels, biases and BN gamma / beta."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in twin.layers:
        conv_name = getattr(layer, "conv_name", None) or getattr(layer, "dense_name", None)
        if conv_name is None:
            continue
        target = copy.get_layer(conv_name)
        target.set_weights([np.asarray(layer.kernel)] + ([np.asarray(layer.bias)] if layer.bias is not None
                                                            and len(target.get_weights()) > 1 else []))
        if getattr(layer, "bn_name", None):
            bn = copy.get_layer(layer.bn_name)
            _, _, mean, var = bn.get_weights()
            bn.set_weights([np.asarray(layer.gamma), np.asarray(layer.beta), mean, var])
    return copy


def float_logits(model, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    """The float model's two logits (pre-softmax), computed from the classifier's input in float64."""
    import keras

    dense = model.get_layer(OUTPUT_NAME)
    feats = keras.Model(model.input, dense.input)
    kernel, bias = (np.asarray(w, np.float64) for w in dense.get_weights())
    out = [np.asarray(feats.predict_on_batch(to_float(np.asarray(pixels[i:i + batch]))), np.float64) @ kernel + bias
           for i in range(0, len(pixels), batch)]
    return np.concatenate(out)
