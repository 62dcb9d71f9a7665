"""Keras -> TFLite: the float32 baseline, fully-integer int8 (calibrated on real ISIC images), float16, dynamic.

Calibration feeds exactly the bytes the device will see: the cached output of edge_sca's one preprocessing
function, divided by 255. The int8 model's input then has scale 1/255 and zero point -128, i.e. pixel - 128.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import numpy as np

from edge_sca.contract import INPUT_NAME, INT8_SCALE, INT8_ZERO_POINT, OUTPUT_NAME
from edge_sca.errors import ModelError
from edge_sca.preprocess import to_float
from edge_sca.progress import Progress
from quantize.ranges import ActivationRanges

log = logging.getLogger(__name__)

VARIANTS = ("float32", "int8", "float16", "dynamic")
#: Builtin int8 ops XNNPACK delegates (int8 AVERAGE_POOL_2D and RESIZE_NEAREST_NEIGHBOR are deliberately absent):
#: an int8 model with only these ops runs wholly in XNNPACK, with no graph split.
XNNPACK_INT8_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MAX_POOL_2D", "MEAN",
                              "SOFTMAX", "LOGISTIC", "RESIZE_BILINEAR", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE"})
IO_TYPES = ("int8", "uint8")


def _converter(model):
    """A converter for a Keras model, or for a concrete function (a checkpoint imported by quantize.checkpoint)."""
    import keras
    import tensorflow as tf

    if isinstance(model, keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    return tf.lite.TFLiteConverter.from_concrete_functions([model])


def representative_dataset(calib_pixels: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One float sample at a time (pixel / 255), with progress: what the converter calibrates on."""
    progress = Progress(len(calib_pixels), "calibrating", log)
    for img in calib_pixels:
        yield [to_float(img)]
        progress.update()


def _int8_converter(model, calib_pixels: np.ndarray | None, io: str, per_channel: bool = True):
    import tensorflow as tf

    if calib_pixels is None or len(calib_pixels) == 0:
        raise ValueError("int8 conversion needs calibration images")
    if io not in IO_TYPES:
        raise ValueError(f"unknown io type {io!r}; choose int8 or uint8")
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: representative_dataset(calib_pixels)
    conv.inference_input_type = tf.int8 if io == "int8" else tf.uint8
    conv.inference_output_type = conv.inference_input_type
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv._experimental_disable_per_channel = not per_channel  # noqa: SLF001 - the converter's only switch for it
    return conv


def convert(model, variant: str, calib_pixels: np.ndarray | None = None, io: str = "int8",
            keep_float: list[str] | None = None, per_channel: bool = True, ranges: str = "minmax",
            seed: int = 0) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer of the given variant, tensors named `input_1` / `probs`.

    int8: fully-integer (builtin int8 ops only) with `io` (int8 or uint8) input and output, unless `keep_float`
    names layers (output tensor names, see quantize.debug) to leave in float. `per_channel=False` quantises
    weights per tensor: the per-channel scales and int64 zero points are about a fifth of an int8 CancerNet file.
    `ranges` picks the activation ranges (quantize.ranges.ActivationRanges: "minmax", the calibrator's, or "mse";
    `seed` fixes the MSE sample).
    Keras prints its SavedModel export to stdout; that goes to stderr here, so `--json` output stays clean.
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _convert(model, variant, calib_pixels, io, keep_float, per_channel, ranges, seed)


def _convert(model, variant: str, calib_pixels: np.ndarray | None = None, io: str = "int8",
             keep_float: list[str] | None = None, per_channel: bool = True, ranges: str = "minmax",
             seed: int = 0) -> bytes:
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "int8":
        conv = _int8_converter(model, calib_pixels, io, per_channel)
        assert calib_pixels is not None  # _int8_converter refuses a conversion without calibration images
        if keep_float:
            return name_io(_convert_keeping_float(conv, calib_pixels, keep_float, io))
        if ActivationRanges(ranges) is ActivationRanges.MSE:
            return name_io(_convert_mse(conv, calib_pixels, io, per_channel, seed))
        return name_io(conv.convert())
    conv = _converter(model)
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return name_io(conv.convert())


def _convert_mse(conv, calib_pixels: np.ndarray, io: str, per_channel: bool, seed: int) -> bytes:
    """Calibrate only, replace the recorded ranges by MSE-optimal clips, then quantise as the converter would."""
    import tensorflow as tf

    from quantize.ranges import mse_statistics, quantize_calibrated

    conv._experimental_calibrate_only = True  # noqa: SLF001 - the converter's hook between calibrating and quantising
    edited, _ = mse_statistics(conv.convert(), calib_pixels, seed)
    return quantize_calibrated(edited, per_channel, tf.int8 if io == "int8" else tf.uint8)


def _convert_keeping_float(conv, calib_pixels: np.ndarray, keep_float: list[str], io: str) -> bytes:
    """Quantise everything but the ops producing `keep_float` tensors (TFLite's selective quantisation)."""
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float), fully_quantize=True)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=lambda: representative_dataset(calib_pixels[:1]), debug_options=options)
    io_type = tf.int8 if io == "int8" else tf.uint8
    data = bytes(modify_model_io_type(debugger.get_nondebug_quantized_model(), io_type, io_type))
    if "float32" not in tensor_types_and_ops(data)[0]:
        raise ModelError(f"none of the --keep-float layers ({', '.join(keep_float)}) is in the model; use the tensor "
                         "names `python -m quantize debug --model M` lists")
    return data


def name_io(tflite_bytes: bytes) -> bytes:
    """Rename the model's input and output tensors (and signature keys) to `input_1` / `probs`.

    The Keras converter names them after the SavedModel signature (serving_default_input_1:0,
    StatefulPartitionedCall:0); the device contract and the original checkpoints use input_1 and probs.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(f"expected one input and one output, got {len(graph.inputs)} and {len(graph.outputs)}")
    graph.tensors[graph.inputs[0]].name = INPUT_NAME.encode()
    graph.tensors[graph.outputs[0]].name = OUTPUT_NAME.encode()
    for sig in model.signatureDefs or []:
        for t in sig.inputs:
            t.name = INPUT_NAME.encode()
        for t in sig.outputs:
            t.name = OUTPUT_NAME.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def check_int8_input(tflite_bytes: bytes, io: str = "int8") -> None:
    """The int8 input must be pixel - 128 (uint8: the pixel itself); anything else breaks the device contract."""
    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=tflite_bytes)
    scale, zp = interp.get_input_details()[0]["quantization"]
    want_zp = INT8_ZERO_POINT if io == "int8" else 0
    if abs(scale - INT8_SCALE) > 1e-9 or zp != want_zp:
        raise ValueError(f"int8 input quantisation is scale {scale}, zero point {zp}; expected 1/255, {want_zp}: "
                         "the calibration images must span pixel values 0 to 255")


def check_integer_xnnpack(tflite_bytes: bytes) -> None:
    """Refuse an int8 model that is not fully integer, or has an op XNNPACK does not take (the graph would split)."""
    dtypes, ops = tensor_types_and_ops(tflite_bytes)
    if "float32" in dtypes:
        raise ModelError("the int8 model has float32 tensors: conversion fell back to float for some ops")
    if ops - XNNPACK_INT8_OPS:
        extra = ", ".join(sorted(ops - XNNPACK_INT8_OPS))
        raise ModelError(f"the int8 model has ops XNNPACK does not take in int8: {extra}")


def tensor_types_and_ops(tflite_bytes: bytes) -> tuple[set[str], set[str]]:
    """The tensor dtypes and builtin op names of a flatbuffer (to prove a model is fully integer)."""
    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=tflite_bytes)
    dtypes = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = {op["op_name"] for op in interp._get_ops_details()}  # noqa: SLF001 - the only public-ish op listing
    return dtypes, ops
