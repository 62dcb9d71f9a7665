"""Accuracy and int8 drift on a labelled ISIC folder: each int8 model against its float32 twin, image by image,
both at the int8 manifest's threshold (edge_sca.drift.compare_outputs)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sca.drift import compare_outputs
from edge_sca.errors import DataError, ImageError
from edge_sca.interpreter import TFLiteModel
from edge_sca.isic import Record, load_isic_folder
from edge_sca.metrics import binary_metrics
from edge_sca.preprocess import load_preprocessed
from edge_sca.progress import Progress

log = logging.getLogger(__name__)


def pick_records(records: list[Record], limit: int | None) -> list[Record]:
    """All records, or `limit` of them alternating benign / malignant (in id order) so both classes appear."""
    if not limit or limit >= len(records):
        return list(records)
    by_class = [sorted((r for r in records if r.label == c), key=lambda r: r.isic_id) for c in (0, 1)]
    out: list[Record] = []
    while len(out) < limit and any(by_class):
        for group in by_class:
            if group and len(out) < limit:
                out.append(group.pop(0))
    return out


def load_images(isic_dir: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Preprocessed pixels, labels and ids of the chosen split; unreadable images are skipped and counted."""
    folder = load_isic_folder(isic_dir, skip_bad=True)
    records = [r for r in pick_records(folder.subset(split), limit) if r.label is not None]
    if not records:
        raise DataError(f"{isic_dir}: no labelled images in split {split!r}; choose another --split")
    pixels, labels, ids, bad = [], [], [], 0
    progress = Progress(len(records), f"reading {len(records)} {split} images", log)
    for r in records:
        try:
            pixels.append(load_preprocessed(r.path))
            labels.append(r.label)
            ids.append(r.isic_id)
        except ImageError as exc:
            bad += 1
            log.warning("%s (skipped)", exc)
        progress.update()
    if not pixels:
        raise DataError(f"{isic_dir}: none of the {len(records)} images could be read")
    return np.stack(pixels), np.asarray(labels), ids, bad


def p_malignant(path: str, pixels: np.ndarray, threads: int) -> tuple[np.ndarray, float]:
    """p(malignant) per image and the manifest threshold of one model."""
    model = TFLiteModel(path, threads=threads)
    return model.p_malignant(pixels), model.threshold


def compare(labels: np.ndarray, p_float: np.ndarray, p_int8: np.ndarray, threshold: float) -> dict:
    """Metrics of both at one threshold (the int8 manifest's: the device's decision), agreement, flips, |delta p|."""
    s = compare_outputs(p_float, p_int8, threshold, labels)
    return {
        "threshold": s.threshold,
        "float32": binary_metrics(labels, p_float, threshold), "int8": binary_metrics(labels, p_int8, threshold),
        "agreement": s.agreement,
        "flips": {"benign_to_malignant": s.benign_to_malignant, "malignant_to_benign": s.malignant_to_benign,
                  "now_wrong": s.now_wrong, "now_right": s.now_right},
        "mean_abs_delta_p": s.mean_abs_delta_p, "p95_abs_delta_p": s.p95_abs_delta_p,
        "max_abs_delta_p": s.max_abs_delta_p,
    }


def accuracy_report(models: list[dict], isic_dir: Path, split: str, limit: int | None, threads: int) -> dict:
    """For every architecture with an int8 and a float32 model: the comparison above; lone models get metrics."""
    pixels, labels, ids, bad = load_images(isic_dir, split, limit)
    out: dict = {"isic_dir": str(isic_dir), "split": split, "n": int(len(labels)), "unreadable": bad,
                 "malignant": int(labels.sum()), "benign": int(len(labels) - labels.sum()), "models": {}}
    ok = [m for m in models if "error" not in m]
    for arch in sorted({m["architecture"] for m in ok}):
        by_variant = {m["variant"]: m for m in ok if m["architecture"] == arch}
        log.info("accuracy of %s on %d %s images", arch, len(labels), split)
        probs = {v: p_malignant(m["path"], pixels, threads) for v, m in by_variant.items()}
        if "float32" in probs and "int8" in probs:
            (p_float, _), (p_int8, threshold) = probs["float32"], probs["int8"]
            out["models"][arch] = compare(labels, p_float, p_int8, threshold)
        else:
            out["models"][arch] = {v: binary_metrics(labels, p, t) for v, (p, t) in probs.items()}
    return out
