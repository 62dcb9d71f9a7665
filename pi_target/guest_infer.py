"""Runs INSIDE the emulated Pi (the device venv, the flashed release on PYTHONPATH): p(malignant) of every model
for a stack of preprocessed pixels, through edge_sca's own model loading. Only numpy, LiteRT and edge_sca.

    python guest_infer.py PIXELS.npy OUT.json MODEL.tflite [MODEL.tflite ...]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from edge_sca.interpreter import TFLiteModel


def main(argv: list[str]) -> int:
    pixels_path, out_path, *models = argv
    pixels = np.load(pixels_path)
    models_out: dict[str, dict] = {}
    out = {"numpy": np.__version__, "numpy_file": np.__file__, "models": models_out}
    for path in models:
        model = TFLiteModel(path, threads=1)
        t0 = time.perf_counter()
        probs = model.predict(pixels)
        models_out[path] = {"sha256": model.sha256, "backend": model.backend, "probs": probs.tolist(),
                               "seconds_per_image": (time.perf_counter() - t0) / max(len(pixels), 1)}
    with open(out_path, "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
