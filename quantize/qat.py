"""Quantisation-aware fine-tuning (QAT) by distillation: teach the int8 model to make the float model's decisions.

The student is the fake-quantised twin of the trained float model (quantize/fake_quant.py); the teacher is the
float model itself, unchanged. The loss is the squared difference of the malignant-minus-benign logit (the only
thing a two-class softmax decides on), so the fine-tuning pulls the int8 model towards the float model's
decisions rather than towards the labels: it cannot trade agreement for accuracy. A few hundred steps at a low
learning rate on a class-balanced, seeded subset of train images suffice; the float reference for every drift
figure stays the original model.

The result is a plain Keras model of the same architecture (models/<stem>_qat.keras) with a JSON record beside it
(source model hash, recipe, images, steps, loss, time, git commit). `make quantize` converts it with the ordinary
converter, so the int8 file has the same ops and I/O as post-training quantisation. Training checkpoints every
`CHECKPOINT_EVERY` steps into models/checkpoints/<stem>_qat/ and resumes from there after an interruption.
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

from edge_sca.errors import ModelError
from edge_sca.fileio import atomic_path, sha256_file
from edge_sca.preprocess import to_float
from edge_sca.progress import Progress
from quantize.data import Arrays
from quantize.provenance import git_commit, now_iso, tool_versions, write_json

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 25
QAT_FORMAT = 1
FOCUS_GAIN = 4.0


@dataclass(frozen=True)
class QatSettings:
    """The fine-tuning part of a recipe (see quantize/recipes/*.json)."""

    train_images: int = 2000
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 1e-5
    #: Images whose float logit margin lies within about this many logits of the decision threshold weigh up to
    #: (1 + FOCUS_GAIN) times more in the loss: decisions flip there. 0 weighs every image alike.
    threshold_focus_logits: float = 0.0

    def steps(self, images: int | None = None) -> int:
        """Optimiser steps for `images` train images (the recipe's count when the split has that many)."""
        n = self.train_images if images is None else images
        return self.epochs * (n // self.batch_size)


def balanced_subset(train: Arrays, n: int, seed: int) -> np.ndarray:
    """Indices of n train images, half benign and half malignant where the classes allow, seeded and sorted."""
    rng = np.random.default_rng(seed)
    y = np.asarray(train.y)
    picks = []
    for label, want in ((0, n - n // 2), (1, n // 2)):
        idx = np.flatnonzero(y == label)
        picks.append(rng.choice(idx, size=min(want, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))


def settings_key(source_sha: str, settings: QatSettings, seed: int, train_ids_sha: str, ranges_ids_sha: str,
                 threshold: float, activation_ranges: str = "minmax") -> str:
    """What the fine-tuned weights depend on; a checkpoint with another key is stale."""
    fields = {"format": QAT_FORMAT, "source": source_sha, "settings": asdict(settings), "seed": seed,
              "train": train_ids_sha, "ranges": ranges_ids_sha, "threshold": threshold}
    if activation_ranges != "minmax":  # keys made before the option existed stay valid
        fields["activation_ranges"] = activation_ranges
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def ids_sha(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def qat_paths(models_dir: Path, stem: str, recipe_name: str = "qat") -> dict[str, Path]:
    """Where the fine-tuned model of one recipe lives: <dir>/<stem>_<recipe>.keras and .json (checkpoints below)."""
    ckpt = models_dir / "checkpoints" / f"{stem}_{recipe_name}"
    return {"model": models_dir / f"{stem}_{recipe_name}.keras", "record": models_dir / f"{stem}_{recipe_name}.json",
            "ckpt": ckpt,
            "weights": ckpt / "twin.weights.h5", "optimizer": ckpt / "optimizer.npz", "state": ckpt / "state.json"}


def reusable(paths: dict[str, Path], key: str) -> dict | None:
    """The record of an existing fine-tuned model made with this key (and unchanged since), else None."""
    try:
        record = json.loads(paths["record"].read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("key") != key or not paths["model"].is_file() or record.get("sha256") != sha256_file(paths["model"]):
        return None
    return record


class _Trainer:
    """The twin, its optimiser and one compiled training step."""

    def __init__(self, model, ranges: dict, settings: QatSettings, total_steps: int):
        import keras
        import tensorflow as tf

        from quantize.fake_quant import build_twin

        self.twin = build_twin(model, ranges, quantize=True)
        schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(total_steps, 1), alpha=0.1)
        self.optimizer = keras.optimizers.Adam(schedule)
        self.optimizer.build(self.twin.trainable_variables)
        twin, opt = self.twin, self.optimizer

        @tf.function(reduce_retracing=True)
        def step(x, target, weight):
            with tf.GradientTape() as tape:
                logits = twin(x, training=True)
                loss = tf.reduce_mean(weight * tf.square(logits[:, 1] - logits[:, 0] - target))
            grads = tape.gradient(loss, twin.trainable_variables)
            opt.apply_gradients(zip(grads, twin.trainable_variables, strict=False))
            return loss

        self.step = step

    def save(self, paths: dict[str, Path], state: dict) -> None:
        paths["ckpt"].mkdir(parents=True, exist_ok=True)
        self.twin.save_weights(paths["weights"])
        np.savez(paths["optimizer"], *[np.asarray(v) for v in self.optimizer.variables])
        write_json(paths["state"], state)

    def restore(self, paths: dict[str, Path], key: str) -> dict | None:
        """The saved state of an interrupted run with this key, its weights and optimiser loaded; else None."""
        try:
            state = json.loads(paths["state"].read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if state.get("key") != key:
            log.info("ignoring the checkpoint in %s: it was made from other inputs", paths["ckpt"])
            return None
        self.twin.load_weights(paths["weights"])
        saved = np.load(paths["optimizer"])
        for i, var in enumerate(self.optimizer.variables):
            var.assign(saved[f"arr_{i}"])
        log.info("resuming fine-tuning at step %d of %d", state["step"], state["steps"])
        return state


def twin_ranges(model, calib_pixels: np.ndarray, ranges: str = "minmax",
                seed: int = 0) -> dict[str, tuple[float, float]]:
    """The activation grids of a post-training conversion on the same calibration images with the recipe's
    activation ranges (what the final conversion will choose, up to the small change fine-tuning makes)."""
    from quantize.convert import convert
    from quantize.fake_quant import activation_ranges, converter_ranges

    log.info("post-training conversion to read the converter's activation ranges")
    return converter_ranges(convert(model, "int8", calib_pixels, ranges=ranges, seed=seed), model,
                            activation_ranges(model, calib_pixels))


def loss_weights(margins: np.ndarray, threshold: float, focus_logits: float) -> np.ndarray:
    """Per-image loss weights, mean 1: 1 + FOCUS_GAIN near the threshold's logit, 1 far from it (or all 1)."""
    if focus_logits <= 0:
        return np.ones(len(margins), np.float32)
    t = float(np.log(threshold / (1.0 - threshold)))
    w = 1.0 + FOCUS_GAIN * np.exp(-0.5 * ((margins - t) / focus_logits) ** 2)
    return (w / w.mean()).astype(np.float32)


def fine_tune(model, source_path: Path, train: Arrays, range_pixels: np.ndarray, range_ids: list[str],
              settings: QatSettings, seed: int, paths: dict[str, Path], recipe: dict, threshold: float,
              threads: int | None = None, reuse_from: dict[str, Path] | None = None):
    """Fine-tune (or resume, or reuse) the QAT model of `model`; returns (the fine-tuned Keras model, its record).

    An up-to-date model at `paths`, or at `reuse_from` (e.g. the one committed in models/), is loaded instead.
    """
    import keras

    from quantize.fake_quant import float_logits, write_back

    picks = balanced_subset(train, settings.train_images, seed)
    train_ids = [train.ids[i] for i in picks]
    source_sha = sha256_file(source_path)
    act_ranges = str(recipe.get("activation_ranges", "minmax"))
    key = settings_key(source_sha, settings, seed, ids_sha(train_ids), ids_sha(range_ids), threshold, act_ranges)
    for where in [p for p in (paths, reuse_from) if p is not None]:
        record = reusable(where, key)
        if record is not None:
            log.info("%s is up to date (key %s); reusing it", where["model"], key[:12])
            return keras.models.load_model(where["model"], compile=False), record
    if paths["model"].is_file():
        log.info("%s was made from other inputs (source model, recipe or data changed); fine-tuning again",
                 paths["model"])
    _configure_threads(threads)
    keras.utils.set_random_seed(seed)
    x = np.asarray(train.x[picks])
    log.info("fine-tuning %s for int8: %d train images (%s), %d steps of %d, lr %g", source_path.name, len(x),
             _counts(train, picks), settings.steps(len(x)), settings.batch_size, settings.learning_rate)
    ranges = twin_ranges(model, np.asarray(range_pixels), act_ranges, seed)
    target = _margins(float_logits(model, x))
    weights = loss_weights(target, threshold, settings.threshold_focus_logits)
    trainer = _Trainer(model, ranges, settings, settings.steps(len(x)))
    state = trainer.restore(paths, key) or {"key": key, "step": 0, "steps": settings.steps(len(x)), "losses": [],
                                            "seconds": 0.0}
    order = _batch_order(len(x), settings, seed)
    _train_steps(trainer, x, target, weights, order, state, paths)
    tuned = write_back(trainer.twin, model)
    record = _record(source_path, source_sha, key, settings, seed, recipe, train, picks, range_ids, ranges, state,
                     threads, threshold)
    _save_model(tuned, paths, record)
    return tuned, json.loads(paths["record"].read_text())


def _configure_threads(threads: int | None) -> None:
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already started; keep what it has
            log.debug("TensorFlow threads already fixed")


def _counts(train: Arrays, picks: np.ndarray) -> str:
    y = np.asarray(train.y)[picks]
    return f"{int((y == 0).sum())} benign, {int((y == 1).sum())} malignant"


def _margins(logits: np.ndarray) -> np.ndarray:
    return (logits[:, 1] - logits[:, 0]).astype(np.float32)


def _batch_order(n: int, settings: QatSettings, seed: int) -> np.ndarray:
    """Every step's image indices, fixed by the seed (so a resumed run sees the same batches)."""
    rng = np.random.default_rng(seed + 1)
    per_epoch = n // settings.batch_size
    return np.concatenate([rng.permutation(n)[: per_epoch * settings.batch_size] for _ in range(settings.epochs)]
                          ).reshape(-1, settings.batch_size)


def _train_steps(trainer: _Trainer, x: np.ndarray, target: np.ndarray, weights: np.ndarray, order: np.ndarray,
                 state: dict, paths: dict[str, Path]) -> None:
    progress = Progress(len(order), "quantisation-aware fine-tuning (steps)", log, every_s=30.0)
    progress.update(state["step"])
    window: list[float] = []
    while state["step"] < len(order):
        t0 = time.monotonic()
        idx = order[state["step"]]
        loss = float(trainer.step(to_float(x[idx]), target[idx], weights[idx]))
        state["seconds"] += time.monotonic() - t0
        state["step"] += 1
        window.append(loss)
        if state["step"] % CHECKPOINT_EVERY == 0 or state["step"] == len(order):
            state["losses"].append({"step": state["step"], "mean_sq_margin_error": float(np.mean(window))})
            log.info("step %d/%d: mean squared logit-margin error %.5f", state["step"], len(order), np.mean(window))
            window = []
            trainer.save(paths, state)
        progress.update()
    if not np.isfinite(state["losses"][-1]["mean_sq_margin_error"]):
        raise ModelError("quantisation-aware fine-tuning diverged (loss is not finite); lower learning_rate in the "
                         "recipe")


def _record(source_path: Path, source_sha: str, key: str, settings: QatSettings, seed: int, recipe: dict,
            train: Arrays, picks: np.ndarray, range_ids: list[str], ranges: dict, state: dict,
            threads: int | None, threshold: float) -> dict:
    return {
        "format": QAT_FORMAT, "key": key, "created": now_iso(), "git_commit": git_commit(),
        "source_model": {"file": source_path.name, "sha256": source_sha},
        "recipe": recipe, "settings": asdict(settings), "seed": seed,
        "data": {"split": "train", "images": len(picks), "ids_sha256": ids_sha([train.ids[i] for i in picks]),
                 "counts": {"benign": int((np.asarray(train.y)[picks] == 0).sum()),
                            "malignant": int((np.asarray(train.y)[picks] == 1).sum())},
                 "selection": "class-balanced, seeded draw from the train split"},
        "activation_ranges": {"images": len(range_ids), "ids_sha256": ids_sha(range_ids), "tensors": len(ranges),
                              "source": "the recipe's calibration images"},
        "loss": "mean squared error of the malignant-minus-benign logit against the float model"
                + (f", weighted up to {1 + FOCUS_GAIN:g}x within ~{settings.threshold_focus_logits:g} logit of the "
                   f"threshold {threshold:.4f}" if settings.threshold_focus_logits > 0 else ""),
        "steps": state["step"], "history": state["losses"], "train_seconds": state["seconds"],
        "threads": threads, "cpu_count": os.cpu_count(), "tool_versions": tool_versions(),
    }


def _save_model(tuned, paths: dict[str, Path], record: dict) -> None:
    with atomic_path(paths["model"], suffix=".keras") as tmp:  # Keras insists on the extension
        tuned.save(tmp)
    record["artifact"] = paths["model"].name
    record["sha256"] = sha256_file(paths["model"])
    write_json(paths["record"], record)
    log.info("wrote %s and %s", paths["model"], paths["record"].name)
