"""Input drift: real ISIC frames stay quiet, a camera with another colour balance raises the warning."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sca.focus import sharpness
from edge_sca.frame_stats import first_stage
from edge_sca.input_checks import load_input_checks
from edge_sca.input_drift import InputDriftMonitor, _label_shift_psi, format_input_drift, psi
from edge_sca.isic import load_isic_folder
from edge_sca.policy import DRIFT_MIN_FRAMES, DRIFT_WARNING
from edge_sca.preprocess import preprocess, read_image


@pytest.fixture(scope="module")
def checks():
    return load_input_checks()


@pytest.fixture(scope="module")
def test_frames(isic_dir):
    """60 real ISIC test images, every 7th (all sources)."""
    return [read_image(r.path) for r in load_isic_folder(isic_dir).subset("test")[::7][:60]]


def _feed(monitor: InputDriftMonitor, frames: list[np.ndarray]) -> dict:
    status = {}
    for f in frames:
        status = monitor.update(first_stage(preprocess(f)).screen, sharpness(f), None)
    return status


def test_psi_is_near_zero_for_the_reference_and_large_for_a_shift():
    expected = np.full(10, 0.1)
    assert psi(np.full(10, 100.0), expected) == 0.0
    assert psi(np.r_[np.full(5, 190.0), np.full(5, 10.0)], expected) > 0.5


def test_p_malignant_drift_ignores_a_change_of_prevalence():
    benign = np.array([0.3, 0.25, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005])
    malignant = benign[::-1]
    counts = np.round(1000 * (0.7 * malignant + 0.3 * benign))  # a clinic seeing 70% malignant
    share, residual = _label_shift_psi(counts, benign, malignant)
    assert share == pytest.approx(0.7, abs=0.02) and residual < 0.02
    _, other = _label_shift_psi(np.round(1000 * np.full(10, 0.1)), benign, malignant)  # a shape no mix explains
    assert other > 0.1


def test_real_test_images_raise_no_warning(checks, test_frames):
    monitor = InputDriftMonitor(checks, "0" * 64)
    status = _feed(monitor, test_frames)
    assert status["n"] == 60 >= DRIFT_MIN_FRAMES and not status["warning"], monitor.summary()
    assert monitor.summary()["frames_warned"] == 0 and monitor.summary()["first_warning_at"] is None


def test_another_colour_balance_raises_the_warning(checks, test_frames):
    monitor = InputDriftMonitor(checks, "0" * 64)
    cast = [np.clip(f * np.array([0.8, 1.0, 1.25]), 0, 255).astype(np.uint8) for f in test_frames]
    status = _feed(monitor, cast)
    assert status["warning"] and {"a_mean", "b_mean"} & set(status["drifted"]), monitor.summary()
    summary = monitor.summary()
    assert summary["warning"] == DRIFT_WARNING
    assert summary["first_warning_at"] == DRIFT_MIN_FRAMES and 0 < summary["frames_warned"] <= 60 - DRIFT_MIN_FRAMES + 1
    assert "validate this scanner locally before trusting its decisions" in format_input_drift(summary)


def test_no_warning_before_enough_frames(checks, test_frames):
    monitor = InputDriftMonitor(checks, "0" * 64)
    cast = [np.clip(f * np.array([0.8, 1.0, 1.25]), 0, 255).astype(np.uint8) for f in test_frames[:10]]
    assert not _feed(monitor, cast)["warning"]


def test_replay_can_shuffle_a_folder_sorted_by_source(isic_dir):
    """--shuffle SEED plays the same images in a seeded random order (the test split is sorted by source)."""
    from edge_sca.cameras import ReplayCamera

    plain = ReplayCamera(isic_dir, "test").items
    once, again = ReplayCamera(isic_dir, "test", shuffle=0).items, ReplayCamera(isic_dir, "test", shuffle=0).items
    assert once == again and once != plain and sorted(once) == sorted(plain)
    assert ReplayCamera(isic_dir, "test", shuffle=1).items != once
