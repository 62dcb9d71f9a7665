"""A smaller copy of ISIC folders, for training on a machine the data cannot follow in full (a lent accelerator).

Images are squash-resized to a small square (what the one preprocessing does anyway, before it squashes to 224)
and re-encoded as JPEG; images already that small are copied byte for byte. Train rows can be capped per source
and class (a deterministic choice by a hash of the image id); val and test rows are kept whole. The result is an
ordinary ISIC folder with a PACK.json saying what it holds and where it came from.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge_sca.errors import DataError
from edge_sca.isic import load_isic_folder
from edge_sca.preprocess import preprocess, read_image
from edge_sca.progress import Progress
from quantize.provenance import now_iso, write_json
from quantize.sources import source_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackOptions:
    size: int = 128
    quality: int = 85
    max_train_per_group: int | None = None  # cap on train rows per (source, class)
    splits: tuple[str, ...] = ("train", "val", "test")


def _rank(isic_id: str) -> str:
    return hashlib.sha256(isic_id.encode()).hexdigest()


def _chosen_ids(folder, opts: PackOptions) -> set[str]:
    """Ids to keep: every val/test row asked for, train rows capped per (source, class) in hash order."""
    keep: set[str] = set()
    taken: Counter = Counter()
    for r in sorted(folder.records, key=lambda r: _rank(r.isic_id)):
        if r.split not in opts.splits:
            continue
        group = (source_of(r.dataset), r.label)
        if r.split == "train" and opts.max_train_per_group and taken[group] >= opts.max_train_per_group:
            continue
        taken[group] += r.split == "train"
        keep.add(r.isic_id)
    return keep


def _write_image(src: Path, dst: Path, opts: PackOptions) -> tuple[int, int]:
    """Copy or shrink one image; returns its stored width and height."""
    rgb = read_image(src)
    h, w = rgb.shape[:2]
    if max(h, w) <= opts.size:
        shutil.copyfile(src, dst)
        return w, h
    small = preprocess(rgb, opts.size)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, opts.quality])
    if not ok:
        raise DataError(f"{src}: could not re-encode it as JPEG")
    dst.write_bytes(data.tobytes())
    return opts.size, opts.size


def pack_folder(src: str | Path, out: str | Path, opts: PackOptions) -> dict:
    """Write the packed copy of one ISIC folder to `out`; returns its summary (also in out/PACK.json)."""
    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: not empty; give a new folder (a pack is never written over another)")
    folder = load_isic_folder(src)
    keep = _chosen_ids(folder, opts)
    with open(src / "metadata.csv", newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), [r for r in reader if r.get("isic_id", "").strip() in keep]
    out.mkdir(parents=True, exist_ok=True)
    paths = {r.isic_id: r.path for r in folder.records}
    progress = Progress(len(rows), f"packing {len(rows)} images of {src} at {opts.size}px", log)
    for row in rows:
        w, h = _write_image(paths[row["isic_id"]], out / f"{row['isic_id']}.jpg", opts)
        if "width" in row:
            row["width"], row["height"] = str(w), str(h)
        progress.update()
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    counts = Counter((row.get("split", ""), source_of(row.get("dataset", "")), row.get("benign_malignant", ""))
                     for row in rows)
    summary = {"source": str(src.resolve()), "created": now_iso(),
               "options": opts.__dict__ | {"splits": list(opts.splits)}, "images": len(rows),
               "bytes": sum(p.stat().st_size for p in out.glob("*.jpg")),
               "counts": [{"split": k[0], "source": k[1], "label": k[2], "images": n}
                          for k, n in sorted(counts.items())]}
    write_json(out / "PACK.json", summary)
    return summary
