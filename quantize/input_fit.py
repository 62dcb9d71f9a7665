"""`python -m quantize input-checks fit`: measure and fit everything in models/input_checks.json.

1. Focus: the threshold from the ISIC test split as it is and blurred (quantize.focus_curve); the curve goes to
   reports/input_checks/focus.{png,json}.
2. Grayscale: GRAYSCALE_FRACTION of the ISIC training images' GRAYSCALE_QUANTILE saturation.
3. "Not a dermoscopy frame" on edge_sca.frame_stats features. Dermoscopy: the ISIC train split plus the lesions of
   ../shared/isic_extra that hash to its fitting half (the other half is held out). Not dermoscopy: the generated
   FIT_KINDS (quantize.negatives, and for some models its fit-only close-ups of the fitted photos); every other kind
   is held out for `input-checks evaluate`. A Gaussian mixture is fitted on dermoscopy alone, the ENSEMBLE's models
   against the generated kinds, and a quadratic logistic regression (no lesion in view) against lesion-free corner
   tiles of ISIC train images; each threshold refuses at most its DERMOSCOPY_MAX_REFUSED_PER_SCORE of every training
   source (the strictest source sets it).
4. Drift reference: the ISIC train split's statistics, and per int8 model in models/ its p(malignant) on val.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edge_sca.contract import PREPROCESS_VERSION
from edge_sca.errors import DataError, ImageError
from edge_sca.focus import sharpness
from edge_sca.frame_stats import FEATURE_NAMES, SATURATION, SCREEN_COLUMNS, SCREEN_FEATURES, frame_features
from edge_sca.input_checks import (
    FORMAT,
    MIXTURE,
    NO_LESION,
    NOT_DERMOSCOPY,
    DermoscopyCheck,
    Member,
    load_input_checks,
)
from edge_sca.input_drift import INPUT_STATS
from edge_sca.isic import IsicFolder, Record, load_isic_folder
from edge_sca.policy import (
    DERMOSCOPY_MAX_REFUSED_PER_SCORE,
    DRIFT_BINS,
    FOCUS_BLUR_SIGMA,
    FOCUS_MAX_REFUSED,
    FOCUS_MIN_BLUR_REFUSED,
    GRAYSCALE_FRACTION,
    GRAYSCALE_QUANTILE,
    SCREEN_CLEARS_QUANTILE,
)
from edge_sca.preprocess import load_preprocessed, preprocess, read_image
from edge_sca.progress import Progress
from quantize import focus_curve, negatives
from quantize.density import fit_logistic, fit_mixture, fit_mlp
from quantize.provenance import git_commit, now_iso, tool_versions, write_json

log = logging.getLogger(__name__)

FIT_SEED = 1
CLIP = 8.0
#: Each member's score is measured from the quantile that refuses this fraction of every training source.
MEMBER_ANCHOR = 0.004


@dataclass(frozen=True)
class MemberSpec:
    """One model of the not-dermoscopy ensemble: its kind, seed, and whether it also sees the fit-only close-ups."""

    kind: Literal["logistic", "mlp"]  # a quadratic (unless --linear) logistic regression, or a small ReLU network
    seed: int = 1
    details: bool = False


#: Diverse on purpose (two model forms, two seeds, with and without close-ups): a single model fits the fitted
#: pictures' particulars, and which unseen photo it then lets through changes from model to model; their mean
#: score is steadier (docs/input-checks.md).
ENSEMBLE: tuple[MemberSpec, ...] = (MemberSpec("logistic"), MemberSpec("logistic", details=True), MemberSpec("mlp", 1),
                                    MemberSpec("mlp", 2), MemberSpec("mlp", 1, details=True))


@dataclass
class FitOptions:
    isic_dir: Path
    extra_dir: Path | None
    models_dir: Path
    reports_dir: Path
    components: int = 6
    quadratic: bool = True
    negatives_per_kind: int = 400
    skin_tiles: int = 1500
    reference_sample: int = 2000


def extra_half(record: Record) -> str:
    """'fit' or 'held-out' for an isic_extra image, by a hash of its lesion (so no lesion is in both halves)."""
    return "fit" if hashlib.sha256(record.lesion_id.encode()).digest()[0] < 128 else "held-out"


def features_of(pixels: np.ndarray | list[np.ndarray], label: str) -> np.ndarray:
    """frame_features of each 224x224 image, with progress."""
    progress = Progress(len(pixels), f"frame statistics of {len(pixels)} {label}", log)
    out = np.empty((len(pixels), len(FEATURE_NAMES)))
    for i, px in enumerate(pixels):
        out[i] = frame_features(np.asarray(px))
        progress.update()
    return out


def extra_features(folder: IsicFolder, half: str, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Features of one half of isic_extra (decoded one by one: its images are tiny), and their sources."""
    records = [r for r in folder.records if extra_half(r) == half][:limit]
    pixels = []
    for r in records:
        try:
            pixels.append(load_preprocessed(r.path))
        except ImageError as exc:
            log.warning("%s (skipped)", exc)
    return features_of(pixels, f"isic_extra ({half} half) images"), ["isic_extra"] * len(pixels)


def isic_train_features(folder: IsicFolder) -> tuple[np.ndarray, list[str], list[Record]]:
    """Features of the ISIC train split from the preprocessed-array cache, with each image's source."""
    from quantize.data import load_split

    arrays = load_split(folder, "train", skip_bad=True)
    by_id = {r.isic_id: r for r in folder.records}
    records = [by_id[i] for i in arrays.ids]
    return features_of(arrays.x, "ISIC train images"), [r.dataset or "ISIC" for r in records], records


def negative_features(kinds: tuple[str, ...] | list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    return {k: features_of([preprocess(img) for img in negatives.frames(k, n, seed)], f"non-dermoscopy {k}")
            for k in kinds}


def source_threshold(scores: np.ndarray, sources: list[str], refuse: float) -> tuple[float, dict]:
    """The threshold that refuses at most `refuse` of every source: the highest of the per-source quantiles."""
    src = np.asarray(sources)
    per = {s: float(np.quantile(scores[src == s], 1.0 - refuse)) for s in sorted(set(sources))}
    return max(per.values()), per


def skin_features(train_records: list[Record], n: int) -> np.ndarray:
    """Lesion-free skin for the no-lesion score: corner tiles of ISIC *train* images (evaluation cuts val / test)."""
    rows = [(r.path, 0, 0) for r in train_records]
    return features_of([preprocess(img) for img in negatives.skin_crops(rows, n, FIT_SEED)],
                       "lesion-free skin tiles (ISIC train corners)")


def _logistic(z_pos: np.ndarray, z_neg: np.ndarray, quadratic: bool) -> dict:
    w, b = fit_logistic(np.vstack([z_pos, z_neg]), np.r_[np.zeros(len(z_pos)), np.ones(len(z_neg))], quadratic)
    return {"weights": w.tolist(), "bias": b, "quadratic": quadratic}


def _member(spec: MemberSpec, z_pos: np.ndarray, z_neg: np.ndarray, quadratic: bool) -> dict:
    if spec.kind == "logistic":
        return {"kind": "logistic"} | _logistic(z_pos, z_neg, quadratic)
    y = np.r_[np.zeros(len(z_pos)), np.ones(len(z_neg))]
    return {"kind": "mlp"} | fit_mlp(np.vstack([z_pos, z_neg]), y, seed=spec.seed)


def fit_ensemble(z_pos: np.ndarray, sources: list[str], neg: dict[str, np.ndarray], details: np.ndarray | None,
                 opts: FitOptions) -> dict:
    """Every ENSEMBLE member fitted and normalised (score 0 at its MEMBER_ANCHOR quantile of dermoscopy, 1 per step
    from the dermoscopy median to there), and the mean's threshold."""
    plain = np.vstack(list(neg.values()))
    members = []
    for i, spec in enumerate(ENSEMBLE):
        if spec.details and details is None:
            continue
        z_neg = plain if details is None or not spec.details else np.vstack([plain, details])
        log.info("not-dermoscopy ensemble: model %d of %d (%s, seed %d%s)", i + 1, len(ENSEMBLE), spec.kind,
                 spec.seed, ", with close-ups" if spec.details else "")
        m = _member(spec, z_pos, z_neg, opts.quadratic) | {"at": 0.0, "spread": 1.0, "seed": spec.seed,
                                                             "details": spec.details}
        raw = Member.from_dict(m, z_pos.shape[1]).score(z_pos)
        m["at"] = source_threshold(raw, sources, MEMBER_ANCHOR)[0]
        m["spread"] = max(m["at"] - float(np.median(raw)), 1e-6)
        members.append(m)
    return {"members": members, "threshold": 0.0}


def fit_dermoscopy(pos: np.ndarray, sources: list[str], neg: dict[str, np.ndarray], skin: np.ndarray,
                   opts: FitOptions, details: np.ndarray | None = None) -> dict:
    """Standardisation, mixture, the not-dermoscopy ensemble, the no-lesion regression and their thresholds, as
    edge_sca.input_checks reads them. `details`: features of the fit-only close-ups (None: no member uses them)."""
    mean, scale = pos.mean(0), pos.std(0) + 1e-6

    def standard(x: np.ndarray) -> np.ndarray:
        return np.clip((x - mean) / scale, -CLIP, CLIP)

    z_pos = standard(pos)
    mixture = fit_mixture(z_pos, opts.components, seed=FIT_SEED)
    ensemble = fit_ensemble(z_pos, sources, {k: standard(v) for k, v in neg.items()},
                            None if details is None else standard(details), opts)
    check = {"mean": mean.tolist(), "scale": scale.tolist(), "clip": CLIP, "mixture": mixture,
             "not_dermoscopy": ensemble,
             "lesion": _logistic(z_pos, standard(skin), opts.quadratic) | {"threshold": 0.0},
             "mixture_threshold": 0.0}
    scores = DermoscopyCheck.from_dict(check).scores(pos)
    refuse = DERMOSCOPY_MAX_REFUSED_PER_SCORE
    check["mixture_threshold"], per_m = source_threshold(scores[:, MIXTURE], sources, refuse["mixture"])
    ensemble["threshold"], per_e = source_threshold(scores[:, NOT_DERMOSCOPY], sources, refuse["not_dermoscopy"])
    check["lesion"]["threshold"], per_s = source_threshold(scores[:, NO_LESION], sources, refuse["no_lesion"])
    check["fit"] = {"dermoscopy_images": len(pos), "dermoscopy_sources": {s: sources.count(s) for s in set(sources)},
                    "negative_kinds": {k: len(v) for k, v in neg.items()}, "negative_seed": FIT_SEED,
                    "fit_only_close_ups": 0 if details is None else len(details),
                    "lesion_free_skin_tiles": len(skin), "components": opts.components,
                    "per_source_thresholds": {"mixture": per_m, "not_dermoscopy": per_e, "lesion": per_s},
                    "max_refused_per_score_and_source": refuse, "member_anchor": MEMBER_ANCHOR}
    return check


def fit_screen(pos: np.ndarray, sources: list[str], neg: dict[str, np.ndarray], skin: np.ndarray,
               opts: FitOptions, details: np.ndarray | None = None) -> dict:
    """The first stage (edge_sca.input_checks.Screen): the same fit on the SCREEN_FEATURES columns alone, and the
    limits under which it clears a frame by itself: per score, its SCREEN_CLEARS_QUANTILE over the fit's dermoscopy."""
    cols = list(SCREEN_COLUMNS)
    check = fit_dermoscopy(pos[:, cols], sources, {k: v[:, cols] for k, v in neg.items()}, skin[:, cols], opts,
                           None if details is None else details[:, cols])
    scores = DermoscopyCheck.from_dict(check).scores(pos[:, cols])
    limits = np.quantile(scores, SCREEN_CLEARS_QUANTILE, axis=0)
    cleared = (scores <= limits).all(axis=1)
    log.info("screen: clears %.1f%% of the fit's dermoscopy by itself", 100 * cleared.mean())
    return {"features": list(SCREEN_FEATURES), "check": check, "quantile": SCREEN_CLEARS_QUANTILE,
            "clears_below": limits.tolist(), "fit_dermoscopy_cleared": float(cleared.mean())}


def histogram_reference(values: np.ndarray, labels: np.ndarray) -> dict:
    """Decile edges of the reference values and, per label, the fraction of them in each bin."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))

    def fractions(v: np.ndarray) -> list[float]:
        c = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return (c / max(1, c.sum())).tolist()

    return {"edges": edges.tolist(), "benign": fractions(values[labels == 0]),
            "malignant": fractions(values[labels == 1]), "all": fractions(values), "mean": float(values.mean()),
            "std": float(values.std()), "malignant_share": float((labels == 1).mean())}


def drift_reference(train_feats: np.ndarray, train_records: list[Record], screen: dict, sample: int) -> dict:
    """The training split's statistics for edge_sca.input_drift, per label (sharpness on a sample: it needs the
    frames as stored). The training distance is in the first stage's statistics: every judged frame has them."""
    labels = np.array([r.label for r in train_records])
    z = DermoscopyCheck.from_dict(screen["check"]).standardise(train_feats[:, list(SCREEN_COLUMNS)])
    mean = z.mean(0)
    cov = np.cov(z.T) + 1e-3 * np.eye(z.shape[1])
    prec_chol = np.linalg.inv(np.linalg.cholesky(cov)).T
    y = (z - mean) @ prec_chol
    stats = {"training_distance": histogram_reference(np.sqrt((y * y).sum(1)), labels)}
    for name in ("L_mean", "a_mean", "b_mean"):
        stats[name] = histogram_reference(train_feats[:, FEATURE_NAMES.index(name)], labels)
    rng = np.random.default_rng(FIT_SEED)
    picked = rng.choice(len(train_records), min(sample, len(train_records)), replace=False)
    progress = Progress(len(picked), f"sharpness of {len(picked)} ISIC train images", log)
    sharp = []
    for i in picked:
        sharp.append(sharpness(read_image(train_records[i].path)))
        progress.update()
    stats["sharpness"] = histogram_reference(np.asarray(sharp), labels[picked])
    assert set(stats) == set(INPUT_STATS)
    return {"source": "ISIC train split", "n": len(train_feats), "sharpness_sample": len(picked),
            "malignant_share": float((labels == 1).mean()),
            "training_gaussian": {"mean": mean.tolist(), "prec_chol": prec_chol.tolist()}, "stats": stats}


def p_references(folder: IsicFolder, models_dir: Path) -> dict[str, dict]:
    """For each int8 model with a manifest: its p(malignant) on the val split, split by label, keyed by sha256."""
    from edge_sca.interpreter import TFLiteModel
    from edge_sca.manifest import manifest_path
    from quantize.data import load_split

    val = load_split(folder, "val", skip_bad=True)
    out = {}
    for path in sorted(models_dir.glob("*_int8.tflite")):
        if not manifest_path(path).is_file():
            continue
        model = TFLiteModel(path, threads=2)
        p = np.array([model.p_malignant(px)[0] for px in val.x])
        out[model.sha256] = {"model_file": path.name, "split": "val", "n": len(p)} | histogram_reference(p, val.y)
        log.info("p(malignant) reference for %s on %d val images", path.name, len(p))
    return out


def calibrate_focus(folder: IsicFolder, extra: IsicFolder | None, reports_dir: Path) -> dict:
    """Measure, choose, check on held-out images, and write the curve; returns the `focus` section."""
    test = folder.subset("test")
    values = focus_curve.measure(test)
    threshold, rule = focus_curve.choose_threshold(values)
    val = folder.subset("val")
    held = focus_curve.measure(val, ("sharp", focus_curve.TARGET))
    per_source = {}
    for src in sorted({r.dataset for r in test + val}):
        idx = [i for i, r in enumerate(val) if r.dataset == src]
        per_source[src or "ISIC"] = {"images": len(idx),
                                     "sharp_refused": float(np.mean(held["sharp"][idx] < threshold))}
    report = {"threshold": threshold, "rule": rule, "split": "test", "images": len(test),
              "refused_at_threshold": focus_curve.refused(values, threshold),
              "held_out_val": {"images": len(val), "refused_at_threshold": focus_curve.refused(held, threshold),
                               "per_source_sharp_refused": per_source},
              "percentiles": {b: np.nanpercentile(v, [1, 2, 5, 50, 95]).tolist() for b, v in values.items()},
              "targets": {"blur_sigma": FOCUS_BLUR_SIGMA, "min_blur_refused": FOCUS_MIN_BLUR_REFUSED,
                          "max_sharp_refused": FOCUS_MAX_REFUSED}}
    if extra is not None:
        sample = extra.records[:: max(1, len(extra.records) // 1000)]
        ev = focus_curve.measure(sample, ("sharp",))
        report["isic_extra_sharp_refused"] = {"images": len(sample), "refused": focus_curve.refused(ev, threshold)[
            "sharp"]}
    write_json(reports_dir / "focus.json", report)
    focus_curve.plot_curve(values, threshold, reports_dir / "focus.png",
                           f"Focus: {len(test)} ISIC test images, as they are and blurred at capture size")
    log.info("focus threshold %.4f (%s); curve in %s", threshold, rule["chosen"], reports_dir / "focus.png")
    return {"min_sharpness": threshold, "rule": rule, "report": "reports/input_checks/focus.json"}


def fit(opts: FitOptions, out: Path) -> dict:
    """Everything, written to `out` (models/input_checks.json); returns the written dict."""
    folder = load_isic_folder(opts.isic_dir, skip_bad=True)
    extra = load_isic_folder(opts.extra_dir, skip_bad=True) if opts.extra_dir else None
    focus = calibrate_focus(folder, extra, opts.reports_dir)
    train_feats, sources, train_records = isic_train_features(folder)
    pos, pos_sources = train_feats, list(sources)
    if extra is not None:
        extra_feats, extra_sources = extra_features(extra, "fit")
        pos, pos_sources = np.vstack([train_feats, extra_feats]), pos_sources + extra_sources
    neg = negative_features(negatives.FIT_KINDS, opts.negatives_per_kind, FIT_SEED)
    details = negative_features(list(negatives.FIT_AUGMENTATIONS), opts.negatives_per_kind, FIT_SEED)
    skin = skin_features(train_records, opts.skin_tiles)
    close_ups = np.vstack(list(details.values()))
    check = fit_dermoscopy(pos, pos_sources, neg, skin, opts, close_ups)
    screen = fit_screen(pos, pos_sources, neg, skin, opts, close_ups)
    low = float(np.quantile(train_feats[:, SATURATION], GRAYSCALE_QUANTILE))
    data = {
        "format": FORMAT, "created": now_iso(), "git_commit": git_commit(), "tool_versions": tool_versions(),
        "preprocess_version": PREPROCESS_VERSION, "features": list(FEATURE_NAMES),
        "data": {"isic_dir": str(folder.root), "isic_metadata_sha256": folder.metadata_sha256(),
                 "isic_extra_dir": str(extra.root) if extra else None,
                 "isic_extra_metadata_sha256": extra.metadata_sha256() if extra else None},
        "focus": focus,
        "grayscale": {"min_saturation": low * GRAYSCALE_FRACTION, "isic_train_quantile": low,
                      "quantile": GRAYSCALE_QUANTILE, "fraction": GRAYSCALE_FRACTION},
        "dermoscopy": check,
        "screen": screen,
        "reference": drift_reference(train_feats, train_records, screen, opts.reference_sample)
        | {"p_malignant": p_references(folder, opts.models_dir)},
    }
    write_json(out, data)
    load_input_checks(out)  # what was written must load
    return data


def refresh_p_references(isic_dir: Path, models_dir: Path, path: Path) -> dict:
    """Recompute only the p(malignant) references (after the models were re-converted) in an existing file."""
    import json

    if not path.is_file():
        raise DataError(f"{path}: not found; run `python -m quantize input-checks fit` first")
    data = json.loads(path.read_text())
    data["reference"]["p_malignant"] = p_references(load_isic_folder(isic_dir, skip_bad=True), models_dir)
    data["p_reference_refreshed"] = now_iso()
    write_json(path, data)
    load_input_checks(path)
    return data


def summary_line(data: dict) -> str:
    d, f = data["dermoscopy"], data["focus"]
    return (f"focus threshold {f['min_sharpness']:.4f} ({f['rule']['chosen']}); grayscale below saturation "
            f"{data['grayscale']['min_saturation']:.1f}; not-dermoscopy check fitted on "
            f"{d['fit']['dermoscopy_images']} "
            f"dermoscopy images and {sum(d['fit']['negative_kinds'].values())} generated frames (mixture threshold "
            f"{d['mixture_threshold']:.2f}, ensemble of {len(d['not_dermoscopy']['members'])} "
            f"{d['not_dermoscopy']['threshold']:.2f}, no-lesion "
            f"{d['lesion']['threshold']:.2f} on {d['fit']['lesion_free_skin_tiles']} skin tiles); p(malignant) "
            f"references for {len(data['reference']['p_malignant'])} models. Evaluate with "
            "`python -m quantize input-checks evaluate`")

