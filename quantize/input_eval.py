"""`python -m quantize input-checks evaluate`: how the input checks treat dermoscopy and everything else.

- Dermoscopy: every ISIC source's val and test images and the held-out half of ../shared/isic_extra through the
  whole quality gate (frames as stored), through the learned checks (not dermoscopy or no lesion), and through the
  "not a dermoscopy frame" check alone.
- Not dermoscopy: each kind of quantize.negatives, generated with a seed the fit never saw, marked fitted or held out;
  lesion-free skin cut from ISIC val / test images.
- Cost: the learned checks' own time (frame statistics + three scores) against the int8 model's invoke (with the
  given threads and with one), interleaved on the same images in the same process, as medians; and the peak memory
  of reading huge PNGs (quantize.big_images).
Writes reports/input_checks/evaluation.{json,md}.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge_sca.errors import ImageError
from edge_sca.fileio import replace_between_markers
from edge_sca.frame_stats import first_stage
from edge_sca.input_checks import InputChecks
from edge_sca.isic import IsicFolder, Record, load_isic_folder
from edge_sca.policy import INPUT_CHECKS_MAX_SHARE_OF_INVOKE
from edge_sca.preprocess import preprocess, read_image
from edge_sca.progress import Progress
from edge_sca.quality import check_quality
from quantize import negatives
from quantize.big_images import memory_report
from quantize.input_fit import extra_half
from quantize.provenance import git_commit, now_iso, write_json

log = logging.getLogger(__name__)

EVAL_SEED = 2


def judge(frames: Iterable[np.ndarray], checks: InputChecks, label: str, total: int) -> dict:
    """Whole-gate outcome counts, and the learned checks' own refusals over frames as captured (both stages, as the
    gate runs them, even where the gate stopped earlier): the not-dermoscopy check alone, and the not-dermoscopy
    or the no-lesion score (`learned_checks`); and the share the first stage did not clear (`second_stage`)."""
    reasons: Counter = Counter()
    not_derm = learned = second = n = 0
    progress = Progress(total, f"input checks on {label}", log)
    for frame in frames:
        pixels = preprocess(frame)
        q = check_quality(frame, pixels, checks)
        reasons[q.code.value if q.code else "passed"] += 1
        verdict = q.learned or checks.judge(first_stage(pixels))  # the gate's, unless it stopped before
        not_derm += verdict.refused
        learned += verdict.refused or verdict.no_lesion
        second += not verdict.cleared
        n += 1
        progress.update()
    return {"n": n, "retake": 1.0 - reasons["passed"] / max(n, 1), "not_dermoscopy_check": not_derm / max(n, 1),
            "second_stage": second / max(n, 1),
            "learned_checks": learned / max(n, 1), "reasons": dict(sorted(reasons.items()))}


def _frames(records: list[Record]) -> Iterable[np.ndarray]:
    for r in records:
        try:
            yield read_image(r.path)
        except ImageError as exc:
            log.warning("%s (skipped)", exc)


def dermoscopy_rows(folder: IsicFolder, extra: IsicFolder | None, checks: InputChecks,
                    extra_limit: int) -> list[dict]:
    """One row per ISIC source and split (val, test), the test split pooled, and isic_extra's held-out half."""
    rows = []
    test = folder.subset("test")
    rows.append({"source": "ISIC test split (all sources)", "held_out": True, "isic": True}
                | judge(_frames(test), checks, "ISIC test", len(test)))
    for split in ("val", "test"):
        records = folder.subset(split)
        for src in sorted({r.dataset for r in records}):
            chosen = [r for r in records if r.dataset == src]
            rows.append({"source": f"{src or 'ISIC'} ({split})", "held_out": True, "isic": True}
                        | judge(_frames(chosen), checks, f"{src} {split}", len(chosen)))
    if extra is not None:
        held = [r for r in extra.records if extra_half(r) == "held-out"][:extra_limit]
        rows.append({"source": f"isic_extra held-out half ({len(held)} images)", "held_out": True, "isic": False}
                    | judge(_frames(held), checks, "isic_extra", len(held)))
    return rows


def negative_rows(checks: InputChecks, n: int, skin_from: list[Record]) -> list[dict]:
    """One row per non-dermoscopy kind, generated with EVAL_SEED."""
    rows = []
    for kind in negatives.GENERATED:
        rows.append({"kind": kind, "fitted": kind in negatives.FIT_KINDS}
                    | judge(negatives.generated(kind, n, EVAL_SEED), checks, kind, n))
    for kind in negatives.PACKAGE_KINDS:
        rows.append({"kind": kind, "fitted": kind in negatives.FIT_KINDS}
                    | judge(negatives.package_kind(kind, n, EVAL_SEED), checks, kind, n))
    per_photo = n // len(negatives.HELD_OUT_PHOTOS)
    rows[-len(negatives.PACKAGE_KINDS) + negatives.PACKAGE_KINDS.index("photos_held_out")]["per_image"] = {
        name: judge(negatives.photo_crops(name, per_photo, EVAL_SEED), checks, name, per_photo)
        for name in negatives.HELD_OUT_PHOTOS}
    paths = [(r.path, 0, 0) for r in skin_from]
    rows.append({"kind": "skin without lesion (ISIC val/test corners)", "fitted": False}
                | judge(negatives.skin_crops(paths, n, EVAL_SEED), checks, "skin", min(n, len(paths))))
    return rows


def pooled(rows: list[dict]) -> dict:
    n = sum(r["n"] for r in rows)
    return {"n": n} | {key: sum(r[key] * r["n"] for r in rows) / max(n, 1)
                       for key in ("retake", "not_dermoscopy_check", "learned_checks", "second_stage")}


#: Interpreter thread settings the check is timed against: the scanner's default (`[model] threads = 0`: the
#: runtime's choice, which XNNPACK runs on one thread), one thread, and two.
TIMED_THREADS: dict[str, int | None] = {"default": None, "1": 1, "2": 2}


def _check(checks: InputChecks, pixels: np.ndarray) -> None:
    """The learned checks as the gate runs them: the first stage, and the second where the first does not clear."""
    checks.judge(first_stage(pixels))


def _back_to_back(checks: InputChecks, pixels: list[np.ndarray], models: dict) -> dict[str, list[float]]:
    """Each image's check, then its invoke at every thread setting, then the whole gate, on the same 224x224
    input: every step finds the code and data of the step before it in the caches."""
    tensors = [models["default"].quantise_input(px) for px in pixels]
    times: dict[str, list[float]] = {key: [] for key in ("check", "gate", *(f"invoke_{name}" for name in models))}
    for rep in range(2):  # the first pass warms caches up and is not counted
        for px, t in zip(pixels, tensors, strict=True):
            lap = {}
            t0 = time.perf_counter()
            _check(checks, px)
            lap["check"] = time.perf_counter() - t0
            for name, model in models.items():
                t0 = time.perf_counter()
                model.invoke_raw(t)
                lap[f"invoke_{name}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            check_quality(px, px, checks)
            lap["gate"] = time.perf_counter() - t0
            if rep:
                for key, dt in lap.items():
                    times[key].append(dt)
    return times


def _runtime_order(checks: InputChecks, frames: list[np.ndarray], models: dict) -> dict[str, tuple[list, list]]:
    """The runtime's order, frame after frame: preprocess the frame as captured, check it, invoke; for each frame
    once per thread setting, so that every setting sees the machine's load of the same moment. Each step finds the
    caches full of the step before (an invoke evicts the check's code and data, and a preprocess the model's): the
    costs the scanner pays."""
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in models}
    for rep in range(2):
        for frame in frames:
            for name, model in models.items():
                px = preprocess(frame)
                t0 = time.perf_counter()
                _check(checks, px)
                t1 = time.perf_counter()
                model.invoke_raw(model.quantise_input(px))
                t2 = time.perf_counter()
                if rep:
                    out[name][0].append(t1 - t0)
                    out[name][1].append(t2 - t1)
    return out


def _stats(check: list[float], invoke: list[float], threads: int | None) -> dict:
    """Medians and p90s, and the check's share of the invoke as the median of each frame's own ratio: the two are
    timed microseconds apart, so a slow spell of a shared machine moves both and not their ratio."""
    c, i = float(np.median(check)) * 1e6, float(np.median(invoke)) * 1e6
    return {"threads": threads, "check_median_us": c, "check_p90_us": float(np.percentile(check, 90)) * 1e6,
            "check_mean_us": float(np.mean(check)) * 1e6, "median_us": i,
            "p90_us": float(np.percentile(invoke, 90)) * 1e6,
            "ratio": float(np.median(np.asarray(check) / np.asarray(invoke))), "ratio_of_medians": c / i,
            "ratio_of_means": float(np.mean(check) / np.mean(invoke))}


def time_check(checks: InputChecks, frames: list[np.ndarray], model_path: Path) -> dict:
    """Median cost of the learned checks against one int8 invoke at each of TIMED_THREADS, in the same process:
    back to back on the same input (both with warm caches), and in the runtime's order on frames as captured.
    The machine's load moves every figure; their ratios in the same run move much less."""
    from edge_sca.interpreter import TFLiteModel

    models = {name: TFLiteModel(model_path, threads=t) for name, t in TIMED_THREADS.items()}
    pixels = [preprocess(f) for f in frames]
    warm = _back_to_back(checks, pixels, models)
    ordered = _runtime_order(checks, frames, models)
    return {"model": model_path.name, "backend": models["default"].backend, "frames": len(frames),
            "check_median_us": float(np.median(warm["check"])) * 1e6,
            "check_p90_us": float(np.percentile(warm["check"], 90)) * 1e6,
            "whole_gate_median_us": float(np.median(warm["gate"])) * 1e6,
            "invoke": {name: _stats(warm["check"], warm[f"invoke_{name}"], t) for name, t in TIMED_THREADS.items()},
            "runtime_order": {name: _stats(*ordered[name], TIMED_THREADS[name]) for name in models},
            "budget_ratio": INPUT_CHECKS_MAX_SHARE_OF_INVOKE, "load_average": list(os.getloadavg()),
            "cpu_count": os.cpu_count()}


def evaluate(checks: InputChecks, isic_dir: Path, extra_dir: Path | None, model_path: Path, n: int = 300,
             extra_limit: int = 2000) -> dict:
    folder = load_isic_folder(isic_dir, skip_bad=True)
    extra = load_isic_folder(extra_dir, skip_bad=True) if extra_dir else None
    held_out_isic = folder.subset("val") + folder.subset("test")
    derm = dermoscopy_rows(folder, extra, checks, extra_limit)
    neg = negative_rows(checks, n, held_out_isic)
    test_frames = list(_frames(folder.subset("test")[:300]))
    not_skin = [r for r in neg if not r["kind"].startswith("skin")]
    return {
        "created": now_iso(), "git_commit": git_commit(), "input_checks": str(checks.path),
        "input_checks_created": checks.data.get("created"), "eval_seed": EVAL_SEED,
        "dermoscopy": derm, "not_dermoscopy": neg,
        "pooled": {"fitted_kinds": pooled([r for r in neg if r["fitted"]]),
                   "held_out_kinds": pooled([r for r in neg if not r["fitted"]]),
                   "all_but_skin": pooled(not_skin), "all": pooled(neg)},
        "targets": {"not_dermoscopy_retake_min": 0.99, "dermoscopy_refused_max": 0.01},
        "timing": time_check(checks, test_frames, model_path),
        "memory": memory_report() if Path("/proc/self/clear_refs").exists() else [],
    }


def dermoscopy_table(r: dict) -> str:
    lines = [("| source | images | refused by the learned checks (not dermoscopy or no lesion) | of which not "
              "dermoscopy | refused by the whole gate | gate's reasons | not cleared by the first stage |"),
             "|---|---:|---:|---:|---:|---|---:|"]
    for row in r["dermoscopy"]:
        reasons = ", ".join(f"{k} {v}" for k, v in row["reasons"].items() if k != "passed") or "-"
        lines.append(f"| {row['source']} | {row['n']} | {row['learned_checks']:.2%} | "
                     f"{row['not_dermoscopy_check']:.2%} | {row['retake']:.2%} | {reasons} | "
                     f"{row['second_stage']:.1%} |")
    return "\n".join(lines)


def negatives_table(r: dict) -> str:
    lines = [("| kind | fitted on | frames | RETAKE (whole gate) | learned checks alone | not-dermoscopy check alone "
              "| not cleared by the first stage | reasons |"),
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in r["not_dermoscopy"]:
        reasons = ", ".join(f"{k} {v}" for k, v in row["reasons"].items())
        lines.append(f"| {row['kind']} | {'yes' if row['fitted'] else 'held out'} | {row['n']} | {row['retake']:.1%} "
                     f"| {row['learned_checks']:.1%} | {row['not_dermoscopy_check']:.1%} | {row['second_stage']:.1%} "
                     f"| {reasons} |")
    for row in r["not_dermoscopy"]:
        for name, sub in row.get("per_image", {}).items():
            lines.append(f"| {row['kind']}: {name} (separate crops) | held out | {sub['n']} | {sub['retake']:.1%} | "
                         f"{sub['learned_checks']:.1%} | {sub['not_dermoscopy_check']:.1%} | "
                         f"{sub['second_stage']:.1%} | |")
    for name, p in r["pooled"].items():
        lines.append(f"| **{name.replace('_', ' ')}** | | {p['n']} | **{p['retake']:.1%}** | "
                     f"{p['learned_checks']:.1%} | {p['not_dermoscopy_check']:.1%} | {p['second_stage']:.1%} | |")
    return "\n".join(lines)


def cost_table(r: dict) -> str:
    t = r["timing"]
    lines = [cost_paragraph(t), "",
             ("| measured | interpreter threads | check median | check p90 | check mean | invoke median | invoke p90 | "
              "check / invoke (median) | mean check / mean invoke |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for order, label in (("invoke", "back to back"), ("runtime_order", "in the runtime's order")):
        for inv in t[order].values():
            threads = "default (the runtime's choice)" if inv["threads"] is None else str(inv["threads"])
            lines.append(f"| {label} | {threads} | {inv['check_median_us']:.0f} us | {inv['check_p90_us']:.0f} us | "
                         f"{inv['check_mean_us']:.0f} us | {inv['median_us']:.0f} us | {inv['p90_us']:.0f} us | "
                         f"**{inv['ratio']:.1%}** | {inv['ratio_of_means']:.1%} |")
    return "\n".join(lines)


#: The tables docs/input-checks.md carries between markers, rewritten by `python -m quantize input-checks docs`.
DOC_TABLES = {"dermoscopy": dermoscopy_table, "not-dermoscopy": negatives_table, "cost": cost_table}


def doc_markers(name: str) -> tuple[str, str]:
    return (f"<!-- input-checks-{name}:begin (python -m quantize input-checks docs) -->",
            f"<!-- input-checks-{name}:end -->")


def update_docs(report: Path, docs: Path) -> dict[str, bool]:
    """Rewrite the marked tables of `docs` from an evaluation.json; per table, whether it changed."""
    import json

    r = json.loads(report.read_text())
    return {name: replace_between_markers(docs, *doc_markers(name), table(r)) for name, table in DOC_TABLES.items()}


def markdown(r: dict) -> str:
    """The report as Markdown tables (docs/input-checks.md carries the same tables: `input-checks docs`)."""
    lines = [f"# Input checks: evaluation ({r['created']}, commit {r['git_commit'][:12]})", "",
             "## Dermoscopy (held out: never used to fit)", "", dermoscopy_table(r), "",
             f"## Not dermoscopy (seed {r['eval_seed']}; the fit used seed 1 and only the fitted kinds)", "",
             negatives_table(r), "", "## Cost", "", cost_table(r), ""]
    if r.get("memory"):
        lines += ["## Memory of one image", "", ("Peak resident memory added by reading a black PNG through "
                                                 "`read_image` + `preprocess`, each in a fresh process:"), "",
                  "| image | file | result | peak memory added |", "|---|---:|---|---:|"]
        for m in r["memory"]:
            result = "224x224 input" if isinstance(m["result"], list) else "refused before decoding"
            lines.append(f"| {m['width']}x{m['height']} ({m['width'] * m['height'] / 1e6:.0f} MP) | "
                         f"{m['file_mb']:.2f} MB | {result} | {m['peak_increase_mb']:.0f} MB |")
        lines.append("")
    return "\n".join(lines)


def cost_paragraph(t: dict) -> str:
    return (f"On {t['frames']} ISIC test images in one process ({t['backend']}, load average "
            f"{t['load_average'][0]:.1f} on {t['cpu_count']} CPUs): the learned checks (the first stage's "
            "statistics and scores, and for the frames it does not clear, the rest of the statistics and the full "
            f"check) against {t['model']}'s invoke (budget {t['budget_ratio']:.0%}), at the scanner's default "
            "thread setting, one and two threads. Back to back: the check, then the invokes, on the same 224x224 "
            "input, so that each finds warm caches. In the runtime's order: preprocess the frame as captured, check "
            "it, invoke, frame after frame, so that each step finds the caches full of the one before. Check / "
            "invoke is the median of each frame's own ratio (the two timed microseconds apart, so the load of a "
            "shared machine moves it less than either median). The whole gate (with focus, brightness, lesion "
            f"contrast) takes {t['whole_gate_median_us']:.0f} us back to back.")


def write(r: dict, out_dir: Path) -> Path:
    write_json(out_dir / "evaluation.json", r)
    md = out_dir / "evaluation.md"
    md.write_text(markdown(r))
    return md

