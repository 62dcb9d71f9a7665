"""The decoded-image cache: built once, reused, and honest about unreadable images."""

import csv
import logging

import numpy as np
import pytest

from edge_sca.errors import DataError
from edge_sca.isic import load_isic_folder
from edge_sca.preprocess import load_preprocessed
from quantize.data import load_arrays, load_split


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CANCERNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_is_built_once_and_matches_preprocessing(tiny_isic, cache, caplog):
    folder = load_isic_folder(tiny_isic)
    with caplog.at_level(logging.INFO):
        first = load_arrays(folder.records)
        assert "cached" in caplog.text
        caplog.clear()
        second = load_arrays(folder.records)
        assert "using cached arrays" in caplog.text
    assert len(list(cache.glob("*.npy"))) == 1
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.x[3], load_preprocessed(folder.records[3].path))


def test_splits_and_limit(tiny_isic, cache):
    folder = load_isic_folder(tiny_isic)
    train = load_split(folder, "train", size=96)
    assert train.x.shape == (6, 96, 96, 3) and train.counts() == {"benign": 3, "malignant": 3}
    assert load_split(folder, "val", limit=1).counts() == {"benign": 1, "malignant": 1}


def test_corrupt_image_is_named_and_skippable(tiny_isic, tmp_path, cache):
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(tiny_isic / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        (bad / f"{r['isic_id']}.jpg").symlink_to((tiny_isic / f"{r['isic_id']}.jpg").resolve())
    (bad / "metadata.csv").symlink_to(tiny_isic / "metadata.csv")
    victim = [r for r in rows if r["split"] == "train"][0]["isic_id"]
    (bad / f"{victim}.jpg").unlink()
    (bad / f"{victim}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    folder = load_isic_folder(bad)
    with pytest.raises(DataError, match=f"{victim}.jpg.*--skip-bad"):
        load_split(folder, "train")
    assert len(load_split(folder, "train", skip_bad=True).ids) == 5
    assert len(load_split(folder, "val").ids) == 6  # other splits are unaffected
