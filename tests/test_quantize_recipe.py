"""Quantisation recipes: the shipped files load, bad files are refused with the field named, overrides are recorded."""

import json

import pytest

from edge_sca.errors import EdgeScaError
from quantize.recipe import (
    BASELINE_RECIPE,
    DEFAULT_RECIPE,
    BiasCorrection,
    CalibrationSource,
    Method,
    available,
    load_recipe,
    parse,
)


def test_shipped_recipes_load_and_name_themselves():
    names = available()
    assert {DEFAULT_RECIPE, BASELINE_RECIPE} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.name == name and len(r.sha256) == 64 and r.source_file == f"quantize/recipes/{name}.json"
        assert (r.qat is not None) == (r.method is Method.QAT)
    base = load_recipe(BASELINE_RECIPE)
    assert base.method is Method.PTQ and base.calibration.source is CalibrationSource.COLUMN
    assert base.bias_correction is BiasCorrection.LOGIT and base.per_channel


def test_overrides_change_the_conversion_key_and_are_recorded():
    r = load_recipe(BASELINE_RECIPE)
    o = r.with_overrides(calibration_size=100, per_tensor=True, no_bias_correction=True)
    assert o.calibration.size == 100 and not o.per_channel and o.bias_correction is BiasCorrection.NONE
    assert o.overrides == ("--calibration-size 100", "--per-tensor", "--no-bias-correction")
    assert o.conversion_key() != r.conversion_key()
    d = o.as_dict()
    assert d["method"] == "ptq" and d["calibration"] == {"source": "calibration_column", "size": 100}
    json.dumps(d)  # what manifests and reports store


@pytest.mark.parametrize("data, message", [
    ({"name": "x"}, "needs 'name' and 'method'"),
    ({"name": "x", "method": "gptq"}, "method 'gptq' is not one of ptq, qat"),
    ({"name": "x", "method": "ptq", "calibrate": {}}, "unknown recipe field(s) calibrate"),
    ({"name": "x", "method": "ptq", "calibration": {"source": "train"}}, "needs a calibration.size"),
    ({"name": "x", "method": "ptq", "calibration": {"size": -3}}, "positive whole number"),
    ({"name": "x", "method": "ptq", "bias_correction": "all"},
     "bias_correction 'all' is not one of logit, per_layer, none"),
    ({"name": "x", "method": "ptq", "qat": {"epochs": 1}}, "'qat' settings given for method 'ptq'"),
    ({"name": "x", "method": "qat", "qat": {"steps": 3}}, "bad 'qat' settings"),
    ({"name": "x", "method": "qat", "qat": {"learning_rate": 0}}, "must be positive"),
])
def test_bad_recipes_are_refused_naming_the_field(data, message):
    with pytest.raises(EdgeScaError, match=None) as err:
        parse(data, "r.json")
    assert message in str(err.value) and "r.json" in str(err.value)


def test_missing_or_broken_recipe_file(tmp_path):
    with pytest.raises(EdgeScaError, match="choose one of"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EdgeScaError, match="not valid JSON"):
        load_recipe(str(bad))
