"""The README's and docs/quantization.md's table of what each int8 recipe buys, written from the reports.

`python -m quantize compare` writes reports/quantize/methods.json (drift per recipe, split and model) and
`python -m benchmarks.int8_latency` writes reports/quantize/int8_latency.json (every built file timed in one run);
`python -m quantize compare --docs-only` (or `--update-docs` after a comparison) renders both into the text
between the markers below, so no figure in the docs is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_sca.errors import EdgeScaError
from edge_sca.fileio import replace_between_markers

BEGIN = "<!-- quantize-methods:begin (python -m quantize compare --docs-only) -->"
END = "<!-- quantize-methods:end -->"


def _read(path: Path, what: str, command: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeScaError(f"cannot read the {what} {path} ({exc}); run `{command}` first") from exc


def _latency_ratios(latency: dict | None) -> dict[str, float]:
    """int8 file (as the compare report names it) -> median latency over the post-training baseline."""
    out: dict[str, float] = {}
    for model in (latency or {}).get("models", []):
        for f in model.get("files", []):
            out[f["file"]] = f["median_over_baseline"]
    return out


def table(methods: dict, latency: dict | None, default_recipe: str) -> str:
    """One row per model and recipe: agreement per split, missed cancers, mean |delta p|, size, speed, budgets."""
    ratios = _latency_ratios(latency)
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in methods["rows"]:
        by_key.setdefault((r["model"], r["recipe"]), {})[r["split"]] = r
    lines = ["| model | recipe | agreement val / test / **val+test** | missed cancers (of malignant) | "
             "mean abs delta p | delta AUROC | int8 size (of float32) | median latency (x ptq) | budgets |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for (model, recipe), splits in by_key.items():
        pooled = next((r for s, r in splits.items() if "+" in s), None)
        if pooled is None:
            continue
        val, test = splits.get("val"), splits.get("test")
        agreement = " / ".join(f"{r['agreement']:.2%}" for r in (val, test) if r) + f" / **{pooled['agreement']:.2%}**"
        speed = ratios.get(pooled["int8_file"])
        budgets = "met" if pooled["budgets_ok"] else "broken: " + ", ".join(pooled["failed_budgets"])
        name = f"**{recipe}** (default)" if recipe == default_recipe else recipe
        figures = (f"{pooled['missed_cancers']} of {pooled['malignant']} | {pooled['mean_abs_delta_p']:.4f} | "
                   f"{pooled['delta_auroc']:+.4f} | {pooled['size_ratio']:.1%} | "
                   f"{'-' if speed is None else f'{speed:.3f}'}")
        lines.append(f"| {model.upper()} | {name} | {agreement} | {figures} | {budgets} |")
    source = (f"From `{methods['command']}` ({methods['created'][:10]}, commit {methods['git_commit'][:12]})"
              + (f" and `{latency['command']}` ({latency.get('machine', '?')}, {latency.get('threads', '?')} thread)"
                 if latency else " (latency not measured yet: run `python -m benchmarks.int8_latency`)") + ".")
    return source + "\n\n" + "\n".join(lines)


def update(docs: list[Path], methods_path: Path, latency_path: Path, default_recipe: str) -> list[Path]:
    """Rewrite the marked table in each file from the reports; returns the files that changed."""
    methods = _read(methods_path, "recipe comparison", "python -m quantize compare")
    latency = _read(latency_path, "latency report", "python -m benchmarks.int8_latency") \
        if latency_path.is_file() else None
    text_table = table(methods, latency, default_recipe)
    changed = []
    for path in docs:
        try:
            if replace_between_markers(path, BEGIN, END, text_table):
                changed.append(path)
        except ValueError as exc:
            raise EdgeScaError(str(exc)) from exc
    return changed
