"""Quantisation-robust fine-tuning: a new float model whose own int8 conversion changes its decisions less.

Why (issue 12): CancerNet-SCa-B's int8 graph amplifies rounding noise layer by layer, so no choice of ranges,
rounding or biases brings its int8 model within the agreement budget of a *fixed* float model. Here the float model
itself moves, a little, to where rounding matters less. One set of weights is trained through the fake-quantised
twin of quantize/fake_quant.py, run twice per batch, once in float and once fake-quantised, with the loss

    distillation: squared error of the float pass's malignant-minus-benign logit against the source model's
  + consistency x squared difference between the fake-quantised pass's logit margin and the float pass's, divided
    by the batch's variance of the float margins ("relative"; see RobustSettings.consistency_scale)
  + labels x logistic loss of the float pass's margin on the true labels

each image weighted up near the threshold (quantize.qat.loss_weights). The output is an ordinary float model of the
same architecture, with a training record like `quantize train`'s (threshold chosen on val by the same rule,
metrics per source, the source model as `init_from`), written to --out-dir. It is a candidate, not the shipped
model: `python -m quantize convert --models-dir <out-dir>` measures its int8 drift against the budgets, and
`python -m quantize sources` its per-source accuracy; ship it only when both hold (docs/quantization.md).
Each epoch checkpoints into <out-dir>/checkpoints/; a re-run with the same inputs resumes there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_sca.contract import INPUT_SIZE, model_stem
from edge_sca.errors import ModelError
from edge_sca.fileio import atomic_path, sha256_file
from edge_sca.isic import load_isic_folder
from edge_sca.metrics import threshold_for_sensitivity
from edge_sca.policy import TARGET_SENSITIVITY
from edge_sca.preprocess import to_float
from edge_sca.progress import Progress
from edge_sca.training_record import record_threshold
from quantize.data import Arrays, folder_hash, load_split
from quantize.provenance import git_commit, now_iso, tool_versions, write_json
from quantize.qat import _Trainer as QatTrainer
from quantize.qat import balanced_subset, ids_sha, loss_weights
from quantize.sources import POOLED, per_source_metrics
from quantize.train import lineage_of, predict_keras

log = logging.getLogger(__name__)

ROBUST_FORMAT = 1


@dataclass(frozen=True)
class RobustSettings:
    """What the fine-tuning depends on (recorded, and part of the checkpoint key)."""

    train_images: int = 6000
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    consistency: float = 75.0
    labels: float = 0.2
    threshold_focus_logits: float = 1.0
    activation_ranges: str = "mse"
    seed: int = 0
    #: "relative": the consistency term is divided by the batch's variance of the float margins, so that shrinking
    #: every logit (which also crowds images near the threshold) does not count as agreeing better; "absolute": not
    consistency_scale: str = "relative"

    def __post_init__(self) -> None:
        if self.consistency_scale not in ("relative", "absolute"):
            raise ValueError(f"consistency_scale {self.consistency_scale!r}: use 'relative' or 'absolute'")

    def steps_per_epoch(self, images: int) -> int:
        return images // self.batch_size


def robust_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    ckpt = out_dir / "checkpoints" / f"{stem}_robust"
    return {"model": out_dir / f"{stem}.keras", "record": out_dir / f"{stem}.json", "ckpt": ckpt,
            "weights": ckpt / "twin.weights.h5", "optimizer": ckpt / "optimizer.npz", "state": ckpt / "state.json"}


class _Trainer(QatTrainer):
    """The twin, its optimiser and one compiled step that runs the twin in float and fake-quantised (checkpoints
    are saved and restored as quantisation-aware fine-tuning's are)."""

    def __init__(self, model, ranges: dict, settings: RobustSettings, total_steps: int):
        # not QatTrainer.__init__: the step differs
        import keras
        import tensorflow as tf

        from quantize.fake_quant import build_twin

        self.twin = twin = build_twin(model, ranges, quantize=True)
        switches = [layer for layer in twin.layers if hasattr(layer, "quantize")]
        schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(total_steps, 1), alpha=0.1)
        self.optimizer = opt = keras.optimizers.Adam(schedule)
        opt.build(twin.trainable_variables)

        @tf.autograph.experimental.do_not_convert
        def margin(x, quantized: bool):
            # plain Python at trace time: the layers read `quantize` when the step is traced, so the two calls
            # below become one float and one fake-quantised pass of the same weights
            for layer in switches:
                layer.quantize = quantized
            logits = twin(x, training=True)
            return logits[:, 1] - logits[:, 0]

        @tf.function(reduce_retracing=True)
        def step(x, target, weight, label):
            with tf.GradientTape() as tape:
                m_float, m_int8 = margin(x, False), margin(x, True)
                distil = tf.reduce_mean(weight * tf.square(m_float - target))
                consist = tf.reduce_mean(weight * tf.square(m_int8 - m_float))
                if settings.consistency_scale == "relative":
                    consist = consist / (tf.math.reduce_variance(m_float) + 1e-3)
                labels = tf.reduce_mean(tf.nn.softplus(-(2.0 * label - 1.0) * m_float))
                loss = distil + settings.consistency * consist + settings.labels * labels
            grads = tape.gradient(loss, twin.trainable_variables)
            opt.apply_gradients(zip(grads, twin.trainable_variables, strict=False))
            return tf.stack([distil, consist, labels])

        self.step = step


def _saved_ranges(paths: dict[str, Path], key: str) -> dict[str, tuple[float, float]] | None:
    """The activation grids an interrupted run with this key saved (a resumed run skips the conversion)."""
    try:
        state = json.loads(paths["state"].read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if state.get("key") != key or "ranges" not in state:
        return None
    return {k: (float(lo), float(hi)) for k, (lo, hi) in state["ranges"].items()}


def _key(source_sha: str, settings: RobustSettings, train_ids: list[str], range_ids: list[str]) -> str:
    blob = json.dumps({"format": ROBUST_FORMAT, "source": source_sha, "settings": asdict(settings),
                       "train": ids_sha(train_ids), "ranges": ids_sha(range_ids)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _epoch(trainer: _Trainer, data: dict[str, np.ndarray], order: np.ndarray, label: str) -> list[float]:
    progress = Progress(len(order), label, log, every_s=30.0)
    sums = np.zeros(3)
    for idx in order:
        sums += np.asarray(trainer.step(to_float(data["x"][idx]), data["target"][idx], data["weight"][idx],
                                        data["label"][idx]))
        progress.update()
    return (sums / max(len(order), 1)).tolist()


def _train(trainer: _Trainer, data: dict[str, np.ndarray], settings: RobustSettings, state: dict,
           paths: dict[str, Path]) -> None:
    rng = np.random.default_rng(settings.seed + 1)
    per_epoch = settings.steps_per_epoch(len(data["x"]))
    orders = [rng.permutation(len(data["x"]))[: per_epoch * settings.batch_size].reshape(per_epoch, -1)
              for _ in range(settings.epochs)]  # fixed by the seed, so a resumed run sees the same batches
    while state["epoch"] < settings.epochs:
        t0 = time.monotonic()
        distil, consist, labels = _epoch(trainer, data, orders[state["epoch"]],
                                         f"robust fine-tuning, epoch {state['epoch'] + 1}/{settings.epochs}")
        if not np.isfinite(distil + consist):
            raise ModelError("robust fine-tuning diverged (loss is not finite); lower --lr")
        seconds = time.monotonic() - t0
        state["epoch"] += 1
        state["step"] = state["epoch"] * per_epoch
        state["seconds"] += seconds
        state["history"].append({"epoch": state["epoch"], "size": INPUT_SIZE, "distillation": distil,
                                 "consistency": consist, "label_loss": labels,
                                 "images_per_s": per_epoch * settings.batch_size / max(seconds, 1e-9)})
        log.info("epoch %d: distillation %.5f (mean squared logit-margin error), consistency %.5f (%s)",
                 state["epoch"], distil, consist, settings.consistency_scale)
        trainer.save(paths, state)


def _metrics(model, folder, val: Arrays) -> tuple[float, dict]:
    """Threshold on val by the training rule, and per-source metrics on val and test at it."""
    p_val = predict_keras(model, val.x)
    threshold = threshold_for_sensitivity(val.y, p_val, TARGET_SENSITIVITY)
    test = load_split(folder, "test", skip_bad=True)
    return threshold, {"val": per_source_metrics(val.y, p_val, val.sources, threshold),
                       "test": per_source_metrics(test.y, predict_keras(model, test.x), test.sources, threshold)}


def robust_tune(arch: str, source: Path, isic_dir: Path, out_dir: Path, settings: RobustSettings,
                threads: int | None = None) -> dict:
    """Fine-tune `source` (a .keras CancerNet-SCa model) and write <out-dir>/<stem>.keras and its record."""
    import keras

    from quantize.architectures import count_macs
    from quantize.fake_quant import float_logits, write_back
    from quantize.qat import _configure_threads, twin_ranges

    if not source.is_file():
        raise ModelError(f"{source}: no such model; train one with `python -m quantize train` or check --models-dir")
    _configure_threads(threads)
    keras.utils.set_random_seed(settings.seed)
    model = keras.models.load_model(source, compile=False)
    folder = load_isic_folder(isic_dir, skip_bad=True)
    train, calib, val = (load_split(folder, s, skip_bad=True) for s in ("train", "calibration", "val"))
    picks = balanced_subset(train, settings.train_images, settings.seed)
    x = np.asarray(train.x[picks])
    threshold, _ = record_threshold(source)
    target = float_logits(model, x)
    target = (target[:, 1] - target[:, 0]).astype(np.float32)
    data = {"x": x, "target": target, "weight": loss_weights(target, threshold, settings.threshold_focus_logits),
            "label": np.asarray(train.y, np.float32)[picks]}
    paths = robust_paths(out_dir, model_stem(arch))
    key = _key(sha256_file(source), settings, [train.ids[i] for i in picks], list(calib.ids))
    ranges = _saved_ranges(paths, key) or twin_ranges(model, np.asarray(calib.x), settings.activation_ranges,
                                                      settings.seed)
    steps = settings.epochs * settings.steps_per_epoch(len(x))
    trainer = _Trainer(model, ranges, settings, steps)
    state = trainer.restore(paths, key) or {"key": key, "epoch": 0, "epochs": settings.epochs, "step": 0,
                                            "steps": steps, "history": [], "seconds": 0.0,
                                            "ranges": {k: list(v) for k, v in ranges.items()}}
    log.info("robust fine-tuning of %s: %d train images, %d epochs of %d steps, consistency %g, lr %g", source.name,
             len(x), settings.epochs, settings.steps_per_epoch(len(x)), settings.consistency, settings.learning_rate)
    _train(trainer, data, settings, state, paths)
    tuned = write_back(trainer.twin, model)
    new_threshold, by_source = _metrics(tuned, folder, val)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["model"], suffix=".keras") as tmp:
        tuned.save(tmp)
    record = _record(arch, source, settings, key, folder, train, picks, state, new_threshold, by_source, paths,
                     threads) | {"params": int(tuned.count_params()), "macs": count_macs(tuned)}
    write_json(paths["record"], record)
    log.info("wrote %s (threshold %.4f; val AUROC %.4f, test AUROC %.4f)", paths["model"], new_threshold,
             by_source["val"][POOLED]["auroc"], by_source["test"][POOLED]["auroc"])
    return record


def _record(arch: str, source: Path, settings: RobustSettings, key: str, folder, train: Arrays, picks: np.ndarray,
            state: dict, threshold: float, by_source: dict, paths: dict[str, Path], threads: int | None) -> dict:
    y = np.asarray(train.y)[picks]
    return {
        "artifact": paths["model"].name, "model": arch, "created": now_iso(), "git_commit": git_commit(),
        "kind": "robust fine-tune", "format": ROBUST_FORMAT, "key": key,
        "data": {"isic_dir": str(folder.root), "data_hash": folder_hash(folder),
                 "metadata_sha256": folder.metadata_sha256(), "split": "train",
                 "images": len(picks), "ids_sha256": ids_sha([train.ids[i] for i in picks]),
                 "counts": {"benign": int((y == 0).sum()), "malignant": int((y == 1).sum())},
                 "selection": "class-balanced, seeded draw from the train split",
                 "activation_ranges": "the calibration split, as the int8 recipe's"},
        "config": asdict(settings) | {"source": str(source), "threads": threads}, "epochs_completed": state["epoch"],
        "history": state["history"], "train_wall_hours": state["seconds"] / 3600.0,
        "init_from": lineage_of(source),
        "loss": "distillation to the source model's logit margin + consistency x (fake-quantised margin - float "
                "margin)^2" + (" / batch variance of the float margins" if settings.consistency_scale == "relative"
                               else "") + " + labels x logistic loss, weighted toward the threshold",
        "threshold": threshold, "threshold_rule": f"highest threshold with val sensitivity >= {TARGET_SENSITIVITY}",
        "metrics": {split: by_source[split][POOLED] for split in ("val", "test")}, "metrics_by_source": by_source,
        "input_size": INPUT_SIZE, "cpu_count": os.cpu_count(), "tool_versions": tool_versions(),
    }
