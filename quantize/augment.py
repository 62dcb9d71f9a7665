"""Label-preserving augmentation and class-rebalanced batches for training (OpenCV, on uint8 images)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from edge_sca.preprocess import to_float


def augment(img: np.ndarray, rng: np.random.Generator, rotation: float = 30.0, shift: float = 0.10,
            scale: float = 0.10, colour: float = 0.10) -> np.ndarray:
    """Random rotation, shift, scale, both flips and brightness/contrast jitter of one uint8 image."""
    h, w = img.shape[:2]
    angle = rng.uniform(-rotation, rotation)
    zoom = rng.uniform(1.0 - scale, 1.0 + scale)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, zoom)
    m[:, 2] += rng.uniform(-shift, shift, 2) * (w, h)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    if colour:
        gain = rng.uniform(1.0 - colour, 1.0 + colour, 3)  # per channel: camera white balance varies
        bias = rng.uniform(-colour, colour) * 255.0
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def balanced_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                     augment_images: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches, half benign and half malignant (malignant over-sampled), augmented, as float pixel/255."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in (0, 1)]
    if any(len(idx) == 0 for idx in by_class):
        raise ValueError("training needs at least one benign and one malignant image")
    half = batch_size // 2
    while True:
        idx = np.concatenate([rng.choice(by_class[0], batch_size - half), rng.choice(by_class[1], half)])
        rng.shuffle(idx)
        imgs = np.stack([augment(x[i], rng) if augment_images else x[i] for i in idx])
        yield to_float(imgs), np.eye(2, dtype=np.float32)[y[idx]]
