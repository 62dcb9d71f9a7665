"""The recipe table in the docs is rendered from the comparison and latency reports, never typed."""

import json

import pytest

from edge_sca.errors import EdgeScaError
from quantize.methods_docs import BEGIN, END, table, update


def _row(recipe: str, split: str, agreement: float, ok: bool = False) -> dict:
    return {"model": "b", "recipe": recipe, "method": "ptq", "split": split, "n": 100, "malignant": 40,
            "agreement": agreement, "missed_cancers": 2, "mean_abs_delta_p": 0.0111, "delta_auroc": -0.0004,
            "size_ratio": 0.337, "int8_file": f"build/quantize/methods/{recipe}/cancernet_sca_b_int8.tflite",
            "budgets_ok": ok, "failed_budgets": [] if ok else ["agreement"]}


METHODS = {"command": "python -m quantize compare", "created": "2026-11-26T12:00:00+00:00", "git_commit": "abc" * 5,
           "rows": [_row("ptq", "val", 0.98), _row("ptq", "test", 0.97), _row("ptq", "val+test", 0.978),
                    _row("ptq_mse_pl", "val", 0.99), _row("ptq_mse_pl", "test", 0.99),
                    _row("ptq_mse_pl", "val+test", 0.99, ok=True)]}
LATENCY = {"command": "python -m benchmarks.int8_latency", "machine": "vm", "threads": 1, "models": [
    {"model": "b", "files": [{"file": "build/quantize/methods/ptq/cancernet_sca_b_int8.tflite",
                              "median_over_baseline": 1.0},
                             {"file": "build/quantize/methods/ptq_mse_pl/cancernet_sca_b_int8.tflite",
                              "median_over_baseline": 1.013}]}]}


def test_table_has_one_row_per_recipe_with_each_split_and_the_latency_ratio():
    text = table(METHODS, LATENCY, "ptq_mse_pl")
    rows = [line for line in text.splitlines() if line.startswith("| B ")]
    assert len(rows) == 2
    assert "98.00% / 97.00% / **97.80%**" in rows[0] and "broken: agreement" in rows[0] and "| 1.000 |" in rows[0]
    assert "**ptq_mse_pl** (default)" in rows[1] and "| met |" in rows[1] and "| 1.013 |" in rows[1]
    assert "python -m quantize compare" in text and "python -m benchmarks.int8_latency" in text


def test_update_rewrites_only_between_the_markers_and_refuses_a_file_without_them(tmp_path):
    (tmp_path / "methods.json").write_text(json.dumps(METHODS))
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    assert update([doc], tmp_path / "methods.json", tmp_path / "missing_latency.json", "ptq") == [doc]
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "latency not measured yet" in text
    assert update([doc], tmp_path / "methods.json", tmp_path / "missing_latency.json", "ptq") == []  # idempotent
    bare = tmp_path / "bare.md"
    bare.write_text("no markers")
    with pytest.raises(EdgeScaError, match="lacks the"):
        update([bare], tmp_path / "methods.json", tmp_path / "x.json", "ptq")
    with pytest.raises(EdgeScaError, match="run `python -m quantize compare` first"):
        update([doc], tmp_path / "nothing.json", tmp_path / "x.json", "ptq")
