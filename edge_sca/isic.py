"""Reading an ISIC folder (the layout `isic image download DIR` writes): the label rules and splits live here.

A folder holds `ISIC_*.jpg` and `metadata.csv` with `isic_id` and `benign_malignant` (or, in newer exports,
`diagnosis_1` = Benign / Malignant / Indeterminate). Indeterminate rows are skipped and counted. Optional columns
`split` (train / val / test) and `calibration` (0/1) pin the subsets; without them the split is deterministic and
grouped by `lesion_id` where present, so no lesion is in two splits.

Metadata is untrusted input: an id must be a plain name (letters, digits, `_`, `-`: never a path), an id listed
twice with different labels is an error naming it (twice with the same label: the repeat is skipped and counted),
a row with an empty label is unlabelled (skipped and counted where labels are required, else kept with no label),
and a file that is not UTF-8 is one clear error.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_sca.contract import CLASS_NAMES
from edge_sca.errors import DataError
from edge_sca.fileio import sha256_file

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Fractions of lesions per split when the metadata has no `split` column.
DEFAULT_SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
#: What an isic_id may look like: a plain file-name stem, so it can never reach outside the folder.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
DOWNLOAD_HINT = (
    "Get one with the ISIC Archive's client: `pip install isic-cli && isic image download data/isic` "
    "(or point ISIC_DIR / --isic-dir at an existing folder such as ../shared/isic)."
)


@dataclass(frozen=True)
class Record:
    """One labelled image of an ISIC folder."""

    isic_id: str
    path: Path
    label: int | None  # 0 benign, 1 malignant, None when the folder carries no labels
    split: str
    calibration: bool
    lesion_id: str
    row: int  # line number in metadata.csv, for error messages
    dataset: str = ""  # the `dataset` column where there is one (HAM10000, ISIC 2017 challenge, ...)


@dataclass
class IsicFolder:
    """The parsed folder: usable records plus the counts of what was skipped and why."""

    root: Path
    records: list[Record]
    skipped: dict[str, int] = field(default_factory=dict)
    has_split_column: bool = False
    has_calibration_column: bool = False
    unlabelled: int = 0  # records kept without a label (require_labels=False)

    def subset(self, split: str) -> list[Record]:
        """Records of `train`, `val`, `test`, `calibration`, or `all`."""
        if split == "all":
            return list(self.records)
        if split == "calibration":
            return [r for r in self.records if r.calibration]
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}, calibration or all")
        return [r for r in self.records if r.split == split]

    def metadata_sha256(self) -> str:
        return sha256_file(self.root / "metadata.csv")


def resolve_isic_dir(given: str | Path | None = None) -> Path:
    """The ISIC folder to use: the one given, else ISIC_DIR, data/isic, ../shared/isic; a clear error if none."""
    from edge_sca.devpaths import isic_dir_candidates  # the development defaults, only when none is given

    candidates = [Path(given)] if given else isic_dir_candidates()
    for c in candidates:
        if (c / "metadata.csv").is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"no ISIC folder with a metadata.csv found (tried {tried}). {DOWNLOAD_HINT}")


def parse_label(row: dict[str, str]) -> int | None | str:
    """0 / 1 for benign / malignant, 'indeterminate' to skip, 'unlabelled' for an empty label, None if the row has
    no label column at all."""
    if "benign_malignant" in row and row["benign_malignant"] is not None:
        value = row["benign_malignant"].strip().lower()
    elif "diagnosis_1" in row and row["diagnosis_1"] is not None:
        value = row["diagnosis_1"].strip().lower()
    else:
        return None
    if value in CLASS_NAMES:
        return CLASS_NAMES.index(value)
    if value == "":
        return "unlabelled"
    if value.startswith("indeterminate"):
        return "indeterminate"
    raise ValueError(f"unknown label {value!r} (expected benign, malignant or indeterminate)")


def _lesion_split(lesion_id: str) -> str:
    """Deterministic split of a lesion from a hash of its id (stable across machines and Python runs)."""
    u = int(hashlib.sha256(lesion_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < DEFAULT_SPLIT_FRACTIONS["train"]:
        return "train"
    return "val" if u < DEFAULT_SPLIT_FRACTIONS["train"] + DEFAULT_SPLIT_FRACTIONS["val"] else "test"


def load_isic_folder(root: str | Path, skip_bad: bool = False, require_labels: bool = True,
                     check_files: bool = True) -> IsicFolder:
    """Parse and validate `root/metadata.csv`; raise DataError naming the row and file of the first problem.

    With `skip_bad`, rows with unknown labels or missing images are dropped and counted instead. Unsafe ids and
    conflicting duplicates are errors even then: they are not typos to skip but metadata that cannot be trusted.
    """
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"{meta}: not found; an ISIC folder needs metadata.csv beside its images. {DOWNLOAD_HINT}")
    columns, rows = _read_rows(meta)
    if "isic_id" not in columns:
        raise DataError(f"{meta}: missing column 'isic_id' (columns: {', '.join(columns) or 'none'})")
    has_labels = "benign_malignant" in columns or "diagnosis_1" in columns
    if require_labels and not has_labels:
        raise DataError(f"{meta}: missing label column: need 'benign_malignant' (or 'diagnosis_1' in newer exports)")
    folder = IsicFolder(root, [], {}, "split" in columns, "calibration" in columns)
    for line, row in rows:
        record = _parse_row(folder, meta, line, row, skip_bad, check_files)
        if record is None:
            continue
        if record.label is None and has_labels:
            if require_labels:
                _skip(folder, "unlabelled")
                continue
            folder.unlabelled += 1
        folder.records.append(record)
    folder.records = _drop_duplicates(folder, meta)
    if folder.skipped:
        log.info("%s: skipped %s", meta, ", ".join(f"{n} {k}" for k, n in sorted(folder.skipped.items())))
    if not folder.records:
        raise DataError(f"{meta}: no usable rows")
    return folder


def _read_rows(meta: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Column names and (line number, row) pairs; one-line DataErrors for bad encoding or broken CSV."""
    try:
        with open(meta, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            return columns, list(enumerate(reader, start=2))
    except UnicodeDecodeError as exc:
        line = meta.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{meta} line {line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "re-save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{meta}: not a readable CSV ({exc}); re-export it") from None


def _drop_duplicates(folder: IsicFolder, meta: Path) -> list[Record]:
    """One record per id: conflicting labels are an error naming the ids, identical repeats are skipped."""
    first: dict[str, Record] = {}
    conflicts: dict[str, list[Record]] = {}
    for r in folder.records:
        seen = first.setdefault(r.isic_id, r)
        if seen is r:
            continue
        if seen.label != r.label:
            conflicts.setdefault(r.isic_id, [seen]).append(r)
        else:
            _skip(folder, "duplicate rows")
            log.warning("%s line %d: %s repeats line %d with the same label (skipped)", meta, r.row, r.isic_id,
                        seen.row)
    if conflicts:
        named = "; ".join(f"{i} (lines {', '.join(str(r.row) for r in rs)}: "
                          f"{', '.join(_label_name(r.label) for r in rs)})" for i, rs in list(conflicts.items())[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        raise DataError(f"{meta}: {len(conflicts)} ids listed twice with different labels: {named}{more}; keep one "
                        "row per image")
    return list(first.values())


def _label_name(label: int | None) -> str:
    return "no label" if label is None else CLASS_NAMES[label]


def _skip(folder: IsicFolder, reason: str) -> None:
    folder.skipped[reason] = folder.skipped.get(reason, 0) + 1


def _parse_row(folder: IsicFolder, meta: Path, line: int, row: dict[str, str], skip_bad: bool,
               check_files: bool) -> Record | None:
    """One row -> Record, None when skipped; raises DataError on bad rows unless skip_bad."""
    isic_id = (row.get("isic_id") or "").strip()
    if isic_id and not ID_PATTERN.fullmatch(isic_id):
        raise DataError(f"{meta} line {line}: isic_id {isic_id[:80]!r} is not a plain ISIC-style name (letters, "
                        "digits, '_' and '-' only, like ISIC_0000000): an id must never be a path; fix the metadata")
    try:
        if not isic_id:
            raise ValueError("empty isic_id")
        label = parse_label(row)
        path = _image_path(folder.root, isic_id)
        if check_files and path is None:
            raise ValueError(f"image {isic_id}.jpg not found in {folder.root}")
        split = (row.get("split") or "").strip().lower() or _lesion_split(row.get("lesion_id") or isic_id)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} (expected train, val or test)")
        calibration = (row.get("calibration") or "0").strip() in ("1", "true", "True")
    except ValueError as exc:
        if skip_bad:
            _skip(folder, "bad rows")
            log.warning("%s line %d: %s (skipped)", meta, line, exc)
            return None
        raise DataError(f"{meta} line {line} ({isic_id or 'no id'}): {exc}; fix the row or pass --skip-bad") from exc
    if label == "indeterminate":
        _skip(folder, "indeterminate")
        return None
    return Record(isic_id, path or folder.root / f"{isic_id}.jpg", label if isinstance(label, int) else None,
                  split, calibration, (row.get("lesion_id") or isic_id).strip(), line,
                  (row.get("dataset") or "").strip())


def _image_path(root: Path, isic_id: str) -> Path | None:
    """The image file of an id (.jpg, else .jpeg / .png), or None."""
    for ext in (".jpg", ".jpeg", ".png", ".JPG"):
        p = root / f"{isic_id}{ext}"
        if p.is_file():
            return p
    return None
