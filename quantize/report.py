"""The drift report: drift.json (everything), drift.md (for people) and PNG plots, in reports/quantize/<m>/."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_sca.contract import CLASS_NAMES
from quantize.provenance import write_json

METRIC_ROWS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "auroc")


def plot_confusions(metrics: dict[str, dict], path: Path) -> None:
    """One confusion matrix per model, side by side (rows true, columns predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, (name, m) in zip(axes[0], metrics.items(), strict=False):
        cm = np.array(m["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set(title=name, xticks=[0, 1], yticks=[0, 1], xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
               xlabel="predicted", ylabel="true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_scatter(p_float: np.ndarray, p_int8: np.ndarray, y: np.ndarray, threshold: float, path: Path) -> None:
    """float32 vs int8 p(malignant), coloured by the true label, with the threshold lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for label, colour in ((0, "tab:blue"), (1, "tab:red")):
        sel = y == label
        ax.scatter(p_float[sel], p_int8[sel], s=8, alpha=0.6, c=colour, label=CLASS_NAMES[label])
    ax.plot([0, 1], [0, 1], "k-", lw=0.5)
    ax.axvline(threshold, color="grey", ls="--", lw=0.8)
    ax.axhline(threshold, color="grey", ls="--", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="p(malignant), float32 .tflite", ylabel="p(malignant), int8 .tflite",
           title="float32 vs int8")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _bias_line(b: dict) -> str:
    if b.get("method") == "per_layer":
        return (f"- per-layer bias correction ({b['images']} calibration images): {b['layers']} layers, mean output "
                f"shift removed {b['mean_abs_shift_steps']:.3f} int8 steps (largest {b['max_abs_shift_steps']:.3f})")
    return (f"- bias correction ({b['images']} calibration images): malignant-logit shift of int8 "
            f"{b['logit_shift_before']:+.4f} before, {b['logit_shift_after']:+.4f} after"
            + ("" if b["applied"] else f" ({b.get('note', 'not applied')})"))


def markdown(d: dict, title: str) -> str:
    """The human version of drift.json."""
    names = list(d["metrics"])
    q = d["int8_vs_float32"]
    lines = [f"# {title}", "", f"{d['n']} images ({d['counts']['benign']} benign, {d['counts']['malignant']} "
             f"malignant); threshold {d['threshold']:.4f} ({d.get('threshold_source', '')}).", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {k} | " + " | ".join(_fmt(d["metrics"][n][k]) for n in names) + " |" for k in METRIC_ROWS]
    lines += ["| size (bytes) | " + " | ".join(str(d["sizes_bytes"].get(n, "-")) for n in names) + " |", ""]
    if d.get("recipe"):
        r = d["recipe"]
        lines += [f"int8 recipe: **{r['name']}** ({r['method']}; `{r.get('source_file', '')}`, sha256 "
                  f"{r.get('sha256', '')[:12]}, seed {r['seed']}"
                  + (f"; overrides {' '.join(r['overrides'])}" if r.get("overrides") else "") + ")."]
        if d.get("qat_model"):
            t = d["qat_model"]
            lines[-1] += (f" Converted from the quantisation-aware fine-tuned model `{t['file']}` ({t['steps']} steps "
                          f"on {t['train_images']} train images; record `{t['record']}`).")
        lines.append("")
    if d.get("splits"):
        lines += ["| split | images (malignant) | agreement | malignant -> benign (of them malignant images) | "
                  "benign -> malignant | delta sensitivity "
                  "(points) | delta AUROC | mean / max abs delta p |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, part in [*d["splits"].items(), (d.get("split", "all"), d)]:
            p = part["int8_vs_float32"]
            lines.append(f"| {name} | {part['n']} ({part['counts']['malignant']}) | {p['agreement']:.2%} | "
                         f"{p['malignant_to_benign']} ({p['missed_cancers']}) | {p['benign_to_malignant']} | "
                         f"{p['delta_sensitivity'] * 100:+.2f} | "
                         f"{p['delta_auroc']:+.4f} | {p['mean_abs_delta_p']:.4f} / {p['max_abs_delta_p']:.4f} |")
        lines.append("")
    lines += ["## int8 against float32" + (f" ({d['split']})" if d.get("split") else ""), "",
              f"- top-1 agreement: {q['agreement']:.2%}",
              f"- delta sensitivity: {q['delta_sensitivity'] * 100:+.2f} points; delta specificity: "
              f"{q['delta_specificity'] * 100:+.2f} points; delta AUROC: {q.get('delta_auroc', float('nan')):+.4f}",
              f"- |delta p(malignant)|: mean {q['mean_abs_delta_p']:.4f}, max {q['max_abs_delta_p']:.4f}",
              f"- flips benign -> malignant: {q['benign_to_malignant']}; malignant -> benign: "
              f"{q['malignant_to_benign']}, of them malignant images (missed cancers, dangerous): "
              f"{q.get('missed_cancers', 'n/a')}",
              f"- int8 file / float32 file: {d['size_ratio_int8_float32']:.1%}", ""]
    if d.get("bias_correction"):
        lines[-1:] = [_bias_line(d["bias_correction"]), ""]
    if q["malignant_to_benign_images"]:
        lines += ["| image | true label | p float32 | p int8 |", "|---|---|---|---|"]
        lines += [f"| {f['id']} | {f['label']} | {f['p_float32']:.4f} | {f['p_int8']:.4f} |"
                  for f in q["malignant_to_benign_images"]]
        lines.append("")
    lines += ["## Budgets", ""] + [f"- {'PASS' if b['ok'] else 'FAIL'}: {b['message']}"
                                   for b in d["budgets"]["results"]]
    if d.get("diagnosis"):
        lines += ["", "## Per-layer diagnosis (largest int8 error first)", "", "| layer (tensor) | op | rmse/scale |",
                  "|---|---|---|"]
        lines += [f"| {r['tensor_name']} | {r['op_name']} | {r['rmse_over_scale']:.3f} |"
                  for r in d["diagnosis"]["layers"]]
    if d.get("keep_float"):
        k = d["keep_float"]
        lines += ["", "## Layers kept in float", "", f"- layers: {', '.join(k['layers'])}",
                  f"- size: {k['size_bytes']} bytes ({k['size_delta_bytes']:+d} vs full int8)",
                  f"- median latency: {k['latency_ms']:.2f} ms ({k['latency_ms'] - k['int8_latency_ms']:+.2f} ms "
                  "vs full int8, this workstation)",
                  f"- agreement with float32: {k['agreement']:.2%}; delta sensitivity "
                  f"{k['delta_sensitivity'] * 100:+.2f} points"]
    lines += ["", "![confusion matrices](confusion.png)", "", "![float32 vs int8](scatter.png)", ""]
    return "\n".join(lines)


def write_report(d: dict, probs: dict[str, np.ndarray], y: np.ndarray, out_dir: Path, title: str) -> dict[str, Path]:
    """Write drift.json, drift.md, confusion.png and scatter.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / n for k, n in (("json", "drift.json"), ("md", "drift.md"), ("confusion", "confusion.png"),
                                         ("scatter", "scatter.png"))}
    plot_confusions(d["metrics"], paths["confusion"])
    plot_scatter(probs["float32"], probs["int8"], np.asarray(y), d["threshold"], paths["scatter"])
    write_json(paths["json"], d)
    paths["md"].write_text(markdown(d, title))
    return paths
