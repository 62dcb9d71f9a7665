"""What a model manifest must hold before anything trusts it, checked with the standard library only.

The same checks run when a bundle is made on the workstation, when the scanner installs a bundle (before its
device environment exists, so no numpy here) and every time the runtime loads a model: a threshold outside (0, 1)
would make every frame one class, so it is refused, not clamped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from edge_sca.contract import MANIFEST_FORMAT
from edge_sca.errors import ModelError

REQUIRED_KEYS = ("format", "model_file", "sha256", "architecture", "input", "class_names", "threshold")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REBUILD = "rebuild it with `make quantize`"


def manifest_path(model_path: str | Path) -> Path:
    """`models/x.tflite` -> `models/x.manifest.json`."""
    p = Path(model_path)
    return p.with_name(p.stem + ".manifest.json")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_manifest(data: object, where: str | Path) -> dict:
    """DATA (parsed JSON) if it is a manifest this runtime understands; ModelError naming the field otherwise."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: manifest is not a JSON object; {REBUILD}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelError(f"{where}: manifest lacks {', '.join(missing)}; {REBUILD}")
    fmt = data["format"]
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ModelError(f"{where}: manifest format {fmt!r} is not a known format (1..{MANIFEST_FORMAT}); {REBUILD}")
    if fmt > MANIFEST_FORMAT:
        raise ModelError(f"{where}: manifest format {fmt} is newer than this runtime ({MANIFEST_FORMAT}); update "
                         "edge_sca")
    threshold = data["threshold"]
    if not _is_number(threshold) or not 0.0 < float(threshold) < 1.0:
        raise ModelError(f"{where}: threshold {threshold!r} is not a number in (0, 1); a threshold outside it "
                         f"makes every frame one class. Fix the manifest or {REBUILD}")
    if not isinstance(data["sha256"], str) or not SHA256_RE.match(data["sha256"]):
        raise ModelError(f"{where}: sha256 {data['sha256']!r} is not 64 lowercase hex digits; {REBUILD}")
    names = data["class_names"]
    if not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{where}: class_names {names!r} should be two names (benign, malignant); {REBUILD}")
    spec = data["input"]
    if not isinstance(spec, dict) or not isinstance(spec.get("size", 224), int) or spec.get("size", 224) <= 0:
        raise ModelError(f"{where}: input {spec!r} should be an object with a positive integer size; {REBUILD}")
    if not isinstance(data["model_file"], str):
        raise ModelError(f"{where}: model_file {data['model_file']!r} is not a file name; {REBUILD}")
    return data
