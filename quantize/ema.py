"""An exponential moving average of a model's weights, kept in NumPy beside training and saved with checkpoints.

Averaging the weights of the last few hundred steps smooths out the noise of small, heavily augmented batches;
the average is what each epoch is validated on and what the best checkpoint keeps. The training itself carries on
from the raw weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sca.fileio import atomic_path

log = logging.getLogger(__name__)


class WeightAverage:
    """EMA of every weight (trainable and batch-norm statistics), with the usual warm-up of the decay."""

    def __init__(self, decay: float, path: Path):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay}: must be between 0 and 1 (e.g. 0.995), or 0 to turn it off")
        self.decay, self.path = decay, Path(path)
        self.weights: list[np.ndarray] | None = None
        self.updates = 0

    def update(self, current: list[np.ndarray]) -> None:
        """Fold the model's current weights into the average."""
        if self.weights is None or [w.shape for w in self.weights] != [w.shape for w in current]:
            self.weights = [np.array(w, np.float32) for w in current]
            self.updates = 0
            return
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for avg, w in zip(self.weights, current, strict=False):
            avg *= d
            avg += (1.0 - d) * w
        self.updates += 1

    def callback(self):
        """A Keras callback updating the average after every training batch.

        It reads the weights through `self.model`, which on JAX syncs the training state back into the model first.
        """
        import keras

        average = self

        class _Update(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                average.update(self.model.get_weights())

        return _Update()

    def save(self) -> None:
        if self.weights is None:
            return
        with atomic_path(self.path, suffix=".npz") as tmp:  # np.savez would add .npz to a name without it
            np.savez(tmp, *self.weights, updates=np.array(self.updates))

    def load(self) -> None:
        """Restore a saved average (a resumed run continues it); nothing to do when none was saved."""
        if not self.path.is_file():
            return
        with np.load(self.path) as data:
            self.updates = int(data["updates"])
            self.weights = [data[f"arr_{i}"] for i in range(len(data.files) - 1)]
        log.info("resumed the weight average (%d updates) from %s", self.updates, self.path)
