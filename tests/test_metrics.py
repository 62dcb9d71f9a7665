import numpy as np

from edge_sca.metrics import auroc, binary_metrics, threshold_for_sensitivity


def brute_auroc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 2)  # rounding makes ties
    assert abs(auroc(y, s) - brute_auroc(y, s)) < 1e-12
    assert np.isnan(auroc(np.zeros(5), np.arange(5)))


def test_binary_metrics_counts():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.7, 0.8])
    m = binary_metrics(y, p, 0.5)
    assert m["confusion"] == [[2, 1], [1, 3]]
    assert m["sensitivity"] == 0.75 and abs(m["specificity"] - 2 / 3) < 1e-12
    assert m["ppv"] == 0.75 and abs(m["balanced_accuracy"] - (0.75 + 2 / 3) / 2) < 1e-12


def test_threshold_reaches_target_sensitivity_and_is_the_highest_that_does():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    t = threshold_for_sensitivity(y, p, 0.9)
    assert binary_metrics(y, p, t)["sensitivity"] >= 0.9
    assert binary_metrics(y, p, np.nextafter(t, 1))["sensitivity"] < 0.9
