"""Running a .tflite model: LiteRT first, tflite_runtime as a fallback, tf.lite last.

`tflite-runtime` 2.14 (the last release) is built against numpy 1 and runs int8 many times slower than LiteRT,
so it is only a fallback for systems where `ai-edge-litert` cannot be installed. tf.lite is there for the
workstation; the device never needs TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sca.contract import INT8_SCALE, INT8_ZERO_POINT
from edge_sca.errors import ModelError
from edge_sca.manifest import Manifest, load_manifest, manifest_path, sha256_bytes
from edge_sca.preprocess import to_float, to_int8

log = logging.getLogger(__name__)


def interpreter_class() -> tuple[type, str]:
    """The Interpreter class of the first runtime that imports, and its name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        log.warning("using tflite_runtime: slower for int8 than ai-edge-litert; `pip install ai-edge-litert`")
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # workstation only

        return tf.lite.Interpreter, "tf.lite"
    except ImportError as exc:
        raise ModelError("no TFLite runtime found: `pip install ai-edge-litert` (see requirements/device.in)") from exc


class TFLiteModel:
    """A loaded .tflite classifier: uint8 RGB pixels in, class probabilities out.

    With `verify` the file's sha256 must match its manifest (a tampered or swapped model is refused).
    """

    def __init__(self, path: str | Path, threads: int | None = None, manifest: Manifest | None = None,
                 verify: bool = True, require_manifest: bool = True):
        self.path = Path(path)
        try:
            self.model_bytes = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{self.path}: cannot read the model ({exc.strerror}); check the path") from exc
        self.sha256 = sha256_bytes(self.model_bytes)
        mpath = manifest_path(self.path)
        if manifest is None and (require_manifest or mpath.exists()):
            manifest = load_manifest(mpath)
        self.manifest = manifest
        if verify and manifest is not None and manifest.sha256 != self.sha256:
            raise ModelError(f"{self.path}: sha256 {self.sha256[:12]}... does not match its manifest "
                             f"({manifest.sha256[:12]}...): the file was changed or swapped; refusing to run. "
                             "Re-flash the bundle or rebuild with `make quantize`")
        cls, self.backend = interpreter_class()
        try:
            self.interpreter = cls(model_content=self.model_bytes, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: not a valid TFLite model ({exc}); rebuild it with `make quantize`") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = int(self.input["shape"][1])
        self._check_input_quantisation()

    @property
    def dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def threshold(self) -> float:
        from edge_sca.contract import DEFAULT_THRESHOLD

        return self.manifest.threshold if self.manifest else DEFAULT_THRESHOLD

    def _check_input_quantisation(self) -> None:
        scale, zp = self.input["quantization"]
        if self.input["dtype"] == np.int8 and not (abs(scale - INT8_SCALE) < 1e-9 and zp == INT8_ZERO_POINT):
            log.warning("%s: int8 input scale %g zero point %d is not 1/255, -128; quantising in float",
                        self.path, scale, zp)

    def quantise_input(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed uint8 pixels (HWC or NHWC) -> the model's input tensor."""
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return to_float(pixels)
        scale, zp = self.input["quantization"]
        if dtype == np.int8 and abs(scale - INT8_SCALE) < 1e-9 and zp == INT8_ZERO_POINT:
            return to_int8(pixels)
        if dtype == np.uint8 and abs(scale - INT8_SCALE) < 1e-9 and zp == 0:
            return pixels[None] if pixels.ndim == 3 else pixels
        info = np.iinfo(dtype)
        return np.clip(np.round(to_float(pixels) / scale + zp), info.min, info.max).astype(dtype)

    def invoke_raw(self, tensor: np.ndarray) -> np.ndarray:
        """Run one already-quantised input (1xHxWx3); returns the raw output tensor (a copy)."""
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()

    def dequantise_output(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype == np.float32:
            return raw.astype(np.float64)
        scale, zp = self.output["quantization"]
        return (raw.astype(np.float64) - zp) * scale

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (N x 2) for preprocessed uint8 images (HWC or NHWC), one invoke per image."""
        batch = pixels[None] if pixels.ndim == 3 else pixels
        if batch.shape[1:3] != (self.size, self.size):
            raise ModelError(f"{self.path}: expects {self.size}x{self.size} input, got {batch.shape[1:3]}; "
                             "preprocess with edge_sca.preprocess.preprocess")
        return np.concatenate([self.dequantise_output(self.invoke_raw(self.quantise_input(img))) for img in batch])

    def p_malignant(self, pixels: np.ndarray) -> np.ndarray:
        from edge_sca.contract import MALIGNANT

        return self.predict(pixels)[:, MALIGNANT]
