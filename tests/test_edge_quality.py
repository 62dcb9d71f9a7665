"""The quality gate: real dermoscopy passes, each kind of bad frame gets 'retake' with its own reason code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_sca.cameras import synthetic_scene
from edge_sca.input_checks import load_input_checks
from edge_sca.isic import load_isic_folder
from edge_sca.preprocess import preprocess, read_image
from edge_sca.quality import Retake, check_quality, measure


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
    assert r.ok and r.code is None and r.screen is not None


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


def _measure_by_definition(pixels: np.ndarray, level: int) -> dict:
    """The fixed measures as first written: numpy over every pixel, the whole frame blurred, then cropped."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    centre = cv2.GaussianBlur(gray, (0, 0), 3)[h // 6: h - h // 6, w // 6: w - w // 6].astype(np.float32)
    return {"brightness": float(gray.mean()), "saturated_fraction": float((pixels >= level).all(axis=2).mean()),
            "lesion_contrast": float(np.median(centre) - np.percentile(centre, 2))}


def test_fast_measures_equal_their_definition(real_frames):
    """measure() counts clipped pixels in one OpenCV pass and blurs only the centre with a margin: the values (and so
    every too-dark, saturated and no-lesion decision) must be exactly those of the plain definition."""
    rng = np.random.default_rng(3)
    frames = [preprocess(f) for f in real_frames[:6]] + [rng.integers(0, 256, s + (3,), dtype=np.uint8)
                                                       for s in ((224, 224), (30, 50), (224, 100), (3, 300), (1, 1))]
    frames.append(np.clip(rng.normal(245, 10, (224, 224, 3)), 0, 255).astype(np.uint8))  # partly clipped
    for pixels in frames:
        assert measure(pixels, 240) == _measure_by_definition(pixels, 240), pixels.shape
