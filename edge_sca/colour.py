"""Colour constancy: remove the light's and the camera's colour cast before the model sees a frame (issue 14).

Dermoscopes differ in their light (LED colour, polarisation) and cameras in their white balance, so the same lesion
arrives with a different cast from every source; a model trained mostly on one clinic's images learns that clinic's
colours. Shades of Gray (Finlayson and Trezzi, 2004) estimates the illuminant as the Minkowski p-norm mean of each
channel (p = 6, the value the ISIC 2019 challenge's leading entries used) and rescales the channels so that
estimate becomes neutral grey, keeping the overall brightness.

Training applies the named method to every image after augmentation and to every image it scores; a model trained
with a method records it (`colour_constancy` in its training record), and whatever scores that model applies the
same function from here. "none" is the identity and is what every model shipped so far was trained with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Minkowski norm of Shades of Gray: 1 is Gray World, infinity is max-RGB (White Patch).
SHADES_OF_GRAY_P = 6
NONE = "none"
SHADES_OF_GRAY = "shades_of_gray"
METHODS: tuple[str, ...] = (NONE, SHADES_OF_GRAY)


def shades_of_gray(pixels: np.ndarray, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """uint8 RGB image(s) (HxWx3 or NxHxWx3) with each image's illuminant estimate mapped to neutral grey.

    Per image: e_c = mean(x_c ** p) ** (1 / p); each channel is multiplied by |e| / (sqrt(3) e_c), so a grey
    illuminant is left alone and the image's brightness is roughly kept. Results are rounded and clipped to 0-255.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or pixels.shape[-1] != 3:
        raise ValueError(f"shades_of_gray expects uint8 RGB HxWx3 or NxHxWx3 pixels, got {pixels.dtype} "
                         f"{pixels.shape}")
    x = pixels.astype(np.float32) / np.float32(255.0)
    axes = (-3, -2)
    illuminant = np.power(np.mean(np.power(x, p, dtype=np.float32), axis=axes, keepdims=True), 1.0 / p)
    illuminant = np.maximum(illuminant, 1e-6)  # an all-black channel stays black
    norm = np.sqrt(np.sum(illuminant * illuminant, axis=-1, keepdims=True))
    gain = norm / (np.sqrt(np.float32(3.0)) * illuminant)
    return np.clip(x * gain * np.float32(255.0) + np.float32(0.5), 0.0, 255.0).astype(np.uint8)


def colour_constancy(method: str) -> Callable[[np.ndarray], np.ndarray]:
    """The uint8 -> uint8 transform a method name stands for; ValueError naming the known methods otherwise."""
    if method == NONE:
        return lambda pixels: pixels
    if method == SHADES_OF_GRAY:
        return shades_of_gray
    raise ValueError(f"colour constancy {method!r}: unknown; use one of {', '.join(METHODS)}")


def correct_all(method: str, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Every image of an N x H x W x 3 uint8 stack as a model trained with `method` sees it; the stack itself for
    "none". Chunked, so that a few thousand 224x224 images do not need gigabytes of float intermediates."""
    if method == NONE:
        return images
    fn = colour_constancy(method)
    if len(images) == 0:
        return np.asarray(images)
    return np.concatenate([fn(np.asarray(images[i:i + chunk])) for i in range(0, len(images), chunk)])

