"""Writing a converted model to disk with its manifest (sha256, input spec, threshold, reference vectors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_sca.contract import (
    CLASS_NAMES,
    INPUT_NAME,
    INPUT_SIZE,
    INT8_SCALE,
    INT8_ZERO_POINT,
    MANIFEST_FORMAT,
    OUTPUT_NAME,
    PREPROCESS_VERSION,
)
from edge_sca.fileio import atomic_write_bytes
from edge_sca.interpreter import TFLiteModel
from edge_sca.manifest import Manifest, encode_pixels, manifest_path, sha256_bytes
from quantize.provenance import git_commit, now_iso, tool_versions


def input_spec(dtype: str) -> dict:
    """The manifest's description of how to feed the model (see DESIGN.md, preprocessing contract)."""
    spec = {"name": INPUT_NAME, "size": INPUT_SIZE, "shape": [1, INPUT_SIZE, INPUT_SIZE, 3], "colour_order": "RGB",
            "layout": "NHWC", "resize": "squash (no crop)", "preprocess_version": PREPROCESS_VERSION, "dtype": dtype}
    if dtype == "int8":
        spec.update(scale=INT8_SCALE, zero_point=INT8_ZERO_POINT, formula="q = pixel - 128")
    elif dtype == "uint8":
        spec.update(scale=INT8_SCALE, zero_point=0, formula="q = pixel")
    else:
        spec.update(scale=None, zero_point=None, formula="x = pixel / 255")
    return spec


def write_model(tflite_bytes: bytes, out_path: str | Path, architecture: str, variant: str, threshold: float,
                reference_pixels: np.ndarray, reference_ids: list[str] | None = None,
                extra: dict | None = None) -> Manifest:
    """Write `out_path` (.tflite) and its manifest; the reference outputs are computed by the runtime itself."""
    out_path = Path(out_path)
    atomic_write_bytes(out_path, tflite_bytes)
    runtime = TFLiteModel(out_path, verify=False, require_manifest=False)
    refs = []
    for i, pixels in enumerate(reference_pixels):
        probs = runtime.predict(pixels)[0]
        refs.append({"id": reference_ids[i] if reference_ids else f"ref{i}", "pixels": encode_pixels(pixels),
                     "expected_probs": [float(p) for p in probs]})
    data = {
        "format": MANIFEST_FORMAT, "model_file": out_path.name, "sha256": sha256_bytes(tflite_bytes),
        "size_bytes": len(tflite_bytes), "architecture": architecture, "variant": variant,
        "input": input_spec(runtime.dtype),
        "output": {"name": OUTPUT_NAME, "dtype": np.dtype(runtime.output["dtype"]).name,
                   "softmax_over": list(CLASS_NAMES)},
        "class_names": list(CLASS_NAMES), "threshold": float(threshold), "reference_vectors": refs,
        "created": now_iso(), "git_commit": git_commit(), "tool_versions": tool_versions(),
    }
    data.update(extra or {})
    manifest = Manifest(data, manifest_path(out_path))
    manifest.save()
    return manifest
