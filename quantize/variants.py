"""Stage 2 of `make quantize`: convert and write each variant (float32, int8 by the recipe, extra ones).

The int8 file is converted from the trained model (post-training quantisation) or from its quantisation-aware
fine-tuned copy, then bias-corrected as the recipe says (quantize/corrections.py) and checked to be fully integer.
Each file is written with its manifest, and an identical build already on disk is reused (quantize/build_cache.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sca.errors import ModelError
from quantize.build_cache import up_to_date
from quantize.corrections import layer_bias_corrected, logit_bias_corrected
from quantize.data import load_split
from quantize.job import Job
from quantize.recipe import BiasCorrection, Method

log = logging.getLogger(__name__)

#: Calibration images whose expected outputs go into each manifest, for the on-device self-test.
REFERENCE_IMAGES = 3


def int8_source(job: Job):
    """The Keras model the int8 file is converted from, and what to record about it: the trained model itself
    (post-training quantisation), or its quantisation-aware fine-tuned copy (made now, or reused)."""
    import keras

    from quantize.qat import fine_tune, qat_paths

    if job._int8_source is not None:
        return job._int8_source
    model = job.model()
    if job.recipe.method is Method.PTQ:
        job._int8_source = (model, None)
        return job._int8_source
    if not isinstance(model, keras.Model):
        raise ModelError(f"{job.keras_path.name}: quantisation-aware fine-tuning needs a Keras model; use "
                         "--recipe ptq for an imported checkpoint")
    train = load_split(job.folder, "train", skip_bad=job.options.skip_bad)
    recipe = job.recipe
    assert recipe.qat is not None  # parse() guarantees it for method qat
    tuned, record = fine_tune(model, job.keras_path, train, job.calib.x, job.calib.ids, recipe.qat, recipe.seed,
                              qat_paths(job.out_dir, job.stem, recipe.name), recipe.as_dict(), job.threshold,
                              job.options.threads,
                              reuse_from=qat_paths(job.models_dir, job.stem, recipe.name))
    info = {"file": record["artifact"], "sha256": record["sha256"], "record": Path(record["artifact"]).stem + ".json",
            "key": record["key"], "steps": record["steps"], "train_images": record["data"]["images"]}
    job._int8_source = (tuned, info)
    return job._int8_source


def variants(job: Job) -> list[str]:
    """float32 and int8, then the extra variants the user asked for, in that order."""
    return ["float32", "int8"] + [v for v in job.options.variants if v not in ("float32", "int8")]


def quantize(job: Job) -> dict[str, Path]:
    """Stage 2: float32 (and any extra variants) from the trained model, int8 by the recipe."""
    return {v: build_variant(job, v) for v in variants(job)}


def build_variant(job: Job, variant: str, keep_float: list[str] | None = None, path: Path | None = None) -> Path:
    """Convert and write one variant with its manifest, unless an identical build is already there."""
    from quantize.convert import check_int8_input, check_integer_xnnpack, convert
    from quantize.export import write_model

    path = path or job.path(variant)
    key = job.key(variant) + ("-keep:" + ",".join(keep_float) if keep_float else "")
    if up_to_date(path, key):
        log.info("%s is up to date (build key %s); reusing it", path.name, key[:12])
        return path
    model, qat_info = int8_source(job) if variant == "int8" else (job.model(), None)
    log.info("converting %s to %s%s%s", job.keras_path.name, variant, " (quantisation-aware fine-tuned)" if qat_info
             else "", f" keeping {keep_float} in float" if keep_float else "")
    per_channel = job.recipe.per_channel
    try:
        data = convert(model, variant, job.calib.x, io=job.options.io, keep_float=keep_float, per_channel=per_channel,
                       ranges=job.recipe.activation_ranges.value, seed=job.recipe.seed)
        correction = None
        if variant == "int8":
            check_int8_input(data, job.options.io)
            if job.recipe.bias_correction is BiasCorrection.LOGIT:
                data, correction = logit_bias_corrected(job, model, data, keep_float, path)
            elif job.recipe.bias_correction is BiasCorrection.PER_LAYER and not keep_float:
                data, correction = layer_bias_corrected(job, model, data)
            if not keep_float:
                check_integer_xnnpack(data)
    except ValueError as exc:  # bad calibration or options: say so in one line, not a traceback
        raise ModelError(f"{job.keras_path.name} -> {variant}: {exc}") from exc
    extra = job.manifest_extra(variant) | {"build_key": key, "keep_float": list(keep_float or [])}
    if correction:
        extra["bias_correction"] = correction
    if qat_info:
        extra["qat_model"] = qat_info
    write_model(data, path, job.name, variant, job.threshold, job.calib.x[:REFERENCE_IMAGES],
                job.calib.ids[:REFERENCE_IMAGES], extra=extra)
    return path
