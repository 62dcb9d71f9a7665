"""`python -m quantize convert / drift / evaluate` end to end on a model trained here on real ISIC images."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from conftest import eager_tf, make_tiny_isic

from quantize import budgets
from quantize.cli import main


def _run(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tiny_isic, tmp_path_factory):
    out = tmp_path_factory.mktemp("qmodels")
    with eager_tf():
        assert main(["train", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(out), "--epochs",
                     "1", "--steps-per-epoch", "1", "--batch-size", "8", "--image-size", "64", "--seed", "1",
                     "-q"]) == 0
    return out


def _copy_all_but_int8(models, dst):
    """The trained model, its record and the float32 file a first `convert` wrote: a recipe run on them reuses the
    float32 model (its build does not depend on the recipe) and builds only the int8 one."""
    for f in models.iterdir():
        if f.is_file() and "int8" not in f.name:
            shutil.copy2(f, dst / f.name)


@pytest.fixture(scope="module")
def converted(trained, tiny_isic, tmp_path_factory):
    reports = tmp_path_factory.mktemp("qreports")
    args = ["convert", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(trained),
            "--reports-dir", str(reports), "--recipe", "ptq", "--json", "-q"]
    rc, out, err = _run(args)
    assert out, err
    return {"models": trained, "reports": reports, "args": args, "rc": rc, "rows": json.loads(out), "err": err}


def test_convert_writes_named_int8_and_float32_models_with_manifests(converted, io_names):
    from edge_sca.interpreter import TFLiteModel

    record = json.loads((converted["models"] / "cancernet_sca_b.json").read_text())
    for variant in ("float32", "int8"):
        path = converted["models"] / f"cancernet_sca_b_{variant}.tflite"
        assert io_names(path.read_bytes()) == ("input_1", "probs")
        model = TFLiteModel(path)  # the manifest's sha256 matches the file
        m = model.manifest.data
        assert m["threshold"] == pytest.approx(record["threshold"]) and "training record" in m["threshold_source"]
        assert m["calibration"]["count"] == 6 and len(m["calibration"]["ids_sha256"]) == 64
        assert m["macs"] == record["macs"] > 0  # the device benchmark reads MACs from here
        assert m["calibration"]["source"] == "metadata calibration column"
        assert m["tool_versions"]["tensorflow"] and m["build_key"]
        assert set(m["metrics"]) >= {"keras", "float32", "int8", "int8_vs_float32", "splits"}
        assert m["metrics"]["split"] == "val+test" and set(m["metrics"]["splits"]) == {"val", "test"}
        assert len(m["reference_vectors"]) == 3
    q = TFLiteModel(converted["models"] / "cancernet_sca_b_int8.tflite")
    assert q.manifest.data["recipe"]["name"] == "ptq" and q.manifest.data["recipe"]["sha256"]
    assert q.dtype == "int8" and q.input["quantization"][1] == -128
    assert abs(q.input["quantization"][0] - 1 / 255) < 1e-9 and q.output["dtype"] == np.int8


def test_drift_report_and_exit_status_follow_the_budgets(converted):
    rdir = converted["reports"] / "b"
    d = json.loads((rdir / "drift.json").read_text())
    assert d["n"] == 12 and d["split"] == "val+test" and set(d["metrics"]) == {"keras", "float32", "int8"}
    assert {s: v["n"] for s, v in d["splits"].items()} == {"val": 6, "test": 6}
    assert d["budgets"]["limits"] == budgets.limits() and d["recipe"]["name"] == "ptq"
    for png in ("confusion.png", "scatter.png"):
        assert (rdir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (rdir / "drift.md").read_text()
    assert "top-1 agreement" in md and "missed cancers, dangerous" in md and "| val |" in md
    failed = [r for r in d["budgets"]["results"] if not r["ok"]]
    assert converted["rc"] == (1 if failed else 0)
    for r in failed:
        assert r["message"] in converted["err"]
    row = converted["rows"][0]
    assert row["agreement"] == d["int8_vs_float32"]["agreement"] and row["budgets_ok"] == (not failed)
    assert row["failed_budgets"] == [r["name"] for r in failed]


def test_int8_bias_correction_is_measured_on_calibration_and_recorded(converted):
    from edge_sca.interpreter import TFLiteModel

    b = TFLiteModel(converted["models"] / "cancernet_sca_b_int8.tflite").manifest.data["bias_correction"]
    assert b["images"] == 6 and b["source"] == "calibration set"
    if b["applied"]:
        assert abs(b["logit_shift_after"]) < abs(b["logit_shift_before"])
    assert "bias correction" in (converted["reports"] / "b" / "drift.md").read_text()


def test_rerun_reuses_everything_and_still_applies_the_budgets(converted, monkeypatch):
    files = sorted(converted["models"].glob("*.tflite")) + [converted["reports"] / "b" / "drift.json"]
    before = [f.stat().st_mtime_ns for f in files]
    monkeypatch.setattr(budgets, "MAX_SIZE_RATIO", 0.0)
    rc, _, err = _run(converted["args"])
    assert rc == 1 and "budget broken: b: int8 file is" in err and "over budget" in err
    monkeypatch.setattr(budgets, "MAX_SIZE_RATIO", 1.0)
    monkeypatch.setattr(budgets, "MIN_AGREEMENT", 0.0)
    monkeypatch.setattr(budgets, "MAX_DELTA_SENSITIVITY", 1.0)
    monkeypatch.setattr(budgets, "MAX_MALIGNANT_TO_BENIGN", 1.0)
    monkeypatch.setattr(budgets, "MAX_AUROC_DROP", 1.0)
    rc, _, err = _run(converted["args"])
    assert rc == 0 and "budget broken" not in err
    assert [f.stat().st_mtime_ns for f in files] == before  # nothing was rebuilt


def test_uint8_per_tensor_default_recipe_rebuilds_only_the_int8_model(converted, tiny_isic, tmp_path, fed_input):
    """--io uint8 with the default recipe: per-layer bias correction feeds the uint8 input its whole 0..255 range."""
    from edge_sca.interpreter import TFLiteModel
    from quantize.convert import check_integer_xnnpack

    _copy_all_but_int8(converted["models"], tmp_path)
    float_mtime = (tmp_path / "cancernet_sca_b_float32.tflite").stat().st_mtime_ns
    rc, _, _ = _run(["convert", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path),
                     "--reports-dir", str(tmp_path / "r"), "--io", "uint8", "--per-tensor", "-q"])
    assert rc in (0, 1)
    check_integer_xnnpack((tmp_path / "cancernet_sca_b_int8.tflite").read_bytes())
    per_channel = (converted["models"] / "cancernet_sca_b_int8.tflite").stat().st_size
    assert (tmp_path / "cancernet_sca_b_int8.tflite").stat().st_size < 0.9 * per_channel  # no per-channel scales
    q = TFLiteModel(tmp_path / "cancernet_sca_b_int8.tflite")
    assert q.dtype == "uint8" and q.input["quantization"][1] == 0 and q.output["dtype"] == np.uint8
    assert q.manifest.data["input"]["formula"] == "q = pixel"
    assert (tmp_path / "cancernet_sca_b_float32.tflite").stat().st_mtime_ns == float_mtime
    assert q.manifest.data["recipe"]["overrides"] == ["--per-tensor"]
    correction = q.manifest.data["bias_correction"]
    assert correction["method"] == "per_layer" and correction["layers"] > 40 and correction["images"] == 6
    pixels, fed = fed_input((tmp_path / "cancernet_sca_b_int8.tflite").read_bytes())
    assert fed.dtype == np.uint8 and np.array_equal(fed, pixels)  # not clipped at 127


TINY_QAT = {"name": "tiny_qat", "method": "qat", "seed": 1, "bias_correction": "none",
            "qat": {"train_images": 8, "epochs": 1, "batch_size": 3, "learning_rate": 1e-5,
                    "threshold_focus_logits": 1.0}}


def test_qat_recipe_fine_tunes_converts_and_reuses_its_model(converted, tiny_isic, tmp_path, io_names):
    """Quantisation-aware fine-tuning end to end (2 steps): the fine-tuned model and its record are written beside
    the trained one, the int8 model is the same kind (fully integer, input_1 / probs), a re-run reuses it all."""
    from edge_sca.interpreter import TFLiteModel
    from quantize.convert import check_integer_xnnpack

    _copy_all_but_int8(converted["models"], tmp_path)
    recipe = tmp_path / "tiny_qat.json"
    recipe.write_text(json.dumps(TINY_QAT))
    args = ["convert", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path), "--reports-dir",
            str(tmp_path / "r"), "--recipe", str(recipe), "--json", "-q"]
    with eager_tf():
        rc, out, err = _run(args)
    assert rc in (0, 1), err
    record = json.loads((tmp_path / "cancernet_sca_b_tiny_qat.json").read_text())
    assert record["steps"] == 2 and record["data"]["counts"] == {"benign": 3, "malignant": 3}
    assert record["source_model"]["sha256"] and record["seed"] == 1 and "weighted" in record["loss"]
    int8 = tmp_path / "cancernet_sca_b_int8.tflite"
    check_integer_xnnpack(int8.read_bytes())
    assert io_names(int8.read_bytes()) == ("input_1", "probs")
    m = TFLiteModel(int8).manifest.data
    assert m["qat_model"]["sha256"] == record["sha256"] and m["recipe"]["method"] == "qat"
    assert m["source_model"]["file"] == "cancernet_sca_b.keras"
    assert json.loads(out)[0]["recipe"] == "tiny_qat"
    mtimes = [p.stat().st_mtime_ns for p in (int8, tmp_path / "cancernet_sca_b_tiny_qat.keras")]
    rc2, _, err2 = _run(args)
    assert rc2 == rc and [p.stat().st_mtime_ns for p in (int8, tmp_path / "cancernet_sca_b_tiny_qat.keras")] == mtimes


def test_compare_tables_every_recipe_per_split(trained, tiny_isic, tmp_path):
    rc, out, err = _run(["compare", "--model", "b", "--recipe", "ptq", "--isic-dir", str(tiny_isic), "--models-dir",
                         str(trained), "--build-dir", str(tmp_path / "build"), "--reports-dir", str(tmp_path),
                         "--json", "-q"])
    assert rc == 0, err
    table = json.loads((tmp_path / "methods.json").read_text())
    assert [(r["recipe"], r["split"], r["n"]) for r in table["rows"]] == [("ptq", "val", 6), ("ptq", "test", 6),
                                                                          ("ptq", "val+test", 12)]
    assert (tmp_path / "build" / "ptq" / "cancernet_sca_b_int8.tflite").is_file()
    assert not (trained / "build").exists()
    md = (tmp_path / "methods.md").read_text()
    assert "python -m quantize compare --model b --recipe ptq" in md and "| B | ptq | **val+test** | 12 |" in md


@pytest.fixture(scope="module")
def no_split_isic(isic_dir, tmp_path_factory):
    """The tiny folder's images with neither a split nor a calibration column."""
    cols = ["isic_id", "benign_malignant", "diagnosis", "lesion_id"]
    return make_tiny_isic(isic_dir, tmp_path_factory.mktemp("nosplit"), columns=cols)


def test_evaluate_tflite_split_all_without_a_split_column(random_models, no_split_isic):
    rc, out, _ = _run(["evaluate", "--model-file", str(random_models["int8"]), "--isic-dir", str(no_split_isic),
                       "--split", "all", "--json"])
    r = json.loads(out)
    assert rc == 0 and r["n"] == 18 and r["counts"] == {"benign": 9, "malignant": 9}
    assert r["threshold"] == 0.5 and r["threshold_source"].startswith("manifest")
    assert sum(map(sum, r["confusion"])) == 18
    assert sum(m["n"] for m in r["by_source"].values()) == 18  # every image counted under its source
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "auroc"):
        assert key in r


def test_evaluate_keras_uses_the_training_records_threshold(trained, tiny_isic):
    rc, out, _ = _run(["evaluate", "--model-file", str(trained / "cancernet_sca_b.keras"), "--isic-dir", str(tiny_isic),
                       "--split", "test", "--json"])
    r = json.loads(out)
    record = json.loads((trained / "cancernet_sca_b.json").read_text())
    assert rc == 0 and r["n"] == 6 and r["kind"] == "keras"
    assert r["threshold"] == pytest.approx(record["threshold"])
    assert r["balanced_accuracy"] == pytest.approx(record["metrics"]["test"]["balanced_accuracy"], abs=1e-6)


def test_drift_on_another_folder(converted, no_split_isic, tmp_path):
    rc, out, _ = _run(["drift", "--model", "b", "--isic-dir", str(no_split_isic), "--split", "all", "--models-dir",
                       str(converted["models"]), "--out-dir", str(tmp_path), "--json", "-q"])
    r = json.loads(out)
    assert rc in (0, 1) and r["n"] == 18 and (tmp_path / "drift.md").is_file()
    assert rc == (0 if r["budgets"]["ok"] else 1)


@pytest.mark.parametrize("model, message", [("missing.tflite", "cannot read the model"),
                                            ("missing.keras", "no such model file"),
                                            ("model.onnx", "unknown model type")])
def test_evaluate_refuses_bad_model_paths(tiny_isic, tmp_path, model, message):
    rc, _, err = _run(["evaluate", "--model-file", str(tmp_path / model), "--isic-dir", str(tiny_isic)])
    assert rc == 2 and message in err and err.count("\n") == 1


def test_convert_without_a_calibration_set_says_what_to_do(trained, no_split_isic, tmp_path):
    rc, _, err = _run(["convert", "--model", "b", "--isic-dir", str(no_split_isic), "--models-dir", str(trained),
                       "--reports-dir", str(tmp_path)])
    assert rc == 2 and "no calibration set" in err and "--calibration-size" in err


def test_convert_without_a_trained_model_says_what_to_do(tiny_isic, tmp_path):
    rc, _, err = _run(["convert", "--model", "c", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path)])
    assert rc == 2 and "make train MODEL=c" in err


def test_unknown_variant_is_refused(tiny_isic, tmp_path):
    rc, _, err = _run(["convert", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path),
                       "--variants", "int4"])
    assert rc == 2 and "int4" in err


def test_default_recipe_uses_mse_ranges_and_per_layer_bias_correction(converted, tiny_isic, tmp_path):
    """`make quantize`'s default end to end: MSE activation ranges, per-layer bias correction on the int8 file,
    recorded in the manifest and the drift report, and still fully integer and fully delegated."""
    from edge_sca.interpreter import TFLiteModel
    from quantize.convert import check_integer_xnnpack
    from quantize.recipe import DEFAULT_RECIPE

    _copy_all_but_int8(converted["models"], tmp_path)
    float_mtime = (tmp_path / "cancernet_sca_b_float32.tflite").stat().st_mtime_ns
    rc, out, err = _run(["convert", "--model", "b", "--isic-dir", str(tiny_isic), "--models-dir", str(tmp_path),
                         "--reports-dir", str(tmp_path / "r"), "--json", "-q"])
    assert (tmp_path / "cancernet_sca_b_float32.tflite").stat().st_mtime_ns == float_mtime  # no recipe touches it
    assert rc in (0, 1), err
    path = tmp_path / "cancernet_sca_b_int8.tflite"
    check_integer_xnnpack(path.read_bytes())
    m = TFLiteModel(path).manifest.data
    assert m["recipe"]["name"] == DEFAULT_RECIPE and m["recipe"]["activation_ranges"] == "mse"
    correction = m["bias_correction"]
    assert correction["method"] == "per_layer" and correction["layers"] > 40 and correction["images"] == 6
    assert "per-layer bias correction (6 calibration images)" in (tmp_path / "r" / "b" / "drift.md").read_text()
