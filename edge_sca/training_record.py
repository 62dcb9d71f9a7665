"""The training record: the JSON `quantize train` writes beside `models/<stem>.keras` (data, split, seed, epochs,
git commit, metrics, the validation-chosen threshold, MACs per frame).

Read here, once, by everything that needs a figure from it: the threshold for evaluation and conversion, the MACs
for the benchmark. No TensorFlow: the benchmark reads it on the scanner too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_sca.contract import DEFAULT_THRESHOLD
from edge_sca.errors import ModelError

log = logging.getLogger(__name__)


def record_path(model_path: str | Path) -> Path:
    """`models/cancernet_sca_b.keras` (or `.pb`) -> `models/cancernet_sca_b.json`."""
    return Path(model_path).with_suffix(".json")


def load_training_record(model_path: str | Path) -> dict | None:
    """The record beside `model_path`, None when there is none; ModelError when it does not parse."""
    path = record_path(model_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable training record ({exc}); retrain or remove it") from exc
    if not isinstance(record, dict):
        raise ModelError(f"{path}: a training record is a JSON object; retrain or remove it")
    return record


def record_threshold(model_path: str | Path) -> tuple[float, str]:
    """The decision threshold of the model at `model_path` and where it came from (for reports and manifests).

    The training record's validation-chosen threshold, else DEFAULT_THRESHOLD with a warning.
    """
    record = load_training_record(model_path)
    if record is not None and "threshold" in record:
        return float(record["threshold"]), f"training record {record_path(model_path).name}"
    log.warning("%s: no training record with a threshold; using %s", model_path, DEFAULT_THRESHOLD)
    return DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} (no training record)"


def record_macs(model_path: str | Path) -> int | None:
    """Multiply-accumulates per frame that training counted (`macs`), None when the record is absent or lacks it."""
    record = load_training_record(model_path)
    macs = record.get("macs") if record else None
    return int(macs) if macs else None


def record_colour_constancy(model_path: str | Path) -> str:
    """The colour constancy (edge_sca.colour) the model at `model_path` was trained with: its training record's
    `config.colour_constancy`, "none" for a record without one (every model trained before it existed)."""
    record = load_training_record(model_path)
    config = record.get("config") if record else None
    return str(config.get("colour_constancy", "none")) if isinstance(config, dict) else "none"

