"""`make quantize` for one model, in stages: calibrate, quantize (by the recipe), validate against the budgets.

- calibrate: the recipe's calibration images, through the device's one preprocessing function;
- quantize: the float32 .tflite from the trained Keras model, and the int8 .tflite by the recipe (post-training
  quantisation of the float model, or of its quantisation-aware fine-tuned copy), each with its manifest;
- validate: drift of int8 against float32 on val and test together (never train or calibration), per split too,
  and the budgets of quantize/budgets.py.

Every artifact's manifest carries a build key (hash of the Keras file, the calibration ids, the recipe, the
options and this code), so a re-run with unchanged inputs reuses what it built; drift.json carries the same key
plus the evaluation data's, so the evaluation is reused too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.contract import INPUT_SIZE, PREPROCESS_VERSION, model_stem
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import DataError, ModelError
from edge_sca.fileio import sha256_file
from edge_sca.isic import IsicFolder, load_isic_folder
from edge_sca.manifest import load_manifest, manifest_path
from edge_sca.training_record import record_macs, record_threshold
from quantize.budgets import Budget, Drift, broken, check_budgets
from quantize.data import Arrays, data_key, load_split
from quantize.recipe import BiasCorrection, CalibrationSource, Method, Recipe, load_recipe

log = logging.getLogger(__name__)

#: Bump when the pipeline's output changes for the same inputs (the source hash below catches code edits too).
PIPELINE_VERSION = 2
REFERENCE_IMAGES = 3
#: Calibration images per-layer bias correction measures each layer's shift on (a seeded draw).
LAYER_BIAS_IMAGES = 64
#: The splits drift is measured on (pooled for the budgets, and each on its own).
EVAL_SPLITS = ("val", "test")
_CODE_FILES = ("convert.py", "export.py", "pipeline.py", "debug.py", "drift.py", "bias_correction.py", "qat.py",
               "fake_quant.py", "recipe.py", "ranges.py", "layer_bias.py")


@dataclass
class QuantizeOptions:
    """What the user chose; part of the build key."""

    io: str = "int8"
    variants: list[str] = field(default_factory=list)  # extra variants: float16, dynamic
    recipe: Recipe = field(default_factory=load_recipe)
    keep_float: list[str] = field(default_factory=list)
    keep_float_auto: bool = False
    skip_bad: bool = False
    threads: int | None = None  # TensorFlow threads for fine-tuning (does not change the result's recipe)


@dataclass
class Outcome:
    """One model's result: the summary printed / returned, and the broken budget messages (empty when OK)."""

    summary: dict
    failures: list[str]
    failed: set[Budget] = field(default_factory=set)


def code_version() -> str:
    h = hashlib.sha256(f"pipeline-v{PIPELINE_VERSION}-preprocess-v{PREPROCESS_VERSION}".encode())
    for name in _CODE_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def stratified(arrays: Arrays, n: int, seed: int = 0) -> Arrays:
    """n images keeping the class proportions, chosen deterministically (seeded), in their original order."""
    rng = np.random.default_rng(seed)
    y = np.asarray(arrays.y)
    picks = []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        k = min(len(idx), int(round(n * len(idx) / len(y))))
        picks.append(rng.choice(idx, size=k, replace=False))
    keep = np.sort(np.concatenate(picks))
    return Arrays(np.asarray(arrays.x[keep]), y[keep], [arrays.ids[i] for i in keep])


def calibration_set(folder: IsicFolder, size: int | None, skip_bad: bool = False,
                    source: CalibrationSource = CalibrationSource.COLUMN, seed: int = 0) -> tuple[Arrays, str]:
    """The representative images: the folder's `calibration` subset (a stratified subset of it when `size` is
    given), else, or when the recipe asks for it, a seeded stratified draw of `size` train images."""
    if source is CalibrationSource.COLUMN and folder.has_calibration_column and folder.subset("calibration"):
        arrays, what = load_split(folder, "calibration", skip_bad=skip_bad), "metadata calibration column"
        if size and size < len(arrays.ids):
            arrays, what = stratified(arrays, size, seed), f"{what}, stratified subset of {size}"
        return Arrays(np.asarray(arrays.x), arrays.y, arrays.ids), what
    if not size:
        what = "marks no image" if folder.has_calibration_column else "has no calibration column"
        raise DataError(f"{folder.root / 'metadata.csv'} {what}: no calibration set. Mark rows with calibration=1, "
                        "or pass --calibration-size N to draw a stratified subset of N train images")
    return stratified(load_split(folder, "train", skip_bad=skip_bad), size, seed), f"stratified {size} of train"


def build_key(keras_sha: str, calib_ids_sha: str, options: QuantizeOptions, variant: str) -> str:
    """What a variant's bytes depend on: float variants only on the Keras file and the code; int8 also on the
    calibration ids, the recipe and the int8 options."""
    int8 = variant == "int8"
    opts = {k: v for k, v in asdict(options).items() if k in ("io", "keep_float", "keep_float_auto")}
    opts["recipe"] = options.recipe.conversion_key()
    blob = json.dumps({"keras": keras_sha, "calibration": calib_ids_sha if int8 else None,
                       "options": opts if int8 else None, "variant": variant, "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def up_to_date(path: Path, key: str) -> bool:
    """The file exists, matches its manifest's sha256, and was built with this key."""
    if not path.is_file() or not manifest_path(path).is_file():
        return False
    try:
        manifest = load_manifest(manifest_path(path))
    except ModelError:
        return False
    return manifest.data.get("build_key") == key and manifest.sha256 == sha256_file(path)


@dataclass
class Job:
    """Everything one model's run shares."""

    name: str
    keras_path: Path
    models_dir: Path  # where the trained model (and a committed fine-tuned copy) is read
    out_dir: Path  # where the .tflite files (and a newly fine-tuned copy) are written
    report_dir: Path
    options: QuantizeOptions
    folder: IsicFolder
    calib: Arrays
    calib_source: str
    threshold: float
    threshold_source: str
    keras_sha: str
    _model: object = None
    _int8_source: tuple | None = None

    @property
    def stem(self) -> str:
        return model_stem(self.name)

    @property
    def recipe(self) -> Recipe:
        return self.options.recipe

    def model(self):
        from quantize.evaluate import load_source_model

        if self._model is None:
            self._model = load_source_model(self.keras_path)
        return self._model

    def key(self, variant: str) -> str:
        return build_key(self.keras_sha, ids_hash(self.calib.ids), self.options, variant)

    def path(self, variant: str) -> Path:
        return self.out_dir / f"{self.stem}_{variant}.tflite"

    def manifest_extra(self, variant: str) -> dict:
        extra = {"build_key": self.key(variant), "threshold_source": self.threshold_source,
                 "macs": record_macs(self.keras_path),  # the device benchmark's MACs (the bundle has no records)
                 "source_model": {"file": self.keras_path.name, "sha256": self.keras_sha},
                 "calibration": {"ids_sha256": ids_hash(self.calib.ids), "count": len(self.calib.ids),
                                 "counts": self.calib.counts(), "source": self.calib_source,
                                 "isic_dir": str(self.folder.root)}}
        if variant == "int8":
            extra["recipe"] = self.recipe.as_dict()
        return extra


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
    calib, calib_source = calibrate(folder, options)
    log.info("%s: recipe %s (%s), calibration set %d images (%s)", name, options.recipe.name,
             options.recipe.method.value, len(calib.ids), calib_source)
    return Job(name, keras_path, models_dir, out_dir or models_dir, reports_dir / name, options, folder, calib,
               calib_source, threshold, source, sha256_file(keras_path))


def calibrate(folder: IsicFolder, options: QuantizeOptions) -> tuple[Arrays, str]:
    """Stage 1: the recipe's calibration images."""
    cal = options.recipe.calibration
    return calibration_set(folder, cal.size, options.skip_bad, cal.source, options.recipe.seed)


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


def quantize(job: Job) -> dict[str, Path]:
    """Stage 2: float32 (and any extra variants) from the trained model, int8 by the recipe."""
    variants = ["float32", "int8"] + [v for v in job.options.variants if v not in ("float32", "int8")]
    return {v: build_variant(job, v) for v in variants}


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
                data, correction = _bias_corrected(job, model, data, keep_float, path)
            elif job.recipe.bias_correction is BiasCorrection.PER_LAYER and not keep_float:
                data, correction = _layer_bias_corrected(job, model, data)
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


def _p_int8(data: bytes, pixels: np.ndarray, near: Path) -> np.ndarray:
    """p(malignant) of a not-yet-written model, through the device's runtime."""
    from edge_sca.interpreter import TFLiteModel

    tmp = near.with_suffix(".probe.tflite")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    try:
        return TFLiteModel(tmp, verify=False, require_manifest=False).p_malignant(np.asarray(pixels))
    finally:
        tmp.unlink(missing_ok=True)


def _bias_corrected(job: Job, model, data: bytes, keep_float: list[str] | None,
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
    before = measure_shift(p_float, _p_int8(data, x, path))
    record = {"images": len(x), "source": "calibration set", "logit_shift_before": before, "applied": False}
    if abs(before) < MIN_SHIFT:
        return data, record | {"logit_shift_after": before, "note": f"below {MIN_SHIFT}: nothing to correct"}
    log.info("int8 shifts the malignant logit by %+.4f on the calibration images; converting again without it",
             before)
    corrected = convert(with_logit_shift(model, before), "int8", x, io=job.options.io, keep_float=keep_float,
                        ranges=job.recipe.activation_ranges.value, seed=job.recipe.seed,
                        per_channel=job.recipe.per_channel)
    after = measure_shift(p_float, _p_int8(corrected, x, path))
    if abs(after) >= abs(before):
        log.warning("bias correction did not help (%+.4f -> %+.4f); keeping the uncorrected int8 model", before, after)
        return data, record | {"logit_shift_after": after, "note": "did not reduce the shift; not applied"}
    log.info("int8 logit shift after correction: %+.4f", after)
    return corrected, record | {"applied": True, "logit_shift_applied": before, "logit_shift_after": after}


def _layer_bias_corrected(job: Job, model, data: bytes) -> tuple[bytes, dict]:
    """Per-layer bias correction against the float32 conversion of the model the int8 file came from, on a seeded
    LAYER_BIAS_IMAGES of the calibration images."""
    from quantize.convert import convert
    from quantize.layer_bias import correct

    x = np.asarray(job.calib.x)
    rng = np.random.default_rng(job.recipe.seed)
    pick = np.sort(rng.choice(len(x), min(LAYER_BIAS_IMAGES, len(x)), replace=False))
    corrected, summary = correct(data, convert(model, "float32"), x[pick])
    return corrected, {"method": "per_layer", "source": "calibration set"} | summary


def eval_data_key(job: Job) -> str:
    """Hash of the splits the drift report is measured on."""
    records = [r for s in EVAL_SPLITS for r in job.folder.subset(s)]
    return hashlib.sha256((job.folder.metadata_sha256() + data_key(records, INPUT_SIZE)).encode()).hexdigest()[:16]


def run(job: Job) -> Outcome:
    """Quantize, then validate (drift on val + test, keep-float, budgets); all reused when nothing changed."""
    variants = ["float32", "int8"] + [v for v in job.options.variants if v not in ("float32", "int8")]
    keys = [job.key(v) for v in variants] + [eval_data_key(job)]
    inputs_key = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:24]
    cached = _cached_report(job, inputs_key)
    if cached is not None:
        log.info("%s: models and drift report are up to date (key %s); reusing them", job.name, inputs_key[:12])
        return _outcome(job, cached)
    return _outcome(job, validate(job, quantize(job), inputs_key))


def _cached_report(job: Job, key: str) -> dict | None:
    """drift.json when it was made from these inputs and every model it describes is still the file it measured."""
    path = job.report_dir / "drift.json"
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


def eval_splits(job: Job) -> dict[str, Arrays]:
    return {s: load_split(job.folder, s, skip_bad=job.options.skip_bad) for s in EVAL_SPLITS}


def _shown(path: Path) -> str:
    """A path as the report records it: relative to the repository when inside it (reports travel in git)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def validate(job: Job, paths: dict[str, Path], report_key: str) -> dict:
    """Stage 3: drift of every variant against float32 on val + test (and each split), keep-float, the report."""
    from quantize.drift import compare_splits, file_sizes, score
    from quantize.report import write_report

    parts = eval_splits(job)
    probs = score({"keras": job.keras_path, **paths}, parts)
    drift, joined = compare_splits(probs, parts, job.threshold, file_sizes(paths))
    drift["models"] = {name: _shown(p) for name, p in {"keras": job.keras_path, **paths}.items()}
    drift["threshold_source"] = job.threshold_source
    drift["calibration"] = job.manifest_extra("int8")["calibration"]
    int8_manifest = load_manifest(manifest_path(paths["int8"])).data
    drift["recipe"] = int8_manifest.get("recipe")
    drift["qat_model"] = int8_manifest.get("qat_model")
    drift["bias_correction"] = int8_manifest.get("bias_correction")
    need_keep = job.options.keep_float or (job.options.keep_float_auto and not drift["budgets"]["ok"])
    if need_keep:
        drift, joined = _keep_float(job, paths, parts, drift, probs)
    drift.update(model=job.name, inputs_key=report_key, artifacts={_shown(p): sha256_file(p) for p in paths.values()})
    _annotate_manifests(paths, drift)
    y = np.concatenate([parts[s].y for s in parts])
    write_report(drift, joined, y, job.report_dir, f"CancerNet-SCa-{job.name.upper()}: float vs int8 drift on "
                 f"{' + '.join(EVAL_SPLITS)}")
    return drift


def _keep_float(job: Job, paths: dict[str, Path], parts: dict[str, Arrays], drift: dict,
                probs: dict) -> tuple[dict, dict]:
    """Leave layers in float (given, or the worst by the debugger); the result ships as the int8 model if it
    passes the budgets (automatic mode) or always (explicit layers); the full-integer one goes to the report."""
    from quantize.debug import latency_ms, layer_errors, worst_layers
    from quantize.drift import compare_splits, score

    layers = list(job.options.keep_float)
    if not layers:
        rows = layer_errors(job.model(), job.calib.x, io_type=job.options.io)
        drift["diagnosis"] = {"images": min(len(job.calib.ids), 16), "layers": rows[:10]}
        layers = worst_layers(rows)
    mixed = build_variant(job, "int8", keep_float=layers, path=job.report_dir / f"{job.stem}_int8_keepfloat.tflite")
    p_mixed = score({"int8": mixed}, parts)["int8"]
    sizes = dict(drift["sizes_bytes"], int8=mixed.stat().st_size)
    alt, joined = compare_splits({**probs, "int8": p_mixed}, parts, drift["threshold"], sizes)
    ref = np.asarray(parts[EVAL_SPLITS[-1]].x[0])
    drift["keep_float"] = {
        "layers": layers, "file": _shown(mixed), "size_bytes": sizes["int8"],
        "size_delta_bytes": sizes["int8"] - drift["sizes_bytes"]["int8"],
        "latency_ms": latency_ms(mixed, ref), "int8_latency_ms": latency_ms(paths["int8"], ref),
        "agreement": alt["int8_vs_float32"]["agreement"],
        "delta_sensitivity": alt["int8_vs_float32"]["delta_sensitivity"], "budgets_ok": alt["budgets"]["ok"]}
    if job.options.keep_float or alt["budgets"]["ok"]:
        full = job.report_dir / f"{job.stem}_int8_full.tflite"
        shutil.copyfile(paths["int8"], full)
        shutil.copyfile(mixed, paths["int8"])
        shutil.copyfile(manifest_path(mixed), manifest_path(paths["int8"]))
        _fix_model_file(paths["int8"])
        drift["keep_float"]["shipped"] = True
        alt.update({k: drift[k] for k in ("diagnosis", "keep_float", "threshold_source", "calibration", "recipe",
                                          "qat_model", "bias_correction") if k in drift})
        alt["models"] = dict(drift["models"], int8_full=_shown(full))
        return alt, joined
    drift["keep_float"]["shipped"] = False
    return drift, {name: np.concatenate([p[s] for s in parts]) for name, p in probs.items()}


def _fix_model_file(path: Path) -> None:
    manifest = load_manifest(manifest_path(path))
    manifest.data["model_file"] = path.name
    manifest.save()


def _annotate_manifests(paths: dict[str, Path], drift: dict) -> None:
    """Add the float-vs-int8 metrics (val + test, and each split) to each model's manifest (bytes unchanged)."""
    q = {k: v for k, v in drift["int8_vs_float32"].items() if k != "malignant_to_benign_images"}
    per_split = {s: {"n": d["n"], "int8_vs_float32": {k: v for k, v in d["int8_vs_float32"].items()
                                                       if k != "malignant_to_benign_images"}}
                 for s, d in drift["splits"].items()}
    for path in paths.values():
        manifest = load_manifest(manifest_path(path))
        manifest.data["metrics"] = {"split": drift["split"], "n": drift["n"], "threshold": drift["threshold"],
                                    **{k: drift["metrics"][k] for k in drift["metrics"]}, "int8_vs_float32": q,
                                    "splits": per_split, "budgets_ok": drift["budgets"]["ok"]}
        manifest.save()


def drift_of(d: dict) -> Drift:
    """The budgeted figures of a drift report (pooled splits)."""
    q = d["int8_vs_float32"]
    return Drift(q["agreement"], q["missed_cancers"], d["counts"]["malignant"], q["delta_sensitivity"],
                 q["delta_auroc"], d["size_ratio_int8_float32"])


def _outcome(job: Job, drift: dict) -> Outcome:
    results = check_budgets(drift_of(drift))
    failures = [f"{job.name}: {r.message}" for r in broken(results)]
    q = drift["int8_vs_float32"]
    summary = {"model": job.name, "recipe": job.recipe.name, "method": job.recipe.method.value,
               "split": drift["split"], "n": drift["n"], "models": drift["models"], "threshold": drift["threshold"],
               "agreement": q["agreement"], "delta_sensitivity": q["delta_sensitivity"],
               "delta_auroc": q["delta_auroc"], "malignant_to_benign": q["malignant_to_benign"],
               "missed_cancers": q["missed_cancers"],
               "benign_to_malignant": q["benign_to_malignant"], "mean_abs_delta_p": q["mean_abs_delta_p"],
               "max_abs_delta_p": q["max_abs_delta_p"], "size_ratio": drift["size_ratio_int8_float32"],
               "splits": {s: {k: d["int8_vs_float32"][k] for k in ("agreement", "malignant_to_benign", "missed_cancers",
                                                                    "delta_sensitivity", "delta_auroc")}
                          for s, d in drift["splits"].items()},
               "metrics": {k: {m: v[m] for m in ("balanced_accuracy", "sensitivity", "specificity", "auroc")}
                           for k, v in drift["metrics"].items()},
               "keep_float": drift.get("keep_float"), "report": _shown(job.report_dir / "drift.md"),
               "failed_budgets": [r.kind.value for r in broken(results)], "budgets_ok": not failures}
    return Outcome(summary, failures, {r.kind for r in broken(results)})


def default_reports_dir() -> Path:
    return REPO_ROOT / "reports" / "quantize"
