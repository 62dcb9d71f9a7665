"""Image sources (the metadata's `dataset` column): per-source metrics, the source-balanced score, sampling groups.

A model that is good on HAM10000 alone can look good pooled and fail on every other clinic's images, so training
selects epochs on the mean of per-source AUROC and every report breaks its metrics down by source. A source needs
enough images of both classes for its AUROC to mean something; smaller ones are reported but not scored.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge_sca.metrics import binary_metrics

#: Key of the pooled metrics beside the per-source ones.
POOLED = "all"
#: Name of the sampling group that pools sources too small (in either class) to be balanced on their own.
OTHER = "other"
#: A source enters the source-balanced score when its split holds at least this many images of each class.
SCORE_MIN_PER_CLASS = 10
#: In training, a source with fewer images than this in either class is sampled in the OTHER group.
GROUP_MIN_PER_CLASS = 20
#: Targets of issue 14 on val+test: AUROC per source, and sensitivity on sources with this many malignant images.
TARGET_AUROC = {"HAM10000": 0.88, "ISIC 2017 challenge": 0.85, "ISIC Archive UDA-1": 0.85}
TARGET_SENSITIVITY_MIN_MALIGNANT = 40


def source_of(raw: str) -> str:
    """The source name a record reports ("unknown" when its metadata has no dataset column)."""
    return raw.strip() or "unknown"


def per_source_metrics(labels: np.ndarray, p_malignant: np.ndarray, sources: Sequence[str],
                       threshold: float) -> dict[str, dict]:
    """binary_metrics pooled (key POOLED) and for each source, with each source's class counts."""
    y = np.asarray(labels)
    p = np.asarray(p_malignant, dtype=np.float64)
    src = np.asarray(sources)
    if len(src) != len(y):
        raise ValueError(f"{len(src)} source names for {len(y)} labels")
    out = {POOLED: _with_counts(binary_metrics(y, p, threshold), y)}
    for name in sorted(set(src.tolist())):
        mask = src == name
        out[name] = _with_counts(binary_metrics(y[mask], p[mask], threshold), y[mask])
    return out


def _with_counts(metrics: dict, y: np.ndarray) -> dict:
    return {**metrics, "benign": int((y == 0).sum()), "malignant": int((y == 1).sum())}


def scored_sources(per_source: dict[str, dict], min_per_class: int = SCORE_MIN_PER_CLASS) -> list[str]:
    """The sources with enough images of each class for their AUROC to enter the balanced score."""
    return [name for name, m in per_source.items()
            if name != POOLED and m["benign"] >= min_per_class and m["malignant"] >= min_per_class]


def balanced_score(per_source: dict[str, dict], min_per_class: int = SCORE_MIN_PER_CLASS) -> float:
    """Mean AUROC over the scored sources (pooled AUROC when no source qualifies, e.g. a tiny test folder)."""
    names = scored_sources(per_source, min_per_class)
    values = [per_source[n]["auroc"] for n in names if not math.isnan(per_source[n]["auroc"])]
    return float(np.mean(values)) if values else float(per_source[POOLED]["auroc"])


def sampling_groups(labels: np.ndarray, sources: Sequence[str], min_per_class: int = GROUP_MIN_PER_CLASS
                    ) -> np.ndarray:
    """Each image's sampling group: its source, or OTHER when that source is too small in either class.

    Sampling a source and then a class within it makes the source independent of the label; a source with a handful
    of benign images (the "ISIC Archive" rows: 174 malignant, 7 benign) would otherwise have those few repeated
    endlessly, so such sources are pooled.
    """
    y = np.asarray(labels)
    src = np.asarray(sources)
    if len(src) != len(y):
        raise ValueError(f"{len(src)} source names for {len(y)} images: every image needs its source")
    counts = Counter(zip(src.tolist(), y.tolist(), strict=False))
    small = {s for s in set(src.tolist()) if min(counts[(s, 0)], counts[(s, 1)]) < min_per_class}
    return np.array([OTHER if s in small else s for s in src.tolist()], dtype=object)
