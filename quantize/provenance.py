"""What a record of how an artifact was made needs: git commit, tool versions, time."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT
from edge_sca.fileio import atomic_write_text


def git_commit() -> str:
    """HEAD's hash, with `-dirty` when tracked files differ from it; 'unknown' outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def earlier_stages(lineage: dict | None) -> list[dict]:
    """The training records of the stages a model started from (`--init-from`), nearest first."""
    stages = []
    while lineage and lineage.get("record"):
        stages.append(lineage["record"])
        lineage = lineage["record"].get("init_from")
    return stages


def tool_versions() -> dict[str, str]:
    import cv2
    import numpy as np

    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        import keras

        versions.update(keras=keras.__version__, keras_backend=keras.backend.backend())
        import tensorflow as tf

        versions.update(tensorflow=tf.__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        versions["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - absent is fine
        pass
    return versions


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (temp file, fsync, rename), so a crash never leaves half a record."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")
