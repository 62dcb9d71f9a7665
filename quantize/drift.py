"""Float-vs-int8 drift: the same images through Keras, the float32 .tflite and the int8 .tflite, side by side.

All three decide at one threshold (the manifest's), so a flip is a change of decision the device would make.
Malignant-to-benign flips are the dangerous ones (a missed cancer) and are listed image by image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sca.config import CLASS_NAMES
from edge_sca.drift import DriftSummary, compare_outputs
from edge_sca.metrics import binary_metrics
from quantize.budgets import BUDGETS, broken, check_budgets
from quantize.data import Arrays
from quantize.evaluate import load_scorer

log = logging.getLogger(__name__)


def flips(ids: list[str], y: np.ndarray, p_ref: np.ndarray, p_new: np.ndarray, s: DriftSummary) -> dict:
    """Decisions that change from the reference (float32) to the new (int8) model, by direction."""
    m2b = [{"id": ids[i], "label": CLASS_NAMES[int(y[i])], "p_float32": float(p_ref[i]), "p_int8": float(p_new[i])}
           for i in s.malignant_to_benign_index]
    return {"benign_to_malignant": s.benign_to_malignant, "malignant_to_benign": s.malignant_to_benign,
            "malignant_to_benign_images": m2b}


def compare(probs: dict[str, np.ndarray], data: Arrays, threshold: float, sizes: dict[str, int]) -> dict:
    """Drift figures from p(malignant) per model (keys: keras, float32, int8, and any other variants)."""
    y = np.asarray(data.y)
    metrics = {name: binary_metrics(y, p, threshold) for name, p in probs.items()}
    p_f, p_q = probs["float32"], probs["int8"]
    s = compare_outputs(p_f, p_q, threshold)
    agreement = s.agreement
    d_sens = metrics["int8"]["sensitivity"] - metrics["float32"]["sensitivity"]
    size_ratio = sizes["int8"] / sizes["float32"]
    budgets = check_budgets(agreement, d_sens, size_ratio)
    result = {
        "threshold": float(threshold), "n": int(len(y)), "counts": data.counts(), "metrics": metrics,
        "int8_vs_float32": {"agreement": agreement, "delta_sensitivity": d_sens,
                            "delta_specificity": metrics["int8"]["specificity"] - metrics["float32"]["specificity"],
                            "mean_abs_delta_p": s.mean_abs_delta_p, "max_abs_delta_p": s.max_abs_delta_p,
                            **flips(data.ids, y, p_f, p_q, s)},
        "sizes_bytes": sizes, "size_ratio_int8_float32": size_ratio,
        "budgets": {"limits": BUDGETS, "results": [b.as_dict() for b in budgets],
                    "ok": not broken(budgets)},
    }
    if "keras" in probs:
        result["float32_vs_keras_max_abs_delta_p"] = float(np.abs(p_f - probs["keras"]).max())
    for name, p in probs.items():
        if name not in ("keras", "float32", "int8"):
            other = compare_outputs(p_f, p, threshold)
            result.setdefault("other_variants", {})[name] = {
                "agreement_with_float32": other.agreement, "max_abs_delta_p": other.max_abs_delta_p}
    return result


def measure(paths: dict[str, Path], data: Arrays, threshold: float | None = None) -> tuple[dict, dict]:
    """Score every model in `paths` (keras / float32 / int8 / ...) on `data`; returns (drift, p per model).

    The threshold is the int8 manifest's unless one is given.
    """
    scorers = {name: load_scorer(path) for name, path in paths.items()}
    thr = scorers["int8"].threshold if threshold is None else threshold
    x = np.asarray(data.x)
    probs = {name: s.p_malignant(x) for name, s in scorers.items()}
    sizes = {name: Path(p).stat().st_size for name, p in paths.items() if Path(p).suffix == ".tflite"}
    result = compare(probs, data, thr, sizes)
    result["models"] = {name: str(p) for name, p in paths.items()}
    result["threshold_source"] = scorers["int8"].threshold_source if threshold is None else "given"
    return result, probs
