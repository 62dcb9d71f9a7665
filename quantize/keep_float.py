"""Keep-float search: leave the layers int8 hurts most in float, when the user asks or the budgets are broken.

The layers are the user's (`--keep-float`) or the worst by the per-layer debugger (`--keep-float-auto`). The
mixed model ships as the int8 model when it passes the budgets (automatic) or always (explicit layers); the
fully integer one is then kept beside the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edge_sca.manifest import load_manifest, manifest_path
from quantize.build_cache import shown
from quantize.data import Arrays
from quantize.job import Job
from quantize.variants import build_variant


def keep_float(job: Job, paths: dict[str, Path], parts: dict[str, Arrays], drift: dict,
               probs: dict) -> tuple[dict, dict]:
    """Build and measure the mixed model; returns the drift report (and the joined probabilities) of the model that
    ships as int8. `parts` are the evaluation splits in report order, `probs` their probabilities per model."""
    from quantize.debug import latency_ms, layer_errors, worst_layers
    from quantize.drift import compare_splits, score

    layers = list(job.options.keep_float)
    if not layers:
        rows = layer_errors(job.model(), job.calib.x, io_type=job.options.io)
        drift["diagnosis"] = {"images": min(len(job.calib.ids), 16), "layers": rows[:10]}
        layers = worst_layers(rows)
    mixed = build_variant(job, "int8", keep_float=layers, path=job.report_dir / f"{job.stem}_int8_keepfloat.tflite")
    p_mixed = score({"int8": mixed}, parts)["int8"]
    sizes = dict(drift["sizes_bytes"], int8=mixed.stat().st_size)
    alt, joined = compare_splits({**probs, "int8": p_mixed}, parts, drift["threshold"], sizes)
    ref = np.asarray(parts[list(parts)[-1]].x[0])  # the first image of the last split (test)
    drift["keep_float"] = {
        "layers": layers, "file": shown(mixed), "size_bytes": sizes["int8"],
        "size_delta_bytes": sizes["int8"] - drift["sizes_bytes"]["int8"],
        "latency_ms": latency_ms(mixed, ref), "int8_latency_ms": latency_ms(paths["int8"], ref),
        "agreement": alt["int8_vs_float32"]["agreement"],
        "delta_sensitivity": alt["int8_vs_float32"]["delta_sensitivity"], "budgets_ok": alt["budgets"]["ok"]}
    if job.options.keep_float or alt["budgets"]["ok"]:
        full = job.report_dir / f"{job.stem}_int8_full.tflite"
        shutil.copyfile(paths["int8"], full)
        shutil.copyfile(mixed, paths["int8"])
        shutil.copyfile(manifest_path(mixed), manifest_path(paths["int8"]))
        _fix_model_file(paths["int8"])
        drift["keep_float"]["shipped"] = True
        alt.update({k: drift[k] for k in ("diagnosis", "keep_float", "threshold_source", "calibration", "recipe",
                                          "qat_model", "bias_correction") if k in drift})
        alt["models"] = dict(drift["models"], int8_full=shown(full))
        return alt, joined
    drift["keep_float"]["shipped"] = False
    return drift, {name: np.concatenate([p[s] for s in parts]) for name, p in probs.items()}


def _fix_model_file(path: Path) -> None:
    """The copied manifest names the mixed model's file; name the shipped one instead."""
    manifest = load_manifest(manifest_path(path))
    manifest.data["model_file"] = path.name
    manifest.save()
