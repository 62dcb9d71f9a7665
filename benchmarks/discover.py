"""Finding the models to benchmark and running each one in a fresh process."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from edge_sca.errors import ModelError
from edge_sca.manifest import load_manifest, manifest_path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^(?:cancernet_sca_(?P<arch>[a-z0-9]+)|(?P<base>resnet50))_(?P<variant>[a-z0-9]+)$")


def find_models(models_dir: Path, only: list[str] | None = None) -> list[Path]:
    """Every *.tflite in models_dir (sorted), optionally only those whose stem contains one of `only`."""
    if not models_dir.is_dir():
        raise ModelError(f"{models_dir}: no such models folder; build the models with `make quantize` "
                         "or pass --models-dir")
    paths = sorted(models_dir.glob("*.tflite"))
    if only:
        paths = [p for p in paths if any(o in p.stem for o in only)]
    if not paths:
        what = f" matching {', '.join(only)}" if only else ""
        raise ModelError(f"{models_dir}: no .tflite models{what}; build them with `make quantize` "
                         "or pass --models-dir DIR")
    return paths


def identify(path: Path, macs_table: dict[str, int]) -> dict:
    """Architecture, variant, threshold and MACs of a model: from its manifest, else from its file name."""
    m = _NAME.match(path.stem)
    arch = (m.group("arch") or m.group("base")) if m else path.stem
    variant = m.group("variant") if m else "unknown"
    info = {"name": path.stem, "path": str(path), "architecture": arch, "variant": variant, "threshold": None,
            "macs": None, "macs_source": None}
    try:
        data = load_manifest(manifest_path(path)).data
    except ModelError as exc:
        info["error"] = str(exc)
        return info
    info.update(architecture=data.get("architecture", arch), variant=data.get("variant", variant),
                threshold=data.get("threshold"))
    if data.get("macs"):
        info.update(macs=int(data["macs"]), macs_source="manifest")
    elif info["architecture"] in macs_table:
        info.update(macs=macs_table[info["architecture"]], macs_source="table (--macs)")
    return info


def run_child(path: Path, threads: list[int], warmup: int, runs: int, max_s: float, min_runs: int,
              timeout_s: float = 1800.0) -> dict:
    """Measure one model in a fresh interpreter process (benchmarks.model_bench); its JSON result or {'error'}."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "benchmarks.model_bench", str(path), "--threads", ",".join(map(str, threads)),
           "--warmup", str(warmup), "--runs", str(runs), "--max-seconds", str(max_s), "--min-runs", str(min_runs)]
    log.info("measuring %s (threads %s)", path.name, ",".join(map(str, threads)))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s; use --quick or fewer --runs"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"measuring process failed (exit {proc.returncode}): {tail or 'no output'}"}
    return json.loads(lines[-1])
