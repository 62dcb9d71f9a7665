"""ISIC images as arrays for training, calibration and evaluation, through the device's one preprocessing.

Decoding 13k JPEGs on every run would starve training, so the preprocessed uint8 arrays are cached in a
memory-mapped .npy keyed by a hash of the metadata, the image files' names and sizes, and the preprocessing
version; a re-run with unchanged data opens it in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.contract import INPUT_SIZE, PREPROCESS_VERSION
from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import DataError, ImageError
from edge_sca.fileio import atomic_path
from edge_sca.isic import IsicFolder, Record
from edge_sca.preprocess import load_preprocessed
from edge_sca.progress import Progress
from quantize.sources import source_of

log = logging.getLogger(__name__)


@dataclass
class Arrays:
    """Preprocessed images (N x S x S x 3 uint8), labels (N,), ISIC ids and sources, in record order."""

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    sources: list[str] = field(default_factory=list)  # the `dataset` column per image (empty: not known)

    def counts(self) -> dict[str, int]:
        return {"benign": int((self.y == 0).sum()), "malignant": int((self.y == 1).sum())}

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Benign / malignant counts per source (the training record keeps them)."""
        out: dict[str, dict[str, int]] = {}
        for s, label in zip(self.sources, self.y.tolist(), strict=False):
            row = out.setdefault(s, {"benign": 0, "malignant": 0})
            row["malignant" if label == 1 else "benign"] += 1
        return dict(sorted(out.items()))


class ImageStack:
    """Several image arrays (memory-mapped caches of different folders) indexed as one, without copying them."""

    def __init__(self, parts: Sequence[np.ndarray]):
        sizes = {p.shape[1:] for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"image arrays of different shapes cannot be stacked: {sorted(sizes)}")
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k][i - self.starts[k]]

    def resized(self, size: int) -> ImageStack:
        return ImageStack([resize_batch(p, size) for p in self.parts])


def concat_arrays(parts: Sequence[Arrays]) -> Arrays:
    """Several folders' Arrays as one (images stacked lazily): the training set of --extra-isic-dir."""
    if len(parts) == 1:
        return parts[0]
    return Arrays(ImageStack([p.x for p in parts]), np.concatenate([p.y for p in parts]),  # type: ignore[arg-type]
                  [i for p in parts for i in p.ids], [s for p in parts for s in p.sources])


def cache_dir() -> Path:
    return Path(os.environ.get("CANCERNET_CACHE", REPO_ROOT / "data" / "cache"))


def data_key(records: list[Record], size: int) -> str:
    """Hash of what the cached bytes depend on: ids, file names and sizes, preprocessing version, size."""
    h = hashlib.sha256(f"preprocess-v{PREPROCESS_VERSION}-{size}".encode())
    for r in records:
        h.update(f"{r.isic_id}:{r.path.name}:{r.path.stat().st_size};".encode())
    return h.hexdigest()[:16]


def folder_hash(folder: IsicFolder) -> str:
    """Hash identifying the data a model was trained on (metadata + image names and sizes)."""
    return hashlib.sha256((folder.metadata_sha256() + data_key(folder.records, INPUT_SIZE)).encode()).hexdigest()[:16]


def _decode_all(records: list[Record], size: int, out: np.ndarray, skip_bad: bool) -> list[int]:
    """Fill `out` with preprocessed images; return indices of records that failed (only with skip_bad)."""
    progress = Progress(len(records), f"decoding {len(records)} images to {size}x{size}", log)
    bad: list[int] = []

    def work(i: int) -> None:
        try:
            out[i] = load_preprocessed(records[i].path, size)
        except ImageError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (metadata.csv line {records[i].row}); pass --skip-bad to skip it") from exc
            log.warning("%s (skipped)", exc)
            bad.append(i)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for _ in pool.map(work, range(len(records))):
            progress.update()
    return sorted(bad)


def load_arrays(records: list[Record], size: int = INPUT_SIZE, skip_bad: bool = False,
                use_cache: bool = True) -> Arrays:
    """Preprocessed arrays for `records`, from the cache when it is there, building it when not."""
    if not records:
        raise DataError("no images selected (empty split?)")
    key = data_key(records, size)
    path = cache_dir() / f"isic_{key}_{size}.npy"
    meta_path = path.with_suffix(".json")
    if use_cache and path.is_file() and meta_path.is_file():
        bad = set(json.loads(meta_path.read_text())["bad"])
        x = np.load(path, mmap_mode="r")
        log.info("using cached arrays %s", path)
    else:
        x, bad = _build(records, size, path if use_cache else None, skip_bad)
    keep = [i for i in range(len(records)) if i not in bad]
    if bad and not skip_bad:
        raise DataError(f"{len(bad)} unreadable images in this selection (first: {records[min(bad)].path}); "
                        "pass --skip-bad to skip them")
    x = x if not bad else x[keep]
    y = np.array([records[i].label if records[i].label is not None else -1 for i in keep], dtype=np.int64)
    return Arrays(x, y, [records[i].isic_id for i in keep], [source_of(records[i].dataset) for i in keep])


def load_split(folder: IsicFolder, split: str, size: int = INPUT_SIZE, skip_bad: bool = False,
               limit: int | None = None) -> Arrays:
    """Arrays of one subset (train / val / test / calibration / all), cut from the whole folder's cache.

    `limit` keeps the first N images of each class (for quick runs and tests).
    """
    records = folder.subset(split)
    if limit:
        records = [r for r in records if r.label == 0][:limit] + [r for r in records if r.label == 1][:limit]
    whole = load_arrays(folder.records, INPUT_SIZE, skip_bad=True)
    row = {i: n for n, i in enumerate(whole.ids)}
    missing = [r for r in records if r.isic_id not in row]
    if missing and not skip_bad:
        raise DataError(f"{len(missing)} unreadable images in the {split} split (first: {missing[0].path}, "
                        f"metadata.csv line {missing[0].row}); pass --skip-bad to skip them")
    keep = [r for r in records if r.isic_id in row]
    if not keep:
        raise DataError(f"no usable images in the {split} split")
    x = whole.x[np.array([row[r.isic_id] for r in keep])]
    if size != INPUT_SIZE:
        x = resize_batch(x, size)
    return Arrays(x, np.array([r.label if r.label is not None else -1 for r in keep], np.int64),
                  [r.isic_id for r in keep], [source_of(r.dataset) for r in keep])


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Resize preprocessed 224x224 images to size x size (progressive resizing trains smaller)."""
    import cv2

    if isinstance(x, ImageStack):
        return x.resized(size)  # type: ignore[return-value]

    out = np.empty((len(x), size, size, 3), np.uint8)
    for i in range(len(x)):
        out[i] = cv2.resize(x[i], (size, size), interpolation=cv2.INTER_AREA)
    return out


def _build(records: list[Record], size: int, path: Path | None, skip_bad: bool) -> tuple[np.ndarray, set[int]]:
    shape = (len(records), size, size, 3)
    if path is None:
        x = np.empty(shape, np.uint8)
        return x, set(_decode_all(records, size, x, skip_bad))
    with atomic_path(path, suffix=".npy") as tmp:
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        bad = _decode_all(records, size, x, skip_bad)
        x.flush()
        del x
    path.with_suffix(".json").write_text(json.dumps({"n": len(records), "size": size, "bad": bad}))
    log.info("cached %d images at %s", len(records), path)
    return np.load(path, mmap_mode="r"), set(bad)
