"""Per-source metrics, the source-balanced score, sampling groups, source-balanced batches, degradation and EMA."""

import math

import numpy as np
import pytest

from edge_sca.metrics import wilson_interval
from quantize.augment import STRONG, AugmentConfig, augment, balanced_batches, degrade_resolution
from quantize.data import Arrays, ImageStack, concat_arrays
from quantize.ema import WeightAverage
from quantize.sources import OTHER, POOLED, balanced_score, per_source_metrics, sampling_groups, scored_sources


def _toy():
    y = np.array([0] * 20 + [1] * 20 + [0] * 12 + [1] * 12 + [1] * 5)
    src = ["A"] * 40 + ["B"] * 24 + ["C"] * 5
    p = np.concatenate([np.linspace(0, 0.5, 20), np.linspace(0.5, 1, 20),  # A: perfectly ranked
                        np.linspace(0, 1, 12)[::-1], np.linspace(0, 1, 12),  # B: random-ish
                        np.full(5, 0.9)])
    return y, p, src


def test_per_source_metrics_break_down_and_count_each_source():
    y, p, src = _toy()
    m = per_source_metrics(y, p, src, 0.5)
    assert set(m) == {POOLED, "A", "B", "C"}
    assert m["A"]["auroc"] == pytest.approx(1.0, abs=0.01) and (m["A"]["benign"], m["A"]["malignant"]) == (20, 20)
    assert m["C"]["benign"] == 0 and math.isnan(m["C"]["auroc"])
    assert m[POOLED]["n"] == len(y)


def test_balanced_score_is_the_mean_over_sources_with_enough_of_each_class():
    y, p, src = _toy()
    m = per_source_metrics(y, p, src, 0.5)
    assert scored_sources(m) == ["A", "B"]  # C has no benign images
    assert balanced_score(m) == pytest.approx((m["A"]["auroc"] + m["B"]["auroc"]) / 2)
    assert balanced_score(m, min_per_class=100) == m[POOLED]["auroc"]  # none qualifies: pooled


def test_per_source_metrics_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="source names"):
        per_source_metrics(np.array([0, 1]), np.array([0.1, 0.9]), ["A"], 0.5)


def test_small_sources_are_pooled_for_sampling():
    y = np.array([0] * 50 + [1] * 50 + [0] * 3 + [1] * 40 + [0] * 30 + [1] * 2)
    src = ["big"] * 100 + ["few_benign"] * 43 + ["few_malignant"] * 32
    groups = sampling_groups(y, src, min_per_class=20)
    assert set(groups[:100]) == {"big"} and set(groups[100:]) == {OTHER}
    with pytest.raises(ValueError, match="every image needs its source"):
        sampling_groups(y, src[:-1])


def test_source_balanced_batches_make_the_source_independent_of_the_label():
    # source S1 is 90% malignant, S2 10%: with source balance each source gives half benign, half malignant
    y = np.array([1] * 90 + [0] * 10 + [1] * 10 + [0] * 90)
    groups = np.array(["S1"] * 100 + ["S2"] * 100, dtype=object)
    x = np.zeros((200, 8, 8, 3), np.uint8)
    x[:100] = 200  # S1 images are bright: a source cue
    batches = balanced_batches(x, y, 64, seed=1, augment_images=False, groups=groups, group_power=0.0)
    bright, labels = [], []
    for _ in range(40):
        xb, yb = next(batches)
        bright += list(xb.mean(axis=(1, 2, 3)) > 0.5)
        labels += list(yb[:, 1])
    bright, labels = np.array(bright), np.array(labels)
    assert labels.mean() == pytest.approx(0.5)
    assert bright[labels == 1].mean() == pytest.approx(bright[labels == 0].mean(), abs=0.06)  # ~0.5 each
    plain = balanced_batches(x, y, 64, seed=1, augment_images=False)  # class balance only: the cue predicts
    xb, yb = next(plain)
    assert (xb.mean(axis=(1, 2, 3)) > 0.5)[yb[:, 1] == 1].mean() > 0.8


def test_batches_need_both_classes():
    with pytest.raises(ValueError, match="benign and one malignant"):
        next(balanced_batches(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, int), 4, seed=0))
    with pytest.raises(ValueError, match="no source has images of both classes"):
        next(balanced_batches(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 0, 1, 1]), 4, seed=0,
                              groups=np.array(["a", "a", "b", "b"], dtype=object)))


def test_degrade_resolution_blurs_like_an_84px_copy_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = degrade_resolution(img, 84)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < 0.5 * np.abs(np.diff(img.astype(float), axis=1)).mean()
    np.testing.assert_array_equal(degrade_resolution(img, 224), img)  # full resolution: unchanged
    small = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)  # a 128 training image: 84/224 of its side
    assert degrade_resolution(small, 84).shape == small.shape


def test_strong_augmentation_keeps_shape_and_type_and_varies():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    outs = [augment(img, rng, STRONG) for _ in range(4)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) == 4
    assert augment(img, np.random.default_rng(1), AugmentConfig(rotation=0, shift=0, scale=0, colour=0)).shape


def test_image_stack_indexes_parts_as_one_and_concat_keeps_sources():
    a = Arrays(np.full((2, 4, 4, 3), 1, np.uint8), np.array([0, 1]), ["a1", "a2"], ["A", "A"])
    b = Arrays(np.full((3, 4, 4, 3), 2, np.uint8), np.array([1, 1, 0]), ["b1", "b2", "b3"], ["B", "B", "B"])
    both = concat_arrays([a, b])
    assert isinstance(both.x, ImageStack) and len(both.x) == 5 and both.x.shape == (5, 4, 4, 3)
    assert [int(both.x[i][0, 0, 0]) for i in range(5)] == [1, 1, 2, 2, 2]
    assert both.sources == ["A", "A", "B", "B", "B"] and both.source_counts()["B"] == {"benign": 1, "malignant": 2}
    assert both.x.resized(2).shape == (5, 2, 2, 3)
    with pytest.raises(ValueError, match="different shapes"):
        ImageStack([np.zeros((1, 4, 4, 3)), np.zeros((1, 5, 5, 3))])


def test_weight_average_follows_the_weights_and_survives_a_restart(tmp_path):
    ema = WeightAverage(0.9, tmp_path / "ema.npz")
    for step in range(200):
        ema.update([np.full((2,), float(step)), np.ones(3)])
    assert 180 < ema.weights[0][0] < 199  # lags the latest value by about 1 / (1 - decay) steps
    ema.save()
    again = WeightAverage(0.9, tmp_path / "ema.npz")
    again.load()
    np.testing.assert_allclose(again.weights[0], ema.weights[0])
    assert again.updates == ema.updates
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(1.5, tmp_path / "x.npz")


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-3) and hi == pytest.approx(0.9448, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_held_out_source_leaves_the_training_set_and_an_unknown_one_is_refused():
    from quantize.train import _without_sources

    a = Arrays(np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3), np.array([0, 1, 0, 1, 1]),
               [f"i{k}" for k in range(5)], ["A", "B", "A", "B", "C"])
    kept = _without_sources(a, ["B"])
    assert kept.sources == ["A", "A", "C"] and kept.ids == ["i0", "i2", "i4"] and kept.y.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(kept.x[1], a.x[2])
    with pytest.raises(SystemExit, match="no such source"):
        _without_sources(a, ["Z"])
