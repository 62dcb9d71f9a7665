"""Finding the models to benchmark and running each one in a fresh process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge_sca.contract import model_stem, parse_model_file
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import ModelError
from edge_sca.manifest import load_manifest, manifest_path
from edge_sca.training_record import record_macs, record_path

log = logging.getLogger(__name__)


def find_models(models_dir: Path, names: list[str] | None = None, match: list[str] | None = None) -> list[Path]:
    """Every *.tflite in models_dir (sorted); with `names`, only those models' files (`cancernet_sca_b_*` for b);
    with `match`, only files whose stem contains one of those texts."""
    if not models_dir.is_dir():
        raise ModelError(f"{models_dir}: no such models folder; build the models with `make quantize` "
                         "or pass --models-dir")
    paths = sorted(models_dir.glob("*.tflite"))
    if names:
        paths = [p for p in paths if (parse_model_file(p.stem) or ("", ""))[0] in names]
    if match:
        paths = [p for p in paths if any(o in p.stem for o in match)]
    if not paths:
        what = "".join(f" {label} {', '.join(v)}" for label, v in (("of", names), ("matching", match)) if v)
        raise ModelError(f"{models_dir}: no .tflite models{what}; build them with `make quantize` "
                         "or pass --models-dir DIR")
    return paths


def identify(path: Path, macs_given: dict[str, int]) -> dict:
    """Architecture, variant, threshold and MACs of a model: from its manifest, else from its file name.

    MACs per frame come from the manifest, else from --macs, else from the training record beside the model
    (`models/cancernet_sca_b.json`, which `quantize train` writes); None when none has them.
    """
    arch, variant = parse_model_file(path.stem) or (path.stem, "unknown")
    info: dict[str, Any] = {"name": path.stem, "path": str(path), "architecture": arch, "variant": variant,
                            "threshold": None, "macs": None, "macs_source": None}
    try:
        data = load_manifest(manifest_path(path)).data
    except ModelError as exc:
        info["error"] = str(exc)
        return info
    info.update(architecture=data.get("architecture", arch), variant=data.get("variant", variant),
                threshold=data.get("threshold"))
    if data.get("macs"):
        info.update(macs=int(data["macs"]), macs_source="manifest")
    elif info["architecture"] in macs_given:
        info.update(macs=macs_given[info["architecture"]], macs_source="--macs")
    else:
        info.update(_macs_from_record(path.with_name(model_stem(info["architecture"]) + ".keras")))
    return info


def _macs_from_record(keras_path: Path) -> dict:
    """{'macs', 'macs_source'} from the training record of `keras_path`, or nothing (a broken record is logged)."""
    try:
        macs = record_macs(keras_path)
    except ModelError as exc:
        log.warning("no MACs: %s", exc)
        return {}
    return {"macs": macs, "macs_source": f"training record {record_path(keras_path).name}"} if macs else {}


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
