"""The budget logic and drift figures on made-up probabilities (no TensorFlow): what passes, what breaks, why."""

import math

import numpy as np
import pytest

from quantize.budgets import MAX_DELTA_SENSITIVITY, MAX_SIZE_RATIO, MIN_AGREEMENT, broken, check_budgets
from quantize.data import Arrays
from quantize.drift import compare

SIZES = {"float32": 1000, "int8": 250}


def _data(y):
    y = np.asarray(y)
    return Arrays(np.zeros((len(y), 2, 2, 3), np.uint8), y, [f"ISIC_{i:07d}" for i in range(len(y))])


def test_budgets_hold_at_their_limits_and_break_just_past_them():
    assert not broken(check_budgets(MIN_AGREEMENT, MAX_DELTA_SENSITIVITY, MAX_SIZE_RATIO))
    assert not broken(check_budgets(1.0, -MAX_DELTA_SENSITIVITY, 0.1))
    names = [r.name for r in broken(check_budgets(MIN_AGREEMENT - 1e-6, -MAX_DELTA_SENSITIVITY - 1e-6,
                                                  MAX_SIZE_RATIO + 1e-6))]
    assert names == ["agreement", "delta_sensitivity", "size_ratio"]


def test_nan_never_passes():
    (bad,) = broken(check_budgets(1.0, math.nan, 0.2))
    assert bad.name == "delta_sensitivity" and "NaN" in bad.message


def test_identical_models_are_within_budget():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    d = compare({"float32": p, "int8": p.copy()}, _data(y), 0.5, SIZES)
    q = d["int8_vs_float32"]
    assert d["budgets"]["ok"] and q["agreement"] == 1.0 and q["max_abs_delta_p"] == 0.0
    assert q["malignant_to_benign"] == q["benign_to_malignant"] == 0


def test_flips_are_counted_by_direction_and_the_dangerous_ones_listed():
    y = np.array([1] * 50 + [0] * 50)
    p_f = np.where(y == 1, 0.9, 0.1)
    p_q = p_f.copy()
    p_q[3] = 0.4  # malignant image, float said malignant, int8 says benign: dangerous
    p_q[60] = 0.7  # benign image flipped to malignant
    d = compare({"keras": p_f, "float32": p_f, "int8": p_q}, _data(y), 0.5, SIZES)
    q = d["int8_vs_float32"]
    assert q["agreement"] == pytest.approx(0.98)
    assert (q["malignant_to_benign"], q["benign_to_malignant"]) == (1, 1)
    assert q["malignant_to_benign_images"] == [{"id": "ISIC_0000003", "label": "malignant", "p_float32": 0.9,
                                                "p_int8": 0.4}]
    assert q["delta_sensitivity"] == pytest.approx(-0.02)
    failed = {r["name"] for r in d["budgets"]["results"] if not r["ok"]}
    assert failed == {"agreement", "delta_sensitivity"} and not d["budgets"]["ok"]
    assert d["float32_vs_keras_max_abs_delta_p"] == 0.0


def test_size_budget_alone_can_fail():
    p = np.linspace(0, 1, 20)
    d = compare({"float32": p, "int8": p}, _data([0, 1] * 10), 0.5, {"float32": 1000, "int8": 301})
    assert [r["name"] for r in d["budgets"]["results"] if not r["ok"]] == ["size_ratio"]
