"""The budget logic and drift figures on made-up probabilities (no TensorFlow): what passes, what breaks, why."""

import math

import numpy as np
import pytest

from quantize import budgets
from quantize.budgets import (
    MAX_AUROC_DROP,
    MAX_DELTA_SENSITIVITY,
    MAX_MALIGNANT_TO_BENIGN,
    MAX_SIZE_RATIO,
    MIN_AGREEMENT,
    Budget,
    Drift,
    broken,
    check_budgets,
    check_latency,
)
from quantize.data import Arrays
from quantize.drift import compare, compare_splits

SIZES = {"float32": 1000, "int8": 250}


def _data(y):
    y = np.asarray(y)
    return Arrays(np.zeros((len(y), 2, 2, 3), np.uint8), y, [f"ISIC_{i:07d}" for i in range(len(y))])


def _at_limits(**change) -> Drift:
    base = {"agreement": MIN_AGREEMENT, "malignant_to_benign": 5, "malignant_images": 1000,
                "delta_sensitivity": -MAX_DELTA_SENSITIVITY, "delta_auroc": -MAX_AUROC_DROP,
                "size_ratio": MAX_SIZE_RATIO}
    return Drift(**(base | change))


def test_budgets_hold_at_their_limits_and_break_just_past_them():
    assert MAX_MALIGNANT_TO_BENIGN * 1000 == 5
    assert not broken(check_budgets(_at_limits()))
    past = _at_limits(agreement=MIN_AGREEMENT - 1e-6, malignant_to_benign=6,
                      delta_sensitivity=MAX_DELTA_SENSITIVITY + 1e-6, delta_auroc=-MAX_AUROC_DROP - 1e-6,
                      size_ratio=MAX_SIZE_RATIO + 1e-6)
    assert [r.kind for r in broken(check_budgets(past))] == [Budget.AGREEMENT, Budget.MALIGNANT_TO_BENIGN,
                                                             Budget.DELTA_SENSITIVITY, Budget.DELTA_AUROC,
                                                             Budget.SIZE_RATIO]


def test_auroc_may_rise_and_flip_budget_says_how_many_are_allowed():
    results = check_budgets(_at_limits(delta_auroc=+0.05, malignant_to_benign=0))
    assert not broken(results)
    (m2b,) = [r for r in results if r.kind is Budget.MALIGNANT_TO_BENIGN]
    assert "at most 5" in m2b.message and m2b.value == 0


def test_nan_never_passes():
    (bad,) = broken(check_budgets(_at_limits(delta_sensitivity=math.nan)))
    assert bad.kind is Budget.DELTA_SENSITIVITY and "NaN" in bad.message
    bad = {r.kind for r in broken(check_budgets(_at_limits(malignant_images=0, malignant_to_benign=0)))}
    assert bad == {Budget.MALIGNANT_TO_BENIGN}


def test_latency_budget():
    assert check_latency(1.05).ok and not check_latency(1.0501).ok and not check_latency(math.nan).ok
    assert check_latency(0.7).kind is Budget.LATENCY_RATIO


def test_identical_models_are_within_budget():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    d = compare({"float32": p, "int8": p.copy()}, _data(y), 0.5, SIZES)
    q = d["int8_vs_float32"]
    assert d["budgets"]["ok"] and q["agreement"] == 1.0 and q["max_abs_delta_p"] == 0.0 and q["delta_auroc"] == 0
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
    assert q["missed_cancers"] == 1 and q["missed_cancer_rate"] == pytest.approx(1 / 50)
    assert q["malignant_to_benign_images"] == [{"id": "ISIC_0000003", "label": "malignant", "p_float32": 0.9,
                                                "p_int8": 0.4}]
    assert q["delta_sensitivity"] == pytest.approx(-0.02)
    failed = {r["name"] for r in d["budgets"]["results"] if not r["ok"]}
    assert failed == {"agreement", "malignant_to_benign", "delta_sensitivity"}  # AUROC: 1 pair of 2,500 swapped
    assert not d["budgets"]["ok"] and d["float32_vs_keras_max_abs_delta_p"] == 0.0


def test_a_benign_image_leaving_malignant_is_no_missed_cancer():
    y = np.array([1] * 50 + [0] * 50)
    p_f = np.where(y == 1, 0.9, 0.1)
    p_f[70] = 0.6  # benign image the float model wrongly calls malignant
    p_q = p_f.copy()
    p_q[70] = 0.45  # int8 calls it benign: a malignant -> benign flip, but no cancer is missed
    q = compare({"float32": p_f, "int8": p_q}, _data(y), 0.5, SIZES)["int8_vs_float32"]
    assert q["malignant_to_benign"] == 1 and q["missed_cancers"] == 0
    assert q["malignant_to_benign_images"][0]["label"] == "benign"


def test_size_budget_alone_can_fail():
    p = np.linspace(0, 1, 20)
    d = compare({"float32": p, "int8": p}, _data([0, 1] * 10), 0.5, {"float32": 1000, "int8": 351})
    assert [r["name"] for r in d["budgets"]["results"] if not r["ok"]] == ["size_ratio"]


def test_budgets_apply_to_the_pooled_splits_and_each_split_is_reported(monkeypatch):
    """One flip in 100 val images and none in 100 test images: 99.5% pooled passes although val alone is 99%."""
    rng = np.random.default_rng(1)
    y = {"val": np.array([0, 1] * 50), "test": np.array([0, 1] * 50)}
    p_f = {s: np.where(y[s] == 1, 0.8, 0.2) + rng.uniform(-0.05, 0.05, 100) for s in y}
    p_q = {s: p.copy() for s, p in p_f.items()}
    p_q["val"][0] = 0.55  # a benign image flips to malignant, still below every malignant one (AUROC unchanged)
    monkeypatch.setattr(budgets, "MIN_AGREEMENT", 0.995)
    d, joined = compare_splits({"float32": p_f, "int8": p_q}, {s: _data(v) for s, v in y.items()}, 0.5, SIZES)
    assert d["split"] == "val+test" and d["n"] == 200 and len(joined["int8"]) == 200
    assert d["int8_vs_float32"]["agreement"] == pytest.approx(0.995) and d["budgets"]["ok"]
    assert d["splits"]["val"]["int8_vs_float32"]["agreement"] == pytest.approx(0.99)
    assert d["splits"]["test"]["int8_vs_float32"]["agreement"] == 1.0
    assert "budgets" not in d["splits"]["val"]
    assert d["budgets"]["limits"]["agreement"] == 0.995
