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
#: Re-checking the threshold on a site's own images (`python -m quantize recalibrate`): a threshold is proposed
#: only when the 95% lower confidence bound of the sensitivity it gives there is at most this far below the target,
#: which fixes how many malignant images the site needs (62 for 90% with a 0.10 margin)...
RECALIBRATION_MAX_SHORTFALL = 0.10
#: ... and only with at least this many benign images, so that the specificity it costs is seen too.
RECALIBRATION_MIN_BENIGN = 30
#: Largest |delta p| between the device and the workstation's reference vectors before the self-test fails.
SELFTEST_MAX_DELTA = 0.05

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("CANCERNET_MODELS_DIR", REPO_ROOT / "models"))
MODEL_NAMES = ("b", "c", "resnet50")

DISCLAIMER = "Research tool, not a diagnosis: every result needs review by a clinician."


def model_stem(name: str) -> str:
    """File stem of a shipped model: `cancernet_sca_b`, `cancernet_sca_c`, `resnet50`."""
    return "resnet50" if name == "resnet50" else f"cancernet_sca_{name}"


def parse_model_file(stem: str) -> tuple[str, str] | None:
    """`cancernet_sca_b_int8` -> ("b", "int8"): model name and variant of a converted model's file stem (the
    inverse of `model_stem(name) + "_" + variant`); None for a stem of no known model."""
    for name in MODEL_NAMES:
        prefix = model_stem(name) + "_"
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return name, stem[len(prefix):]
    return None


def isic_dir_candidates() -> list[Path]:
    """Where an ISIC folder is looked for when none is given, in order."""
    env = os.environ.get("ISIC_DIR")
    found = [Path(env)] if env else []
    return found + [REPO_ROOT / "data" / "isic", REPO_ROOT.parent / "shared" / "isic"]

# --- On-device runtime (edge_sca.runtime, cameras, quality, audit, latency, drift) ---
#: Quality gate, measured on the 224x224 RGB pixels the model sees. Set from 300 random real ISIC images (min
#: brightness 98, max white-clipped fraction 0.013 (UDA-1: 2 of 557 above 0.3), min lesion contrast 17) against
#: degraded copies of them (x0.15 dark: <= 33; x3 overexposed: >= 0.35; plain skin with noise: contrast <= 1).
#: The calibrated thresholds (focus, grayscale, "not a dermoscopy frame") are not here: `python -m quantize
#: input-checks fit` measures them and writes models/input_checks.json, which the runtime loads (docs/input-checks.md).
#: Mean luma (0-255) below this: "too dark".
QUALITY_MIN_BRIGHTNESS = 50.0
#: Fraction of pixels with every channel at or above QUALITY_SATURATION_LEVEL above this: "saturated".
QUALITY_SATURATION_LEVEL = 250
QUALITY_MAX_SATURATED_FRACTION = 0.30
#: Lesion contrast (median minus 2nd percentile of the blurred luma in the centre) below this: "no lesion in view".
QUALITY_MIN_LESION_CONTRAST = 8.0
#: A frame longer than this many times its width (or wider than its height) is refused: squashing distorts it.
QUALITY_MAX_ASPECT_RATIO = 2.0

# --- Input checks: the rules `quantize input-checks fit` applies when it chooses the thresholds ---
INPUT_CHECKS_FILE = "input_checks.json"
#: Focus: the threshold refuses at least this fraction of ISIC test images blurred with Gaussian sigma
#: FOCUS_BLUR_SIGMA at capture size, and refuses no more than FOCUS_MAX_REFUSED of the unblurred ones.
FOCUS_BLUR_SIGMA = 1.5
FOCUS_MIN_BLUR_REFUSED = 0.99
FOCUS_MAX_REFUSED = 0.02
#: The focus measure looks at a FOCUS_CROP x FOCUS_CROP centre crop of the frame, after shrinking frames whose long
#: side exceeds FOCUS_MAX_SIDE to it (so a 12 MP frame costs as little as a small one).
FOCUS_CROP = 224
FOCUS_MAX_SIDE = 448
#: Grayscale: mean HSV saturation below GRAYSCALE_FRACTION of the ISIC training images' GRAYSCALE_QUANTILE.
GRAYSCALE_QUANTILE = 0.001
GRAYSCALE_FRACTION = 0.7
#: "Not a dermoscopy frame": each of the two scores refuses at most this fraction of every training source.
DERMOSCOPY_MAX_REFUSED_PER_SCORE = 0.004
#: Input drift: warn once at least DRIFT_MIN_FRAMES frames were judged and a statistic's population stability
#: index (bias-corrected for the sample size) exceeds DRIFT_PSI_WARN (0.25 is the usual "major shift").
DRIFT_MIN_FRAMES = 50
DRIFT_PSI_WARN = 0.25
DRIFT_BINS = 10
DRIFT_WARNING = "validate this scanner locally before trusting its decisions"

# --- Images on disk ---
#: Images whose header gives more pixels than this are refused before decoding (a 50 MP RGB image is 150 MB).
MAX_IMAGE_PIXELS = 50_000_000
#: Images with more pixels than this are decoded reduced (by 2, 4 or 8) straight to a smaller size: OpenCV's decoders
#: briefly hold two copies, so full decoding stays for frames up to a 16 MP camera's.
MAX_FULL_DECODE_PIXELS = 16_000_000
#: Files larger than this are refused before reading (no camera frame is this large).
MAX_IMAGE_BYTES = 100 * 1024 * 1024
#: Camera faults: reads retried this many times with exponential backoff from CAMERA_BACKOFF_S.
CAMERA_RETRIES = 3
CAMERA_BACKOFF_S = 0.2
#: This many identical frames in a row from a live camera: the stream is frozen.
CAMERA_FROZEN_FRAMES = 5
#: Latency statistics skip this many first frames (interpreter and cache warm-up).
LATENCY_WARMUP = 3
#: The shadow float model runs on every Nth frame.
SHADOW_EVERY = 10
#: Audit log rotation: size of one file, and how many rotated files are kept.
AUDIT_MAX_BYTES = 10 * 1024 * 1024
AUDIT_BACKUPS = 5
#: Illumination the run loop asks the dermoscope for (modes: "polarised", "non-polarised", "off").
ILLUMINATION_MODE = "polarised"
ILLUMINATION_INTENSITY = 0.8
#: How long one wait for the trigger lasts before the loop checks for a stop request.
TRIGGER_POLL_S = 0.5
#: A board that went away is reopened with backoff from BOARD_BACKOFF_S, doubling up to BOARD_BACKOFF_MAX_S; after
#: BOARD_TIMEOUT_S without it the runtime exits with status 3 so that systemd restarts it (`run --board-timeout`).
BOARD_BACKOFF_S = 0.25
BOARD_BACKOFF_MAX_S = 4.0
BOARD_TIMEOUT_S = 60.0
