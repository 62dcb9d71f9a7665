"""Frames that are not dermoscopy, for fitting and testing the "not a dermoscopy frame" check.

Generated kinds (numpy + OpenCV, deterministic per seed): rendered text, charts, gradients, noise, shapes (e.g. a
sky with a dark blob), strokes (fur, grass, hair), stained cells (microscopy), scenes (a sky over rough ground),
colour bars and patterns. Package kinds come from scikit-image's bundled data and matplotlib's sample portrait
(natural photos, the same under a warm cast, faces, grayscale photos, tinted) and ISIC itself (lesion-free skin cut
from image borders: train images for the no-lesion fit, val / test for evaluation). `FIT_KINDS` are the kinds the
check is fitted on; photos and faces are split by image (the fit never sees a held-out photo or face); every other
kind is held out and only ever evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_sca.errors import DataError
from edge_sca.preprocess import read_image

log = logging.getLogger(__name__)

Generator = Callable[[np.random.Generator], np.ndarray]

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC | cv2.FONT_HERSHEY_SIMPLEX)
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:%()-"))


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """A frame size with aspect ratio within 2:1 (wider ones are refused for their shape alone)."""
    h = int(rng.integers(240, 720))
    return h, int(np.clip(h * rng.uniform(0.6, 1.8), 200, 1000))


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def _finish(img: np.ndarray, rng: np.random.Generator, photo: float = 0.5) -> np.ndarray:
    """Like a photo of it, half the time: uneven light, slight blur, sensor noise, JPEG."""
    if rng.random() < photo:
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        light = 1 - rng.uniform(0, 0.35) * ((xx / w - rng.random()) ** 2 + (yy / h - rng.random()) ** 2)
        img = img.astype(np.float32) * light[..., None]
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
        img = img + rng.normal(0, rng.uniform(1, 6), img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        img = img if decoded is None else decoded
    return np.ascontiguousarray(img)


def text(rng: np.random.Generator) -> np.ndarray:
    """A page of rendered text on paper-like or coloured backgrounds."""
    h, w = _size(rng)
    bg = _colour(rng, 170) if rng.random() < 0.8 else _colour(rng)
    img = np.full((h, w, 3), bg, np.uint8)
    ink = _colour(rng, 0, 90) if sum(bg) > 380 else _colour(rng, 170)
    font, scale = FONTS[rng.integers(len(FONTS))], rng.uniform(0.4, 1.6)
    step = int(30 * scale) + 6
    for y in range(int(rng.integers(15, 50)), h, step):
        x = int(rng.integers(5, 40))
        while x < w - 20:
            word = "".join(rng.choice(LETTERS, int(rng.integers(1, 10))))
            cv2.putText(img, word, (x, y), font, scale, ink, int(rng.integers(1, 3)), cv2.LINE_AA)
            x += int((len(word) + 1) * 18 * scale)
    return _finish(img, rng)


def chart(rng: np.random.Generator) -> np.ndarray:
    """Bar, line, scatter or pie charts with axes, grid and a random palette."""
    h, w = _size(rng)
    dark = rng.random() < 0.2
    img = np.full((h, w, 3), _colour(rng, 0, 50) if dark else _colour(rng, 215), np.uint8)
    fg = (230, 230, 230) if dark else (30, 30, 30)
    x0, y0, x1, y1 = int(w * 0.12), int(h * 0.88), int(w * 0.95), int(h * 0.08)
    if rng.random() < 0.6:
        for gy in np.linspace(y1, y0, int(rng.integers(3, 9))):
            cv2.line(img, (x0, int(gy)), (x1, int(gy)), (150, 150, 150) if not dark else (80, 80, 80), 1)
    kind = rng.integers(4)
    series = int(rng.integers(1, 4))
    for s in range(series):
        col = _colour(rng)
        n = int(rng.integers(4, 30))
        xs = np.linspace(x0 + 10, x1 - 10, n)
        ys = y0 - (y0 - y1) * np.clip(rng.random() * 0.5 + np.cumsum(rng.normal(0, 0.1, n)), 0.05, 1)
        if kind == 0:
            bw = max(2, int((x1 - x0) / n / (series + 1)))
            for xv, yv in zip(xs, ys, strict=True):
                cv2.rectangle(img, (int(xv) + s * bw, int(yv)), (int(xv) + (s + 1) * bw, y0), col, -1)
        elif kind == 1:
            pts = np.stack([xs, ys], 1).astype(np.int32)
            cv2.polylines(img, [pts], False, col, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 2:
            for xv, yv in zip(xs + rng.normal(0, 8, n), ys + rng.normal(0, 20, n), strict=True):
                cv2.circle(img, (int(xv), int(yv)), int(rng.integers(2, 7)), col, -1, cv2.LINE_AA)
        else:
            centre, r = (w // 2, h // 2), int(min(h, w) * 0.35)
            angles = np.cumsum(rng.dirichlet(np.ones(int(rng.integers(3, 8))))) * 360
            start = 0.0
            for a in angles:
                cv2.ellipse(img, centre, (r, r), 0, start, float(a), _colour(rng), -1, cv2.LINE_AA)
                start = float(a)
            break
    if kind != 3:
        cv2.line(img, (x0, y0), (x1, y0), fg, 2)
        cv2.line(img, (x0, y0), (x0, y1), fg, 2)
        for t in np.linspace(x0, x1, 6):
            cv2.putText(img, str(int(rng.integers(0, 100))), (int(t) - 8, y0 + 20), FONTS[0], 0.45, fg, 1)
    return _finish(img, rng, 0.3)


def gradient(rng: np.random.Generator) -> np.ndarray:
    """Linear or radial blends of two or three colours (skin-like ones included)."""
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        a = rng.uniform(0, np.pi)
        t = (np.cos(a) * xx / w + np.sin(a) * yy / h)
    else:
        t = np.hypot(xx / w - rng.random(), yy / h - rng.random())
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    cols = np.array([_colour(rng) for _ in range(int(rng.integers(2, 4)))], np.float32)
    pos = t[..., None] * (len(cols) - 1)
    i = np.clip(pos.astype(int), 0, len(cols) - 2)
    f = pos - i
    img = cols[i[..., 0]] * (1 - f) + cols[i[..., 0] + 1] * f
    return _finish(np.clip(img, 0, 255).astype(np.uint8), rng)


def noise(rng: np.random.Generator) -> np.ndarray:
    """White, coloured or smoothed ("cloudy") noise through a random palette."""
    h, w = _size(rng)
    mode = rng.integers(3)
    if mode == 0:
        img = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w, 3))
    elif mode == 1:
        img = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w, 1)) * np.ones(3) + np.array(
            _colour(rng, 0, 60)) - 30
    else:
        scale = int(rng.integers(4, 40))
        base = rng.normal(0, 1, (h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        field = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.array(_colour(rng, 40, 220), np.float32) + field * rng.uniform(10, 70)
    return _finish(np.clip(img, 0, 255).astype(np.uint8), rng, 0.3)


def shapes(rng: np.random.Generator) -> np.ndarray:
    """Random filled shapes on a flat or sky-like background, e.g. a dark blob in a blue sky."""
    h, w = _size(rng)
    top, bottom = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    if rng.random() < 0.4:  # sky
        top, bottom = np.array([rng.uniform(40, 120), rng.uniform(100, 180), 235], np.float32), np.array(
            [200, 220, 245], np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.uint8))
    for _ in range(int(rng.integers(1, 8))):
        col = _colour(rng, 0, 90) if rng.random() < 0.4 else _colour(rng)
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.ellipse(img, c, (int(rng.integers(10, w // 3)), int(rng.integers(10, h // 3))),
                        float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
        elif kind == 1:
            pts = (np.array(c) + rng.normal(0, min(h, w) / 6, (int(rng.integers(3, 9)), 2))).astype(np.int32)
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA)
        else:
            p = np.array(c) + rng.integers(-w // 4, w // 4, 2)
            cv2.rectangle(img, c, (int(p[0]), int(p[1])), col, -1)
    return _finish(img, rng)


def colour_bars(rng: np.random.Generator) -> np.ndarray:
    """Test-card colour bars (SMPTE-like order or random colours), vertical or horizontal."""
    h, w = _size(rng)
    smpte = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    cols = smpte if rng.random() < 0.5 else [_colour(rng) for _ in range(int(rng.integers(3, 12)))]
    n = len(cols)
    vertical = rng.random() < 0.7
    img = np.zeros((h, w, 3), np.uint8)
    for i, c in enumerate(cols):
        if vertical:
            img[:, i * w // n:(i + 1) * w // n] = c
        else:
            img[i * h // n:(i + 1) * h // n] = c
    if rng.random() < 0.4:  # a lower strip of other bars, as on a test card
        k = int(h * 0.75)
        img[k:] = np.roll(img[k:], int(w / n), axis=1)[:, ::-1]
    return _finish(img, rng)


def patterns(rng: np.random.Generator) -> np.ndarray:
    """Checkerboards, stripes, grids and rings in two colours at random frequencies."""
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(6, 80)
    kind = rng.integers(4)
    if kind == 0:
        m = ((xx // period + yy // period) % 2).astype(np.float32)
    elif kind == 1:
        a = rng.uniform(0, np.pi)
        m = (np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == 2:
        m = (((xx % period) < 2) | ((yy % period) < 2)).astype(np.float32)
    else:
        m = (np.sin(np.hypot(xx - w / 2, yy - h / 2) * 2 * np.pi / period) > 0).astype(np.float32)
    c0, c1 = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    img = c0 * (1 - m[..., None]) + c1 * m[..., None]
    return _finish(img.astype(np.uint8), rng)


def strokes(rng: np.random.Generator) -> np.ndarray:
    """Fur, grass or hair: many thin, roughly parallel curved strokes in a few related colours, softly lit."""
    h, w = _size(rng)
    earthy = rng.random() < 0.6  # an animal's fur or dry grass: browns, greys, oranges
    base = (np.array([rng.uniform(90, 220), rng.uniform(60, 170), rng.uniform(30, 130)], np.float32) if earthy
            else np.array(_colour(rng, 30, 200), np.float32))
    img = np.ascontiguousarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
    flow = rng.uniform(0, np.pi)
    curl = rng.uniform(0, 1.5)
    length = rng.uniform(8, 60)
    palette = [np.clip(base + rng.normal(0, 60, 3), 0, 255) for _ in range(int(rng.integers(2, 5)))]
    n = int(h * w / rng.uniform(30, 120))
    x, y = rng.uniform(0, w, n), rng.uniform(0, h, n)
    ang = flow + rng.normal(0, 0.3, n) + curl * np.sin(x / w * 3 + y / h * 2)
    pts = [np.stack([x, y], 1)]
    for _ in range(4):  # each stroke bends a little at every step
        ang = ang + rng.normal(0, 0.15, n)
        x, y = x + np.cos(ang) * length / 4, y + np.sin(ang) * length / 4
        pts.append(np.stack([x, y], 1))
    strokes_ = np.stack(pts, 1).astype(np.int32)  # n x 5 x 2
    batches = rng.integers(0, 4 * len(palette), n)  # a few shades of each palette colour, drawn batch by batch
    for k in range(4 * len(palette)):
        col = np.clip(palette[k % len(palette)] * rng.uniform(0.7, 1.2), 0, 255)
        cv2.polylines(img, list(strokes_[batches == k]), False, tuple(float(c) for c in col), int(rng.integers(1, 3)),
                      cv2.LINE_AA)
    return _finish(img, rng, 0.8)


#: Common histology stains (RGB): haematoxylin and eosin, DAB with a haematoxylin counterstain, PAS, Giemsa.
STAINS = (((80, 60, 150), (230, 120, 170)), ((140, 90, 40), (110, 120, 190)), ((190, 60, 150), (90, 80, 160)),
          ((120, 70, 160), (200, 150, 200)))


def cells(rng: np.random.Generator) -> np.ndarray:
    """Stained microscopy: round and oval cells in one or two stain colours on a pale background."""
    h, w = _size(rng)
    bg = np.array([rng.uniform(190, 250), rng.uniform(180, 245), rng.uniform(180, 250)], np.float32)
    img = np.ascontiguousarray(np.broadcast_to(bg, (h, w, 3)).astype(np.uint8))
    stains = list(STAINS[int(rng.integers(len(STAINS)))]) if rng.random() < 0.7 else [
        _colour(rng, 20, 200) for _ in range(int(rng.integers(1, 3)))]
    r0 = rng.uniform(3, 25)
    for _ in range(int(h * w / (r0 * r0 * rng.uniform(4, 30)))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (max(1, int(r0 * rng.uniform(0.6, 1.4))), max(1, int(r0 * rng.uniform(0.6, 1.4))))
        col = np.array(stains[int(rng.integers(len(stains)))], np.float32) * rng.uniform(0.7, 1.2)
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, tuple(float(v) for v in np.clip(col, 0, 255)),
                    -1, cv2.LINE_AA)
    return _finish(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.0)), rng, 0.8)


def scenes(rng: np.random.Generator) -> np.ndarray:
    """Landscapes: a sky over rough ground (fractal noise through an earth or foliage palette), a horizon between."""
    h, w = _size(rng)
    field = np.zeros((h, w), np.float32)
    for octave in range(1, 6):
        cells_ = 2 ** octave
        base = rng.normal(0, 1, (cells_ + 2, cells_ + 2)).astype(np.float32)
        field += cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC) / octave
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    lo, hi = np.array(_colour(rng, 0, 120), np.float32), np.array(_colour(rng, 80, 230), np.float32)
    ground = lo + (hi - lo) * field[..., None]
    sky_top = np.array([rng.uniform(30, 140), rng.uniform(90, 190), rng.uniform(170, 255)], np.float32)
    sky = sky_top + (np.array([230, 235, 245], np.float32) - sky_top) * np.linspace(0, 1, h)[:, None, None]
    horizon = h * rng.uniform(0.0, 0.7) + 0.1 * h * np.sin(np.arange(w) / w * rng.uniform(2, 12))
    mask = (np.arange(h)[:, None] > horizon[None, :])[..., None]
    img = np.where(mask, ground, np.broadcast_to(sky, (h, w, 3)))
    return _finish(np.clip(img, 0, 255).astype(np.uint8), rng, 0.8)


GENERATED: dict[str, Generator] = {"text": text, "chart": chart, "gradient": gradient, "noise": noise,
                                   "shapes": shapes, "colour_bars": colour_bars, "patterns": patterns,
                                   "strokes": strokes, "cells": cells, "scenes": scenes}


#: Each kind's random stream, fixed so that adding a kind leaves the others' frames as they were.
_STREAMS = ("chart", "colour_bars", "gradient", "noise", "patterns", "shapes", "text", "strokes", "cells", "scenes")


def generated(kind: str, n: int, seed: int) -> Iterator[np.ndarray]:
    """`n` frames of a generated kind; the seed decides them (fitting and evaluation use different seeds)."""
    gen = GENERATED[kind]
    rng = np.random.default_rng([seed, _STREAMS.index(kind)])
    for _ in range(n):
        yield gen(rng)


# --- photos shipped with packages -------------------------------------------------------------------------------

#: scikit-image's colour photos (and matplotlib's Grace Hopper portrait): the fit sees crops of FIT_PHOTOS only.
FIT_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "motorcycle_left", "motorcycle_right")
HELD_OUT_PHOTOS = ("chelsea", "retina", "immunohistochemistry", "grace_hopper")
GRAY_PHOTOS = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock", "cell")
#: scikit-image's 200 LFW faces: the fit sees the first half, evaluation the second.
LFW_FIT = range(100)
LFW_HELD_OUT = range(100, 200)


def _skimage_data():
    try:
        from skimage import data
    except ImportError as exc:
        raise DataError("the photo kinds need scikit-image (`pip install -r requirements/workstation.txt`)") from exc
    return data


def _photo(name: str) -> np.ndarray:
    """A photo by name: scikit-image's bundled data, its motorcycle stereo pair, or matplotlib's sample portrait."""
    if name == "grace_hopper":
        import matplotlib

        return read_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    if name.startswith("motorcycle_"):
        import skimage

        return read_image(Path(skimage.__file__).parent / "data" / f"{name}.png")
    img = getattr(_skimage_data(), name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _crops(img: np.ndarray, rng: np.random.Generator, n: int) -> Iterator[np.ndarray]:
    """Random crops (a third to all of each side, aspect within 2:1), flipped half the time, exposure jittered."""
    h, w = img.shape[:2]
    for _ in range(n):
        ch = int(h * rng.uniform(0.35, 1.0))
        cw = int(np.clip(ch * rng.uniform(0.6, 1.6), 16, w))
        ch = int(np.clip(ch, cw / 2 + 1, min(h, cw * 2)))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gain = rng.uniform(0.7, 1.3)
        yield np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _crops_of(names: tuple[str, ...], n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for i, name in enumerate(names):
        yield from _crops(_photo(name), rng, n // len(names) + (i < n % len(names)))


def photo_crops(name: str, n: int, seed: int) -> Iterator[np.ndarray]:
    """`n` crops of one named photo (for per-photo figures)."""
    return _crops(_photo(name), np.random.default_rng([seed, 108]), n)


def photos(n: int, seed: int) -> Iterator[np.ndarray]:
    """Crops of the fitted photos (astronaut, coffee, rocket, Hubble, motorcycles)."""
    return _crops_of(FIT_PHOTOS, n, np.random.default_rng([seed, 101]))


def _warm(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A warm cast, often soft: a photo's structure in a lesion's colours."""
    cast = np.array([rng.uniform(1.0, 1.25), rng.uniform(0.7, 0.95), rng.uniform(0.45, 0.8)], np.float32)
    img: np.ndarray = crop.astype(np.float32) * cast
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2.5))
    return np.clip(img, 0, 255).astype(np.uint8)


def warm_photos(n: int, seed: int) -> Iterator[np.ndarray]:
    """Crops of the fitted photos under a warm cast, often soft: a photo's structure in a lesion's colours."""
    rng = np.random.default_rng([seed, 109])
    for crop in _crops_of(FIT_PHOTOS, n, rng):
        yield _warm(crop, rng)


def photo_details(n: int, seed: int) -> Iterator[np.ndarray]:
    """Close-ups of the fitted photos (a tenth to a third of each side: fur, fabric, metal, sky), under a warm cast
    half the time. A fit-only augmentation (FIT_AUGMENTATIONS): whole-photo crops alone teach the check the photos'
    layout, and close-ups of unseen photos (a retina, a cat's fur) then pass."""
    rng = np.random.default_rng([seed, 110])
    for i, name in enumerate(FIT_PHOTOS):
        img = _photo(name)
        h, w = img.shape[:2]
        for _ in range(n // len(FIT_PHOTOS) + (i < n % len(FIT_PHOTOS))):
            ch = max(24, int(h * rng.uniform(0.1, 0.35)))
            cw = int(np.clip(ch * rng.uniform(0.7, 1.4), 24, w))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = np.ascontiguousarray(img[y:y + ch, x:x + cw])
            yield _warm(crop, rng) if rng.random() < 0.5 else crop


def photos_held_out(n: int, seed: int) -> Iterator[np.ndarray]:
    """Crops of photos the fit never sees: a cat, a retina, immunohistochemistry, Grace Hopper's portrait."""
    return _crops_of(HELD_OUT_PHOTOS, n, np.random.default_rng([seed, 106]))


def gray_photos(n: int, seed: int) -> Iterator[np.ndarray]:
    """Crops of scikit-image's grayscale photos, as a grayscale camera would deliver them."""
    return _crops_of(GRAY_PHOTOS, n, np.random.default_rng([seed, 102]))


def tinted_photos(n: int, seed: int) -> Iterator[np.ndarray]:
    """Grayscale photos mapped through a colour ramp (sepia, skin tones, random): colour without a lesion's."""
    rng = np.random.default_rng([seed, 103])
    for crop in gray_photos(n, seed):
        dark, light = np.array(_colour(rng, 0, 140), np.float32), np.array(_colour(rng, 120), np.float32)
        if rng.random() < 0.5:  # skin-toned ramp
            dark = np.array([rng.uniform(60, 130), rng.uniform(30, 80), rng.uniform(20, 60)], np.float32)
            light = np.array([rng.uniform(200, 250), rng.uniform(150, 200), rng.uniform(120, 180)], np.float32)
        t = crop[..., :1].astype(np.float32) / 255.0
        yield np.clip(dark * (1 - t) + light * t, 0, 255).astype(np.uint8)


def _faces(n: int, rng: np.random.Generator, indices: range) -> Iterator[np.ndarray]:
    """LFW faces (25x25 grayscale), skin-tinted and enlarged as a camera close-up would show them."""
    lfw = _skimage_data().lfw_subset()
    for _ in range(n):
        face = (lfw[indices[int(rng.integers(len(indices)))]] * 255).astype(np.float32)
        size = int(rng.integers(200, 500))
        big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)[..., None] / 255.0
        tone = np.array([rng.uniform(150, 245), rng.uniform(100, 190), rng.uniform(80, 160)], np.float32)
        img = tone * (0.35 + 0.75 * big) + rng.normal(0, 3, (size, size, 3))
        yield np.clip(img, 0, 255).astype(np.uint8)


def faces(n: int, seed: int) -> Iterator[np.ndarray]:
    return _faces(n, np.random.default_rng([seed, 104]), LFW_FIT)


def faces_held_out(n: int, seed: int) -> Iterator[np.ndarray]:
    return _faces(n, np.random.default_rng([seed, 107]), LFW_HELD_OUT)


def skin_crops(isic_rows: list[tuple[Path, int, int]], n: int, seed: int) -> Iterator[np.ndarray]:
    """Lesion-free skin: a corner tile of ISIC images (a quarter of each side, inside any dark vignette).

    `isic_rows` are (path, width, height) of held-out images (val / test): dermoscopy of skin, but no lesion.
    """
    rng = np.random.default_rng([seed, 105])
    order = rng.permutation(len(isic_rows))
    for k in order[:n]:
        img = read_image(isic_rows[k][0])
        h, w = img.shape[:2]
        th, tw = max(h // 4, 12), max(w // 4, 12)
        y = int(h * 0.12) if rng.random() < 0.5 else h - int(h * 0.12) - th
        x = int(w * 0.12) if rng.random() < 0.5 else w - int(w * 0.12) - tw
        yield np.ascontiguousarray(img[y:y + th, x:x + tw])


PACKAGE: dict[str, Callable[[int, int], Iterator[np.ndarray]]] = {
    "photos": photos, "warm_photos": warm_photos, "faces": faces, "photos_held_out": photos_held_out,
    "faces_held_out": faces_held_out,
    "gray_photos": gray_photos, "tinted_photos": tinted_photos}
PACKAGE_KINDS = tuple(PACKAGE)
#: Kinds the check is fitted on (photos and faces: only the FIT_PHOTOS / LFW_FIT images); all others are held out.
FIT_KINDS = ("text", "chart", "gradient", "noise", "shapes", "strokes", "cells", "scenes", "photos", "warm_photos",
             "faces")
#: Fit-only augmentations of fitted kinds: some models of the not-dermoscopy ensemble also see these; the evaluation
#: never reports them as kinds of their own (they are the fitted photos again).
FIT_AUGMENTATIONS: dict[str, Callable[[int, int], Iterator[np.ndarray]]] = {"photo_details": photo_details}


def package_kind(kind: str, n: int, seed: int) -> Iterator[np.ndarray]:
    return PACKAGE[kind](n, seed)


def frames(kind: str, n: int, seed: int) -> Iterator[np.ndarray]:
    """`n` frames of any kind, generated, from a package or a fit-only augmentation."""
    if kind in FIT_AUGMENTATIONS:
        return FIT_AUGMENTATIONS[kind](n, seed)
    return generated(kind, n, seed) if kind in GENERATED else package_kind(kind, n, seed)
