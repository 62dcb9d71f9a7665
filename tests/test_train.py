"""A short real training run on real images: writes a model, a record, checkpoints, and resumes."""

import json
import os

import keras
import pytest
from conftest import eager_tf

from quantize.cli import main


@pytest.fixture(scope="module")
def trained(tiny_isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    args = ["train", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(out), "--epochs", "2",
            "--steps-per-epoch", "2", "--batch-size", "8", "--image-size", "64", "--seed", "3", "-q",
            "--augment", "strong", "--source-balance", "0.5", "--ema", "0.9", "--snapshot-every", "1",
            "--colour-constancy", "shades_of_gray"]
    with eager_tf():
        assert main(args) == 0
    return out, args


def test_writes_a_224_model_and_a_complete_record(trained):
    out, _ = trained
    model = keras.models.load_model(out / "cancernet_sca_b.keras")
    assert model.input_shape == (None, 224, 224, 3)  # progressive resizing finished at 224
    record = json.loads((out / "cancernet_sca_b.json").read_text())
    assert record["epochs_completed"] == 2 and [h["size"] for h in record["history"]] == [64, 224]
    assert record["config"]["seed"] == 3 and record["data"]["counts"]["train"] == {"benign": 3, "malignant": 3}
    assert record["git_commit"] and record["tool_versions"]["tensorflow"] == "2.21.0"
    assert 0.0 <= record["threshold"] <= 1.0
    assert record["metrics"]["val"]["sensitivity"] >= 0.9  # the threshold is chosen for 90% on val
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "auroc", "confusion"):
        assert key in record["metrics"]["test"]
    assert record["params"] == 793090
    assert record["cpu_count"] == os.cpu_count()  # with config.threads, what `quantize summary` counts core hours by


def test_record_and_history_break_metrics_down_by_source(trained):
    out, _ = trained
    record = json.loads((out / "cancernet_sca_b.json").read_text())
    sources = set(record["data"]["counts_by_source"]["val"])
    assert sources and set(record["metrics_by_source"]["val"]) == sources | {"all"}
    assert record["metrics_by_source"]["test"]["all"] == record["metrics"]["test"]
    assert all("val_auroc_by_source" in h and "selection_score" in h for h in record["history"])
    assert record["selection"].startswith("best epoch by the mean of per-source val AUROC")
    assert record["augment"]["degrade_prob"] == 0.5 and record["config"]["ema_decay"] == 0.9
    ckpt = out / "checkpoints" / "cancernet_sca_b"
    assert (ckpt / "ema.npz").is_file() and (ckpt / "epoch-001.weights.h5").is_file()


def test_extra_folders_join_the_training_set_with_their_sources(tiny_isic):
    from edge_sca.isic import load_isic_folder
    from quantize.data import ImageStack
    from quantize.train import TrainConfig, load_training_data

    cfg = TrainConfig(model="b", isic_dir=str(tiny_isic), extra_isic_dirs=[str(tiny_isic)])
    train, val = load_training_data(cfg, load_isic_folder(tiny_isic))
    assert isinstance(train.x, ImageStack) and len(train.y) == 12 and len(train.sources) == 12
    assert train.x[11].shape == (224, 224, 3) and len(val.y) == 6


def test_refuses_to_overwrite_a_run_and_resumes_it(trained):
    out, args = trained
    with pytest.raises(SystemExit, match="--resume"):
        main(args)
    assert main(args[:args.index("--epochs") + 1] + ["3"] + args[args.index("--epochs") + 2:] + ["--resume"]) == 0
    record = json.loads((out / "cancernet_sca_b.json").read_text())
    assert record["epochs_completed"] == 3 and len(record["history"]) == 3


def test_resume_without_a_run_says_so(tiny_isic, tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume"):
        main(["train", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path), "--resume", "-q"])


def test_init_from_starts_a_second_stage_and_keeps_the_lineage(trained, tmp_path):
    out, _ = trained
    first = json.loads((out / "cancernet_sca_b.json").read_text())
    with eager_tf():
        assert main(["train", "--model", "b", "--isic-dir", first["data"]["isic_dir"], "--models-dir",
                     str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8",
                     "--init-from", str(out / "cancernet_sca_b.keras"), "-q"]) == 0
    record = json.loads((tmp_path / "cancernet_sca_b.json").read_text())
    lineage = record["init_from"]
    assert lineage["record"]["epochs_completed"] == first["epochs_completed"]
    assert len(lineage["sha256"]) == 64
    assert record["train_wall_hours_all_stages"] > record["train_wall_hours"]
    assert record["history"][0]["val_size"] == 224


def test_init_from_another_architecture_is_refused(trained, tmp_path):
    out, _ = trained
    with pytest.raises(SystemExit, match="do not fit --model c"):
        main(["train", "--model", "c", "--isic-dir", json.loads((out / "cancernet_sca_b.json").read_text())
              ["data"]["isic_dir"], "--models-dir", str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1",
              "--init-from", str(out / "cancernet_sca_b.keras"), "-q"])


def test_colour_constancy_is_recorded_applied_when_scored_and_refused_by_convert(trained, tiny_isic):
    import numpy as np

    from edge_sca.colour import shades_of_gray
    from edge_sca.errors import ModelError
    from edge_sca.isic import load_isic_folder
    from edge_sca.preprocess import load_preprocessed
    from quantize.evaluate import load_scorer, load_source_model
    from quantize.train import predict_keras

    out, _ = trained
    model = out / "cancernet_sca_b.keras"
    assert json.loads(model.with_suffix(".json").read_text())["config"]["colour_constancy"] == "shades_of_gray"
    with pytest.raises(ModelError, match="colour constancy 'shades_of_gray'.*not a model to convert"):
        load_source_model(model)
    # scoring applies it: an image's score is the plain network's score of the corrected image
    x = np.stack([load_preprocessed(r.path) for r in load_isic_folder(tiny_isic).subset("val")[:2]])
    plain = predict_keras(keras.models.load_model(model, compile=False), shades_of_gray(x))
    assert np.allclose(load_scorer(model).p_malignant(x), plain, atol=1e-6)
    weights = load_scorer(out / "checkpoints" / "cancernet_sca_b" / "best.weights.h5")
    assert np.allclose(weights.p_malignant(x), plain, atol=1e-5)  # the exported model holds the best weights

