"""`python -m quantize summary`: the training table from the models' JSON records."""

import contextlib
import io
import json

import pytest

from edge_sca.errors import ModelError
from quantize.cli import main
from quantize.summary import core_hours, load_records, markdown, rows, throughput

METRICS = {"n": 10, "accuracy": 0.8, "balanced_accuracy": 0.75, "sensitivity": 0.9, "specificity": 0.6,
           "ppv": 0.7, "auroc": 0.85}


def _record(model="b", epochs=3, hours=0.5, init_from=None):
    return {"model": model, "metrics": {"val": METRICS, "test": METRICS}, "threshold": 0.2,
            "epochs_completed": epochs, "train_wall_hours": hours, "init_from": init_from,
            "history": [{"size": 128, "images_per_s": 60.0}, {"size": 224, "images_per_s": 20.0 + epochs}]}


def test_rows_put_the_paper_beside_val_and_test_and_count_every_stage(tmp_path):
    stage1 = _record(epochs=40, hours=1.0) | {"config": {"threads": 1}}
    second = _record(epochs=5, hours=0.5, init_from={"record": stage1}) | {"config": {"threads": 1}}
    (tmp_path / "cancernet_sca_b.json").write_text(json.dumps(second))
    table = rows(load_records(tmp_path))
    assert [r["source"] for r in table] == ["this package, val", "this package, test", "paper, test (balanced)"]
    assert table[1]["epochs"] == 45 and table[1]["core_hours"] == 1.5
    assert table[2]["sensitivity"] == 0.914
    assert throughput(second) == {128: 60.0, 224: 42.5}  # medians over both stages
    md = markdown(table)
    assert "| B | this package, test | 10 | 80.0 | 75.0 | 90.0 | 60.0 | 70.0 | 0.850 | 45 | 1.5 |" in md


def test_core_hours_weigh_each_stage_by_its_threads():
    two_cores = _record(hours=1.0) | {"config": {"threads": 2}}
    all_cores = _record(hours=1.0) | {"config": {"threads": None}, "cpu_count": 4}
    staged = _record(hours=0.5, init_from={"record": two_cores}) | {"config": {"threads": 1}}
    assert core_hours(two_cores) == 2.0 and core_hours(all_cores) == 4.0
    assert core_hours(staged) == 2.5


def test_cli_json_and_missing_or_broken_records(tmp_path):
    with pytest.raises(ModelError, match="no training record"):
        load_records(tmp_path)
    (tmp_path / "cancernet_sca_c.json").write_text("{")
    with pytest.raises(ModelError, match="unreadable training record"):
        load_records(tmp_path)
    (tmp_path / "cancernet_sca_c.json").write_text(json.dumps(_record("c")))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["summary", "--models-dir", str(tmp_path), "--json"]) == 0
    result = json.loads(out.getvalue())
    assert [r["model"] for r in result["rows"]] == ["c", "c", "c"]
    assert result["throughput_images_per_s"]["c"] == {"128": 60.0, "224": 23.0}
