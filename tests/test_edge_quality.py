"""The quality gate: real dermoscopy passes, each kind of bad frame gets 'retake' with its own reason code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sca.cameras import synthetic_scene
from edge_sca.input_checks import load_input_checks
from edge_sca.isic import load_isic_folder
from edge_sca.preprocess import preprocess, read_image
from edge_sca.quality import Retake, check_quality


@pytest.fixture(scope="module")
def checks():
    return load_input_checks()


@pytest.fixture(scope="module")
def real_frames(tiny_isic):
    return [read_image(r.path) for r in load_isic_folder(tiny_isic).records]


def _check(frame: np.ndarray, checks):
    return check_quality(frame, preprocess(frame), checks)


def test_real_dermoscopy_passes(real_frames, checks):
    failed = [r.reason for r in (_check(f, checks) for f in real_frames) if not r.ok]
    assert len(failed) <= 1, failed  # 18 real images (UDA-1 first); the evaluation report has every source


def test_synthetic_scene_passes(checks):
    r = _check(synthetic_scene(0), checks)
    assert r.ok and r.code is None and r.features is not None


@pytest.mark.parametrize("degrade, code", [
    (lambda f: (f * 0.15).astype(np.uint8), Retake.TOO_DARK),
    (lambda f: np.clip(f.astype(int) * 3 + 40, 0, 255).astype(np.uint8), Retake.SATURATED),
    (lambda f: cv2.GaussianBlur(f, (0, 0), 3 * max(f.shape[:2]) / 448), Retake.OUT_OF_FOCUS),
])
def test_degraded_frames_get_retake(real_frames, checks, degrade, code):
    for frame in real_frames[:6]:
        r = _check(degrade(frame), checks)
        assert not r.ok and r.code is code and r.reason, r.reason


def test_plain_skin_has_no_lesion(checks):
    rng = np.random.default_rng(0)
    skin = np.full((448, 448, 3), [215, 165, 145], np.float32) + rng.normal(0, 6, (448, 448, 1))
    r = _check(np.clip(skin, 0, 255).astype(np.uint8), checks)
    assert not r.ok and r.code in (Retake.NO_LESION, Retake.NOT_DERMOSCOPY), r.reason
    assert {"brightness", "saturated_fraction", "lesion_contrast", "aspect_ratio"} <= set(r.measures)
