"""Quantisation recipes: how a float model becomes int8, as a reviewable data file (quantize/recipes/<name>.json).

A recipe names the method (post-training quantisation, or quantisation-aware fine-tuning followed by it), the
calibration set, the weight granularity, the activation ranges (min / max or MSE), the bias correction and the seed,
plus the fine-tuning settings for QAT.
Everything that changes the int8 bytes is in the file, the file's hash is in every manifest and report, and the
same recipe on the same float model gives the same int8 model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT
from edge_sca.errors import EdgeScaError
from quantize.qat import QatSettings
from quantize.ranges import ActivationRanges

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: The recipe `make quantize` uses.
DEFAULT_RECIPE = "ptq_mse_pl"
#: The post-training baseline other recipes are compared with (and timed against).
BASELINE_RECIPE = "ptq"


class Method(StrEnum):
    PTQ = "ptq"
    QAT = "qat"


class CalibrationSource(StrEnum):
    COLUMN = "calibration_column"  # the ISIC folder's `calibration` rows (a stratified subset when size is given)
    TRAIN = "train"  # a seeded, stratified draw of `size` train images


class BiasCorrection(StrEnum):
    LOGIT = "logit"  # remove int8's mean shift of the malignant logit, measured on the calibration images
    PER_LAYER = "per_layer"  # remove each conv / dense layer's mean output shift, in order (quantize/layer_bias.py)
    NONE = "none"


@dataclass(frozen=True)
class Calibration:
    source: CalibrationSource = CalibrationSource.COLUMN
    size: int | None = None


@dataclass(frozen=True)
class Recipe:
    """One quantisation recipe (see the module doc); `overrides` lists command-line changes to the file's values."""

    name: str
    method: Method
    description: str = ""
    seed: int = 0
    calibration: Calibration = field(default_factory=Calibration)
    per_channel: bool = True
    activation_ranges: ActivationRanges = ActivationRanges.MINMAX
    bias_correction: BiasCorrection = BiasCorrection.LOGIT
    qat: QatSettings | None = None
    source_file: str = ""
    sha256: str = ""
    overrides: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["method"], d["bias_correction"] = self.method.value, self.bias_correction.value
        d["activation_ranges"] = self.activation_ranges.value
        d["calibration"] = {"source": self.calibration.source.value, "size": self.calibration.size}
        d["overrides"] = list(self.overrides)
        return d

    def conversion_key(self) -> dict:
        """The fields the int8 conversion depends on (the description and file path do not)."""
        d = self.as_dict()
        keys = ["method", "seed", "calibration", "per_channel", "bias_correction", "qat"]
        if self.activation_ranges is not ActivationRanges.MINMAX:  # older build keys stay valid for min / max
            keys.append("activation_ranges")
        return {k: d[k] for k in keys}

    def with_overrides(self, calibration_size: int | None = None, per_tensor: bool = False,
                       no_bias_correction: bool = False) -> Recipe:
        """The recipe with command-line changes applied and recorded."""
        r, notes = self, []
        if calibration_size:
            r = replace(r, calibration=Calibration(r.calibration.source, calibration_size))
            notes.append(f"--calibration-size {calibration_size}")
        if per_tensor:
            r = replace(r, per_channel=False)
            notes.append("--per-tensor")
        if no_bias_correction:
            r = replace(r, bias_correction=BiasCorrection.NONE)
            notes.append("--no-bias-correction")
        return replace(r, overrides=tuple(notes))


_KEYS = {"name", "description", "method", "seed", "calibration", "per_channel", "activation_ranges", "bias_correction",
         "qat"}


def available() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".json":
        return path
    return RECIPES_DIR / f"{name_or_path}.json"


def load_recipe(name_or_path: str = DEFAULT_RECIPE) -> Recipe:
    """A recipe by name (quantize/recipes/<name>.json) or path; EdgeScaError naming the problem when it is bad."""
    path = recipe_path(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgeScaError(f"recipe {name_or_path!r}: no file {path} ({exc.strerror}); choose one of "
                           f"{', '.join(available())} or give a .json path") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EdgeScaError(f"{path}: not valid JSON ({exc}); fix the file") from exc
    return parse(data, _shown(path), hashlib.sha256(raw).hexdigest())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def parse(data: dict, source: str = "", sha256: str = "") -> Recipe:
    """Check and convert a recipe's JSON object; every problem names the field and the allowed values."""
    if not isinstance(data, dict):
        raise EdgeScaError(f"{source}: a recipe is a JSON object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise EdgeScaError(f"{source}: unknown recipe field(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(_KEYS))}")
    if "name" not in data or "method" not in data:
        raise EdgeScaError(f"{source}: a recipe needs 'name' and 'method'")
    method = _enum(Method, data["method"], "method", source)
    cal = data.get("calibration") or {}
    calibration = Calibration(_enum(CalibrationSource, cal.get("source", "calibration_column"), "calibration.source",
                                    source), _size(cal.get("size"), source))
    if calibration.source is CalibrationSource.TRAIN and not calibration.size:
        raise EdgeScaError(f"{source}: calibration.source 'train' needs a calibration.size")
    qat = None
    if method is Method.QAT:
        try:
            qat = QatSettings(**(data.get("qat") or {}))
        except TypeError as exc:
            raise EdgeScaError(f"{source}: bad 'qat' settings ({exc}); allowed: train_images, epochs, batch_size, "
                               "learning_rate, threshold_focus_logits") from exc
        if min(qat.train_images, qat.epochs, qat.batch_size) <= 0 or qat.learning_rate <= 0 \
                or qat.threshold_focus_logits < 0:
            raise EdgeScaError(f"{source}: every 'qat' setting must be positive")
    elif data.get("qat"):
        raise EdgeScaError(f"{source}: 'qat' settings given for method 'ptq'; remove them or use method 'qat'")
    return Recipe(name=str(data["name"]), method=method, description=str(data.get("description", "")),
                  seed=int(data.get("seed", 0)), calibration=calibration,
                  per_channel=bool(data.get("per_channel", True)),
                  activation_ranges=_enum(ActivationRanges, data.get("activation_ranges", "minmax"),
                                          "activation_ranges", source),
                  bias_correction=_enum(BiasCorrection, data.get("bias_correction", "logit"), "bias_correction",
                                        source),
                  qat=qat, source_file=source, sha256=sha256)


def _enum(cls, value, name: str, source: str):
    try:
        return cls(value)
    except ValueError as exc:
        allowed = ", ".join(m.value for m in cls)
        raise EdgeScaError(f"{source}: {name} {value!r} is not one of {allowed}") from exc


def _size(value, source: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or value <= 0:
        raise EdgeScaError(f"{source}: calibration.size must be a positive whole number or null, got {value!r}")
    return value
