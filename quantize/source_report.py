"""Per-source report of models on an ISIC folder: what `python -m quantize sources` writes and docs/ quote.

For each model: every metric per source and pooled on val, test and val+test at the model's own threshold, the
issue-14 targets met or not, and the resolution shortcut check on HAM10000 val. Written as JSON (one file per
model) and one Markdown table for all of them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from edge_sca.isic import load_isic_folder
from edge_sca.policy import TARGET_SENSITIVITY
from quantize.data import Arrays, concat_arrays, load_split
from quantize.provenance import now_iso, write_json
from quantize.shortcut import SHORTCUT_SOURCE, resolution_shortcut
from quantize.sources import POOLED, TARGET_AUROC, TARGET_SENSITIVITY_MIN_MALIGNANT, balanced_score, per_source_metrics

log = logging.getLogger(__name__)

SPLITS = ("val", "test", "val+test")


def target_check(by_source: dict[str, dict]) -> list[dict]:
    """Issue 14's targets on val+test: AUROC per named source, sensitivity on every source with enough malignant."""
    rows = [{"source": s, "metric": "auroc", "target": t, "value": by_source[s]["auroc"],
             "met": bool(by_source[s]["auroc"] >= t)} for s, t in TARGET_AUROC.items() if s in by_source]
    rows += [{"source": s, "metric": "sensitivity", "target": TARGET_SENSITIVITY, "value": m["sensitivity"],
              "met": bool(m["sensitivity"] >= TARGET_SENSITIVITY)}
             for s, m in by_source.items() if s != POOLED and m["malignant"] >= TARGET_SENSITIVITY_MIN_MALIGNANT]
    return rows


def _label(path: Path) -> str:
    """What names a model in the report: its file name, or for checkpoint weights the run folder and the file
    (every run's weights are called best.weights.h5)."""
    if path.name.endswith(".weights.h5") and len(path.parts) >= 4:
        return f"{path.parents[2].name}/{path.name}"
    return path.name


def _stem(path: Path) -> str:
    """Report file name: the label with separators and dots as underscores."""
    return _label(path).replace("/", "_").replace(".", "_")


def score_model(path: Path, data: dict[str, Arrays]) -> dict:
    """Per-source metrics of one model on val, test and val+test, its targets and its shortcut check."""
    from quantize.evaluate import load_scorer

    scorer = load_scorer(path)
    p = {s: scorer.p_malignant(np.asarray(data[s].x)) for s in ("val", "test")}
    p["val+test"] = np.concatenate([p["val"], p["test"]])
    metrics = {s: per_source_metrics(data[s].y, p[s], data[s].sources, scorer.threshold) for s in SPLITS}
    ham = np.array([src == SHORTCUT_SOURCE for src in data["val"].sources])
    shortcut = resolution_shortcut(scorer.p_malignant, np.asarray(data["val"].x)[ham], p_original=p["val"][ham])
    return {"model": str(path), "kind": scorer.kind, "threshold": scorer.threshold,
            "threshold_source": scorer.threshold_source, "metrics": metrics,
            "val_source_balanced_auroc": balanced_score(metrics["val"]), "targets": target_check(metrics["val+test"]),
            "shortcut": {"source": SHORTCUT_SOURCE, "split": "val", **shortcut}}


def source_report(model_paths: list[str | Path], isic_dir: str | Path, out_dir: str | Path) -> dict:
    """Score every model, write <out>/<model>.json and <out>/sources.md; returns {model path: report}."""
    folder = load_isic_folder(isic_dir)
    val, test = load_split(folder, "val"), load_split(folder, "test")
    data = {"val": val, "test": test, "val+test": concat_arrays([val, test])}
    out = Path(out_dir)
    reports = {}
    for path in map(Path, model_paths):
        log.info("scoring %s per source", path)
        report = {"created": now_iso(), "isic_dir": str(folder.root.resolve()),
                  "metadata_sha256": folder.metadata_sha256(), **score_model(path, data)}
        write_json(out / f"{_stem(path)}.json", report)
        reports[str(path)] = report
    (out / "sources.md").write_text(markdown(list(reports.values())) + "\n")
    return reports


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def markdown(reports: list[dict]) -> str:
    """One table per model: per source, images, AUROC on val / test / val+test, and val+test sensitivity and
    specificity at the model's threshold; then the targets and the shortcut check."""
    parts = []
    for r in reports:
        vt = r["metrics"]["val+test"]
        lines = [(f"**{_label(Path(r['model']))}** (threshold {r['threshold']:.4f} from {r['threshold_source']}; "
                 f"source-balanced val AUROC {r['val_source_balanced_auroc']:.3f})"), "",
                 ("| source | val+test images (malignant) | AUROC val | AUROC test | AUROC val+test | "
                 "sensitivity val+test | specificity val+test |"), "|---|---:|---:|---:|---:|---:|---:|"]
        for name in [n for n in vt if n != POOLED] + [POOLED]:
            m = vt[name]
            au = [r["metrics"][s].get(name, {}).get("auroc", float("nan")) for s in ("val", "test")]
            lines.append(f"| {'pooled' if name == POOLED else name} | {m['n']:,} ({m['malignant']}) | {_f(au[0])} | "
                         f"{_f(au[1])} | {_f(m['auroc'])} | {_f(m['sensitivity'])} | {_f(m['specificity'])} |")
        met = [f"{t['source']} {t['metric']} {_f(t['value'])} {'>=' if t['met'] else '<'} {t['target']}"
               for t in r["targets"]]
        s = r["shortcut"]
        lines += ["", f"Targets (val+test): {'; '.join(met)}.",
                  (f"Shortcut check ({s['source']} {s['split']}, {s['n']} images degraded to {s['side']}x{s['side']} "
                  f"and back): mean p(malignant) {s['mean_p']:.3f} -> {s['mean_p_degraded']:.3f} "
                  f"({s['rise']:+.3f}; {s['share_rising']:.0%} of images rose).")]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
