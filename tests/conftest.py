"""Shared fixtures: the real ISIC folder (skipped with a reason when absent, required under CI), a tiny ISIC
folder of real images, and small int8 / float32 models converted from random weights."""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _find_isic() -> Path | None:
    from edge_sca.devpaths import isic_dir_candidates

    for c in isic_dir_candidates():
        if (c / "metadata.csv").is_file():
            return c
    return None


@contextlib.contextmanager
def eager_tf():
    """Run tf.functions (Keras's training step, QAT's and robust-tune's steps) eagerly inside the block. Tracing a
    training step costs about 20 s per image size on 2 cores, far more than the few steps a test trains; the
    numbers are the same up to float rounding. tf.data's input pipeline is traced either way, and
    test_train.py::test_refuses_to_overwrite_a_run_and_resumes_it trains in graph mode, as real runs do."""
    import warnings

    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Even though the `tf.config.experimental_run_functions_eagerly`")
            yield
    finally:
        tf.config.run_functions_eagerly(False)


@pytest.fixture(autouse=True)
def _bundles_without_wheelhouse(monkeypatch):
    """Test bundles leave out the aarch64 wheelhouse (tens of MB, data/wheelhouse); a test that wants it passes
    with_wheels=True, and `make pi-check` packs and installs the real one."""
    from firmware_bridge import bundle

    monkeypatch.setattr(bundle, "WITH_WHEELS_DEFAULT", False)


@pytest.fixture(scope="session")
def isic_dir() -> Path:
    """The real ISIC folder; CI must have it, a fresh clone without it skips these tests."""
    found = _find_isic()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no ISIC folder was found (ISIC_DIR, data/isic, ../shared/isic)")
        pytest.skip("no ISIC folder: set ISIC_DIR or put one at data/isic or ../shared/isic")
    return found


def make_tiny_isic(src: Path, dst: Path, per_split_class: int = 3, calibration: int = 4,
                   columns: list[str] | None = None) -> Path:
    """A small ISIC folder of real images (links, not copies): per_split_class of each class in each split,
    the first `calibration` train rows marked for calibration; camera-like UDA-1 images first."""
    with open(src / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: (r["dataset"] != "ISIC Archive UDA-1", r["isic_id"]))
    chosen = []
    for split in ("train", "val", "test"):
        for label in ("benign", "malignant"):
            chosen += [r for r in rows if r["split"] == split and r["benign_malignant"] == label][:per_split_class]
    dst.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(chosen):
        r = dict(r)
        r["calibration"] = "1" if (r["split"] == "train" and i < calibration * 2) else "0"
        chosen[i] = r
        (dst / f"{r['isic_id']}.jpg").symlink_to((src / f"{r['isic_id']}.jpg").resolve())
    cols = columns or list(rows[0].keys())
    with open(dst / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(chosen)
    return dst


@pytest.fixture(scope="session")
def tiny_isic(isic_dir: Path, tmp_path_factory) -> Path:
    """18 real images: 3 benign + 3 malignant in each of train / val / test, some marked for calibration."""
    return make_tiny_isic(isic_dir, tmp_path_factory.mktemp("tiny_isic"))


@pytest.fixture(scope="session")
def random_models(tiny_isic: Path, tmp_path_factory) -> dict[str, Path]:
    """CancerNet-SCa-B with random weights as float32 and int8 .tflite with manifests (calibrated on 6 real
    images). The numbers it gives are meaningless; the plumbing is real."""
    import keras

    from edge_sca.isic import load_isic_folder
    from quantize.architectures import build_model
    from quantize.convert import convert
    from quantize.data import load_split
    from quantize.export import write_model

    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("models")
    model = build_model("b")
    folder = load_isic_folder(tiny_isic)
    train = load_split(folder, "train")
    refs = train.x[:2]
    paths = {}
    for variant in ("float32", "int8"):
        data = convert(model, variant, calib_pixels=np.asarray(train.x))
        path = out / f"cancernet_sca_b_{variant}.tflite"
        write_model(data, path, "b", variant, 0.5, refs, train.ids[:2])
        paths[variant] = path
    model.save(out / "cancernet_sca_b.keras")
    paths["keras"] = out / "cancernet_sca_b.keras"
    return paths


@pytest.fixture(scope="session")
def io_names():
    """io_names(tflite_bytes) -> the (input, output) tensor names the device's interpreter reports."""
    from edge_sca.interpreter import interpreter_class

    def names(tflite_bytes: bytes) -> tuple[str, str]:
        interp = interpreter_class()[0](model_content=tflite_bytes)
        return interp.get_input_details()[0]["name"], interp.get_output_details()[0]["name"]

    return names


@pytest.fixture(scope="session")
def fed_input():
    """fed_input(tflite_bytes) -> (pixels, tensor): every uint8 value, fed to the model's input by per-layer bias
    correction's _feed, and the input tensor the model then holds."""
    from quantize.layer_bias import _feed, _interpreter

    def fed(tflite_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
        interp = _interpreter(tflite_bytes)
        detail = interp.get_input_details()[0]
        shape = tuple(detail["shape"][1:])
        pixels = (np.arange(int(np.prod(shape))) % 256).astype(np.uint8).reshape(shape)
        _feed(interp, pixels, True)
        return pixels, interp.get_tensor(detail["index"])[0]

    return fed


@pytest.fixture(scope="session")
def write_fake_model():
    """write(folder, stem, data): a .tflite file of arbitrary bytes with a manifest whose sha256 matches, for
    tests of bundling and flashing, which check manifests and hashes but never run the model."""
    import hashlib
    import json

    def manifest(folder: Path, stem: str, sha256: str) -> None:
        data = {"format": 1, "model_file": f"{stem}.tflite", "sha256": sha256, "architecture": "b",
                "input": {"size": 224}, "class_names": ["benign", "malignant"], "threshold": 0.5}
        (folder / f"{stem}.manifest.json").write_text(json.dumps(data))

    def write(folder: Path, stem: str, data: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.tflite").write_bytes(data)
        manifest(folder, stem, hashlib.sha256(data).hexdigest())

    write.manifest = manifest  # for a model file the test wrote itself (e.g. a large sparse one)
    return write
