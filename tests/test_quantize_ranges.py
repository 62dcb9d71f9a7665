"""MSE activation ranges: the clip search, the recipe field, and a conversion that stays fully integer."""

import numpy as np
import pytest

from edge_sca.errors import EdgeScaError
from quantize.ranges import ActivationRanges, mse_clip
from quantize.recipe import load_recipe, parse


def test_mse_clip_cuts_a_heavy_tail_and_keeps_a_uniform_range():
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.normal(0, 1, 100_000), [60.0, -60.0]]).astype(np.float32)
    lo, hi = mse_clip(heavy, -60.0, 60.0)
    assert 0.3 * 60 <= hi < 60 and lo == pytest.approx(-hi)  # clipped, symmetric like the tail
    uniform = rng.uniform(0, 6, 100_000).astype(np.float32)
    assert mse_clip(uniform, 0.0, 6.0) == pytest.approx((0.0, 6.0), abs=0.05)  # nothing worth clipping


def test_recipe_field_is_parsed_recorded_and_checked():
    r = load_recipe("ptq_mse")
    assert r.activation_ranges is ActivationRanges.MSE
    assert r.as_dict()["activation_ranges"] == "mse" and "activation_ranges" in r.conversion_key()
    assert "activation_ranges" not in load_recipe("ptq").conversion_key()  # min / max builds keep their keys
    with pytest.raises(EdgeScaError, match="activation_ranges 'p99' is not one of minmax, mse"):
        parse({"name": "x", "method": "ptq", "activation_ranges": "p99"}, "x.json")


def test_mse_conversion_is_fully_integer_and_changes_only_activation_scales():
    import keras

    from quantize.architectures import build_model
    from quantize.convert import check_int8_input, check_integer_xnnpack, convert, tensor_types_and_ops

    keras.utils.set_random_seed(0)
    model = build_model("b", 64)
    x = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    plain, mse = convert(model, "int8", x), convert(model, "int8", x, ranges="mse", seed=0)
    check_integer_xnnpack(mse)
    check_int8_input(mse)
    assert tensor_types_and_ops(mse) == tensor_types_and_ops(plain)
    assert abs(len(mse) - len(plain)) < 1024 and mse != plain
