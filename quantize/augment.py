"""Label-preserving augmentation and rebalanced batches for training (OpenCV, on uint8 images).

Two things decide what a model can learn besides the lesion: which images come together in a batch, and what the
augmentation leaves in them. Batches are class-balanced, and optionally source-balanced too (pick a source, then a
class within it), so the source of an image says nothing about its label. Random low-resolution degradation of
every source's images makes blur useless as a cue: the extra BCN20000 images are 84x84 copies and mostly
malignant, and without it a model learns "blurry means malignant".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from edge_sca.contract import INPUT_SIZE
from edge_sca.preprocess import to_float


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; the defaults are the recipe the first models were trained with."""

    rotation: float = 30.0  # degrees either way
    shift: float = 0.10  # fraction of the side
    scale: float = 0.10  # zoom in [1 - scale, 1 + scale]; zooming in crops
    colour: float = 0.10  # per-channel gain and brightness offset
    saturation: float = 0.0  # saturation factor in [1 - saturation, 1 + saturation]
    gamma: float = 0.0  # gamma in [1 - gamma, 1 + gamma]
    degrade_prob: float = 0.0  # chance of a random low-resolution round trip
    degrade_min: int = 48  # smallest resolution of that round trip, in pixels of a 224x224 image

    def as_dict(self) -> dict:
        return asdict(self)


#: The recipe for models that must hold up beyond HAM10000 (issue 14): any orientation, stronger scale and colour,
#: and half of all images, of every source, degraded to a random resolution between 48 and 224 pixels.
STRONG = AugmentConfig(rotation=180.0, shift=0.10, scale=0.25, colour=0.15, saturation=0.25, gamma=0.25,
                       degrade_prob=0.5, degrade_min=48)
PRESETS = {"basic": AugmentConfig(), "strong": STRONG,
           "strong-no-degrade": replace(STRONG, degrade_prob=0.0)}  # the ablation without the resolution fix


def degrade_resolution(img: np.ndarray, side_224: int) -> np.ndarray:
    """Down to `side_224` pixels (in 224x224 terms, scaled to the image's size) and back: what a smaller camera or
    an 84x84 source gives."""
    h, w = img.shape[:2]
    side = max(4, round(side_224 * w / INPUT_SIZE))
    if side >= w:
        return img
    small = cv2.resize(img, (side, max(4, round(side_224 * h / INPUT_SIZE))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Random rotation, shift, scale, flips, colour jitter and (sometimes) a low-resolution round trip."""
    h, w = img.shape[:2]
    m = np.asarray(cv2.getRotationMatrix2D((w / 2.0, h / 2.0), rng.uniform(-cfg.rotation, cfg.rotation),
                                           rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)), np.float64)
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * (w, h)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    if cfg.degrade_prob and rng.random() < cfg.degrade_prob:
        out = degrade_resolution(np.ascontiguousarray(out), int(rng.integers(cfg.degrade_min, INPUT_SIZE + 1)))
    if cfg.colour or cfg.saturation or cfg.gamma:
        out = _colour_jitter(out, rng, cfg)
    return np.ascontiguousarray(out)


def _colour_jitter(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Per-channel gain (white balance), brightness, saturation and gamma: cameras and lights differ in all four."""
    x: np.ndarray = img.astype(np.float32)
    if cfg.colour:
        x = x * rng.uniform(1.0 - cfg.colour, 1.0 + cfg.colour, 3) + rng.uniform(-cfg.colour, cfg.colour) * 255.0
    if cfg.saturation:
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1.0 - cfg.saturation, 1.0 + cfg.saturation)
    x = np.clip(x, 0.0, 255.0)
    if cfg.gamma:
        x = 255.0 * (x / 255.0) ** rng.uniform(1.0 - cfg.gamma, 1.0 + cfg.gamma)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _pools(y: np.ndarray, groups: np.ndarray | None, power: float) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Index pools [group][class] and each group's sampling weight (group size ** power, normalised)."""
    if any((y == c).sum() == 0 for c in (0, 1)):
        raise ValueError("training needs at least one benign and one malignant image")
    if groups is None:
        return [[np.flatnonzero(y == c) for c in (0, 1)]], np.ones(1)
    pools, sizes = [], []
    for g in sorted(set(groups.tolist())):
        member = groups == g
        by_class = [np.flatnonzero(member & (y == c)) for c in (0, 1)]
        if min(len(i) for i in by_class) == 0:
            continue  # a group without one class cannot be class-balanced; sampling_groups pools such sources
        pools.append(by_class)
        sizes.append(member.sum())
    if not pools:
        raise ValueError("no source has images of both classes: cannot balance batches by source")
    weights = np.asarray(sizes, np.float64) ** power
    return pools, weights / weights.sum()


def balanced_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, augment_images: bool = True,
                     groups: np.ndarray | None = None, group_power: float = 0.5,
                     cfg: AugmentConfig = AugmentConfig(),
                     finish: Callable[[np.ndarray], np.ndarray] | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches, half benign and half malignant, augmented, as float pixel/255.

    `finish` (uint8 batch -> uint8 batch) runs after augmentation: the colour constancy the model is trained with
    (edge_sca.colour), so that it removes the casts the colour jitter adds, as it will a camera's.

    With `groups` (sources), each image first draws a group (weight: group size ** group_power; 0 gives every
    source the same share), then a class, so every source contributes benign and malignant images alike.
    """
    rng = np.random.default_rng(seed)
    pools, weights = _pools(np.asarray(y), groups, group_power)
    half = batch_size // 2
    labels = np.array([0] * (batch_size - half) + [1] * half)
    while True:
        rng.shuffle(labels)
        picks = rng.choice(len(pools), batch_size, p=weights)
        idx = np.array([rng.choice(pools[g][c]) for g, c in zip(picks, labels, strict=False)])
        imgs = np.stack([augment(x[i], rng, cfg) if augment_images else x[i] for i in idx])
        if finish is not None:
            imgs = finish(imgs)
        yield to_float(imgs), np.eye(2, dtype=np.float32)[np.asarray(y)[idx]]
