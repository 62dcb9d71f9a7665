"""Stage 3 of `make quantize`: int8 against float32 on val + test, the report, the manifests' metrics, the verdict.

Drift is measured on val and test together (never train or calibration images), and on each split; the figures
go into drift.json / drift.md and into every model's manifest (the model bytes stay as built); the budgets of
quantize/budgets.py then judge the pooled figures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.contract import INPUT_SIZE
from edge_sca.fileio import sha256_file
from edge_sca.manifest import load_manifest, manifest_path
from quantize.budgets import Budget, Drift, broken, check_budgets
from quantize.build_cache import shown
from quantize.data import Arrays, data_key, load_split
from quantize.job import Job
from quantize.keep_float import keep_float

#: The splits drift is measured on (pooled for the budgets, and each on its own).
EVAL_SPLITS = ("val", "test")


@dataclass
class Outcome:
    """One model's result: the summary printed / returned, and the broken budget messages (empty when OK)."""

    summary: dict
    failures: list[str]
    failed: set[Budget] = field(default_factory=set)


def eval_data_key(job: Job) -> str:
    """Hash of the splits the drift report is measured on."""
    records = [r for s in EVAL_SPLITS for r in job.folder.subset(s)]
    return hashlib.sha256((job.folder.metadata_sha256() + data_key(records, INPUT_SIZE)).encode()).hexdigest()[:16]


def eval_splits(job: Job) -> dict[str, Arrays]:
    return {s: load_split(job.folder, s, skip_bad=job.options.skip_bad) for s in EVAL_SPLITS}


def validate(job: Job, paths: dict[str, Path], report_key: str) -> dict:
    """Stage 3: drift of every variant against float32 on val + test (and each split), keep-float, the report."""
    from quantize.drift import compare_splits, file_sizes, score
    from quantize.report import write_report

    parts = eval_splits(job)
    probs = score({"keras": job.keras_path, **paths}, parts)
    drift, joined = compare_splits(probs, parts, job.threshold, file_sizes(paths))
    drift["models"] = {name: shown(p) for name, p in {"keras": job.keras_path, **paths}.items()}
    drift["threshold_source"] = job.threshold_source
    drift["calibration"] = job.manifest_extra("int8")["calibration"]
    int8_manifest = load_manifest(manifest_path(paths["int8"])).data
    drift["recipe"] = int8_manifest.get("recipe")
    drift["qat_model"] = int8_manifest.get("qat_model")
    drift["bias_correction"] = int8_manifest.get("bias_correction")
    need_keep = job.options.keep_float or (job.options.keep_float_auto and not drift["budgets"]["ok"])
    if need_keep:
        drift, joined = keep_float(job, paths, parts, drift, probs)
    drift.update(model=job.name, inputs_key=report_key, artifacts={shown(p): sha256_file(p) for p in paths.values()})
    annotate_manifests(paths, drift)
    y = np.concatenate([parts[s].y for s in parts])
    write_report(drift, joined, y, job.report_dir, f"CancerNet-SCa-{job.name.upper()}: float vs int8 drift on "
                 f"{' + '.join(EVAL_SPLITS)}")
    return drift


def annotate_manifests(paths: dict[str, Path], drift: dict) -> None:
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


def outcome(job: Job, drift: dict) -> Outcome:
    """The budgets' verdict on a drift report, and the summary `quantize convert` prints."""
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
               "keep_float": drift.get("keep_float"), "report": shown(job.report_dir / "drift.md"),
               "failed_budgets": [r.kind.value for r in broken(results)], "budgets_ok": not failures}
    return Outcome(summary, failures, {r.kind for r in broken(results)})
