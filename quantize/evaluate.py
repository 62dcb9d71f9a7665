"""Scoring a .keras or .tflite model on a labelled ISIC folder.

.tflite files run through edge_sca's TFLiteModel, the device's own code path (quantisation of the input,
dequantisation of the output, manifest check); .keras files through Keras on the same preprocessed pixels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sca.colour import NONE, correct_all
from edge_sca.contract import DEFAULT_THRESHOLD
from edge_sca.errors import ModelError
from edge_sca.metrics import binary_metrics
from edge_sca.progress import Progress
from edge_sca.training_record import record_colour_constancy, record_threshold

log = logging.getLogger(__name__)


@dataclass
class Scorer:
    """A loaded model: p(malignant) for uint8 images, its decision threshold and where that came from."""

    path: Path
    kind: str  # "keras" or the tflite input dtype ("float32", "int8", "uint8")
    threshold: float
    threshold_source: str
    p_malignant: Callable[[np.ndarray], np.ndarray]


def load_keras(path: Path):
    import keras

    if not path.is_file():
        raise ModelError(f"{path}: no such model file; train one with `make train` or check the path")
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path}: not a loadable Keras model ({exc})") from exc


def _tflite_scorer(path: Path) -> Scorer:
    from edge_sca.interpreter import TFLiteModel

    model = TFLiteModel(path, require_manifest=False)

    def p_malignant(x: np.ndarray) -> np.ndarray:
        progress = Progress(len(x), f"scoring {path.name}", log)
        out = np.empty(len(x), np.float64)
        for i in range(len(x)):
            out[i] = model.p_malignant(x[i])[0]
            progress.update()
        return out

    source = f"manifest {model.manifest.path.name}" if model.manifest else f"default {DEFAULT_THRESHOLD} (no manifest)"
    return Scorer(path, model.dtype, model.threshold, source, p_malignant)


def _keras_scorer(path: Path) -> Scorer:
    from quantize.train import predict_keras

    model = load_keras(path)
    threshold, source = record_threshold(path)
    method = record_colour_constancy(path)
    return Scorer(path, "keras", threshold, source, lambda x: predict_keras(model, correct_all(method, x)))


def _frozen_scorer(path: Path) -> Scorer:
    from edge_sca.preprocess import to_float
    from quantize.checkpoint import load_frozen, run_frozen

    fn = load_frozen(path)

    def p_malignant(x: np.ndarray) -> np.ndarray:
        return np.concatenate([run_frozen(fn, to_float(x[i:i + 32]))[:, 1] for i in range(0, len(x), 32)]).astype(float)

    return Scorer(path, "frozen graph", DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} (frozen graph)", p_malignant)


def _weights_scorer(path: Path) -> Scorer:
    """A checkpoint's weights (checkpoints/<stem>/*.weights.h5): the folder names the architecture; no threshold."""
    from edge_sca.contract import INPUT_SIZE, MODEL_NAMES, model_stem
    from quantize.architectures import build_model
    from quantize.train import predict_keras

    arch = next((n for n in MODEL_NAMES if path.parent.name == model_stem(n)), None)
    if arch is None:
        raise ModelError(f"{path}: cannot tell its architecture; checkpoint weights must sit in a folder named after "
                         f"the model (checkpoints/{model_stem('b')}/...)")
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file; check the path")
    model = build_model(arch, INPUT_SIZE)
    model.load_weights(path)
    method = _checkpoint_colour_constancy(path.parent / "state.json")
    return Scorer(path, "keras weights", DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} (checkpoint weights)",
                  lambda x: predict_keras(model, correct_all(method, x)))


def _checkpoint_colour_constancy(state: Path) -> str:
    """The colour constancy of the run whose checkpoint folder holds `state` (its state.json), "none" without one."""
    try:
        config = json.loads(state.read_text()).get("config", {})
    except FileNotFoundError:
        return NONE
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ModelError(f"{state}: unreadable training state ({exc}); check the checkpoint folder") from exc
    return str(config.get("colour_constancy", NONE))


def refuse_colour_constancy(path: Path) -> None:
    """A model trained on colour-corrected images would see uncorrected frames on the device, whose preprocessing
    (version 1) applies no colour constancy: it cannot be converted for the scanner."""
    method = record_colour_constancy(path)
    if method != NONE:
        raise ModelError(f"{path}: trained with colour constancy {method!r}, which the device's preprocessing "
                         "does not apply; it is an experiment (score it with `python -m quantize sources`), not "
                         "a model to convert")


def load_source_model(path: Path):
    """The model to convert: a .keras file, or a .pb frozen graph from `import-checkpoint`; never one trained with
    colour constancy (`refuse_colour_constancy`)."""
    refuse_colour_constancy(path)
    if path.suffix == ".pb":
        from quantize.checkpoint import load_frozen

        if not path.is_file():
            raise ModelError(f"{path}: no such model file; check the path")
        return load_frozen(path)
    return load_keras(path)


def load_scorer(path: str | Path) -> Scorer:
    """A Scorer for a .keras, .tflite, .pb or checkpoint .weights.h5 file; ModelError naming the file when it is
    missing or unusable."""
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        return _weights_scorer(path)
    if path.suffix == ".tflite":
        return _tflite_scorer(path)
    if path.suffix == ".keras":
        return _keras_scorer(path)
    if path.suffix == ".pb":
        return _frozen_scorer(path)
    raise ModelError(f"{path}: unknown model type {path.suffix or '(no suffix)'!r}; give a .keras or .tflite file")


def evaluate(model_path: str | Path, isic_dir: str | Path, split: str = "test", skip_bad: bool = False,
             threshold: float | None = None) -> dict:
    """Metrics of one model on one subset of a labelled ISIC folder, at the model's own threshold by default."""
    from edge_sca.isic import load_isic_folder
    from quantize.data import load_split
    from quantize.sources import POOLED, per_source_metrics

    scorer = load_scorer(model_path)
    folder = load_isic_folder(isic_dir, skip_bad=skip_bad)
    if split in ("train", "val", "test") and not folder.has_split_column:
        log.warning("%s has no split column: the %s split is derived from lesion ids; --split all scores every "
                    "image", folder.root, split)
    data = load_split(folder, split, skip_bad=skip_bad)
    p = scorer.p_malignant(np.asarray(data.x))
    thr = scorer.threshold if threshold is None else float(threshold)
    metrics = binary_metrics(data.y, p, thr)
    by_source = {k: m for k, m in per_source_metrics(data.y, p, data.sources, thr).items() if k != POOLED}
    return {"model": str(scorer.path), "kind": scorer.kind, "isic_dir": str(folder.root), "split": split,
            "counts": data.counts(), "threshold_source": scorer.threshold_source if threshold is None else "given",
            **metrics, "by_source": by_source}
