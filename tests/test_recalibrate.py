"""`python -m quantize recalibrate`: a site's labelled captures -> rates with confidence intervals, a proposed
threshold written into new manifests that a bundle signs, and refusal when the set is too small."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_sca.devpaths import MODELS_DIR
from edge_sca.fileio import sha256_file
from edge_sca.manifest import load_manifest
from quantize.cli import main
from quantize.recalibrate import RecalibrateOptions, check_counts, malignant_needed, rates_with_ci


def site_folder(isic: Path, dst: Path, malignant: int, benign: int) -> Path:
    """A site's folder: real ISIC test images (links), labelled, no split column (as a site would write it)."""
    with open(isic / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    chosen = ([r for r in rows if r["benign_malignant"] == "malignant"][:malignant]
              + [r for r in rows if r["benign_malignant"] == "benign"][:benign])
    dst.mkdir(parents=True)
    for r in chosen:
        (dst / f"{r['isic_id']}.jpg").symlink_to((isic / f"{r['isic_id']}.jpg").resolve())
    with open(dst / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["isic_id", "benign_malignant"], extrasaction="ignore")
        w.writeheader()
        w.writerows(chosen)
    return dst


def test_malignant_needed_follows_the_confidence_rule():
    assert malignant_needed(0.90, 0.10) == 62
    assert malignant_needed(0.90, 0.05) > malignant_needed(0.90, 0.10)  # a tighter bound needs more images
    with pytest.raises(ValueError):
        malignant_needed(1.2, 0.1)


def test_check_counts_says_what_to_collect():
    status, why = check_counts(np.array([1] * 50 + [0] * 100), RecalibrateOptions())
    assert status == "too_few_malignant" and "needs at least 62" in why and "12 more" in why
    status, why = check_counts(np.array([1] * 70 + [0] * 5), RecalibrateOptions())
    assert status == "too_few_benign" and "25 more" in why
    assert check_counts(np.array([1] * 62 + [0] * 30), RecalibrateOptions())[0] == "proposed"


def test_rates_with_ci_counts_and_bounds():
    y = np.array([1] * 10 + [0] * 10)
    p = np.array([0.9] * 9 + [0.1] + [0.2] * 8 + [0.8] * 2)
    r = rates_with_ci(y, p, 0.5)
    assert r["sensitivity"] == 0.9 and r["specificity"] == 0.8
    assert r["sensitivity_ci95"][0] < 0.9 < r["sensitivity_ci95"][1] and r["confusion"] == [[8, 2], [1, 9]]


@pytest.mark.isic
@pytest.mark.slow
def test_recalibrate_writes_manifests_that_a_bundle_signs(isic_dir, tmp_path, capsys):
    from firmware_bridge import signing
    from firmware_bridge.bundle import make_bundle

    site = site_folder(isic_dir, tmp_path / "site", malignant=62, benign=30)
    out = tmp_path / "recalibrated"
    before = (MODELS_DIR / "cancernet_sca_b_int8.manifest.json").read_bytes()
    assert main(["recalibrate", "--isic-dir", str(site), "--model", "b", "--out-dir", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "proposed" and report["counts"] == {"benign": 30, "malignant": 62}
    assert (MODELS_DIR / "cancernet_sca_b_int8.manifest.json").read_bytes() == before  # models/ untouched
    assert sorted(p.name for p in out.glob("*.tflite")) == ["cancernet_sca_b_float32.tflite",
                                                            "cancernet_sca_b_int8.tflite"]
    for entry in report["models"]:
        new = load_manifest(out / entry["model"].replace(".tflite", ".manifest.json"))
        assert new.threshold == entry["proposed"]["threshold"]
        assert entry["proposed"]["sensitivity"] >= 0.9  # on the site's own images, by construction
        lo, hi = entry["current"]["sensitivity_ci95"]
        assert 0 <= lo <= entry["current"]["sensitivity"] <= hi <= 1
        assert new.data["recalibration"]["previous_threshold"] == entry["current"]["threshold"]
        assert new.data["recalibration"]["counts"] == report["counts"]
    key, _ = signing.keygen(tmp_path / "keys" / "k.key")
    info = make_bundle(out, key, tmp_path / "dist", version="0.0.1-site")
    assert info.path.is_file() and info.models == ["models/cancernet_sca_b_float32.tflite",
                                                   "models/cancernet_sca_b_int8.tflite"]
    signed = info.index.files["models/cancernet_sca_b_int8.manifest.json"]
    assert signed.sha256 == sha256_file(out / "cancernet_sca_b_int8.manifest.json")  # the new manifest is signed in


@pytest.mark.isic
@pytest.mark.slow
def test_recalibrate_refuses_too_few_malignant_and_writes_nothing(isic_dir, tmp_path, capsys):
    site = site_folder(isic_dir, tmp_path / "site", malignant=10, benign=30)
    out = tmp_path / "recalibrated"
    assert main(["recalibrate", "--isic-dir", str(site), "--model", "b", "--out-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert "needs at least 62" in captured.err and "collect and label 52 more" in captured.err
    assert "sensitivity" in captured.out and "95% CI" in captured.out  # the current threshold is still reported
    assert not out.exists()


def test_recalibrate_refuses_to_write_over_the_models_folder(tmp_path, capsys):
    assert main(["recalibrate", "--isic-dir", str(tmp_path), "--models-dir", str(MODELS_DIR),
                 "--out-dir", str(MODELS_DIR)]) == 2
    assert "is the models folder itself" in capsys.readouterr().err


def test_recalibrate_without_models_says_how_to_build_them(tmp_path, capsys):
    assert main(["recalibrate", "--isic-dir", str(tmp_path), "--models-dir", str(tmp_path / "none"),
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert "make quantize" in capsys.readouterr().err
