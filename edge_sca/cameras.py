"""Camera sources behind one interface: every source hands preprocessing RGB uint8 frames.

`open_camera(spec)` takes `picamera2`, `opencv:N` (a USB/V4L2 camera), `opencv:PATH` (a video or image file),
`replay:DIR` (a folder of images; an ISIC folder with metadata.csv gives labels) or `synthetic`. Live cameras
retry failed reads with backoff and raise CameraError, naming what to do, when the camera is gone or frozen.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sca.errors import CameraConfigError, CameraError, DataError, ImageError, ImageTooLargeError
from edge_sca.preprocess import read_image
from edge_sca.settings import CameraSettings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_HINT = "check the path, or re-encode it (e.g. `ffmpeg -i in.mov out.mp4`)"


class EndOfStream(CameraError):
    """A finite source (replay folder, video file) has no more frames: the run ends normally."""


@dataclass
class Frame:
    """One captured frame: RGB uint8 HxWx3, where it came from, its label if the source knows one."""

    rgb: np.ndarray
    source_id: str
    label: int | None = None
    capture_ms: float = 0.0
    timestamp: float = 0.0


class Camera:
    """Base class: `read()` returns the next Frame or raises CameraError; usable as a context manager.

    Subclasses implement `_grab() -> (rgb, source_id, label)`. Live sources set `live = True`, which turns on
    retry with backoff and the frozen-stream check.
    """

    live = False
    name = "camera"

    def __init__(self, retries: int = CameraSettings.retries, backoff_s: float = CameraSettings.backoff_s,
                 frozen_frames: int = CameraSettings.frozen_frames):
        self.retries, self.backoff_s, self.frozen_frames = retries, backoff_s, frozen_frames
        self.frames_read = 0
        self.skipped: dict[str, int] = {}
        self._last_digest: bytes | None = None
        self._same_count = 0

    def _grab(self) -> tuple[np.ndarray, str, int | None]:
        raise NotImplementedError

    def _recover(self) -> None:
        """Called between retries of a live source (e.g. reopen the device)."""

    def read(self) -> Frame:
        t0 = time.perf_counter()
        rgb, source_id, label = self._grab_with_retry() if self.live else self._grab()
        capture_ms = (time.perf_counter() - t0) * 1000.0
        rgb = _check_rgb(rgb, self.name)
        if self.live:
            self._check_frozen(rgb)
        self.frames_read += 1
        return Frame(rgb, source_id, label, capture_ms, time.time())

    def _grab_with_retry(self) -> tuple[np.ndarray, str, int | None]:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return self._grab()
            except (CameraError, OSError, RuntimeError, TimeoutError) as exc:
                if isinstance(exc, EndOfStream) or attempt == self.retries:
                    raise _as_camera_error(exc, self) from exc
                log.warning("%s: read failed (%s); retry %d/%d in %.2f s", self.name, exc, attempt + 1,
                            self.retries, delay)
                time.sleep(delay)
                delay *= 2
                self._recover()
        raise AssertionError("unreachable")

    def _check_frozen(self, rgb: np.ndarray) -> None:
        # a 1/16 subsample is enough (sensor noise changes every pixel) and keeps this cheap on a Pi
        digest = hashlib.blake2b(np.ascontiguousarray(rgb[::4, ::4]).tobytes(), digest_size=16).digest()
        self._same_count = self._same_count + 1 if digest == self._last_digest else 1
        self._last_digest = digest
        if self._same_count >= self.frozen_frames:
            raise CameraError(f"{self.name}: {self._same_count} identical frames in a row: the stream is frozen. "
                              "Power-cycle the camera (or reseat its cable) and restart the service")

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_camera_error(exc: Exception, cam: Camera) -> CameraError:
    if isinstance(exc, CameraError):
        return exc
    return CameraError(f"{cam.name}: no frame after {cam.retries + 1} tries ({exc}); check that the camera is "
                       "connected and not used by another process, then restart")


def _check_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CameraError(f"{name}: delivered {getattr(rgb, 'dtype', type(rgb))} "
                          f"{getattr(rgb, 'shape', '')}, expected uint8 HxWx3; check the camera format")
    return np.ascontiguousarray(rgb)


# --- picamera2 -------------------------------------------------------------------------------------------------


def import_picamera2() -> type:
    """picamera2's Picamera2 class, or CameraError in one line naming the cause and the fix. It comes from apt with
    compiled helpers built against the system numpy, so besides "not installed" the usual failure is a numpy in
    the venv that shadows apt's ("numpy.dtype size changed", or NumPy 2's "compiled using NumPy 1.x")."""
    try:
        from picamera2 import Picamera2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "picamera2":
            raise CameraError(f"picamera2 is installed but its dependency {exc.name} is missing: "
                              "`sudo apt install --reinstall python3-picamera2`") from exc
        raise CameraError("picamera2 is not installed: `sudo apt install python3-picamera2` and create the venv "
                          "with --system-site-packages (install.sh does), or use --camera opencv:0") from exc
    except Exception as exc:  # any failure inside apt's stack gets the one-line answer
        cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        if _numpy_mismatch(exc):
            raise CameraError(f"picamera2 cannot import ({cause}): {_numpy_fix()}") from exc
        raise CameraError(f"picamera2 cannot import ({cause}); check `python3 -c 'import picamera2'` outside the "
                          "venv and `sudo apt install --reinstall python3-picamera2`") from exc
    return Picamera2


def _numpy_fix() -> str:
    """What to do when apt's compiled camera helpers and the imported numpy disagree."""
    if np.__file__.startswith(sys.prefix) and sys.prefix != sys.base_prefix:
        return (f"numpy {np.__version__} in the venv {sys.prefix} shadows apt's, which picamera2 is built against; "
                f"remove it (`{sys.prefix}/bin/pip uninstall numpy`) or rebuild the venv with the bundle's "
                "install.sh, which never installs numpy (docs/pi-target.md)")
    return (f"apt's numpy {np.__version__} and picamera2 disagree; `sudo apt full-upgrade` so both come from the "
            "same Raspberry Pi OS release")


def _numpy_mismatch(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("dtype size changed", "binary incompatibility", "compiled using NumPy",
                                   "numpy.core.multiarray failed to import", "_ARRAY_API not found"))


class PiCamera2Camera(Camera):
    """The Raspberry Pi camera through picamera2 (imported only here, so other hosts never need it).

    The stream is `RGB888`, which picamera2 stores as B,G,R bytes per pixel: converted to RGB here. `queue=False`
    makes every capture wait for a frame exposed after the request (a fresh frame, not a stale buffer).
    """

    live = True
    name = "picamera2"

    def __init__(self, size: tuple[int, int] = (1280, 960), timeout_s: float = 2.0, camera_num: int = 0, **kw):
        super().__init__(**kw)
        Picamera2 = import_picamera2()
        self.timeout_s = timeout_s
        try:
            self.cam = Picamera2(camera_num)
            cfg = self.cam.create_still_configuration(main={"format": "RGB888", "size": tuple(size)}, queue=False)
            self.cam.configure(cfg)
            self.cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(f"picamera2: cannot open camera {camera_num} ({exc}); check the ribbon cable and "
                              "`rpicam-hello --list-cameras`") from exc

    def _grab(self) -> tuple[np.ndarray, str, int | None]:
        arr = self._capture()
        if arr.ndim == 3 and arr.shape[2] == 4:  # XRGB8888 is B,G,R,X in memory too
            arr = arr[:, :, :3]
        return np.ascontiguousarray(arr[:, :, ::-1]), f"picamera2:{self.frames_read}", None

    def _capture(self) -> np.ndarray:
        """A fresh frame, with a timeout where picamera2 supports one (job + wait)."""
        try:
            job = self.cam.capture_array("main", wait=False)
            return self.cam.wait(job, timeout=self.timeout_s)
        except (TypeError, AttributeError):  # an older picamera2 without job timeouts: blocking capture
            return self.cam.capture_array("main")

    def close(self) -> None:
        cam, self.cam = getattr(self, "cam", None), None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


# --- OpenCV ----------------------------------------------------------------------------------------------------


class OpenCVCamera(Camera):
    """A V4L2/USB camera (`opencv:N`) or a video / image file (`opencv:PATH`); OpenCV gives BGR, we give RGB."""

    name = "opencv"

    def __init__(self, target: str | int, width: int | None = None, height: int | None = None, **kw):
        super().__init__(**kw)
        self.target = target
        self.live = isinstance(target, int)
        self.name = f"opencv:{target}"
        self.size = (width, height)
        self.cap: cv2.VideoCapture | None = None
        if isinstance(target, str) and not Path(target).is_file():
            raise CameraError(f"{self.name}: no such file; {VIDEO_HINT}")
        self._open_with_retry()

    def _open(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap = cv2.VideoCapture(self.target)
        if not self.cap.isOpened():
            self.cap.release()
            self.cap = None
            raise CameraError(self._open_hint())
        w, h = self.size
        if self.live and w and h:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)

    def _open_hint(self) -> str:
        if self.live:
            return (f"{self.name}: no camera at index {self.target} (unplugged?); plug it in, check `ls /dev/video*` "
                    "and that no other process holds it, or choose another index")
        return f"{self.name}: OpenCV cannot open this file; {VIDEO_HINT}"

    def _open_with_retry(self) -> None:
        delay = self.backoff_s
        for attempt in range(self.retries + 1 if self.live else 1):
            try:
                return self._open()
            except CameraError:
                if attempt == (self.retries if self.live else 0):
                    raise
                log.warning("%s: cannot open; retry %d/%d in %.2f s", self.name, attempt + 1, self.retries, delay)
                time.sleep(delay)
                delay *= 2

    def _recover(self) -> None:
        try:
            self._open()
        except CameraError as exc:
            log.warning("%s", exc)

    def _grab(self) -> tuple[np.ndarray, str, int | None]:
        if self.cap is None:
            raise CameraError(self._open_hint())
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            if not self.live:
                raise EndOfStream(f"{self.name}: end of file after {self.frames_read} frames")
            raise CameraError(f"{self.name}: camera delivered no frame (timeout or unplugged)")
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB), f"{self.name}#{self.frames_read}", None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{self.name}#{self.frames_read}", None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# --- replay ----------------------------------------------------------------------------------------------------


class ReplayCamera(Camera):
    """A folder of images, in order; an ISIC folder (metadata.csv) gives each frame its label.

    A corrupt or unreadable image is skipped and counted in `skipped['corrupt']`, one whose header says it is too
    large to decode in `skipped['too large']` (or raises ImageError with `strict`): it never becomes a frame, so it
    can never get a class. `dataset` keeps only the rows of that `dataset` column value (one image source).
    `shuffle` (a seed) plays them in a random order: a folder is often sorted by source, and a clinic's scanner sees
    its mix of sources interleaved, which is what the drift monitor expects.
    """

    name = "replay"

    def __init__(self, folder: str | Path, split: str = "all", strict: bool = False, loop: bool = False,
                 dataset: str | None = None, shuffle: int | None = None, **kw):
        super().__init__(**kw)
        self.folder = Path(folder)
        self.name = f"replay:{self.folder}"
        self.strict, self.loop = strict, loop
        self.items = self._list(split, dataset)
        if shuffle is not None:
            order = np.random.default_rng(shuffle).permutation(len(self.items))
            self.items = [self.items[i] for i in order]
        self.pos = 0
        if not self.items:
            raise CameraConfigError(f"{self.name}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder; "
                                    "check the path")

    def _list(self, split: str, dataset: str | None) -> list[tuple[Path, str, int | None]]:
        if not self.folder.is_dir():
            raise CameraConfigError(f"{self.name}: not a folder; give replay:DIR with images (an ISIC folder works)")
        if (self.folder / "metadata.csv").is_file():
            from edge_sca.isic import load_isic_folder

            try:
                isic = load_isic_folder(self.folder, skip_bad=True, require_labels=False)
                records = isic.subset(split)
            except DataError as exc:
                raise CameraConfigError(f"{self.name}: {exc}") from exc
            for reason, n in isic.skipped.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + n
            if dataset is not None:
                sources = sorted({r.dataset for r in records})
                records = [r for r in records if r.dataset == dataset]
                if not records:
                    where = "" if split == "all" else f" in the {split} split"
                    raise CameraConfigError(f"{self.name}: no rows{where} with dataset {dataset!r}; the metadata's "
                                            f"dataset column has: {', '.join(repr(s) for s in sources) or 'nothing'}")
            return [(r.path, r.isic_id, r.label) for r in records]
        if dataset is not None:
            raise CameraConfigError(f"{self.name}: --dataset needs an ISIC folder with a metadata.csv")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return [(p, p.stem, None) for p in files]

    def __len__(self) -> int:
        return len(self.items)

    def _grab(self) -> tuple[np.ndarray, str, int | None]:
        for _ in range(2 * len(self.items) + 1):
            if self.pos >= len(self.items):
                if not self.loop:
                    raise EndOfStream(f"{self.name}: all {len(self.items)} images replayed")
                self.pos = 0
            path, source_id, label = self.items[self.pos]
            self.pos += 1
            try:
                return read_image(path), source_id, label
            except ImageError as exc:
                if self.strict:
                    raise
                why = "too large" if isinstance(exc, ImageTooLargeError) else "corrupt"
                self.skipped[why] = self.skipped.get(why, 0) + 1
                log.warning("%s (skipped, %d so far)", exc, self.skipped[why])
        raise CameraError(f"{self.name}: no readable image in the folder; check the files")


# --- synthetic -------------------------------------------------------------------------------------------------


def synthetic_scene(index: int = 0, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A deterministic lesion-like RGB scene: textured skin with a brown, irregular pigmented lesion.

    Frame `index` changes the sensor noise and shifts the lesion by a pixel or two, as a live camera would.
    """
    h, w = size
    rng = np.random.default_rng(1234 + index)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    skin = np.array([222, 170, 150], np.float32)
    base = np.random.default_rng(7).normal(0, 6, (h // 8, w // 8)).astype(np.float32)
    pores = cv2.GaussianBlur(np.random.default_rng(8).normal(0, 8, (h, w)).astype(np.float32), (0, 0), 0.7)
    # coarse skin tone variation plus a fixed fine texture, so the scene is in focus for the quality gate
    texture = (cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) + pores)[..., None]
    cy, cx = h / 2 + (index % 3) - 1, w / 2 + (index % 5) - 2
    angle = np.arctan2(yy - cy, xx - cx)
    radius = min(h, w) * 0.22 * (1 + 0.12 * np.sin(3 * angle) + 0.07 * np.cos(7 * angle + 1))
    dist = np.hypot((yy - cy) / 1.15, xx - cx)
    inside = np.clip((radius - dist) / 6.0, 0, 1)[..., None]  # soft border
    core = np.clip((radius * 0.55 - dist) / 10.0, 0, 1)[..., None]
    lesion = np.array([120, 72, 50], np.float32) * (1 - 0.35 * core)
    img = skin * (1 - inside) + lesion * inside + texture + rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


class SyntheticCamera(Camera):
    """Generated lesion-like frames for demos and tests without hardware; deterministic per frame index."""

    name = "synthetic"

    def __init__(self, size: tuple[int, int] = (480, 640), **kw):
        super().__init__(**kw)
        self.size = size

    def _grab(self) -> tuple[np.ndarray, str, int | None]:
        return synthetic_scene(self.frames_read, self.size), f"synthetic:{self.frames_read}", None


# --- factory ---------------------------------------------------------------------------------------------------

SPECS = "picamera2, opencv:N, opencv:PATH, replay:DIR or synthetic"


def open_camera(spec: str, **kw) -> Camera:
    """The camera a `--camera` spec names; CameraError for an unknown spec."""
    kind, _, arg = spec.partition(":")
    if kind == "picamera2":
        return PiCamera2Camera(**kw)
    if kind == "synthetic":
        return SyntheticCamera(**kw)
    if kind == "opencv" and arg:
        return OpenCVCamera(int(arg) if arg.isdigit() else arg, **kw)
    if kind == "replay" and arg:
        return ReplayCamera(arg, **kw)
    raise CameraConfigError(f"unknown camera {spec!r}; use {SPECS}")
