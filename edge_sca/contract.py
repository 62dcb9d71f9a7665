"""The model contract: what the workstation that builds a model and the scanner that runs it must agree on.

Sizes, class order, tensor names, the int8 input quantisation, the preprocessing and manifest format versions, the
shipped models' file names and the self-test bound. Changing one of these changes what a model file means, so each
is fixed here once and a bump of PREPROCESS_VERSION or MANIFEST_FORMAT invalidates what was built for the old one.
Nothing here depends on where the code runs: the scanner's own settings are in edge_sca.settings, this
repository's paths in edge_sca.devpaths.
"""

from __future__ import annotations

__all__ = ["CLASS_NAMES", "DEFAULT_THRESHOLD", "DISCLAIMER", "INPUT_CHECKS_FILE", "INPUT_NAME", "INPUT_SIZE",
           "INT8_SCALE", "INT8_ZERO_POINT", "MALIGNANT", "MANIFEST_FORMAT", "MODEL_NAMES", "OUTPUT_NAME",
           "PREPROCESS_VERSION", "SELFTEST_MAX_DELTA", "DEFAULT_MODEL_FILE", "model_stem", "parse_model_file"]

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
#: Version of edge_sca.preprocess's pixels: bump it when they change, so caches, input checks and manifests made
#: with the old pixels are refused or rebuilt instead of silently mixed.
PREPROCESS_VERSION = 1
#: Newest model manifest format this runtime reads (edge_sca.manifest_schema).
MANIFEST_FORMAT = 1
#: Decision threshold used when no manifest gives one.
DEFAULT_THRESHOLD = 0.5
#: Largest |delta p| between the device and the workstation's reference vectors before the self-test fails.
SELFTEST_MAX_DELTA = 0.05
#: The fitted input checks, beside the models (models/ in a checkout and in a release).
INPUT_CHECKS_FILE = "input_checks.json"

#: The models this project ships, by short name.
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


#: The model the commands run when nothing names another: B, int8.
DEFAULT_MODEL_FILE = f"{model_stem('b')}_int8.tflite"
