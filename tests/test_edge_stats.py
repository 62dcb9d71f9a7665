"""Latency percentiles after warm-up, and drift running statistics."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sca.drift import DriftMonitor, compare_outputs
from edge_sca.latency import LatencyStats


def test_latency_skips_warmup_and_reports_percentiles():
    stats = LatencyStats(warmup=2)
    for ms in [500.0, 400.0] + list(range(1, 101)):
        stats.add({"total_ms": float(ms), "invoke_ms": ms / 2})
    s = stats.summary()
    assert s["frames"] == 102 and s["measured"] == 100
    assert s["max_ms"] == 100.0 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["fps"] == pytest.approx(1000 / 50.5)
    assert s["stages"]["invoke_ms"]["max_ms"] == 50.0


def test_latency_with_only_warmup_frames():
    stats = LatencyStats(warmup=3)
    stats.add({"total_ms": 10.0})
    assert stats.summary() == {"frames": 1, "warmup": 1, "measured": 0}


def test_drift_running_stats_match_batch():
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200)
    d = DriftMonitor(shadow=None, threshold=0.5, every=3)
    assert [d.due() for _ in range(7)] == [True, False, False, True, False, False, True]
    for x, y in zip(a, b, strict=True):
        d.update(x, y)
    s = d.summary()
    delta = np.abs(a - b)
    assert s["n"] == 200 and s["mean_abs_delta"] == pytest.approx(delta.mean())
    assert s["std_abs_delta"] == pytest.approx(delta.std()) and s["max_abs_delta"] == pytest.approx(delta.max())
    assert s["agreement"] == pytest.approx(np.mean((a >= 0.5) == (b >= 0.5)))


def test_compare_outputs_decides_both_models_at_one_threshold():
    p_float = np.array([0.9, 0.9, 0.1, 0.1, 0.30, 0.6])
    p_int8 = np.array([0.9, 0.2, 0.1, 0.7, 0.31, 0.6])
    labels = np.array([1, 1, 0, 0, 1, 0])
    s = compare_outputs(p_float, p_int8, 0.3, labels)
    # image 1 flips malignant -> benign (now wrong), image 3 benign -> malignant (now wrong); 0.30 vs 0.31 both >= 0.3
    assert (s.n, s.benign_to_malignant, s.malignant_to_benign, s.malignant_to_benign_index) == (6, 1, 1, (1,))
    assert s.agreement == pytest.approx(4 / 6) and (s.now_wrong, s.now_right) == (2, 0)
    assert s.max_abs_delta_p == pytest.approx(0.7) and s.mean_abs_delta_p == pytest.approx(1.31 / 6)
    assert compare_outputs(p_float, p_int8, 0.95).agreement == 1.0 and s.to_dict()["threshold"] == 0.3
    with pytest.raises(ValueError, match="equal, non-empty"):
        compare_outputs(p_float, p_int8[:3], 0.5)
