"""Training CancerNet-SCa (and the ResNet-50 baseline) on an ISIC folder, resumable epoch by epoch.

The paper's recipe adapted to a CPU: Adam, class-rebalanced batches, rotation / shift / flip augmentation, best
checkpoint by validation AUROC at 224 (the size the scanner runs), progressive resizing (train small, finish at 224).
An "epoch" is a fixed number of balanced batches, since rebalanced sampling has no natural end. Every epoch writes a
checkpoint and a state file; `--resume` carries on from them, so a run survives the end of a session. `--init-from`
starts a new run (a second stage, e.g. fine-tuning at 224) from an earlier model, and its record keeps the lineage.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_sca.colour import METHODS, NONE, colour_constancy, correct_all
from edge_sca.contract import INPUT_SIZE, model_stem
from edge_sca.devpaths import MODELS_DIR
from edge_sca.fileio import atomic_path, sha256_file
from edge_sca.isic import load_isic_folder
from edge_sca.metrics import threshold_for_sensitivity
from edge_sca.policy import TARGET_SENSITIVITY
from quantize.augment import PRESETS
from quantize.data import Arrays, concat_arrays, folder_hash, load_split, resize_batch
from quantize.ema import WeightAverage
from quantize.provenance import earlier_stages, git_commit, now_iso, tool_versions, write_json
from quantize.sources import POOLED, balanced_score, per_source_metrics, sampling_groups

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint state and the model's record."""

    model: str
    isic_dir: str
    out_dir: str = str(MODELS_DIR)
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 64
    train_size: int = INPUT_SIZE
    final_epochs: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    limit: int | None = None
    threads: int | None = None
    skip_bad: bool = False
    init_from: str | None = None
    extra_isic_dirs: list[str] = field(default_factory=list)  # train-only folders added to the train split
    augment: str = "basic"  # a preset of quantize.augment.PRESETS
    source_balance: float | None = None  # sample source, then class (weight: source size ** this); None: class only
    ema_decay: float = 0.0  # exponential moving average of the weights, evaluated and exported (0: off)
    select_on: str = "sources"  # "sources": mean of per-source val AUROC; "pooled": pooled val AUROC
    snapshot_every: int = 0  # also keep the evaluated weights of every Nth epoch (0: only best and last)
    exclude_sources: list[str] = field(default_factory=list)  # train without these sources (held-out checks)
    note: str = ""  # free text kept in the record (e.g. where the epochs ran and on which copy of the data)
    colour_constancy: str = "none"  # a method of edge_sca.colour, applied after augmentation and before scoring

    def size_at(self, epoch: int) -> int:
        """Image size of a 0-based epoch: train_size, then 224 for the last final_epochs."""
        return INPUT_SIZE if epoch >= self.epochs - self.final_epochs else self.train_size


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_auroc: float = -1.0  # best selection score so far (see TrainConfig.select_on; name kept for old runs)
    best_epoch: int = -1
    images_seen: int = 0
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    lineage: dict | None = None  # the --init-from model, read when the run starts (it may be overwritten later)


def _paths(cfg: TrainConfig) -> dict[str, Path]:
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoints" / model_stem(cfg.model)
    return {"ckpt": ckpt, "last": ckpt / "last.keras", "best": ckpt / "best.weights.h5", "state": ckpt / "state.json",
            "ema": ckpt / "ema.npz",
            "model": out / f"{model_stem(cfg.model)}.keras", "record": out / f"{model_stem(cfg.model)}.json"}


def _tensorflow_backend() -> bool:
    """Keras runs on TensorFlow here; on an accelerator machine without TensorFlow it can run on JAX."""
    import keras

    return keras.backend.backend() == "tensorflow"


def _configure_tf(threads: int | None) -> None:
    if not _tensorflow_backend():
        return
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def _optimizer(cfg: TrainConfig, total_steps: int, done_steps: int):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, max(total_steps, 1), alpha=0.01)
    opt = (keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay) if cfg.weight_decay
           else keras.optimizers.Adam(schedule))
    opt.iterations.assign(done_steps)
    return opt


def _build(cfg: TrainConfig, size: int, weights_from=None, done_steps: int = 0):
    """A compiled model at `size`, optionally carrying the weights of another (sizes share weights)."""
    import keras

    from quantize.architectures import build_model

    model = build_model(cfg.model, size)
    if weights_from is not None:
        model.set_weights(weights_from.get_weights())
    model.compile(optimizer=_optimizer(cfg, cfg.epochs * cfg.steps_per_epoch, done_steps),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing))
    return model


def predict_keras(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """p(malignant) for uint8 images, in batches (keeps the float copy small)."""
    from edge_sca.preprocess import to_float

    out = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.uint8)])
        out.append(model.predict_on_batch(to_float(padded))[: len(chunk), 1])  # fixed shape: no retracing
    return np.concatenate(out).astype(np.float64)


def _dataset(cfg: TrainConfig, train: Arrays, epoch: int):
    """The epoch's batches: a prefetching tf.data pipeline on TensorFlow, the plain generator on other backends."""
    from quantize.augment import balanced_batches

    groups = sampling_groups(train.y, train.sources) if cfg.source_balance is not None else None
    finish = None if cfg.colour_constancy == NONE else colour_constancy(cfg.colour_constancy)
    gen = lambda: balanced_batches(train.x, train.y, cfg.batch_size, seed=cfg.seed * 100_003 + epoch,  # noqa: E731
                                   groups=groups, group_power=cfg.source_balance or 0.0, cfg=PRESETS[cfg.augment],
                                   finish=finish)
    if not _tensorflow_backend():
        return gen()
    import tensorflow as tf

    size = train.x.shape[1]
    sig = (tf.TensorSpec((None, size, size, 3), tf.float32), tf.TensorSpec((None, 2), tf.float32))
    return tf.data.Dataset.from_generator(gen, output_signature=sig).prefetch(4)


def load_training_data(cfg: TrainConfig, folder) -> tuple[Arrays, Arrays]:
    """Train split of the ISIC folder plus every --extra-isic-dir image (train rows), and the val split."""
    from edge_sca.isic import load_isic_folder

    parts = [load_split(folder, "train", skip_bad=cfg.skip_bad, limit=cfg.limit)]
    for extra in cfg.extra_isic_dirs:
        parts.append(load_split(load_isic_folder(extra, skip_bad=cfg.skip_bad), "train", skip_bad=cfg.skip_bad,
                                limit=cfg.limit))
    val = _colour_corrected(cfg, load_split(folder, "val", skip_bad=cfg.skip_bad, limit=cfg.limit))
    train = concat_arrays(parts)
    if cfg.exclude_sources:
        train = _without_sources(train, cfg.exclude_sources)
    return train, val


def _colour_corrected(cfg: TrainConfig, arrays: Arrays) -> Arrays:
    """Images to score, as the model sees them: with the run's colour constancy (train images get it per batch,
    after augmentation)."""
    return replace(arrays, x=correct_all(cfg.colour_constancy, arrays.x))


def _without_sources(train: Arrays, names: list[str]) -> Arrays:
    """The training set less every image of the named sources (a source-held-out run)."""
    unknown = set(names) - set(train.sources)
    if unknown:
        raise SystemExit(f"--exclude-source {', '.join(sorted(unknown))}: no such source in the training data; "
                         f"sources are: {', '.join(sorted(set(train.sources)))}")
    keep = [i for i, s in enumerate(train.sources) if s not in names]
    log.info("holding out %s: %d of %d training images left", ", ".join(names), len(keep), len(train.y))
    x = np.stack([train.x[i] for i in keep])
    return Arrays(x, train.y[keep], [train.ids[i] for i in keep], [train.sources[i] for i in keep])


def train(cfg: TrainConfig, resume: bool = False, finalize_only: bool = False) -> dict:
    """Run (or resume) training, then export the best weights at 224 with a JSON record; returns the record."""
    import keras

    _configure_tf(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    paths = _paths(cfg)
    folder = load_isic_folder(cfg.isic_dir, skip_bad=cfg.skip_bad)
    state, model = TrainState(), None
    if cfg.augment not in PRESETS:
        raise SystemExit(f"--augment {cfg.augment}: unknown; use one of {', '.join(PRESETS)}")
    if cfg.colour_constancy not in METHODS:
        raise SystemExit(f"--colour-constancy {cfg.colour_constancy}: unknown; use one of {', '.join(METHODS)}")
    if resume or finalize_only:
        state, model = _load_checkpoint(cfg, paths)
    elif paths["state"].exists():
        raise SystemExit(f"{paths['state']} exists: pass --resume to continue that run, or delete "
                         f"{paths['ckpt']} to start afresh")
    paths["ckpt"].mkdir(parents=True, exist_ok=True)
    if model is None and cfg.init_from and not finalize_only:
        model, state.lineage = _initial_model(cfg, cfg.init_from), _lineage(cfg)
    train_full, val_full = load_training_data(cfg, folder)
    log.info("train %s, val %s", train_full.source_counts(), val_full.source_counts())
    ema = WeightAverage(cfg.ema_decay, paths["ema"]) if cfg.ema_decay else None
    if ema is not None and (resume or finalize_only):
        ema.load()
    while not finalize_only and state.epoch < cfg.epochs:
        model = _run_epoch(cfg, state, model, train_full, val_full, paths, ema)
    return _finalize(cfg, state, folder, val_full, train_full, paths)


def _load_checkpoint(cfg: TrainConfig, paths: dict[str, Path]):
    import json

    import keras

    if not paths["state"].exists():
        raise SystemExit(f"nothing to resume: {paths['state']} not found; run without --resume first")
    raw = json.loads(paths["state"].read_text())
    state = TrainState(**raw["state"])
    model = keras.models.load_model(paths["last"]) if paths["last"].exists() else None
    log.info("resuming %s after epoch %d (best AUROC %.4f at epoch %d)", cfg.model, state.epoch,
             state.best_auroc, state.best_epoch)
    return state, model


def _initial_model(cfg: TrainConfig, init_from: str):
    """The --init-from model, checked to be the same architecture, rebuilt at the first epoch's size."""
    import keras

    path = Path(init_from)
    if not path.exists():
        raise SystemExit(f"--init-from {path}: no such file; give a .keras model written by `quantize train`")
    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure is the same user problem
        raise SystemExit(f"--init-from {path}: cannot load it as a Keras model ({exc})") from exc
    model = _build(cfg, cfg.size_at(0))
    if [w.shape for w in source.get_weights()] != [w.shape for w in model.get_weights()]:
        raise SystemExit(f"--init-from {path}: its weights do not fit --model {cfg.model}; "
                         "give a model of the same architecture")
    model.set_weights(source.get_weights())
    log.info("starting from the weights of %s", path)
    return model


def _lineage(cfg: TrainConfig) -> dict | None:
    return lineage_of(Path(cfg.init_from)) if cfg.init_from else None


def lineage_of(path: Path) -> dict:
    """What a model a new stage starts from was: its file hash and, from its record, how it was trained."""
    import json

    out: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path)}
    record = path.with_suffix(".json")
    if record.exists():
        prior = json.loads(record.read_text())
        keep = ("config", "epochs_completed", "best_epoch", "images_seen", "train_wall_hours", "threshold",
                "metrics", "history", "git_commit", "init_from", "cpu_count")
        out["record"] = {k: prior.get(k) for k in keep}
    return out


def _total_hours(state: TrainState, lineage: dict | None) -> float:
    """CPU wall hours of this run plus every earlier stage it started from."""
    return state.train_seconds / 3600.0 + sum(r.get("train_wall_hours") or 0.0 for r in earlier_stages(lineage))


def _sized(arrays: Arrays, size: int, cache: dict) -> Arrays:
    if size == arrays.x.shape[1]:
        return arrays
    if size not in cache:
        cache[size] = Arrays(resize_batch(arrays.x, size), arrays.y, arrays.ids, arrays.sources)
    return cache[size]


def _run_epoch(cfg: TrainConfig, state: TrainState, model, train_full: Arrays, val_full: Arrays, paths,
               ema: WeightAverage | None = None):
    """One epoch: fit, validate (the weight average when there is one), checkpoint. Returns the model."""
    size = cfg.size_at(state.epoch)
    done_steps = state.epoch * cfg.steps_per_epoch
    if model is None or model.input_shape[1] != size:
        log.info("building %s at %dx%d", cfg.model, size, size)
        model = _build(cfg, size, weights_from=model, done_steps=done_steps)
    train = _sized(train_full, size, _cache_for(train_full))
    t0 = time.monotonic()
    verbose = 1 if sys.stderr.isatty() else 2
    model.fit(_dataset(cfg, train, state.epoch), steps_per_epoch=cfg.steps_per_epoch, epochs=state.epoch + 1,
              initial_epoch=state.epoch, verbose=verbose, shuffle=False,
              callbacks=[ema.callback()] if ema is not None else None)
    seconds = time.monotonic() - t0
    evaluated = _at_224(cfg, model, ema.weights if ema is not None else None)  # select on what the scanner runs
    by_source = per_source_metrics(val_full.y, predict_keras(evaluated, val_full.x), val_full.sources, 0.5)
    metrics, score = by_source[POOLED], _selection_score(cfg, by_source)
    images = cfg.steps_per_epoch * cfg.batch_size
    state.epoch += 1
    state.images_seen += images
    state.train_seconds += seconds
    shown = ("accuracy", "balanced_accuracy", "sensitivity", "ppv", "specificity", "auroc")
    entry: dict[str, Any] = {
        "epoch": state.epoch, "size": size, "val_size": INPUT_SIZE, "images_per_s": images / seconds,
        "lr": float(np.asarray(model.optimizer.learning_rate)), "val": {k: metrics[k] for k in shown},
        "val_auroc_by_source": {k: m["auroc"] for k, m in by_source.items() if k != POOLED},
        "selection_score": score}
    state.history.append(entry)
    log.info("epoch %d/%d @%d: %.1f img/s, val AUROC %.4f (%s), score %.4f", state.epoch, cfg.epochs, size,
             entry["images_per_s"], metrics["auroc"], ", ".join(f"{k} {v:.3f}" for k, v in
                                                                 entry["val_auroc_by_source"].items()), score)
    if score > state.best_auroc:
        state.best_auroc, state.best_epoch = score, state.epoch
        evaluated.save_weights(paths["best"])
    if cfg.snapshot_every and state.epoch % cfg.snapshot_every == 0:
        evaluated.save_weights(paths["ckpt"] / f"epoch-{state.epoch:03d}.weights.h5")
    if ema is not None:
        ema.save()
    _save_checkpoint(cfg, state, model, paths)
    return model


def _selection_score(cfg: TrainConfig, by_source: dict[str, dict]) -> float:
    """What picks the best epoch: the mean of per-source val AUROC, or the pooled AUROC."""
    return balanced_score(by_source) if cfg.select_on == "sources" else float(by_source[POOLED]["auroc"])


_EVAL_MODELS: dict[str, Any] = {}


def _at_224(cfg: TrainConfig, model, weights: list[np.ndarray] | None = None):
    """The model itself at 224 (when no other weights are given), else a 224x224 copy carrying `weights` or the
    model's current ones (sizes share weights)."""
    if model.input_shape[1] == INPUT_SIZE and weights is None:
        return model
    from quantize.architectures import build_model

    if cfg.model not in _EVAL_MODELS:
        _EVAL_MODELS[cfg.model] = build_model(cfg.model, INPUT_SIZE)
    evaluator = _EVAL_MODELS[cfg.model]
    evaluator.set_weights(weights if weights is not None else model.get_weights())
    return evaluator


_CACHES: dict[int, dict] = {}


def _cache_for(arrays: Arrays) -> dict:
    return _CACHES.setdefault(id(arrays), {})


def _save_checkpoint(cfg: TrainConfig, state: TrainState, model, paths) -> None:
    with atomic_path(paths["last"], suffix=".keras") as tmp:
        model.save(tmp)
    write_json(paths["state"], {"config": asdict(cfg), "state": asdict(state)})


def _selection_rule(cfg: TrainConfig) -> str:
    if cfg.select_on == "sources":
        return "best epoch by the mean of per-source val AUROC (sources with >= 10 images of each class)"
    return "best epoch by pooled val AUROC"


def _finalize(cfg: TrainConfig, state: TrainState, folder, val: Arrays, train: Arrays, paths) -> dict:
    """Best weights -> a 224x224 model, threshold on val for the target sensitivity, val/test metrics, record."""
    from quantize.architectures import build_model, count_macs

    if not paths["best"].exists():
        raise SystemExit(f"no best checkpoint at {paths['best']}: train at least one epoch first")
    model = build_model(cfg.model, INPUT_SIZE)
    model.load_weights(paths["best"])
    p_val = predict_keras(model, val.x)
    threshold = threshold_for_sensitivity(val.y, p_val, TARGET_SENSITIVITY)
    test = _colour_corrected(cfg, load_split(folder, "test", skip_bad=cfg.skip_bad, limit=cfg.limit))
    by_source = {"val": per_source_metrics(val.y, p_val, val.sources, threshold),
                 "test": per_source_metrics(test.y, predict_keras(model, test.x), test.sources, threshold)}
    metrics = {split: by_source[split][POOLED] for split in ("val", "test")}
    with atomic_path(paths["model"], suffix=".keras") as tmp:
        model.save(tmp)
    record = {
        "artifact": paths["model"].name, "model": cfg.model, "created": now_iso(), "git_commit": git_commit(),
        "data": {"isic_dir": str(Path(cfg.isic_dir).resolve()), "data_hash": folder_hash(folder),
                 "metadata_sha256": folder.metadata_sha256(), "split_source": "metadata split column"
                 if folder.has_split_column else "hash of lesion_id",
                 "counts": {"train": train.counts(), "val": val.counts(), "test": test.counts()},
                 "counts_by_source": {"train": train.source_counts(), "val": val.source_counts(),
                                      "test": test.source_counts()},
                 "extra_isic_dirs": [str(Path(d).resolve()) for d in cfg.extra_isic_dirs],
                 "skipped": folder.skipped},
        "config": asdict(cfg), "epochs_completed": state.epoch, "best_epoch": state.best_epoch,
        "images_seen": state.images_seen, "train_wall_hours": state.train_seconds / 3600.0,
        "train_wall_hours_all_stages": _total_hours(state, state.lineage), "init_from": state.lineage,
        "cpu_count": os.cpu_count(), "params": int(model.count_params()), "macs": count_macs(model),
        "threshold": threshold, "threshold_rule": f"highest threshold with val sensitivity >= {TARGET_SENSITIVITY}",
        "metrics": metrics, "metrics_by_source": by_source, "selection": _selection_rule(cfg),
        "augment": PRESETS[cfg.augment].as_dict(), "history": state.history, "tool_versions": tool_versions(),
    }
    write_json(paths["record"], record)
    log.info("wrote %s (threshold %.4f; test bal acc %.4f, sens %.4f)", paths["model"], threshold,
             metrics["test"]["balanced_accuracy"], metrics["test"]["sensitivity"])
    return record
