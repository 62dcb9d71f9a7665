"""Where things are in this repository during development: its root, the models folder, the ISIC data.

A scanner does not need any of this: its settings file (edge_sca.settings) names the model, and a release's
input checks sit beside its models. The runtime imports this module only as a fallback, when no model path was
given (`python -m edge_sca run` in a checkout), so that the commands keep working from a clone without a settings
file. The `../shared/isic` default is this project's workspace layout, not something a scanner has.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_sca.contract import DEFAULT_MODEL_FILE

__all__ = ["MODELS_DIR", "REPO_ROOT", "default_model", "isic_dir_candidates"]

#: The checkout (or, in a release, the release folder: it has the same models/ and edge_sca/ layout).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The models folder: $CANCERNET_MODELS_DIR, else models/ in the checkout.
MODELS_DIR = Path(os.environ.get("CANCERNET_MODELS_DIR", REPO_ROOT / "models"))


def default_model() -> Path:
    """The model the commands use when neither --model nor a settings file names one: B int8 in MODELS_DIR."""
    return MODELS_DIR / DEFAULT_MODEL_FILE


def isic_dir_candidates() -> list[Path]:
    """Where an ISIC folder is looked for when none is given, in order: $ISIC_DIR, data/isic, ../shared/isic."""
    env = os.environ.get("ISIC_DIR")
    found = [Path(env)] if env else []
    return found + [REPO_ROOT / "data" / "isic", REPO_ROOT.parent / "shared" / "isic"]
