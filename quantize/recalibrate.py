"""Re-checking a scanner's decision threshold on the site's own labelled captures.

The shipped threshold was chosen on ISIC val images; a scanner's camera, light and patients are another source, and
the same threshold can miss far more melanomas there. This scores the site's images with each .tflite model (through
the device's own code path), reports sensitivity and specificity at the current threshold with Wilson 95% intervals,
and proposes the highest threshold that reaches the target sensitivity on those images. It refuses to propose one
from too few malignant images, since a threshold read off a handful of cases is noise. Proposed thresholds go into
new manifests beside copies of the models in an output folder that `make bundle MODELS_DIR=...` signs; the models/
folder is never changed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_sca.errors import DataError, ModelError
from edge_sca.isic import load_isic_folder
from edge_sca.manifest import load_manifest, manifest_path
from edge_sca.metrics import binary_metrics, threshold_for_sensitivity, wilson_interval
from edge_sca.policy import RECALIBRATION_MAX_SHORTFALL, RECALIBRATION_MIN_BENIGN, TARGET_SENSITIVITY
from quantize.provenance import now_iso, write_json

log = logging.getLogger(__name__)

Status = Literal["proposed", "too_few_malignant", "too_few_benign"]
REPORT_NAME = "recalibration.json"


@dataclass(frozen=True)
class RecalibrateOptions:
    target_sensitivity: float = TARGET_SENSITIVITY
    max_shortfall: float = RECALIBRATION_MAX_SHORTFALL
    min_benign: int = RECALIBRATION_MIN_BENIGN
    split: str = "all"


def malignant_needed(target: float = TARGET_SENSITIVITY, max_shortfall: float = RECALIBRATION_MAX_SHORTFALL) -> int:
    """Fewest malignant images whose 95% Wilson lower bound at sensitivity `target` is within `max_shortfall`."""
    if not 0.0 < target < 1.0 or not 0.0 < max_shortfall < target:
        raise ValueError(f"target {target} and shortfall {max_shortfall}: need 0 < shortfall < target < 1")
    n = 1
    while wilson_interval(target * n, n)[0] < target - max_shortfall:
        n += 1
    return n


def rates_with_ci(labels: np.ndarray, p_malignant: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity at `threshold`, each with its Wilson 95% interval and counts."""
    m = binary_metrics(labels, p_malignant, threshold)
    (tn, fp), (fn, tp) = m["confusion"]
    return {"threshold": float(threshold),
            "sensitivity": m["sensitivity"], "sensitivity_ci95": list(wilson_interval(tp, tp + fn)),
            "specificity": m["specificity"], "specificity_ci95": list(wilson_interval(tn, tn + fp)),
            "confusion": m["confusion"], "auroc": m["auroc"]}


def check_counts(labels: np.ndarray, opts: RecalibrateOptions) -> tuple[Status, str]:
    """Whether the set is big enough to propose a threshold, and, when not, what to collect."""
    n_mal, n_ben = int((labels == 1).sum()), int((labels == 0).sum())
    need = malignant_needed(opts.target_sensitivity, opts.max_shortfall)
    if n_mal < need:
        return "too_few_malignant", (
            f"{n_mal} malignant images; proposing a threshold for {opts.target_sensitivity:.0%} sensitivity needs at "
            f"least {need} (so that its 95% lower confidence bound is within {opts.max_shortfall:.0%} of the target): "
            f"collect and label {need - n_mal} more biopsy-confirmed malignant captures")
    if n_ben < opts.min_benign:
        return "too_few_benign", (f"{n_ben} benign images; at least {opts.min_benign} are needed to show the "
                                  f"specificity a new threshold costs: collect {opts.min_benign - n_ben} more")
    return "proposed", "enough images to propose a threshold"


def find_models(models_dir: Path, names: list[str] | None) -> list[Path]:
    """The .tflite files with manifests in `models_dir` (those of architectures `names`, when given)."""
    found = []
    for path in sorted(models_dir.glob("*.tflite")):
        if not manifest_path(path).is_file():
            log.warning("skipping %s: no manifest beside it", path.name)
            continue
        if names and load_manifest(manifest_path(path)).data.get("architecture") not in names:
            continue
        found.append(path)
    if not found:
        raise ModelError(f"no .tflite model with a manifest in {models_dir}"
                         f"{' for ' + ', '.join(names) if names else ''}; build them with `make quantize`")
    return found


def _site_arrays(isic_dir: Path, split: str):
    from quantize.data import load_split

    folder = load_isic_folder(isic_dir)
    data = load_split(folder, split)
    if (data.y < 0).any():
        raise DataError(f"{isic_dir}: some images carry no label; every capture needs benign or malignant")
    return folder, data


def recalibrate(isic_dir: str | Path, models_dir: str | Path, out_dir: str | Path, names: list[str] | None = None,
                opts: RecalibrateOptions = RecalibrateOptions()) -> dict:
    """Score the site's images with every model, report, and (when the set is big enough) write new manifests."""
    isic_dir, models_dir, out_dir = Path(isic_dir), Path(models_dir), Path(out_dir)
    if out_dir.resolve() == models_dir.resolve():
        raise DataError(f"--out-dir {out_dir} is the models folder itself; give a new folder, check the report, "
                        "then bundle it with `make bundle MODELS_DIR=<that folder>`")
    models = find_models(models_dir, names)
    folder, data = _site_arrays(isic_dir, opts.split)
    status, reason = check_counts(data.y, opts)
    report: dict[str, Any] = {"created": now_iso(), "isic_dir": str(isic_dir.resolve()), "split": opts.split,
              "metadata_sha256": folder.metadata_sha256(), "counts": data.counts(),
              "target_sensitivity": opts.target_sensitivity,
              "malignant_needed": malignant_needed(opts.target_sensitivity, opts.max_shortfall),
              "benign_needed": opts.min_benign, "status": status, "reason": reason, "models": []}
    for path in models:
        report["models"].append(_one_model(path, data, status, opts))
    if status == "proposed":
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, entry in zip(models, report["models"], strict=False):
            _write_model(path, out_dir, entry, report)
        write_json(out_dir / REPORT_NAME, report)
    return report


def _one_model(path: Path, data, status: Status, opts: RecalibrateOptions) -> dict:
    from quantize.evaluate import load_scorer

    scorer = load_scorer(path)
    p = scorer.p_malignant(np.asarray(data.x))
    entry: dict[str, Any] = {"model": path.name, "current": rates_with_ci(data.y, p, scorer.threshold)}
    if status == "proposed":
        proposed = threshold_for_sensitivity(data.y, p, opts.target_sensitivity)
        entry["proposed"] = rates_with_ci(data.y, p, proposed)
    log.info("%s: at the current threshold %.4f sensitivity %.3f, specificity %.3f%s", path.name, scorer.threshold,
             entry["current"]["sensitivity"], entry["current"]["specificity"],
             f"; proposed {entry['proposed']['threshold']:.4f}" if "proposed" in entry else "")
    return entry


def _write_model(path: Path, out_dir: Path, entry: dict, report: dict) -> None:
    """Copy the model and write its manifest with the proposed threshold and a record of where it came from."""
    manifest = load_manifest(manifest_path(path))
    data = dict(manifest.data)
    data["recalibration"] = {"previous_threshold": manifest.threshold, "created": report["created"],
                             "isic_dir": report["isic_dir"], "metadata_sha256": report["metadata_sha256"],
                             "counts": report["counts"], "target_sensitivity": report["target_sensitivity"],
                             "at_previous_threshold": entry["current"], "at_new_threshold": entry["proposed"]}
    data["threshold"] = entry["proposed"]["threshold"]
    shutil.copy2(path, out_dir / path.name)
    write_json(manifest_path(out_dir / path.name), data)
