"""`python -m quantize compare`: every recipe on every model, side by side, so a reader sees what each one buys.

Each recipe's int8 model is built into build/quantize/methods/<recipe>/ (never over the shipped models) and
measured against the same float32 model on val and test; the table goes to reports/quantize/methods.{json,md}.
Latency is measured separately by `python -m benchmarks.int8_latency` on the files built here (one benchmark run
times them all, so their ratios are comparable).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT
from quantize.job import QuantizeOptions
from quantize.pipeline import prepare, run
from quantize.provenance import git_commit, now_iso, write_json
from quantize.recipe import load_recipe

log = logging.getLogger(__name__)

BUILD_DIR = REPO_ROOT / "build" / "quantize" / "methods"
#: The recipes the docs' table compares: the baseline, each post-training improvement, fine-tuning, the default.
COMPARED_RECIPES = ("ptq", "ptq_mse", "ptq_mse_pl", "qat")
_FIGURES = ("agreement", "malignant_to_benign", "missed_cancers", "benign_to_malignant", "delta_sensitivity",
            "delta_auroc",
            "mean_abs_delta_p", "max_abs_delta_p")


def compare(models: list[str], recipes: list[str], isic_dir: Path, models_dir: Path, build_dir: Path = BUILD_DIR,
            threads: int | None = None, skip_bad: bool = False) -> dict:
    """Build and measure every (model, recipe); returns the table (rows per model, recipe and split)."""
    rows = []
    for name in models:
        for recipe_name in recipes:
            recipe = load_recipe(recipe_name)
            log.info("compare: %s with recipe %s", name, recipe.name)
            options = QuantizeOptions(recipe=recipe, threads=threads, skip_bad=skip_bad)
            out = build_dir / recipe.name
            job = prepare(name, isic_dir, models_dir, out / "reports", options, out_dir=out)
            _reuse_shipped(job)
            outcome = run(job)
            rows += _rows(name, recipe.name, recipe.method.value, outcome.summary, job.report_dir / "drift.json")
    return {"created": now_iso(), "git_commit": git_commit(), "recipes": recipes, "models": models,
            "rows": rows, "command": "python -m quantize compare " + " ".join(
                [f"--model {m}" for m in models] + [f"--recipe {r}" for r in recipes])}


def _reuse_shipped(job) -> None:
    """Copy a model `make quantize` already built with the same build key (same inputs, recipe and code) into the
    build folder instead of converting it again."""
    import shutil

    from edge_sca.manifest import manifest_path
    from quantize.build_cache import up_to_date

    for variant in ("float32", "int8"):
        shipped, target = job.models_dir / job.path(variant).name, job.path(variant)
        if shipped != target and not up_to_date(target, job.key(variant)) and up_to_date(shipped, job.key(variant)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shipped, target)
            shutil.copy2(manifest_path(shipped), manifest_path(target))
            log.info("compare: reusing %s (same build key)", shipped)


def _rows(model: str, recipe: str, method: str, summary: dict, drift_json: Path) -> list[dict]:
    import json

    d = json.loads(drift_json.read_text())
    sizes = d["sizes_bytes"]
    common = {"model": model, "recipe": recipe, "method": method, "int8_file": d["models"]["int8"],
              "int8_bytes": sizes["int8"], "float32_bytes": sizes["float32"],
              "size_ratio": d["size_ratio_int8_float32"], "budgets_ok": d["budgets"]["ok"],
              "failed_budgets": [r["name"] for r in d["budgets"]["results"] if not r["ok"]]}
    out = []
    for split, part in [*d["splits"].items(), (d["split"], d)]:
        q = part["int8_vs_float32"]
        out.append(common | {"split": split, "n": part["n"], "malignant": part["counts"]["malignant"],
                             **{k: q[k] for k in _FIGURES},
                             "auroc_float32": part["metrics"]["float32"]["auroc"],
                             "auroc_int8": part["metrics"]["int8"]["auroc"]})
    return out


def markdown(table: dict) -> str:
    lines = [f"Written by `{table['command']}` ({table['created']}, commit {table['git_commit'][:12]}).", "",
             "| model | recipe | split | images | agreement | malignant->benign (missed cancers) | benign->malignant | "
             "delta sensitivity (points) | delta AUROC | mean / max abs delta p | int8 bytes (of float32) | budgets |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in table["rows"]:
        pooled = "+" in r["split"]
        budgets = ("met" if r["budgets_ok"] else "broken: " + ", ".join(r["failed_budgets"])) if pooled else ""
        split = f"**{r['split']}**" if pooled else r["split"]
        lines.append(f"| {r['model'].upper()} | {r['recipe']} | {split} | {r['n']} | {r['agreement']:.2%} | "
                     f"{r['malignant_to_benign']} ({r['missed_cancers']}) | {r['benign_to_malignant']} | "
                     f"{r['delta_sensitivity'] * 100:+.2f} | "
                     f"{r['delta_auroc']:+.4f} | {r['mean_abs_delta_p']:.4f} / {r['max_abs_delta_p']:.4f} | "
                     f"{r['int8_bytes']:,} ({r['size_ratio']:.1%}) | {budgets} |")
    return "\n".join(lines) + "\n"


def write(table: dict, out_dir: Path) -> dict[str, Path]:
    paths = {"json": out_dir / "methods.json", "md": out_dir / "methods.md"}
    write_json(paths["json"], table)
    paths["md"].write_text("# int8 recipes compared\n\n" + markdown(table))
    return paths
