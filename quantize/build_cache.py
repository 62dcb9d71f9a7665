"""The build cache of `make quantize`: when a model or drift report already on disk may be reused.

Every artifact's manifest carries a build key (hash of the Keras file, the calibration ids, the int8 options, the
recipe and the source of the modules in BUILD_SOURCES), so a re-run with unchanged inputs reuses what it built;
drift.json carries the same keys plus the evaluation data's, so the evaluation is reused too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge_sca.contract import PREPROCESS_VERSION
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import ModelError
from edge_sca.fileio import sha256_file
from edge_sca.manifest import load_manifest, manifest_path

#: Bump when the pipeline's output changes for the same inputs (the source hash below catches code edits too).
PIPELINE_VERSION = 2

#: The quantize/ modules whose source bytes go into every build key, and why: a change to any of them may change
#: what `make quantize` writes (the .tflite bytes, the manifest, or the drift report it reuses), so any edit
#: rebuilds. A new module that `make quantize` calls to build or measure a model belongs here.
BUILD_SOURCES: tuple[tuple[str, str], ...] = (
    ("convert.py", "the TFLite conversion of every variant"),
    ("export.py", "writes the model file and its manifest"),
    ("pipeline.py", "the stages' order: calibrate, quantize, validate"),
    ("build_cache.py", "this key itself and when a build is reused"),
    ("job.py", "the options in the key and what each manifest records"),
    ("calibration.py", "which images calibrate the int8 model"),
    ("variants.py", "which variants are built, from which Keras model, with which corrections"),
    ("corrections.py", "the bias corrections applied to the int8 model"),
    ("keep_float.py", "which layers stay in float, and the model then shipped"),
    ("validation.py", "the drift report and the metrics written into the manifests"),
    ("debug.py", "the per-layer errors that choose the keep-float layers"),
    ("drift.py", "the float-vs-int8 figures of the report"),
    ("bias_correction.py", "the classifier-bias (logit) correction"),
    ("qat.py", "quantisation-aware fine-tuning"),
    ("fake_quant.py", "the fake-quantised twin QAT fine-tunes"),
    ("recipe.py", "how a recipe file is read into the conversion's settings"),
    ("ranges.py", "the activation ranges (min / max or MSE)"),
    ("layer_bias.py", "the per-layer bias correction"),
)

#: The other quantize/ modules the build reaches, and why their source is not in the key (a test checks that every
#: module the pipeline imports is in one of the two lists, so a new module needs a decision).
OUTSIDE_BUILD_KEY: tuple[tuple[str, str], ...] = (
    ("data.py", "decodes and caches the images; their pixels are pinned by PREPROCESS_VERSION and the calibration ids"),
    ("evaluate.py", "loads the trained model file, whose sha256 is in the key"),
    ("checkpoint.py", "reads an imported TF 1.x checkpoint, whose sha256 is in the key"),
    ("architectures.py", "builds untrained networks (training, checkpoint import); a build converts a saved model"),
    ("train.py", "training; its predict_keras, a batched forward pass, is the logit correction's float reference"),
    ("augment.py", "training only"),
    ("ema.py", "training only"),
    ("sources.py", "image sources for training and the per-source report"),
    ("budgets.py", "judges the drift figures; applied again on every run, cached report or not"),
    ("report.py", "renders drift.md and its plots from figures drift.json holds"),
    ("provenance.py", "git commit and time stamps of records, not model inputs"),
)


def code_version() -> str:
    """Hash of the pipeline and preprocessing versions and of every module in BUILD_SOURCES."""
    h = hashlib.sha256(f"pipeline-v{PIPELINE_VERSION}-preprocess-v{PREPROCESS_VERSION}".encode())
    for name, _why in BUILD_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def build_key(keras_sha: str, calib_ids_sha: str, int8_options: dict, variant: str) -> str:
    """What a variant's bytes depend on: float variants only on the Keras file and the code; int8 also on the
    calibration ids and the int8 options (with the recipe's conversion fields)."""
    int8 = variant == "int8"
    blob = json.dumps({"keras": keras_sha, "calibration": calib_ids_sha if int8 else None,
                       "options": int8_options if int8 else None, "variant": variant, "code": code_version()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def inputs_key(keys: list[str]) -> str:
    """The drift report's key: the build keys of the models it measures and the evaluation data's key."""
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:24]


def up_to_date(path: Path, key: str) -> bool:
    """The file exists, matches its manifest's sha256, and was built with this key."""
    if not path.is_file() or not manifest_path(path).is_file():
        return False
    try:
        manifest = load_manifest(manifest_path(path))
    except ModelError:
        return False
    return manifest.data.get("build_key") == key and manifest.sha256 == sha256_file(path)


def shown(path: Path) -> str:
    """A path as the reports record it: relative to the repository when inside it (reports travel in git)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def cached_report(report_dir: Path, key: str) -> dict | None:
    """drift.json when it was made from these inputs and every model it describes is still the file it measured
    (its `artifacts` are paths as `shown` records them, with their sha256)."""
    path = report_dir / "drift.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if d.get("inputs_key") != key or not d.get("artifacts"):
        return None
    for file, sha in d["artifacts"].items():
        if not (REPO_ROOT / file).is_file() and not Path(file).is_file():
            return None
        if sha256_file(REPO_ROOT / file if (REPO_ROOT / file).is_file() else Path(file)) != sha:
            return None
    return d
