"""The manifest: a JSON file beside each .tflite saying what the model is and how to feed it.

It carries the model's sha256 (the device refuses a model that does not match), the input spec, class names,
decision threshold, calibration set, float-vs-int8 metrics, tool versions, and reference vectors: a few real
preprocessed inputs with the workstation's outputs, so the device can prove it computes the same thing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sca.contract import DEFAULT_THRESHOLD
from edge_sca.errors import ModelError
from edge_sca.fileio import atomic_write_text
from edge_sca.manifest_schema import MANIFEST_FORMAT, REQUIRED_KEYS, check_manifest, manifest_path

__all__ = ["MANIFEST_FORMAT", "REQUIRED_KEYS", "Manifest", "decode_pixels", "encode_pixels", "load_manifest",
           "manifest_path", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_pixels(pixels: np.ndarray) -> dict:
    """A uint8 image as compact JSON: shape, sha256 and zlib+base64 bytes."""
    raw = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return {"shape": list(pixels.shape), "sha256": sha256_bytes(raw),
            "zlib_b64": base64.b64encode(zlib.compress(raw, 9)).decode("ascii")}


def decode_pixels(obj: dict) -> np.ndarray:
    """Inverse of encode_pixels; ModelError if the bytes do not match their hash."""
    try:
        raw = zlib.decompress(base64.b64decode(obj["zlib_b64"]))
        pixels = np.frombuffer(raw, np.uint8).reshape(obj["shape"])
    except (KeyError, ValueError, zlib.error) as exc:
        raise ModelError(f"manifest reference vector is malformed ({exc}); rebuild it with `make quantize`") from exc
    if sha256_bytes(raw) != obj["sha256"]:
        raise ModelError("manifest reference vector is corrupt (hash mismatch); rebuild it with `make quantize`")
    return pixels


@dataclass
class Manifest:
    """A parsed manifest; `data` keeps every field, the properties name the ones the runtime uses."""

    data: dict
    path: Path

    @property
    def sha256(self) -> str:
        return self.data["sha256"]

    @property
    def threshold(self) -> float:
        return float(self.data.get("threshold", DEFAULT_THRESHOLD))

    @property
    def reference_vectors(self) -> list[dict]:
        return list(self.data.get("reference_vectors", []))

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest (manifest_schema.check_manifest); ModelError with what to do when it is missing,
    malformed, or holds a value the runtime must not trust (e.g. a threshold outside (0, 1))."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: manifest not found; build it with `make quantize` or copy it beside the "
                         "model") from exc
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise ModelError(f"{path}: unreadable manifest ({exc}); rebuild it with `make quantize`") from exc
    return Manifest(check_manifest(data, path), path)
