"""Per-layer bias correction of an int8 .tflite: every conv / depthwise / fully-connected layer, in order.

int8 rounding in the weights and activations shifts each layer's output by an amount that depends on the layer,
the channel and what came before (Nagel et al. 2019, "empirical bias correction"). Removing only the classifier's
shift (the `logit` correction) leaves the earlier shifts to pass through the non-linearities. Here each layer in
execution order is fed the same calibration images in the int8 model and in the float32 model of the same source;
the mean difference of its output per channel, taken where the float output is in the activation's linear range,
is subtracted from that channel's int32 bias (in the bias's own scale, input scale x weight scale). The next layer
is measured on the corrected model. Only int32 bias values change: ops, scales and weights stay as converted.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from edge_sca.progress import Progress

log = logging.getLogger(__name__)

#: Builtin op codes (tflite schema) whose third input is an int32 bias.
_BIASED_OPS = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
#: Fused activation codes (tflite schema): the float output's linear range under each.
_LINEAR_RANGE = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 3: (0.0, 6.0)}
#: A channel needs this many positions in the linear range (over all images) to be corrected.
MIN_POSITIONS = 32


def _interpreter(content: bytes):
    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    with warnings.catch_warnings():  # "for debugging purposes only": reading intermediate tensors is the point
        warnings.simplefilter("ignore", UserWarning)
        interp = cls(model_content=content, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    return interp


def _layers(obj) -> list[tuple[int, int, int, int, int]]:
    """(op index, input tensor, weight tensor, bias tensor, output tensor) of every biased op, in execution order,
    whose activation is one this correction knows."""
    out = []
    graph = obj.subgraphs[0]
    for k, op in enumerate(graph.operators):
        code = obj.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin not in _BIASED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        act = getattr(op.builtinOptions, "fusedActivationFunction", 0)
        if act in _LINEAR_RANGE:
            out.append((k, op.inputs[0], op.inputs[1], op.inputs[2], op.outputs[0]))
    return out


def _name(tensor) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _feed(interp, pixels: np.ndarray, quantized: bool) -> None:
    """Run the model on one uint8 image: quantized with the input tensor's own scale, zero point and integer range
    (int8 -128..127, or uint8 0..255 for an `--io uint8` model), else as floats in [0, 1]."""
    detail = interp.get_input_details()[0]
    if quantized:
        scale, zero = detail["quantization"]
        limits = np.iinfo(detail["dtype"])
        data = np.clip(np.round(pixels.astype(np.float32) / 255.0 / scale + zero), limits.min, limits.max
                       ).astype(detail["dtype"])
    else:
        data = (pixels.astype(np.float32) / 255.0)
    interp.set_tensor(detail["index"], data[None])
    interp.invoke()


def _channel_shift(q_interp, f_interp, q_index: int, f_index: int, pixels: np.ndarray, linear: tuple[float, float],
                   scale: float, zero: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean int8-minus-float output per channel over the images, where the float output is in `linear`."""
    total = count = None
    for img in pixels:
        _feed(q_interp, img, True)
        _feed(f_interp, img, False)
        f = f_interp.get_tensor(f_index).reshape(-1, f_interp.get_tensor(f_index).shape[-1])
        q = (q_interp.get_tensor(q_index).astype(np.float32).reshape(f.shape) - zero) * scale
        mask = (f > linear[0]) & (f < linear[1])
        diff = np.where(mask, q - f, 0.0).sum(0)
        total = diff if total is None else total + diff
        count = mask.sum(0) if count is None else count + mask.sum(0)
    assert total is not None and count is not None
    return total / np.maximum(count, 1), count


def _own_buffer(obj, tensor: int):
    """The tensor's data buffer, copied first when other tensors share it (the converter de-duplicates equal
    constants, e.g. two all-zero biases), so that correcting one layer does not change another."""
    import copy

    graph = obj.subgraphs[0]
    index = graph.tensors[tensor].buffer
    if sum(1 for t in graph.tensors if t.buffer == index) > 1:
        obj.buffers.append(copy.deepcopy(obj.buffers[index]))
        graph.tensors[tensor].buffer = len(obj.buffers) - 1
    return obj.buffers[graph.tensors[tensor].buffer]


def correct(int8_bytes: bytes, float_bytes: bytes, pixels: np.ndarray) -> tuple[bytes, dict]:
    """The int8 model with every biased layer's mean output shift removed, and a summary for the manifest."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_bytes))
    graph = obj.subgraphs[0]
    f_interp = _interpreter(float_bytes)
    f_names = {d["name"]: d["index"] for d in f_interp.get_tensor_details()}
    layers = [entry for entry in _layers(obj) if _name(graph.tensors[entry[4]]) in f_names]
    if not layers:
        raise ValueError("per-layer bias correction found no layer shared by the int8 and float32 models")
    progress = Progress(len(layers), "per-layer bias correction (layers)", log)
    shifts, content = [], int8_bytes
    for k, inp, weights, bias, out in layers:
        op = graph.operators[k]
        linear = _LINEAR_RANGE[getattr(op.builtinOptions, "fusedActivationFunction", 0)]
        out_q = graph.tensors[out].quantization
        mean, count = _channel_shift(_interpreter(content), f_interp, out, f_names[_name(graph.tensors[out])], pixels,
                                     linear, float(out_q.scale[0]), int(out_q.zeroPoint[0]))
        mean = np.where(count >= MIN_POSITIONS, mean, 0.0)
        bias_scale = float(graph.tensors[inp].quantization.scale[0]) * np.asarray(
            graph.tensors[weights].quantization.scale, np.float64)
        buffer = _own_buffer(obj, bias)
        values = np.frombuffer(bytes(bytearray(buffer.data)), np.int32).copy()
        values -= np.round(mean / np.broadcast_to(bias_scale, values.shape)).astype(np.int32)
        buffer.data = values.view(np.uint8)
        content = bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
        shifts.append(float(np.abs(mean).mean() / max(float(out_q.scale[0]), 1e-12)))
        progress.update()
    summary = {"layers": len(layers), "images": len(pixels),
               "mean_abs_shift_steps": float(np.mean(shifts)), "max_abs_shift_steps": float(np.max(shifts))}
    log.info("per-layer bias correction: %d layers, mean |shift| %.3f int8 steps (max %.3f)", len(layers),
             summary["mean_abs_shift_steps"], summary["max_abs_shift_steps"])
    return content, summary

