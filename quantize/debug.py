"""Per-layer int8 diagnosis with TFLite's QuantizationDebugger, and the cost of keeping layers in float.

The debugger runs a calibration subset through an instrumented model that compares every quantised layer's
output with its float twin; rmse/scale (the error in units of the layer's quantisation step) ranks the layers,
so the worst can be left in float (`--keep-float`) when drift is over budget.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np

from quantize.convert import _int8_converter, representative_dataset

log = logging.getLogger(__name__)

#: Calibration images the debugger runs (it invokes an instrumented, slower model).
DEBUG_IMAGES = 16
#: Layers the automatic mode keeps in float.
AUTO_KEEP = 3


def layer_errors(model, calib_pixels: np.ndarray, n_images: int = DEBUG_IMAGES, io_type: str = "int8") -> list[dict]:
    """Quantisation error of each layer on the first `n_images` calibration images, worst first."""
    import tensorflow as tf

    subset = np.asarray(calib_pixels[:n_images])
    conv = _int8_converter(model, np.asarray(calib_pixels), io_type)
    log.info("per-layer diagnosis on %d calibration images", len(subset))
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints its SavedModel export; keep --json clean
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=lambda: representative_dataset(subset))
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    rows = []
    for r in csv.DictReader(buf):
        scale = float(r["scale"])
        mse = float(r["mean_squared_error"])
        rows.append({"tensor_name": r["tensor_name"], "op_name": r["op_name"], "scale": scale,
                     "mean_squared_error": mse, "max_abs_error": float(r["max_abs_error"]),
                     "rmse_over_scale": float(np.sqrt(mse) / scale) if scale else float("nan")})
    rows.sort(key=lambda r: -np.nan_to_num(r["rmse_over_scale"], nan=-1.0))
    return rows


def worst_layers(rows: list[dict], k: int = AUTO_KEEP) -> list[str]:
    """Tensor names of the k layers with the largest rmse/scale (what the automatic mode keeps in float)."""
    return [r["tensor_name"] for r in rows[:k]]


def latency_ms(path: str | Path, pixels: np.ndarray, runs: int = 20) -> float:
    """Median single-image invoke time on this machine (a rough cost; benchmarks measure the device)."""
    from edge_sca.interpreter import TFLiteModel

    model = TFLiteModel(path, verify=False, require_manifest=False)
    tensor = model.quantise_input(pixels)
    model.invoke_raw(tensor)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.invoke_raw(tensor)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))
