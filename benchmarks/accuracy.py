"""Accuracy and int8 drift on a labelled ISIC folder: each int8 model against its float32 twin, image by image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

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


def compare(labels: np.ndarray, p_float: np.ndarray, t_float: float, p_int8: np.ndarray, t_int8: float) -> dict:
    """Metrics of both at their manifest thresholds, decision agreement, flips by direction, |delta p|."""
    d_float, d_int8 = p_float >= t_float, p_int8 >= t_int8
    delta = np.abs(p_int8 - p_float)
    flips = d_float != d_int8
    return {
        "float32": binary_metrics(labels, p_float, t_float), "int8": binary_metrics(labels, p_int8, t_int8),
        "agreement": float(np.mean(~flips)),
        "flips": {"benign_to_malignant": int(np.sum(~d_float & d_int8)),
                  "malignant_to_benign": int(np.sum(d_float & ~d_int8)),
                  "now_wrong": int(np.sum(flips & (d_int8 != labels.astype(bool)))),
                  "now_right": int(np.sum(flips & (d_int8 == labels.astype(bool))))},
        "mean_abs_delta_p": float(delta.mean()), "p95_abs_delta_p": float(np.percentile(delta, 95)),
        "max_abs_delta_p": float(delta.max()),
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
            out["models"][arch] = compare(labels, *probs["float32"], *probs["int8"])
        else:
            out["models"][arch] = {v: binary_metrics(labels, p, t) for v, (p, t) in probs.items()}
    return out
