"""End-to-end: the device's own runtime path per frame (camera -> preprocess -> quality gate -> int8 inference ->
decision), so the time spent around the model is visible next to the model-only latency."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sca.cameras import open_camera
from edge_sca.policy import INPUT_CHECKS_MAX_SHARE_OF_INVOKE
from edge_sca.runtime import Runtime, run_loop

log = logging.getLogger(__name__)


def default_camera(isic_dir: Path | None) -> str:
    """Replay the ISIC folder when one is given (real dermoscopy frames), else the synthetic lesion camera."""
    return f"replay:{isic_dir}" if isic_dir else "synthetic"


def _open(spec: str, split: str):
    kind, _, arg = spec.partition(":")
    if kind == "replay" and (Path(arg) / "metadata.csv").is_file():
        return open_camera(spec, split=split, loop=True)
    return open_camera(spec, loop=True) if kind == "replay" else open_camera(spec)


def run_e2e(model: dict, camera_spec: str, frames: int, threads: int | None, split: str = "test") -> dict:
    """`frames` decisions through Runtime.process (plus its warm-up frames); latency by stage and the overhead.
    `threads` None: the scanner's shipped setting (the runtime's choice)."""
    runtime = Runtime(model["path"], threads=threads)
    log.info("end-to-end: %s on %s, %d frames, threads %s", model["name"], camera_spec, frames,
             "the runtime's choice" if threads is None else threads)
    try:
        with _open(camera_spec, split) as camera:
            report = run_loop(runtime, camera, frames=frames + runtime.latency.warmup)
    finally:
        runtime.close()
    lat = report["latency"]
    out = {"model": model["name"], "camera": camera_spec, "threads": threads, "frames": report["frames"],
           "decisions": report["decisions"], "retake_reasons": report["retake_reasons"], "latency": lat,
           "selftest": report.get("selftest"), "stopped_by": report.get("stopped_by"),
           "total_samples_ms": [round(x, 4) for x in runtime.latency.samples["total_ms"]]}
    invoke = lat.get("stages", {}).get("invoke_ms")
    if lat.get("measured") and invoke:
        out["overhead_ms_mean"] = lat["mean_ms"] - invoke["mean_ms"]
        out["overhead_fraction"] = out["overhead_ms_mean"] / lat["mean_ms"]
        capture = lat["stages"].get("capture_ms", {}).get("mean_ms", 0.0)
        out["around_model_ms_mean"] = out["overhead_ms_mean"] - capture  # preprocess, quality gate, decision
    checks = lat.get("stages", {}).get("input_checks_ms")
    if checks and invoke and invoke["p50_ms"] > 0:
        # the learned checks' budget is a share of the invoke: medians of the same run, on this device
        out["input_checks_share_of_invoke"] = checks["p50_ms"] / invoke["p50_ms"]
        out["input_checks_budget"] = INPUT_CHECKS_MAX_SHARE_OF_INVOKE
    return out
