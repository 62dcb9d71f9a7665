"""What one model's `make quantize` run shares between its stages: the user's options and the job's state.

Kept apart from quantize/pipeline.py (which runs the stages) because every stage module reads a Job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_sca.contract import model_stem
from edge_sca.isic import IsicFolder
from edge_sca.training_record import record_macs
from quantize.build_cache import build_key
from quantize.calibration import ids_hash
from quantize.data import Arrays
from quantize.recipe import Recipe, load_recipe


@dataclass
class QuantizeOptions:
    """What the user chose; the int8 options (int8_key) are part of the build key."""

    io: str = "int8"
    variants: list[str] = field(default_factory=list)  # extra variants: float16, dynamic
    recipe: Recipe = field(default_factory=load_recipe)
    keep_float: list[str] = field(default_factory=list)
    keep_float_auto: bool = False
    skip_bad: bool = False
    threads: int | None = None  # TensorFlow threads for fine-tuning (does not change the result's recipe)

    def int8_key(self) -> dict:
        """The options the int8 bytes depend on: input / output type, keep-float, and the recipe's conversion
        fields (not the variants, skip_bad or threads)."""
        opts = {k: v for k, v in asdict(self).items() if k in ("io", "keep_float", "keep_float_auto")}
        opts["recipe"] = self.recipe.conversion_key()
        return opts


@dataclass
class Job:
    """Everything one model's run shares."""

    name: str
    keras_path: Path
    models_dir: Path  # where the trained model (and a committed fine-tuned copy) is read
    out_dir: Path  # where the .tflite files (and a newly fine-tuned copy) are written
    report_dir: Path
    options: QuantizeOptions
    folder: IsicFolder
    calib: Arrays
    calib_source: str
    threshold: float
    threshold_source: str
    keras_sha: str
    _model: object = None
    _int8_source: tuple | None = None

    @property
    def stem(self) -> str:
        return model_stem(self.name)

    @property
    def recipe(self) -> Recipe:
        return self.options.recipe

    def model(self):
        from quantize.evaluate import load_source_model

        if self._model is None:
            self._model = load_source_model(self.keras_path)
        return self._model

    def key(self, variant: str) -> str:
        return build_key(self.keras_sha, ids_hash(self.calib.ids), self.options.int8_key(), variant)

    def path(self, variant: str) -> Path:
        return self.out_dir / f"{self.stem}_{variant}.tflite"

    def manifest_extra(self, variant: str) -> dict:
        extra = {"build_key": self.key(variant), "threshold_source": self.threshold_source,
                 "macs": record_macs(self.keras_path),  # the device benchmark's MACs (the bundle has no records)
                 "source_model": {"file": self.keras_path.name, "sha256": self.keras_sha},
                 "calibration": {"ids_sha256": ids_hash(self.calib.ids), "count": len(self.calib.ids),
                                 "counts": self.calib.counts(), "source": self.calib_source,
                                 "isic_dir": str(self.folder.root)}}
        if variant == "int8":
            extra["recipe"] = self.recipe.as_dict()
        return extra
