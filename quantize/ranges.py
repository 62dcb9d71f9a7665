"""Activation ranges other than the calibrator's min / max: each tensor's MSE-optimal clip.

The converter records every activation tensor's min / max over the calibration images and quantises on those, so
a heavy-tailed tensor spends its 256 steps on a few outliers (and the calibrator also widens a residual branch to
its sum's range). With `mse` ranges the calibrated float graph is run over the same calibration images, a sample of
each tensor's values is kept, and each range becomes the clip [f * min, f * max], f in 0.30 ... 1.00, with the least
squared rounding-plus-clipping error on that sample; the quantiser then runs on the edited statistics. It is the
same converter, the same ops and the same fully-integer model: only activation scales and zero points change.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import numpy as np

from edge_sca.preprocess import to_float
from edge_sca.progress import Progress

log = logging.getLogger(__name__)

#: Clip factors tried for each tensor (f * min, f * max).
CLIP_FACTORS = np.linspace(0.30, 1.00, 36)
#: Values kept per tensor per calibration image (a seeded, strided sample), which bounds the memory used.
SAMPLES_PER_IMAGE = 1024
#: int8 steps in a range.
LEVELS = 255


class ActivationRanges(StrEnum):
    MINMAX = "minmax"  # the calibrator's min / max (TFLite's default)
    MSE = "mse"  # the clip of each tensor with the least squared error on the calibration images


def mse_clip(values: np.ndarray, lo: float, hi: float, factors: np.ndarray = CLIP_FACTORS) -> tuple[float, float]:
    """The (f * lo, f * hi) whose 8-bit quantisation of `values` has the least mean squared error."""
    best = (np.inf, lo, hi)
    for f in factors:
        a, b = lo * f, hi * f
        step = (b - a) / LEVELS
        if step <= 0:
            continue
        q = np.clip(np.round((values - a) / step), 0, LEVELS) * step + a
        err = float(np.mean((q - values) ** 2))
        if err < best[0]:
            best = (err, a, b)
    return float(best[1]), float(best[2])


def _stat_tensors(model_obj) -> list[int]:
    """Indices of the tensors the calibrator recorded min / max for."""
    return [i for i, t in enumerate(model_obj.subgraphs[0].tensors)
            if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]


def _samples(calibrated: bytes, indices: list[int], calib_pixels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """Run the calibrated float graph over the calibration images; a sample of each recorded tensor's values."""
    import warnings

    from edge_sca.interpreter import interpreter_class

    cls, _ = interpreter_class()
    with warnings.catch_warnings():  # "for debugging purposes only": reading every tensor is the point here
        warnings.simplefilter("ignore", UserWarning)
        interp = cls(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    rng = np.random.default_rng(seed)
    kept: dict[int, list[np.ndarray]] = {i: [] for i in indices}
    progress = Progress(len(calib_pixels), "activation samples for MSE ranges", log)
    for img in calib_pixels:
        interp.set_tensor(inp, to_float(img))
        interp.invoke()
        for i in indices:
            v = interp.get_tensor(i).ravel()
            pick = rng.integers(0, v.size, min(SAMPLES_PER_IMAGE, v.size))
            kept[i].append(np.concatenate([v[pick], [v.min(), v.max()]]))
        progress.update()
    return {i: np.concatenate(parts).astype(np.float32) for i, parts in kept.items()}


def mse_statistics(calibrated: bytes, calib_pixels: np.ndarray, seed: int = 0) -> tuple[bytes, dict]:
    """The calibrated model with each recorded range replaced by its MSE-optimal clip, and a summary of the change
    (tensors edited, median ratio of new to old range width)."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    indices = _stat_tensors(obj)
    samples = _samples(calibrated, indices, calib_pixels, seed)
    ratios = []
    for i in indices:
        q = obj.subgraphs[0].tensors[i].quantization
        old_lo, old_hi = float(q.min[0]), float(q.max[0])
        v = samples[i]
        # the calibrator's widened range is replaced by the tensor's own extremes before clipping
        lo, hi = mse_clip(v, min(float(v.min()), 0.0), max(float(v.max()), 0.0))
        q.min, q.max = np.array([lo], np.float32), np.array([hi], np.float32)
        if old_hi > old_lo:
            ratios.append((hi - lo) / (old_hi - old_lo))
    summary = {"method": ActivationRanges.MSE.value, "tensors": len(indices), "images": len(calib_pixels),
               "samples_per_image": SAMPLES_PER_IMAGE,
               "median_width_ratio": float(np.median(ratios)) if ratios else 1.0}
    log.info("MSE ranges: %d tensors, median range width %.2f x min / max", len(indices),
             summary["median_width_ratio"])
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)), summary


def quantize_calibrated(calibrated: bytes, per_channel: bool, io_dtype) -> bytes:
    """What the converter does after calibration: the MLIR quantiser, fully integer with `io_dtype` I/O."""
    from tensorflow.lite.python.convert import mlir_quantize

    return bytes(mlir_quantize(calibrated, not per_channel, input_data_type=io_dtype, output_data_type=io_dtype))
