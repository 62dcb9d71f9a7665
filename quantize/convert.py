"""Keras -> TFLite: the float32 baseline, fully-integer int8 (calibrated on real ISIC images), float16, dynamic.

Calibration feeds exactly the bytes the device will see: the cached output of edge_sca's one preprocessing
function, divided by 255. The int8 model's input then has scale 1/255 and zero point -128, i.e. pixel - 128.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from edge_sca.config import INT8_SCALE, INT8_ZERO_POINT
from edge_sca.preprocess import to_float
from edge_sca.progress import Progress

log = logging.getLogger(__name__)

VARIANTS = ("float32", "int8", "float16", "dynamic")


def _converter(model):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def representative_dataset(calib_pixels: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One float sample at a time (pixel / 255), with progress: what the converter calibrates on."""
    progress = Progress(len(calib_pixels), "calibrating", log)
    for img in calib_pixels:
        yield [to_float(img)]
        progress.update()


def convert(model, variant: str, calib_pixels: np.ndarray | None = None, io: str = "int8",
            keep_float: list[str] | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer of the given variant.

    int8: fully-integer (builtin int8 ops only) with `io` (int8 or uint8) input and output, unless `keep_float`
    names layers to leave in float (then float fallback ops are allowed for those).
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    conv = _converter(model)
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if calib_pixels is None or len(calib_pixels) == 0:
            raise ValueError("int8 conversion needs calibration images")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: representative_dataset(calib_pixels)
        conv.inference_input_type = tf.int8 if io == "int8" else tf.uint8
        conv.inference_output_type = conv.inference_input_type
        if keep_float:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            conv._experimental_disable_per_channel = False  # noqa: SLF001
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


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


def tensor_types_and_ops(tflite_bytes: bytes) -> tuple[set[str], set[str]]:
    """The tensor dtypes and builtin op names of a flatbuffer (to prove a model is fully integer)."""
    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    interp = cls(model_content=tflite_bytes)
    dtypes = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops = {op["op_name"] for op in interp._get_ops_details()}  # noqa: SLF001 - the only public-ish op listing
    return dtypes, ops
