"""`make quantize` for one model, in stages: calibrate, quantize (by the recipe), validate against the budgets.

- calibrate (quantize/calibration.py): the recipe's calibration images, through the device's one preprocessing
  function;
- quantize (quantize/variants.py): the float32 .tflite from the trained Keras model, and the int8 .tflite by the
  recipe (post-training quantisation of the float model, or of its quantisation-aware fine-tuned copy), bias
  corrected as the recipe says (quantize/corrections.py), each with its manifest;
- validate (quantize/validation.py): drift of int8 against float32 on val and test together (never train or
  calibration), per split too, keep-float when asked (quantize/keep_float.py), and the budgets of
  quantize/budgets.py.

What the stages share is a Job (quantize/job.py). Every artifact's manifest carries a build key, and drift.json
the keys of the models it measured plus the evaluation data's, so a re-run with unchanged inputs reuses all of it
(quantize/build_cache.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sca.contract import model_stem
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import ModelError
from edge_sca.fileio import sha256_file
from edge_sca.isic import load_isic_folder
from edge_sca.training_record import record_threshold
from quantize.build_cache import cached_report, inputs_key
from quantize.calibration import calibrate
from quantize.job import Job, QuantizeOptions
from quantize.validation import Outcome, eval_data_key, outcome, validate
from quantize.variants import quantize, variants

log = logging.getLogger(__name__)


def prepare(name: str, isic_dir: str | Path, models_dir: Path, reports_dir: Path, options: QuantizeOptions,
            out_dir: Path | None = None) -> Job:
    """Find the trained model and its threshold, and run the calibrate stage; outputs go to out_dir (models_dir)."""
    keras_path = models_dir / f"{model_stem(name)}.keras"
    if not keras_path.is_file() and keras_path.with_suffix(".pb").is_file():
        keras_path = keras_path.with_suffix(".pb")  # an imported original checkpoint
    if not keras_path.is_file():
        raise ModelError(f"{keras_path}: no trained model; run `make train MODEL={name}` first (or --models-dir)")
    threshold, source = record_threshold(keras_path)
    folder = load_isic_folder(isic_dir, skip_bad=options.skip_bad)
    calib, calib_source = calibrate(folder, options.recipe, options.skip_bad)
    log.info("%s: recipe %s (%s), calibration set %d images (%s)", name, options.recipe.name,
             options.recipe.method.value, len(calib.ids), calib_source)
    return Job(name, keras_path, models_dir, out_dir or models_dir, reports_dir / name, options, folder, calib,
               calib_source, threshold, source, sha256_file(keras_path))


def run(job: Job) -> Outcome:
    """Quantize, then validate (drift on val + test, keep-float, budgets); all reused when nothing changed."""
    key = inputs_key([job.key(v) for v in variants(job)] + [eval_data_key(job)])
    cached = cached_report(job.report_dir, key)
    if cached is not None:
        log.info("%s: models and drift report are up to date (key %s); reusing them", job.name, key[:12])
        return outcome(job, cached)
    return outcome(job, validate(job, quantize(job), key))


def default_reports_dir() -> Path:
    return REPO_ROOT / "reports" / "quantize"
