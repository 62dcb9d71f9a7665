"""Stage 1 of `make quantize`: the calibration images the int8 model's ranges are measured on.

The recipe picks them: the ISIC folder's `calibration` rows (a stratified subset when it gives a size), or a
seeded, stratified draw of train images. Their ids (hashed) are part of the int8 build key.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edge_sca.errors import DataError
from edge_sca.isic import IsicFolder
from quantize.data import Arrays, load_split
from quantize.recipe import CalibrationSource, Recipe


def ids_hash(ids: list[str]) -> str:
    """sha256 of the image ids, in order: what the manifests and the build key record of a calibration set."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def stratified(arrays: Arrays, n: int, seed: int = 0) -> Arrays:
    """n images keeping the class proportions, chosen deterministically (seeded), in their original order."""
    rng = np.random.default_rng(seed)
    y = np.asarray(arrays.y)
    picks = []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        k = min(len(idx), int(round(n * len(idx) / len(y))))
        picks.append(rng.choice(idx, size=k, replace=False))
    keep = np.sort(np.concatenate(picks))
    return Arrays(np.asarray(arrays.x[keep]), y[keep], [arrays.ids[i] for i in keep])


def calibration_set(folder: IsicFolder, size: int | None, skip_bad: bool = False,
                    source: CalibrationSource = CalibrationSource.COLUMN, seed: int = 0) -> tuple[Arrays, str]:
    """The representative images: the folder's `calibration` subset (a stratified subset of it when `size` is
    given), else, or when the recipe asks for it, a seeded stratified draw of `size` train images."""
    if source is CalibrationSource.COLUMN and folder.has_calibration_column and folder.subset("calibration"):
        arrays, what = load_split(folder, "calibration", skip_bad=skip_bad), "metadata calibration column"
        if size and size < len(arrays.ids):
            arrays, what = stratified(arrays, size, seed), f"{what}, stratified subset of {size}"
        return Arrays(np.asarray(arrays.x), arrays.y, arrays.ids), what
    if not size:
        what = "marks no image" if folder.has_calibration_column else "has no calibration column"
        raise DataError(f"{folder.root / 'metadata.csv'} {what}: no calibration set. Mark rows with calibration=1, "
                        "or pass --calibration-size N to draw a stratified subset of N train images")
    return stratified(load_split(folder, "train", skip_bad=skip_bad), size, seed), f"stratified {size} of train"


def calibrate(folder: IsicFolder, recipe: Recipe, skip_bad: bool = False) -> tuple[Arrays, str]:
    """Stage 1: the recipe's calibration images, and where they came from (for the manifests)."""
    cal = recipe.calibration
    return calibration_set(folder, cal.size, skip_bad, cal.source, recipe.seed)
