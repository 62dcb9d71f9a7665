"""The bias corrections `make quantize` applies to a freshly converted int8 model, as the recipe says.

This module decides what each correction is measured on and whether its result is kept; the corrections
themselves are quantize/bias_correction.py (the classifier's logit shift, `logit` recipes) and
quantize/layer_bias.py (every layer's output shift, `per_layer` recipes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from quantize.job import Job

log = logging.getLogger(__name__)

#: Calibration images per-layer bias correction measures each layer's shift on (a seeded draw).
LAYER_BIAS_IMAGES = 64


def p_int8(data: bytes, pixels: np.ndarray, near: Path) -> np.ndarray:
    """p(malignant) of a not-yet-written model, through the device's runtime."""
    from edge_sca.interpreter import TFLiteModel

    tmp = near.with_suffix(".probe.tflite")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    try:
        return TFLiteModel(tmp, verify=False, require_manifest=False).p_malignant(np.asarray(pixels))
    finally:
        tmp.unlink(missing_ok=True)


def logit_bias_corrected(job: Job, model, data: bytes, keep_float: list[str] | None,
                         path: Path) -> tuple[bytes, dict | None]:
    """Measure int8's logit shift on the calibration images against the trained float model (the reference of
    every drift figure, also when `model` is its fine-tuned copy, whose own float outputs are not the target);
    when it matters, convert `model` again with the shift removed from its classifier bias."""
    import keras

    from quantize.bias_correction import MIN_SHIFT, measure_shift, with_logit_shift
    from quantize.convert import convert
    from quantize.train import predict_keras

    if not isinstance(model, keras.Model):
        log.info("bias correction skipped: %s is not a Keras model", job.keras_path.name)
        return data, None
    x = job.calib.x
    p_float = predict_keras(job.model(), np.asarray(x))
    before = measure_shift(p_float, p_int8(data, x, path))
    record = {"images": len(x), "source": "calibration set", "logit_shift_before": before, "applied": False}
    if abs(before) < MIN_SHIFT:
        return data, record | {"logit_shift_after": before, "note": f"below {MIN_SHIFT}: nothing to correct"}
    log.info("int8 shifts the malignant logit by %+.4f on the calibration images; converting again without it",
             before)
    corrected = convert(with_logit_shift(model, before), "int8", x, io=job.options.io, keep_float=keep_float,
                        ranges=job.recipe.activation_ranges.value, seed=job.recipe.seed,
                        per_channel=job.recipe.per_channel)
    after = measure_shift(p_float, p_int8(corrected, x, path))
    if abs(after) >= abs(before):
        log.warning("bias correction did not help (%+.4f -> %+.4f); keeping the uncorrected int8 model", before, after)
        return data, record | {"logit_shift_after": after, "note": "did not reduce the shift; not applied"}
    log.info("int8 logit shift after correction: %+.4f", after)
    return corrected, record | {"applied": True, "logit_shift_applied": before, "logit_shift_after": after}


def layer_bias_corrected(job: Job, model, data: bytes) -> tuple[bytes, dict]:
    """Per-layer bias correction against the float32 conversion of the model the int8 file came from, on a seeded
    LAYER_BIAS_IMAGES of the calibration images."""
    from quantize.convert import convert
    from quantize.layer_bias import correct

    x = np.asarray(job.calib.x)
    rng = np.random.default_rng(job.recipe.seed)
    pick = np.sort(rng.choice(len(x), min(LAYER_BIAS_IMAGES, len(x)), replace=False))
    corrected, summary = correct(data, convert(model, "float32"), x[pick])
    return corrected, {"method": "per_layer", "source": "calibration set"} | summary
