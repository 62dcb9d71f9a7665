"""`python -m quantize robust-tune`: a candidate float model trained to agree with its own fake-quantised twin."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import eager_tf

from edge_sca.errors import ModelError
from edge_sca.fileio import sha256_file
from quantize.cli import build_parser
from quantize.robust import RobustSettings, _saved_ranges, robust_paths, robust_tune
from quantize.sources import POOLED

TINY = RobustSettings(train_images=6, epochs=1, batch_size=2)


@pytest.mark.isic
@pytest.mark.slow
def test_writes_a_candidate_with_its_record_and_a_resumable_checkpoint(tiny_isic, random_models, tmp_path,
                                                                        monkeypatch):
    import keras

    from quantize import fake_quant, qat

    # the converter's grids (qat.twin_ranges, a full conversion, tested with quantisation-aware fine-tuning) are
    # replaced by the float model's own min / max: 20 s less, and the twin is built the same way
    monkeypatch.setattr(qat, "twin_ranges", lambda model, pixels, ranges, seed: fake_quant.activation_ranges(
        model, pixels))
    out = tmp_path / "robust"
    with eager_tf():
        record = robust_tune("b", random_models["keras"], tiny_isic, out, TINY, threads=2)
    assert json.loads((out / "cancernet_sca_b.json").read_text()) == json.loads(json.dumps(record, default=float))
    assert record["init_from"]["sha256"] == sha256_file(random_models["keras"])
    assert record["data"]["images"] == 6 and record["epochs_completed"] == 1 and len(record["history"]) == 1
    assert 0.0 < record["threshold"] < 1.0 and record["macs"] > 0
    assert {"val", "test"} <= set(record["metrics_by_source"]) and POOLED in record["metrics_by_source"]["val"]
    source = keras.models.load_model(random_models["keras"], compile=False).get_weights()
    tuned = keras.models.load_model(out / "cancernet_sca_b.keras", compile=False).get_weights()
    assert [w.shape for w in tuned] == [w.shape for w in source]
    assert any(not np.array_equal(a, b) for a, b in zip(tuned, source, strict=True)), "the weights did not move"
    # what a re-run with the same inputs resumes from (QAT's trainer restores weights and optimiser): the finished
    # state, and the activation grids, so that it does not convert again
    paths = robust_paths(out, "cancernet_sca_b")
    state = json.loads(paths["state"].read_text())
    assert state["key"] == record["key"] and state["step"] == state["steps"] == 3 and paths["weights"].is_file()
    assert _saved_ranges(paths, record["key"]) and _saved_ranges(paths, "another key") is None


def test_a_missing_source_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such model"):
        robust_tune("b", tmp_path / "cancernet_sca_b.keras", tmp_path, tmp_path / "out", TINY)


@pytest.mark.parametrize("bad", [["--consistency", "0"], ["--lr", "-1"], ["--images", "0"], ["--epochs", "0"],
                                 ["--consistency-scale", "logits"]])
def test_out_of_range_numbers_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["robust-tune", "--model", "b", *bad])
    assert exc.value.code == 2 and bad[0] in capsys.readouterr().err


def test_an_unknown_consistency_scale_is_refused():
    with pytest.raises(ValueError, match="relative"):
        RobustSettings(consistency_scale="logits")
