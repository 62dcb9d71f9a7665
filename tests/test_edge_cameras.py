"""Camera sources: every source hands preprocessing the same RGB pixels for the same scene; faults are errors."""

from __future__ import annotations

import csv
import sys
import types

import cv2
import numpy as np
import pytest

from edge_sca.cameras import EndOfStream, Frame, open_camera, synthetic_scene
from edge_sca.errors import CameraError, ImageError
from edge_sca.preprocess import preprocess

FAST = {"retries": 2, "backoff_s": 0.001}


class FakePicamera2:
    """Stand-in for picamera2.Picamera2: hands out B,G,R-ordered arrays as the real RGB888 stream does."""

    frames: list = []
    fail_first = 0
    instances: list = []

    def __init__(self, camera_num: int = 0):
        self.config, self.started, self.closed, self.calls = None, False, False, 0
        FakePicamera2.instances.append(self)

    def create_still_configuration(self, main=None, queue=True, **kw):
        return {"main": dict(main or {}), "queue": queue}

    def configure(self, cfg):
        self.config = cfg

    def start(self):
        self.started = True

    def capture_array(self, name="main", wait=True):
        assert self.started and name == "main"
        self.calls += 1
        if self.calls <= FakePicamera2.fail_first:
            raise TimeoutError("frontend timed out")
        return FakePicamera2.frames[min(self.calls - 1 - FakePicamera2.fail_first, len(FakePicamera2.frames) - 1)]

    def wait(self, job, timeout=None):
        return job

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


@pytest.fixture
def picamera2(monkeypatch):
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.frames, FakePicamera2.fail_first, FakePicamera2.instances = [], 0, []
    return FakePicamera2


@pytest.fixture
def scene() -> np.ndarray:
    return synthetic_scene(0)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def test_every_source_gives_the_same_rgb(scene, picamera2, tmp_path):
    # an asymmetric colour check: a channel swap anywhere changes these pixels
    assert not np.array_equal(scene, scene[:, :, ::-1])
    picamera2.frames = [_bgr(scene)]
    (tmp_path / "replay").mkdir()
    cv2.imwrite(str(tmp_path / "replay" / "scene.png"), _bgr(scene))
    cv2.imwrite(str(tmp_path / "scene.png"), _bgr(scene))
    video = tmp_path / "scene.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 5, scene.shape[1::-1])
    assert writer.isOpened()
    writer.write(_bgr(scene))
    writer.release()
    specs = ["synthetic", "picamera2", f"opencv:{video}", f"opencv:{tmp_path / 'scene.png'}",
             f"replay:{tmp_path / 'replay'}"]
    expected = preprocess(scene)
    for spec in specs:
        with open_camera(spec) as cam:
            frame = cam.read()
        assert isinstance(frame, Frame) and frame.rgb.dtype == np.uint8
        np.testing.assert_array_equal(frame.rgb, scene, err_msg=spec)
        np.testing.assert_array_equal(preprocess(frame.rgb), expected, err_msg=spec)
    cfg = picamera2.instances[0].config
    assert cfg["main"]["format"] == "RGB888" and cfg["queue"] is False  # fresh frames, B,G,R bytes
    assert picamera2.instances[0].closed


def test_picamera2_four_channel_layout(picamera2, scene):
    picamera2.frames = [np.dstack([_bgr(scene), np.full(scene.shape[:2], 255, np.uint8)])]
    with open_camera("picamera2") as cam:
        np.testing.assert_array_equal(cam.read().rgb, scene)


def test_picamera2_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        open_camera("picamera2")


def test_picamera2_timeout_retried_then_recovers(picamera2, scene):
    picamera2.frames, picamera2.fail_first = [_bgr(scene)], 2
    with open_camera("picamera2", **FAST) as cam:
        np.testing.assert_array_equal(cam.read().rgb, scene)


def test_picamera2_timeout_persisting_is_camera_error(picamera2, scene):
    picamera2.frames, picamera2.fail_first = [_bgr(scene)], 100
    with open_camera("picamera2", **FAST) as cam, pytest.raises(CameraError, match="no frame after 3 tries"):
        cam.read()


def test_frozen_stream_detected(picamera2, scene):
    picamera2.frames = [_bgr(scene)]  # the same buffer forever
    with open_camera("picamera2", frozen_frames=3) as cam:
        cam.read()
        cam.read()
        with pytest.raises(CameraError, match="frozen"):
            cam.read()


def test_live_stream_with_noise_is_not_frozen(picamera2):
    picamera2.frames = [_bgr(synthetic_scene(i)) for i in range(6)]
    with open_camera("picamera2", frozen_frames=3) as cam:
        for _ in range(6):
            cam.read()


def test_unplugged_opencv_camera(caplog):
    with pytest.raises(CameraError, match="no camera at index 97.*plug it in"):
        open_camera("opencv:97", **FAST)
    assert sum("retry" in r.message for r in caplog.records) == 2  # retried with backoff first


def test_opencv_missing_file():
    with pytest.raises(CameraError, match="no such file"):
        open_camera("opencv:/nonexistent/clip.mp4")


def test_video_file_ends_cleanly(tmp_path, scene):
    cv2.imwrite(str(tmp_path / "one.png"), _bgr(scene))
    with open_camera(f"opencv:{tmp_path / 'one.png'}") as cam:
        cam.read()
        with pytest.raises(EndOfStream):
            cam.read()


def test_synthetic_is_deterministic_and_lesion_like():
    a, b = open_camera("synthetic"), open_camera("synthetic")
    f0, f1 = a.read(), a.read()
    np.testing.assert_array_equal(f0.rgb, b.read().rgb)
    assert not np.array_equal(f0.rgb, f1.rgb)  # sensor noise: not a frozen stream
    centre, corner = f0.rgb[220:260, 300:340].mean(), f0.rgb[:40, :40].mean()
    assert centre < corner - 50  # a dark lesion on lighter skin


def test_replay_isic_folder_carries_labels(tiny_isic):
    with open(tiny_isic / "metadata.csv") as f:
        rows = {r["isic_id"]: r for r in csv.DictReader(f)}
    with open_camera(f"replay:{tiny_isic}", split="test") as cam:
        frames = []
        while True:
            try:
                frames.append(cam.read())
            except EndOfStream:
                break
    assert len(frames) == sum(r["split"] == "test" for r in rows.values()) == 6
    for fr in frames:
        assert fr.label == ("benign", "malignant").index(rows[fr.source_id]["benign_malignant"])


def test_replay_corrupt_jpeg_is_skipped_and_counted(tiny_isic, tmp_path, caplog):
    folder = tmp_path / "isic"
    folder.mkdir()
    with open(tiny_isic / "metadata.csv") as f:
        rows = list(csv.DictReader(f))[:3]
    for r in rows:
        (folder / f"{r['isic_id']}.jpg").write_bytes((tiny_isic / f"{r['isic_id']}.jpg").read_bytes())
    bad = folder / f"{rows[1]['isic_id']}.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open_camera(f"replay:{folder}") as cam:
        ids = [cam.read().source_id, cam.read().source_id]
        with pytest.raises(EndOfStream):
            cam.read()
    assert ids == [rows[0]["isic_id"], rows[2]["isic_id"]] and cam.skipped["corrupt"] == 1
    assert any(rows[1]["isic_id"] in r.message for r in caplog.records)
    with open_camera(f"replay:{folder}", strict=True) as cam:
        cam.read()
        with pytest.raises(ImageError, match="not a decodable image"):
            cam.read()


def test_replay_plain_folder_and_bad_specs(tmp_path, scene):
    with pytest.raises(CameraError, match="no images"):
        open_camera(f"replay:{tmp_path}")
    with pytest.raises(CameraError, match="not a folder"):
        open_camera(f"replay:{tmp_path / 'missing'}")
    with pytest.raises(CameraError, match="unknown camera"):
        open_camera("webcam")
    cv2.imwrite(str(tmp_path / "b.png"), _bgr(scene))
    cv2.imwrite(str(tmp_path / "a.png"), _bgr(scene[::-1]))
    with open_camera(f"replay:{tmp_path}") as cam:
        first = cam.read()
    assert first.source_id == "a" and first.label is None


def _broken_picamera2(monkeypatch, tmp_path, body: str) -> None:
    """A picamera2 package on sys.path whose import fails the way BODY makes it."""
    pkg = tmp_path / "broken" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.syspath_prepend(str(pkg.parent))


@pytest.mark.parametrize("body, cause, fix", [
    ("raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, "
     "got 88 from PyObject')", "ValueError: numpy.dtype size changed", "apt"),
    ("raise ImportError('A module that was compiled using NumPy 1.x cannot be run in NumPy 2.0.0')",
     "compiled using NumPy 1.x", "apt"),
    ("import libcamera_not_here", "dependency libcamera_not_here is missing", "apt install --reinstall"),
    ("raise RuntimeError('libcamera: no IPA module')", "RuntimeError: libcamera: no IPA module", "apt install"),
])
def test_picamera2_import_failure_is_one_clear_line(monkeypatch, tmp_path, body, cause, fix):
    """apt's picamera2 failing to import for any reason (the numpy-2-in-the-venv case above all) is one line that
    names the cause and the fix, never a traceback."""
    _broken_picamera2(monkeypatch, tmp_path, body)
    with pytest.raises(CameraError) as err:
        open_camera("picamera2")
    msg = str(err.value)
    assert "\n" not in msg and cause in msg and fix in msg, msg
