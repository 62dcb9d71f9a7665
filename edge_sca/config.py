"""The constants every layer shares: one source of truth for sizes, classes, names and paths."""

from __future__ import annotations

import os
from pathlib import Path

#: Square side the models take, in pixels (the CancerNet-SCa papers' 224x224).
INPUT_SIZE = 224
#: Class order of the `probs` output.
CLASS_NAMES = ("benign", "malignant")
MALIGNANT = 1
#: Tensor names of the original CancerNet-SCa checkpoints, kept for every model we ship.
INPUT_NAME = "input_1"
OUTPUT_NAME = "probs"
#: int8 input quantisation: real = (q - ZERO_POINT) * SCALE, so q = pixel - 128 exactly.
INT8_SCALE = 1.0 / 255.0
INT8_ZERO_POINT = -128
#: Decision threshold used when no manifest gives one.
DEFAULT_THRESHOLD = 0.5
#: Malignant sensitivity the validation-chosen threshold must reach.
TARGET_SENSITIVITY = 0.90
#: Largest |delta p| between the device and the workstation's reference vectors before the self-test fails.
SELFTEST_MAX_DELTA = 0.05

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("CANCERNET_MODELS_DIR", REPO_ROOT / "models"))
MODEL_NAMES = ("b", "c", "resnet50")

DISCLAIMER = "Research tool, not a diagnosis: every result needs review by a clinician."


def model_stem(name: str) -> str:
    """File stem of a shipped model: `cancernet_sca_b`, `cancernet_sca_c`, `resnet50`."""
    return "resnet50" if name == "resnet50" else f"cancernet_sca_{name}"


def isic_dir_candidates() -> list[Path]:
    """Where an ISIC folder is looked for when none is given, in order."""
    env = os.environ.get("ISIC_DIR")
    found = [Path(env)] if env else []
    return found + [REPO_ROOT / "data" / "isic", REPO_ROOT.parent / "shared" / "isic"]
