"""The resolution shortcut check: does a model call an image more malignant just because it is blurrier?

The extra BCN20000 training images are 84x84 copies and mostly malignant. A model that learnt "blurry means
malignant" raises p(malignant) when a sharp image is degraded to 84x84 and back; one that learnt the lesion does not.
The check degrades HAM10000 val images (sharp, the same clinic throughout) exactly as those copies were made.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quantize.augment import degrade_resolution

#: Side the degraded copies are shrunk to: that of the isic_extra images.
SHORTCUT_SIDE = 84
#: Source whose val images the check uses.
SHORTCUT_SOURCE = "HAM10000"


def degraded(x: np.ndarray, side: int = SHORTCUT_SIDE) -> np.ndarray:
    """Each 224x224 image shrunk to side x side (area filter) and enlarged back (bilinear), as the 84x84 copies are."""
    return np.stack([degrade_resolution(np.ascontiguousarray(img), side) for img in x])


def resolution_shortcut(p_malignant: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                        side: int = SHORTCUT_SIDE, p_original: np.ndarray | None = None) -> dict:
    """Mean p(malignant) of the images as they are and degraded, the rise, and the share of images that rose.

    `p_original`: the scores of `x` when already computed (saves scoring them twice)."""
    p0 = np.asarray(p_malignant(np.asarray(x)) if p_original is None else p_original, np.float64)
    p1 = np.asarray(p_malignant(degraded(np.asarray(x), side)), np.float64)
    return {"n": len(x), "side": side, "mean_p": float(p0.mean()), "mean_p_degraded": float(p1.mean()),
            "rise": float(p1.mean() - p0.mean()), "share_rising": float((p1 > p0).mean())}
