"""edge_sca.training_record: the threshold and MACs every tool takes from the record `quantize train` writes."""

from __future__ import annotations

import json

import pytest

from edge_sca.contract import DEFAULT_THRESHOLD
from edge_sca.errors import ModelError
from edge_sca.training_record import record_macs, record_threshold


def test_threshold_and_macs_come_from_the_record_beside_the_model(tmp_path):
    keras = tmp_path / "cancernet_sca_b.keras"
    (tmp_path / "cancernet_sca_b.json").write_text(json.dumps({"threshold": 0.27, "macs": 216_397_056}))
    assert record_threshold(keras) == (0.27, "training record cancernet_sca_b.json")
    assert record_threshold(keras.with_suffix(".pb")) == record_threshold(keras)  # an imported checkpoint too
    assert record_macs(keras) == 216_397_056


def test_without_a_record_the_default_threshold_is_named(tmp_path, caplog):
    keras = tmp_path / "cancernet_sca_c.keras"
    assert record_threshold(keras) == (DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} (no training record)")
    assert "no training record" in caplog.text and record_macs(keras) is None
    (tmp_path / "cancernet_sca_c.json").write_text(json.dumps({"model": "c"}))
    assert record_threshold(keras)[0] == DEFAULT_THRESHOLD and record_macs(keras) is None


@pytest.mark.parametrize("text", ["{", "[1, 2]"])
def test_a_broken_record_is_an_error_that_says_what_to_do(tmp_path, text):
    (tmp_path / "cancernet_sca_b.json").write_text(text)
    with pytest.raises(ModelError, match="training record.*retrain or remove it"):
        record_threshold(tmp_path / "cancernet_sca_b.keras")
