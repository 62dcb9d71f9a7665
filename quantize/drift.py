"""Float-vs-int8 drift: the same images through Keras, the float32 .tflite and the int8 .tflite, side by side.

All three decide at one threshold (the manifest's), so a flip is a change of decision the device would make.
Malignant-to-benign flips are the dangerous ones (a missed cancer) and are listed image by image.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_sca.contract import CLASS_NAMES
from edge_sca.drift import DriftSummary, compare_outputs
from edge_sca.metrics import binary_metrics
from quantize.budgets import Drift, broken, check_budgets, limits
from quantize.data import Arrays
from quantize.evaluate import load_scorer

log = logging.getLogger(__name__)


def flips(ids: list[str], y: np.ndarray, p_ref: np.ndarray, p_new: np.ndarray, s: DriftSummary) -> dict:
    """Decisions that change from the reference (float32) to the new (int8) model, by direction; the
    malignant -> benign ones of malignant images are missed cancers (the budgeted count)."""
    m2b = [{"id": ids[i], "label": CLASS_NAMES[int(y[i])], "p_float32": float(p_ref[i]), "p_int8": float(p_new[i])}
           for i in s.malignant_to_benign_index]
    return {"benign_to_malignant": s.benign_to_malignant, "malignant_to_benign": s.malignant_to_benign,
            "missed_cancers": int(sum(1 for i in s.malignant_to_benign_index if y[i] == 1)),
            "malignant_to_benign_images": m2b}


def compare(probs: dict[str, np.ndarray], data: Arrays, threshold: float, sizes: dict[str, int]) -> dict:
    """Drift figures from p(malignant) per model (keys: keras, float32, int8, and any other variants)."""
    y = np.asarray(data.y)
    metrics = {name: binary_metrics(y, p, threshold) for name, p in probs.items()}
    p_f, p_q = probs["float32"], probs["int8"]
    s = compare_outputs(p_f, p_q, threshold)
    agreement = s.agreement
    d_sens = metrics["int8"]["sensitivity"] - metrics["float32"]["sensitivity"]
    d_auroc = metrics["int8"]["auroc"] - metrics["float32"]["auroc"]
    size_ratio = sizes["int8"] / sizes["float32"]
    flipped = flips(data.ids, y, p_f, p_q, s)
    drift = Drift(agreement, flipped["missed_cancers"], int((y == 1).sum()), d_sens, d_auroc, size_ratio)
    budgets = check_budgets(drift)
    result: dict[str, Any] = {
        "threshold": float(threshold), "n": int(len(y)), "counts": data.counts(), "metrics": metrics,
        "int8_vs_float32": {"agreement": agreement, "delta_sensitivity": d_sens,
                            "delta_specificity": metrics["int8"]["specificity"] - metrics["float32"]["specificity"],
                            "delta_auroc": d_auroc, "mean_abs_delta_p": s.mean_abs_delta_p,
                            "max_abs_delta_p": s.max_abs_delta_p, "mean_delta_p": float(np.mean(p_q - p_f)),
                            "missed_cancer_rate": drift.malignant_to_benign_rate, **flipped},
        "sizes_bytes": sizes, "size_ratio_int8_float32": size_ratio,
        "budgets": {"limits": limits(), "results": [b.as_dict() for b in budgets], "ok": not broken(budgets)},
    }
    if "keras" in probs:
        result["float32_vs_keras_max_abs_delta_p"] = float(np.abs(p_f - probs["keras"]).max())
    for name, p in probs.items():
        if name not in ("keras", "float32", "int8"):
            other = compare_outputs(p_f, p, threshold)
            result.setdefault("other_variants", {})[name] = {
                "agreement_with_float32": other.agreement, "max_abs_delta_p": other.max_abs_delta_p}
    return result


def pooled(parts: dict[str, Arrays]) -> Arrays:
    """Labels and ids of several splits as one (val + test: what the budgets are measured on); the pixels are not
    copied (x is empty), since drift needs only the probabilities."""
    return Arrays(np.zeros((sum(len(a.ids) for a in parts.values()), 0), np.uint8),
                  np.concatenate([np.asarray(a.y) for a in parts.values()]), [i for a in parts.values() for i in a.ids])


def compare_splits(probs: dict[str, dict[str, np.ndarray]], parts: dict[str, Arrays], threshold: float,
                   sizes: dict[str, int]) -> tuple[dict, dict[str, np.ndarray]]:
    """Drift on the pooled splits (top level, where the budgets apply) with each split's own figures under
    "splits"; `probs` is model -> split -> p. Returns the drift and the pooled p per model."""
    joined = {name: np.concatenate([p[s] for s in parts]) for name, p in probs.items()}
    result = compare(joined, pooled(parts), threshold, sizes)
    result["split"] = "+".join(parts)
    result["splits"] = {s: _split_summary(compare({n: p[s] for n, p in probs.items()}, a, threshold, sizes))
                        for s, a in parts.items()}
    return result, joined


def _split_summary(d: dict) -> dict:
    """One split's figures, without the budgets (they apply to the pooled splits only)."""
    return {k: v for k, v in d.items() if k not in ("budgets", "sizes_bytes", "size_ratio_int8_float32")}


def score(paths: dict[str, Path], parts: dict[str, Arrays]) -> dict[str, dict[str, np.ndarray]]:
    """p(malignant) of every model on every split: model -> split -> p."""
    scorers = {name: load_scorer(path) for name, path in paths.items()}
    return {name: {s: sc.p_malignant(np.asarray(a.x)) for s, a in parts.items()} for name, sc in scorers.items()}


def file_sizes(paths: dict[str, Path]) -> dict[str, int]:
    return {name: Path(p).stat().st_size for name, p in paths.items() if Path(p).suffix == ".tflite"}


def measure(paths: dict[str, Path], data: Arrays, threshold: float | None = None) -> tuple[dict, dict]:
    """Score every model in `paths` (keras / float32 / int8 / ...) on `data`; returns (drift, p per model).

    The threshold is the int8 manifest's unless one is given.
    """
    scorers = {name: load_scorer(path) for name, path in paths.items()}
    thr = scorers["int8"].threshold if threshold is None else threshold
    x = np.asarray(data.x)
    probs = {name: s.p_malignant(x) for name, s in scorers.items()}
    result = compare(probs, data, thr, file_sizes(paths))
    result["models"] = {name: str(p) for name, p in paths.items()}
    result["threshold_source"] = scorers["int8"].threshold_source if threshold is None else "given"
    return result, probs
