"""`make quantize` for one model: calibrate, convert, write models + manifests, measure drift, check budgets.

Every artifact's manifest carries a build key (hash of the Keras file, the calibration ids, the options and this
code), so a re-run with unchanged inputs reuses what it built; drift.json carries the same key plus the test
data's, so the evaluation is reused too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.config import INPUT_SIZE, REPO_ROOT, model_stem
from edge_sca.errors import DataError, ModelError
from edge_sca.fileio import sha256_file
from edge_sca.isic import IsicFolder, load_isic_folder
from edge_sca.training_record import record_macs, record_threshold
from edge_sca.manifest import load_manifest, manifest_path
from edge_sca.preprocess import PREPROCESS_VERSION
from quantize.budgets import broken, check_budgets
from quantize.data import Arrays, data_key, load_split

log = logging.getLogger(__name__)

#: Bump when the pipeline's output changes for the same inputs (the source hash below catches code edits too).
PIPELINE_VERSION = 1
REFERENCE_IMAGES = 3
_CODE_FILES = ("convert.py", "export.py", "pipeline.py", "debug.py", "drift.py", "bias_correction.py")


@dataclass
class QuantizeOptions:
    """What the user chose; part of the build key."""

    io: str = "int8"
    variants: list[str] = field(default_factory=list)  # extra variants: float16, dynamic
    calibration_size: int | None = None
    keep_float: list[str] = field(default_factory=list)
    keep_float_auto: bool = False
    skip_bad: bool = False
    per_tensor: bool = False  # per-tensor weight scales: smaller file, usually more drift
    bias_correction: bool = True  # remove int8's systematic logit shift (quantize/bias_correction.py)


@dataclass
class Outcome:
    """One model's result: the summary printed / returned, and the broken budget messages (empty when OK)."""

    summary: dict
    failures: list[str]


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


def calibration_set(folder: IsicFolder, size: int | None, skip_bad: bool = False) -> tuple[Arrays, str]:
    """The representative images: the folder's `calibration` subset, else a stratified draw of `size` from train."""
    if folder.has_calibration_column and folder.subset("calibration"):
        arrays, source = load_split(folder, "calibration", skip_bad=skip_bad), "metadata calibration column"
        if size and size < len(arrays.ids):
            arrays, source = stratified(arrays, size), f"{source}, stratified subset of {size}"
        return Arrays(np.asarray(arrays.x), arrays.y, arrays.ids), source
    if not size:
        what = "marks no image" if folder.has_calibration_column else "has no calibration column"
        raise DataError(f"{folder.root / 'metadata.csv'} {what}: no calibration set. Mark rows with calibration=1, "
                        "or pass --calibration-size N to draw a stratified subset of N train images")
    return stratified(load_split(folder, "train", skip_bad=skip_bad), size), f"stratified {size} of train"


def build_key(keras_sha: str, calib_ids_sha: str, options: QuantizeOptions, variant: str) -> str:
    """What a variant's bytes depend on: float variants only on the Keras file and the code; int8 also on the
    calibration ids and the int8 options."""
    int8 = variant == "int8"
    opts = {k: v for k, v in asdict(options).items() if k in ("io", "keep_float", "keep_float_auto", "per_tensor",
                                                         "bias_correction")}
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
    models_dir: Path
    report_dir: Path
    options: QuantizeOptions
    folder: IsicFolder
    calib: Arrays
    calib_source: str
    threshold: float
    threshold_source: str
    keras_sha: str
    _model: object = None

    @property
    def stem(self) -> str:
        return model_stem(self.name)

    def model(self):
        from quantize.evaluate import load_source_model

        if self._model is None:
            self._model = load_source_model(self.keras_path)
        return self._model

    def key(self, variant: str) -> str:
        return build_key(self.keras_sha, ids_hash(self.calib.ids), self.options, variant)

    def path(self, variant: str) -> Path:
        return self.models_dir / f"{self.stem}_{variant}.tflite"

    def manifest_extra(self, variant: str) -> dict:
        return {"build_key": self.key(variant), "threshold_source": self.threshold_source,
                "macs": record_macs(self.keras_path),  # the device benchmark's MACs (the bundle has no records)
                "source_model": {"file": self.keras_path.name, "sha256": self.keras_sha},
                "calibration": {"ids_sha256": ids_hash(self.calib.ids), "count": len(self.calib.ids),
                                "counts": self.calib.counts(), "source": self.calib_source,
                                "isic_dir": str(self.folder.root)}}


def prepare(name: str, isic_dir: str | Path, models_dir: Path, reports_dir: Path, options: QuantizeOptions) -> Job:
    keras_path = models_dir / f"{model_stem(name)}.keras"
    if not keras_path.is_file() and keras_path.with_suffix(".pb").is_file():
        keras_path = keras_path.with_suffix(".pb")  # an imported original checkpoint
    if not keras_path.is_file():
        raise ModelError(f"{keras_path}: no trained model; run `make train MODEL={name}` first (or --models-dir)")
    threshold, source = record_threshold(keras_path)
    folder = load_isic_folder(isic_dir, skip_bad=options.skip_bad)
    calib, calib_source = calibration_set(folder, options.calibration_size, options.skip_bad)
    log.info("%s: calibration set %d images (%s)", name, len(calib.ids), calib_source)
    return Job(name, keras_path, models_dir, reports_dir / name, options, folder, calib, calib_source, threshold,
               source, sha256_file(keras_path))


def build_variant(job: Job, variant: str, keep_float: list[str] | None = None, path: Path | None = None) -> Path:
    """Convert and write one variant with its manifest, unless an identical build is already there."""
    from quantize.convert import check_int8_input, convert
    from quantize.export import write_model

    path = path or job.path(variant)
    key = job.key(variant) + ("-keep:" + ",".join(keep_float) if keep_float else "")
    if up_to_date(path, key):
        log.info("%s is up to date (build key %s); reusing it", path.name, key[:12])
        return path
    log.info("converting %s to %s%s", job.keras_path.name, variant, f" keeping {keep_float} in float" if keep_float else "")
    try:
        data = convert(job.model(), variant, job.calib.x, io=job.options.io, keep_float=keep_float,
                       per_channel=not job.options.per_tensor)
        correction = None
        if variant == "int8":
            check_int8_input(data, job.options.io)
            if job.options.bias_correction:
                data, correction = _bias_corrected(job, data, keep_float, path)
    except ValueError as exc:  # bad calibration or options: say so in one line, not a traceback
        raise ModelError(f"{job.keras_path.name} -> {variant}: {exc}") from exc
    extra = job.manifest_extra(variant) | {"build_key": key, "keep_float": list(keep_float or [])}
    if correction:
        extra["bias_correction"] = correction
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


def _bias_corrected(job: Job, data: bytes, keep_float: list[str] | None, path: Path) -> tuple[bytes, dict | None]:
    """Measure int8's logit shift on the calibration images; when it matters, convert again with it removed."""
    import keras

    from quantize.bias_correction import MIN_SHIFT, measure_shift, with_logit_shift
    from quantize.convert import convert
    from quantize.train import predict_keras

    model = job.model()
    if not isinstance(model, keras.Model):
        log.info("bias correction skipped: %s is not a Keras model", job.keras_path.name)
        return data, None
    x = job.calib.x
    p_float = predict_keras(model, np.asarray(x))
    before = measure_shift(p_float, _p_int8(data, x, path))
    record = {"images": len(x), "source": "calibration set", "logit_shift_before": before, "applied": False}
    if abs(before) < MIN_SHIFT:
        return data, record | {"logit_shift_after": before, "note": f"below {MIN_SHIFT}: nothing to correct"}
    log.info("int8 shifts the malignant logit by %+.4f on the calibration images; converting again without it",
             before)
    corrected = convert(with_logit_shift(model, before), "int8", x, io=job.options.io, keep_float=keep_float,
                        per_channel=not job.options.per_tensor)
    after = measure_shift(p_float, _p_int8(corrected, x, path))
    if abs(after) >= abs(before):
        log.warning("bias correction did not help (%+.4f -> %+.4f); keeping the uncorrected int8 model", before, after)
        return data, record | {"logit_shift_after": after, "note": "did not reduce the shift; not applied"}
    log.info("int8 logit shift after correction: %+.4f", after)
    return corrected, record | {"applied": True, "logit_shift_applied": before, "logit_shift_after": after}


def eval_data_key(job: Job) -> str:
    """Hash of the test split the drift report is measured on."""
    records = job.folder.subset("test")
    return hashlib.sha256((job.folder.metadata_sha256() + data_key(records, INPUT_SIZE)).encode()).hexdigest()[:16]


def run(job: Job) -> Outcome:
    """Build the variants, then drift on the test split, keep-float, budgets; all reused when nothing changed."""
    variants = ["float32", "int8"] + [v for v in job.options.variants if v not in ("float32", "int8")]
    inputs_key = hashlib.sha256(json.dumps([job.key(v) for v in variants] + [eval_data_key(job)]).encode()).hexdigest()[:24]
    cached = _cached_report(job, inputs_key)
    if cached is not None:
        log.info("%s: models and drift report are up to date (key %s); reusing them", job.name, inputs_key[:12])
        return _outcome(job, cached)
    paths = {v: build_variant(job, v) for v in variants}
    return _outcome(job, _measure_and_report(job, paths, inputs_key))


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
        if not Path(file).is_file() or sha256_file(Path(file)) != sha:
            return None
    return d


def _measure_and_report(job: Job, paths: dict[str, Path], report_key: str) -> dict:
    from quantize.drift import measure
    from quantize.report import write_report

    test = load_split(job.folder, "test", skip_bad=job.options.skip_bad)
    drift, probs = measure({"keras": job.keras_path, **paths}, test, job.threshold)
    drift["threshold_source"] = job.threshold_source
    drift["calibration"] = job.manifest_extra("int8")["calibration"]
    drift["bias_correction"] = load_manifest(manifest_path(paths["int8"])).data.get("bias_correction")
    need_keep = job.options.keep_float or (job.options.keep_float_auto and not drift["budgets"]["ok"])
    if need_keep:
        drift, probs = _keep_float(job, paths, test, drift, probs)
    drift.update(model=job.name, split="test", inputs_key=report_key,
                 artifacts={str(p): sha256_file(p) for p in paths.values()})
    _annotate_manifests(paths, drift)
    write_report(drift, probs, test.y, job.report_dir, f"CancerNet-SCa-{job.name.upper()}: float vs int8 drift "
                 "on the test split")
    return drift


def _keep_float(job: Job, paths: dict[str, Path], test: Arrays, drift: dict, probs: dict) -> tuple[dict, dict]:
    """Leave layers in float (given, or the worst by the debugger); the result ships as the int8 model if it
    passes the budgets (automatic mode) or always (explicit layers); the full-integer one goes to the report."""
    from quantize.debug import latency_ms, layer_errors, worst_layers
    from quantize.drift import compare
    from quantize.evaluate import load_scorer

    layers = list(job.options.keep_float)
    if not layers:
        rows = layer_errors(job.model(), job.calib.x, io_type=job.options.io)
        drift["diagnosis"] = {"images": min(len(job.calib.ids), 16), "layers": rows[:10]}
        layers = worst_layers(rows)
    mixed = build_variant(job, "int8", keep_float=layers, path=job.report_dir / f"{job.stem}_int8_keepfloat.tflite")
    p_mixed = load_scorer(mixed).p_malignant(np.asarray(test.x))
    sizes = dict(drift["sizes_bytes"], int8=mixed.stat().st_size)
    alt = compare({**probs, "int8": p_mixed}, test, drift["threshold"], sizes)
    ref = np.asarray(test.x[0])
    drift["keep_float"] = {
        "layers": layers, "file": str(mixed), "size_bytes": sizes["int8"],
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
        alt.update({k: drift[k] for k in ("diagnosis", "keep_float", "threshold_source", "calibration",
                                          "bias_correction") if k in drift})
        alt["models"] = dict(drift["models"], int8_full=str(full))
        return alt, {**probs, "int8": p_mixed}
    drift["keep_float"]["shipped"] = False
    return drift, probs


def _fix_model_file(path: Path) -> None:
    manifest = load_manifest(manifest_path(path))
    manifest.data["model_file"] = path.name
    manifest.save()


def _annotate_manifests(paths: dict[str, Path], drift: dict) -> None:
    """Add the float-vs-int8 metrics of the test split to each model's manifest (the model bytes are unchanged)."""
    q = {k: v for k, v in drift["int8_vs_float32"].items() if k != "malignant_to_benign_images"}
    for path in paths.values():
        manifest = load_manifest(manifest_path(path))
        manifest.data["metrics"] = {"split": "test", "n": drift["n"], "threshold": drift["threshold"],
                                    **{k: drift["metrics"][k] for k in drift["metrics"]}, "int8_vs_float32": q,
                                    "budgets_ok": drift["budgets"]["ok"]}
        manifest.save()


def _outcome(job: Job, drift: dict) -> Outcome:
    q = drift["int8_vs_float32"]
    results = check_budgets(q["agreement"], q["delta_sensitivity"], drift["size_ratio_int8_float32"])
    failures = [f"{job.name}: {r.message}" for r in broken(results)]
    summary = {"model": job.name, "models": drift["models"], "threshold": drift["threshold"],
               "agreement": q["agreement"], "delta_sensitivity": q["delta_sensitivity"],
               "malignant_to_benign": q["malignant_to_benign"], "benign_to_malignant": q["benign_to_malignant"],
               "max_abs_delta_p": q["max_abs_delta_p"], "size_ratio": drift["size_ratio_int8_float32"],
               "metrics": {k: {m: v[m] for m in ("balanced_accuracy", "sensitivity", "specificity", "auroc")}
                           for k, v in drift["metrics"].items()},
               "keep_float": drift.get("keep_float"), "report": str(job.report_dir / "drift.md"),
               "budgets_ok": not failures}
    return Outcome(summary, failures)


def default_reports_dir() -> Path:
    return REPO_ROOT / "reports" / "quantize"
