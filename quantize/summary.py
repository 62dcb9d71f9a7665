"""The training table: each shipped model's val and test metrics from its JSON record, beside the paper's.

The paper's figures (Lee et al., 2020, Table 1) are on its own balanced test set; the `test` split here holds the
part of that list available in the ISIC folder plus images of the same lesions (133 benign / 317 malignant), so
the comparison is indicative, not like for like.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_sca.contract import MODEL_NAMES, model_stem
from edge_sca.errors import ModelError
from quantize.provenance import earlier_stages

#: Paper, Table 1 (test): accuracy, malignant sensitivity, PPV. No balanced accuracy, specificity or AUROC given.
PAPER_TEST = {"b": {"accuracy": 0.844, "sensitivity": 0.914, "ppv": 0.802},
              "c": {"accuracy": 0.839, "sensitivity": 0.900, "ppv": 0.802}}
COLUMNS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "auroc")


def load_records(models_dir: Path, names: list[str] | None = None) -> list[dict]:
    """The training records present in `models_dir` (those of `names`, or of every known model)."""
    records = []
    for name in names or MODEL_NAMES:
        path = models_dir / f"{model_stem(name)}.json"
        if not path.is_file():
            continue
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: unreadable training record ({exc}); retrain or restore it") from exc
    if not records:
        raise ModelError(f"no training record in {models_dir}; train a model with `make train` first")
    return records


def rows(records: list[dict]) -> list[dict]:
    """One row per model and split, plus the paper's test row, as plain numbers."""
    out = []
    for r in records:
        for split in ("val", "test"):
            m = r["metrics"][split]
            out.append({"model": r["model"], "source": f"this package, {split}", "n": m["n"],
                        **{k: m[k] for k in COLUMNS}, "threshold": r["threshold"],
                        "epochs": _epochs(r), "core_hours": core_hours(r)})
        if r["model"] in PAPER_TEST:
            out.append({"model": r["model"], "source": "paper, test (balanced)", **PAPER_TEST[r["model"]]})
    return out


def throughput_markdown(records: list[dict]) -> str:
    """Training throughput per model and image size (median over epochs)."""
    parts = [f"{_label(r['model'])}: " + ", ".join(f"{v:.0f} images/s at {k}x{k}" for k, v in throughput(r).items())
             for r in records]
    return "Training throughput (median over epochs): " + "; ".join(parts) + "."


def throughput(record: dict) -> dict[int, float]:
    """Median training images/s by image size, over every stage's epochs."""
    by_size: dict[int, list[float]] = {}
    for h in _history(record):
        by_size.setdefault(int(h["size"]), []).append(float(h["images_per_s"]))
    return {size: float(np.median(v)) for size, v in sorted(by_size.items())}


def _history(record: dict) -> list[dict]:
    return [h for r in [record, *earlier_stages(record.get("init_from"))] for h in r.get("history") or []]


def core_hours(record: dict) -> float:
    """Wall hours times training threads, over every stage: the compute a run used, comparable across runs
    that trained side by side on one thread each and runs that had both cores."""
    return sum((r.get("train_wall_hours") or 0.0) * _threads(r)
               for r in [record, *earlier_stages(record.get("init_from"))])


def _threads(record: dict) -> int:
    """Threads a stage trained on: its --threads, else every core of its machine (`cpu_count`, in newer records)."""
    return int((record.get("config") or {}).get("threads") or record.get("cpu_count") or 1)


def _epochs(record: dict) -> int:
    """Epochs over every stage (an --init-from run counts the stages before it)."""
    return sum(r.get("epochs_completed") or 0 for r in [record, *earlier_stages(record.get("init_from"))])


def _label(model: str) -> str:
    return "ResNet-50" if model == "resnet50" else model.upper()


def markdown(table: list[dict]) -> str:
    head = ["model", "source", "n"] + list(COLUMNS) + ["epochs", "core hours"]
    lines = ["| " + " | ".join(h.replace("_", " ") for h in head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in table:
        cells = [_label(row["model"]), row["source"],
                 str(row.get("n", ""))]
        cells += [f"{row[k] * 100:.1f}" if k != "auroc" and k in row else (f"{row[k]:.3f}" if k in row else "")
                  for k in COLUMNS]
        cells += [str(row.get("epochs", "")), f"{row['core_hours']:.1f}" if "core_hours" in row else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
